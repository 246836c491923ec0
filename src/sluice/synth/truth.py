"""Ground truth of generated traffic: what each synthetic flow is, for tests to compare against.

Every generated flow gets one :class:`FlowTruth` with its 5-tuple, framing, timing, packet and
byte counts, and the application facts a dissector should recover (SNI, ALPN, QUIC version, DNS
question, HTTP host and URL, SSH banners, SOCKS target). :class:`GroundTruth` is the list of
them plus run metadata, and round-trips through JSON.
"""

from __future__ import annotations

__all__ = ["FlowTruth", "GroundTruth"]

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class FlowTruth:
    """What one generated flow is."""

    flow_id: int
    """Index of the flow in generation order."""
    kind: str
    """Scenario kind that produced it (``https``, ``quic``, ``dns`` ...)."""
    app: str
    """Application protocol on the wire (``tls``, ``quic``, ``dns``, ``http``, ``ssh``, ``socks5``)."""
    transport: str
    """``tcp`` or ``udp``."""
    ip_version: int
    """4 or 6 (of the inner packets when tunnelled)."""
    client_ip: str
    """Client address."""
    client_port: int
    """Client port."""
    server_ip: str
    """Server address."""
    server_port: int
    """Server port."""
    start_ts: float
    """Time of the first packet."""
    end_ts: float
    """Time of the last packet."""
    packets: int
    """Frames of this flow in the capture (IP fragments count one each)."""
    packets_c2s: int
    """Frames sent by the client."""
    packets_s2c: int
    """Frames sent by the server."""
    bytes_c2s: int
    """Transport payload bytes sent by the client."""
    bytes_s2c: int
    """Transport payload bytes sent by the server."""
    interface: int = 0
    """Capture interface index (pcapng)."""
    linktype: int = 1
    """Link type of the flow's frames."""
    vlans: tuple[int, ...] = ()
    """802.1Q tags, outermost first."""
    tunnel: str | None = None
    """Encapsulation (``gre``, ``vxlan``, ``gtpu``, ``ipip``, ``teredo``) or ``None``."""
    tunnel_endpoints: tuple[str, str] | None = None
    """Outer client-side and server-side addresses of the tunnel."""
    sni: str | None = None
    """TLS/QUIC server name in the ClientHello."""
    alpn: tuple[str, ...] = ()
    """ALPN protocols offered by the client."""
    alpn_selected: str | None = None
    """ALPN protocol chosen by the server."""
    tls_version: str | None = None
    """Negotiated TLS version (``TLSv1.3``)."""
    quic_version: int | None = None
    """QUIC version of the long headers."""
    dns_qname: str | None = None
    """DNS question name."""
    dns_qtype: int | None = None
    """DNS question type."""
    dns_rcode: int | None = None
    """DNS response code."""
    dns_answers: tuple[str, ...] = ()
    """Answer values (addresses, CNAME targets) in order."""
    http_method: str | None = None
    """Method of the first HTTP request."""
    http_host: str | None = None
    """Host header of the first HTTP request."""
    http_url: str | None = None
    """Full URL of the first HTTP request."""
    http_status: int | None = None
    """Status of the first HTTP response."""
    ssh_client_banner: str | None = None
    """SSH identification string of the client (without CR LF)."""
    ssh_server_banner: str | None = None
    """SSH identification string of the server."""
    socks_target: str | None = None
    """``host:port`` requested through SOCKS5."""
    fragmented: bool = False
    """Whether some datagram of the flow was sent as IP fragments."""
    out_of_order: bool = False
    """Whether some segments were delivered out of order."""
    notes: tuple[str, ...] = field(default=())
    """Free-form remarks (``ipv6-ext-headers`` ...)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FlowTruth:
        """Inverse of :meth:`to_json`.

        Raises:
            TypeError: unknown or missing fields.
        """
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()}
        return cls(**kw)

    @property
    def five_tuple(self) -> tuple[str, int, str, int, str]:
        """``(client_ip, client_port, server_ip, server_port, transport)``."""
        return (self.client_ip, self.client_port, self.server_ip, self.server_port, self.transport)


class GroundTruth(list[FlowTruth]):
    """The flows of one generated capture, in generation order, with run metadata.

    Args:
        flows: initial flows.
        meta: run parameters (seed, mix, link type ...); must be JSON-serialisable.
    """

    def __init__(self, flows: list[FlowTruth] | None = None, meta: dict[str, Any] | None = None):
        super().__init__(flows or [])
        self.meta: dict[str, Any] = dict(meta or {})
        """Run parameters and totals."""

    @property
    def total_packets(self) -> int:
        """Sum of the flows' packet counts."""
        return sum(f.packets for f in self)

    def to_json(self) -> dict[str, Any]:
        """``{"meta": ..., "flows": [...]}``."""
        return {"meta": self.meta, "flows": [f.to_json() for f in self]}

    def dump(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` (UTF-8, one flow per line for readable diffs)."""
        lines = ['{"meta": ' + json.dumps(self.meta, sort_keys=True) + ', "flows": [']
        body = [json.dumps(f.to_json(), sort_keys=True) for f in self]
        text = "\n".join(lines) + "\n" + ",\n".join(body) + "\n]}\n"
        Path(path).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read a file written by :meth:`dump`.

        Raises:
            ValueError: not valid ground-truth JSON.
        """
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(obj, dict) or "flows" not in obj:
            raise ValueError(f"{path}: not a ground-truth file")
        try:
            return cls([FlowTruth.from_json(f) for f in obj["flows"]], obj.get("meta", {}))
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
