"""The flow record: what sluice knows about one bidirectional flow.

Every later stage (detectors, the register matcher, policy) reads flows through this record, so
its field names are public output: renaming one is a breaking change.
"""

from __future__ import annotations

__all__ = ["HEAD_BYTES", "AppMeta", "FlowRecord", "format_addr", "format_ipv6"]

import functools
import ipaddress
from dataclasses import dataclass, field, fields, replace
from typing import Any

HEAD_BYTES = 64
"""Bytes of each direction's first payload kept in the record (as hex), for fingerprints."""


def format_addr(addr: bytes) -> str:
    """Text form of a 4- or 16-byte address (empty for no address)."""
    if len(addr) == 4:
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    if len(addr) == 16:
        return format_ipv6(int.from_bytes(addr, "big"))
    return addr.hex()


@functools.lru_cache(maxsize=65536)
def format_ipv6(value: int) -> str:
    """RFC 5952 text of an IPv6 address given as an integer (cached: servers repeat)."""
    return str(ipaddress.IPv6Address(value))


@dataclass(slots=True)
class AppMeta:
    """Application-layer facts found in a flow's first packets."""

    app: str = ""
    """Protocol recognised from the payload: tls, quic, gquic, dns, http, ssh, socks."""
    sni: str = ""
    """TLS or QUIC server name indication."""
    alpn: tuple[str, ...] = ()
    """ALPN protocols offered by the client."""
    ja4: str = ""
    """JA4 fingerprint of the client hello (FoxIO)."""
    tls_versions: tuple[int, ...] = ()
    """Versions the client offered (supported_versions, else legacy version)."""
    tls_version: int = 0
    """Version the server selected."""
    tls_cipher: int = -1
    """Cipher suite the server selected (-1 when not seen)."""
    ech: bool = False
    """The client hello carries Encrypted Client Hello."""
    cert_subject: str = ""
    """Subject of the server certificate (TLS ≤ 1.2)."""
    cert_issuer: str = ""
    """Issuer of the server certificate."""
    cert_san: tuple[str, ...] = ()
    """Subject alternative names of the server certificate."""
    quic_version: str = ""
    """QUIC version name (V-1, V-2, Draft-29, Q046 ...)."""
    dns_query: str = ""
    """First query name."""
    dns_qtype: int = 0
    """Type of the first query."""
    dns_rcode: int = -1
    """Response code (-1 when no response was seen)."""
    dns_answers: tuple[str, ...] = ()
    """Answer values (addresses, names)."""
    http_method: str = ""
    """HTTP request method."""
    http_host: str = ""
    """HTTP Host header."""
    http_url: str = ""
    """Absolute URL of the first request."""
    http_user_agent: str = ""
    """User-Agent header."""
    http_status: int = 0
    """Status code of the first response."""
    http_server: str = ""
    """Server header of the first response."""
    connect_target: str = ""
    """Target of an HTTP CONNECT request."""
    ssh_client: str = ""
    """Client SSH identification string."""
    ssh_server: str = ""
    """Server SSH identification string."""
    socks_target: str = ""
    """host:port requested through SOCKS."""

    def copy(self) -> AppMeta:
        """A shallow copy (fields are immutable values)."""
        return replace(self)

    @property
    def server_name(self) -> str:
        """The name the client asked for: SNI, else HTTP Host, else DNS query."""
        return self.sni or self.http_host or self.dns_query


@dataclass(slots=True)
class FlowRecord:
    """One bidirectional flow (early or final)."""

    flow_id: int
    """Sequence number of the flow within the run."""
    early: bool
    """True for the early record emitted after the first packets, False for the final one."""
    end_reason: str
    """Why the record was emitted: early, idle, active, evicted, end (of capture)."""
    ip_version: int
    """4 or 6 (innermost IP)."""
    client: str
    """Client address (sender of the first packet, or of the SYN)."""
    client_port: int
    """Client port (0 for protocols without ports)."""
    server: str
    """Server address."""
    server_port: int
    """Server port."""
    proto: int
    """IP protocol number."""
    vlans: tuple[int, ...]
    """VLAN IDs, outermost first."""
    tunnels: str
    """Encapsulations, outermost first, oriented client to server: ``gre:a>b|vxlan/42:c>d``."""
    first_ts: float
    """Time of the first packet."""
    last_ts: float
    """Time of the last packet."""
    c2s_packets: int
    """Packets client to server."""
    s2c_packets: int
    """Packets server to client."""
    c2s_bytes: int
    """Frame bytes client to server (on the wire)."""
    s2c_bytes: int
    """Frame bytes server to client."""
    c2s_payload_bytes: int
    """Transport payload bytes client to server."""
    s2c_payload_bytes: int
    """Transport payload bytes server to client."""
    c2s_tcp_flags: int
    """OR of TCP flags client to server."""
    s2c_tcp_flags: int
    """OR of TCP flags server to client."""
    pkt_sizes: tuple[int, ...]
    """IP lengths of the first packets (at most 32)."""
    pkt_dirs: tuple[int, ...]
    """Directions of the first packets: 0 client to server, 1 server to client."""
    pkt_iats: tuple[float, ...]
    """Seconds since the previous packet of the flow, for the first packets (first is 0)."""
    c2s_entropy: float
    """Shannon entropy (bits per byte) of the first client payload; -1 when none."""
    c2s_printable: float
    """Fraction of printable ASCII in the first client payload; -1 when none."""
    s2c_entropy: float
    """Shannon entropy of the first server payload; -1 when none."""
    s2c_printable: float
    """Fraction of printable ASCII in the first server payload; -1 when none."""
    c2s_first_payload_len: int
    """Length of the first client payload (0 when none)."""
    c2s_head: str
    """Hex of the first bytes (at most ``HEAD_BYTES``) of the first client payload."""
    s2c_head: str
    """Hex of the first bytes (at most ``HEAD_BYTES``) of the first server payload."""
    meta: AppMeta = field(default_factory=AppMeta)
    """Application-layer facts."""

    @property
    def duration(self) -> float:
        """Seconds between the first and the last packet."""
        return self.last_ts - self.first_ts

    @property
    def packets(self) -> int:
        """Packets in both directions."""
        return self.c2s_packets + self.s2c_packets

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-friendly dict (metadata fields inlined, tuples as lists)."""
        out: dict[str, Any] = {}
        for name in _RECORD_FIELDS:
            value = getattr(self, name)
            out[name] = list(value) if type(value) is tuple else value
        out["duration"] = round(self.last_ts - self.first_ts, 6)
        meta = self.meta
        out["server_name"] = meta.server_name
        for name in _META_FIELDS:
            value = getattr(meta, name)
            out[name] = list(value) if type(value) is tuple else value
        return out


_RECORD_FIELDS = tuple(f.name for f in fields(FlowRecord) if f.name != "meta")
_META_FIELDS = tuple(f.name for f in fields(AppMeta))
RECORD_COLUMNS: tuple[str, ...] = (
    *(f.name for f in fields(FlowRecord) if f.name != "meta"),
    "duration",
    "server_name",
    *(f.name for f in fields(AppMeta)),
)
"""Column order of flat flow output."""
