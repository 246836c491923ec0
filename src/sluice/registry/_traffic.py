"""Traffic for impact previews: sluice flow logs (JSONL, CSV, Parquet) and captures.

Flow logs are what ``sluice flows`` writes (:mod:`sluice.io.flowlog`, one flat row per flow);
captures (pcap, pcapng, gzip'd) go through sluice's own flow table (the batch path of
``sluice flows``).  Either way the preview keeps, per final flow record: client, server, the name
the client asked for (SNI, else HTTP Host; DNS flows have none here: they are flows to the
resolver), bytes and packets.  DNS flows add *passive DNS*: the query name and every CNAME in the
answer are linked to every address in the answer.  Names seen in flows are linked to the flow's
server address too.
"""

from __future__ import annotations

import csv
import gzip
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sluice.io.flowlog import split_csv_list
from sluice.registry.model import RegistryError
from sluice.registry.names import BadIndicator, canon_host

__all__ = ["Traffic", "TrafficCert", "TrafficFlow", "read_traffic"]

_PCAP_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
)
MAX_ROWS = 20_000_000
"""Flow rows read at most over all inputs (a preview is not a data warehouse)."""


@dataclass(frozen=True, slots=True)
class TrafficFlow:
    """One flow as the preview sees it."""

    client: str
    """Client address."""
    server: str
    """Server address (canonical text)."""
    name: str
    """Canonical name the client asked for (SNI, else HTTP Host), "" when none."""
    bytes: int
    """Bytes both ways."""
    dns: bool = False
    """A DNS flow (to a resolver)."""
    query: str = ""
    """A DNS flow's canonical query name ("" otherwise)."""


@dataclass(frozen=True, slots=True)
class TrafficCert:
    """A server certificate seen in a flow (TLS <= 1.2 sends it in clear)."""

    subject: str
    """Subject distinguished name."""
    issuer: str
    """Issuer distinguished name."""
    san: tuple[str, ...]
    """Subject alternative names, sorted."""


@dataclass(slots=True)
class Traffic:
    """Flows and the name-address links seen in them."""

    flows: list[TrafficFlow] = field(default_factory=list)
    """Final flow records, in input order."""
    names_by_addr: dict[str, dict[str, int]] = field(default_factory=dict)
    """Address -> name -> times the link was seen (flows and DNS answers)."""
    files: list[str] = field(default_factory=list)
    """The inputs read."""
    skipped: int = 0
    """Rows without a usable server address."""
    certs: dict[str, set[TrafficCert]] = field(default_factory=dict)
    """Name the client asked for -> the server certificates seen with it."""

    def link(self, addr: str, name: str) -> None:
        """Record that ``name`` was seen on ``addr``."""
        d = self.names_by_addr.setdefault(addr, {})
        d[name] = d.get(name, 0) + 1


def _canon_name(text: object) -> str:
    if not isinstance(text, str) or not text:
        return ""
    try:
        return canon_host(text)
    except BadIndicator:
        return ""


def _canon_addr(text: object) -> str:
    if not isinstance(text, str):
        return ""
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return ""


def _int(v: object) -> int:
    try:
        return int(v)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return 0


def _answers(v: object) -> list[str]:
    if isinstance(v, str):  # CSV: a JSON array (older sluice: space-joined)
        if v.lstrip().startswith("["):
            try:
                return [str(x) for x in split_csv_list(v)]
            except ValueError:
                return []
        return v.split()
    if isinstance(v, list | tuple):
        return [str(x) for x in v]
    return []


def _add_row(t: Traffic, row: dict[str, Any]) -> None:
    if row.get("early") in (True, "True", "true", 1, "1"):
        return  # the final record of the same flow follows
    server = _canon_addr(row.get("server"))
    if not server:
        t.skipped += 1
        return
    qname = _canon_name(row.get("dns_query"))
    is_dns = row.get("app") == "dns" or (bool(qname) and not row.get("sni") and not row.get("http_host"))
    name = "" if is_dns else _canon_name(row.get("sni") or row.get("http_host") or row.get("server_name"))
    total = _int(row.get("c2s_bytes")) + _int(row.get("s2c_bytes"))
    query = qname if is_dns else ""
    t.flows.append(TrafficFlow(str(row.get("client") or ""), server, name, total, is_dns, query))
    if name:
        t.link(server, name)
        subject, issuer = str(row.get("cert_subject") or ""), str(row.get("cert_issuer") or "")
        san = tuple(sorted(set(_answers(row.get("cert_san")))))
        if subject or san:
            t.certs.setdefault(name, set()).add(TrafficCert(subject, issuer, san))
    if is_dns and qname:
        names = [qname]
        addrs = []
        for a in _answers(row.get("dns_answers")):
            ip = _canon_addr(a)
            if ip:
                addrs.append(ip)
            else:
                n = _canon_name(a)
                if n:
                    names.append(n)
        for ip in addrs:
            for n in names:
                t.link(ip, n)


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise RegistryError("registry.io_error", exc.strerror or str(exc), str(path)) from exc
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(4096)
        except (OSError, EOFError):
            head = b""
        if head[:4] in _PCAP_MAGICS:
            return "capture"
        return "gzip-log" if head.lstrip()[:1] == b"{" else "unknown"
    if head[:4] in _PCAP_MAGICS:
        return "capture"
    if head[:4] == b"PAR1":
        return "parquet"
    text = head.lstrip()
    if text[:1] == b"{":
        return "jsonl"
    first = text.split(b"\n", 1)[0]
    if b"server" in [c.strip().strip(b'"') for c in first.split(b",")]:
        return "csv"
    return "unknown"


def _rows(path: Path, kind: str) -> Iterator[dict[str, Any]]:
    if kind in ("jsonl", "gzip-log"):
        opener = gzip.open if kind == "gzip-log" else open
        with opener(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise RegistryError(
                        "registry.bad_traffic", f"line {n}: not JSON ({exc})", str(path)
                    ) from exc
                if not isinstance(row, dict):
                    raise RegistryError("registry.bad_traffic", f"line {n}: not a flow row", str(path))
                yield row
    elif kind == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        cols = (
            *("early", "app", "client", "server", "sni", "http_host", "server_name", "dns_query"),
            *("dns_answers", "c2s_bytes", "s2c_bytes", "cert_subject", "cert_issuer", "cert_san"),
        )
        pf = pq.ParquetFile(path)
        have = [c for c in cols if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(columns=have):
            yield from batch.to_pylist()
    else:  # capture
        from sluice.batch.flows import batch_flows
        from sluice.errors import CaptureError

        try:
            result = batch_flows(str(path))
        except CaptureError as exc:
            raise RegistryError("registry.bad_traffic", str(exc), str(path)) from exc
        for rec in result.records:
            yield rec.to_dict()


def read_traffic(paths: Sequence[str | Path], *, max_rows: int = MAX_ROWS) -> Traffic:
    """Read flow logs and captures into one :class:`Traffic`.

    Args:
        paths: sluice flow logs (``.jsonl``, ``.csv``, ``.parquet``; gzip'd JSONL too) and
            captures (pcap, pcapng, gzip'd), told apart by their first bytes.
        max_rows: refuse more flow rows than this.

    Returns:
        The flows and name-address links.

    Raises:
        RegistryError: ``registry.io_error`` (unreadable file), ``registry.bad_traffic`` (not a
            flow log or capture, broken rows, too many rows), ``registry.no_input``.
    """
    if not paths:
        raise RegistryError("registry.no_input", "no flow log or capture given (--flows)")
    t = Traffic()
    for p in map(Path, paths):
        kind = _sniff(p)
        if kind == "unknown":
            raise RegistryError(
                "registry.bad_traffic", "not a sluice flow log (JSONL, CSV, Parquet) or a capture", str(p)
            )
        try:
            _add_rows(t, _rows(p, kind), max_rows, str(p))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise RegistryError("registry.bad_traffic", str(exc), str(p)) from exc
        t.files.append(str(p))
    return t


def _add_rows(t: Traffic, rows: Iterable[dict[str, Any]], max_rows: int, path: str) -> None:
    for row in rows:
        if len(t.flows) >= max_rows:
            raise RegistryError("registry.bad_traffic", f"more than {max_rows} flows", path)
        _add_row(t, row)
