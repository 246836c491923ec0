"""Suricata EVE JSON output: sluice's flows, verdicts and decisions as Suricata would log them.

Theory of operation
-------------------
EVE is one JSON object per line with common fields (Suricata's "Eve JSON Format" documentation,
"Common Section"): ``timestamp`` (ISO 8601 with microseconds and a ``+hhmm`` offset, as Suricata
writes it: ``2024-05-02T10:11:12.123456+0000``), ``flow_id`` (an integer shared by every event
of one flow), ``event_type``, ``src_ip``, ``src_port``, ``dest_ip``, ``dest_port``, ``proto``
(``TCP``, ``UDP``, ``ICMP``, ``IPv6-ICMP`` or the number), ``app_proto``, and one sub-object
named after the event type.

sluice writes, per final flow record (early records have no EVE counterpart and are skipped):

* ``flow``: ``flow`` {pkts_toserver, pkts_toclient, bytes_toserver, bytes_toclient, start, end,
  age, state, reason, alerted}; the client is the source, the server the destination;
* ``tls`` when a ClientHello was seen: ``tls`` {sni, version, ja4, subject, issuerdn,
  client_alpns, cipher_suite};
* ``dns`` when a query was seen: ``dns`` {type "query", rrname, rrtype} and, with a response,
  ``dns`` {type "answer", rrname, rrtype, rcode, answers};
* ``http`` when a request was seen: ``http`` {hostname, url, http_method, http_user_agent,
  status, protocol};
* ``alert`` and ``drop`` events for verdicts and decisions are written by
  :mod:`sluice.decisions.eve`, above the detect and policy layers.

Every event carries ``community_id`` (:mod:`sluice.io.community_id`), so EVE consumers join it
with Zeek's and Suricata's own logs. sluice's own ``flow_id`` counts flows within a run; the EVE
``flow_id`` is derived from the capture name and that number, so flows and decisions of one
capture share it. Absent values are left out, as Suricata does.
"""

from __future__ import annotations

__all__ = [
    "APP_PROTO",
    "PROTO_NAMES",
    "PROTO_NUMBERS",
    "common_fields",
    "drop_empty",
    "endpoint_community_id",
    "eve_flow_id",
    "eve_timestamp",
    "flow_events",
    "record_community_id",
    "signature_id",
]

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sluice.io.community_id import PORT_PROTOCOLS, community_id
from sluice.io.tls_names import tls_cipher_name

if TYPE_CHECKING:
    from sluice.flows.record import FlowRecord

PROTO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "IPv6-ICMP", 132: "SCTP", 47: "GRE", 50: "ESP"}
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "sctp": 132, "gre": 47, "esp": 50}
APP_PROTO = {"tls": "tls", "quic": "quic", "gquic": "quic", "dns": "dns", "http": "http", "ssh": "ssh"}
_REASONS = {"idle": "timeout", "active": "timeout", "evicted": "forced", "end": "shutdown"}
# TLS version names as Suricata's EVE writes them (output-json-tls.c: "TLS 1.2", "SSLv3").
_EVE_TLS_VERSIONS = {
    0x0200: "SSLv2", 0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1",
    0x0303: "TLS 1.2", 0x0304: "TLS 1.3", 0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3",
}  # fmt: skip
_DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
              33: "SRV", 65: "HTTPS", 64: "SVCB", 255: "ANY"}  # fmt: skip
_DNS_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


def eve_timestamp(ts: float) -> str:
    """Unix seconds as Suricata's EVE timestamp (UTC): ``2024-05-02T10:11:12.123456+0000``.

    Args:
        ts: Unix time in seconds.

    Returns:
        The timestamp text.
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f%z")


def eve_flow_id(capture: str, flow_id: int) -> int:
    """A positive 51-bit EVE ``flow_id`` for flow ``flow_id`` of ``capture`` (stable across runs).

    Args:
        capture: capture file name or interface ("" when unknown).
        flow_id: sluice's flow number within that run.

    Returns:
        An integer below 2**51 (exact in JSON consumers that use doubles).
    """
    digest = hashlib.sha256(f"{capture}\0{flow_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 13


def endpoint_community_id(proto: int, src: str, sport: int, dst: str, dport: int) -> str | None:
    if proto not in PORT_PROTOCOLS and proto in (1, 58):
        return None  # ICMP type/code are not kept in flow records: no value rather than a wrong one
    try:
        return community_id(proto, src, dst, sport, dport)
    except ValueError:
        return None


def record_community_id(r: FlowRecord) -> str | None:
    """Community ID of a flow record (None for ICMP, whose type and code are not recorded).

    Args:
        r: the flow record.

    Returns:
        The ``1:…`` value, or None.
    """
    return endpoint_community_id(r.proto, r.client, r.client_port, r.server, r.server_port)


def _state(r: FlowRecord) -> str:
    if r.proto != 6:
        return "established" if r.c2s_packets and r.s2c_packets else "new"
    flags = r.c2s_tcp_flags | r.s2c_tcp_flags
    if flags & (_FIN | _RST):
        return "closed"
    if r.c2s_tcp_flags & _SYN and r.s2c_tcp_flags & _SYN and r.s2c_tcp_flags & _ACK:
        return "established"
    return "new"


def common_fields(r: FlowRecord, capture: str, event_type: str, ts: float) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "timestamp": eve_timestamp(ts),
        "flow_id": eve_flow_id(capture, r.flow_id),
        "event_type": event_type,
        "src_ip": r.client,
        "dest_ip": r.server,
        "proto": PROTO_NAMES.get(r.proto, str(r.proto)),
    }
    if r.proto in PORT_PROTOCOLS:
        ev["src_port"], ev["dest_port"] = r.client_port, r.server_port
    if r.meta.app in APP_PROTO:
        ev["app_proto"] = APP_PROTO[r.meta.app]
    cid = record_community_id(r)
    if cid:
        ev["community_id"] = cid
    if capture:
        ev["capture"] = capture
    return ev


def drop_empty(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v not in (None, "", [], ())}


def _app_events(r: FlowRecord, capture: str) -> list[dict[str, Any]]:
    m, out = r.meta, []
    if m.app in ("tls", "quic", "gquic") and (m.sni or m.ja4 or m.tls_versions):
        tls = drop_empty({
            "sni": m.sni,
            "version": _EVE_TLS_VERSIONS.get(m.tls_version) if m.tls_version else None,
            "ja4": m.ja4,
            "subject": m.cert_subject,
            "issuerdn": m.cert_issuer,
            "client_alpns": list(m.alpn),
            "cipher_suite": tls_cipher_name(m.tls_cipher),
        })  # fmt: skip
        out.append({**common_fields(r, capture, "tls", r.first_ts), "tls": tls})
    if m.dns_query:
        rrtype = _DNS_TYPES.get(m.dns_qtype, str(m.dns_qtype)) if m.dns_qtype else None
        query = drop_empty({"type": "query", "rrname": m.dns_query, "rrtype": rrtype})
        out.append({**common_fields(r, capture, "dns", r.first_ts), "dns": query})
        if m.dns_rcode >= 0:
            answer = drop_empty({
                "type": "answer",
                "rrname": m.dns_query,
                "rrtype": rrtype,
                "rcode": _DNS_RCODES.get(m.dns_rcode, str(m.dns_rcode)),
                "answers": [{"rrname": m.dns_query, "rdata": a} for a in m.dns_answers],
            })  # fmt: skip
            out.append({**common_fields(r, capture, "dns", r.last_ts), "dns": answer})
    if m.http_method or m.http_host:
        parts = urlsplit(m.http_url) if m.http_url else None
        url = (parts.path or "/") + (f"?{parts.query}" if parts and parts.query else "") if parts else None
        http = drop_empty({
            "hostname": m.http_host,
            "url": url,
            "http_method": m.http_method,
            "http_user_agent": m.http_user_agent,
            "status": m.http_status or None,
            "server": m.http_server,
        })  # fmt: skip
        out.append({**common_fields(r, capture, "http", r.first_ts), "http": http})
    return out


def flow_events(r: FlowRecord, capture: str = "", *, alerted: bool = False) -> list[dict[str, Any]]:
    """The EVE events of one flow record: its application events, then its ``flow`` event.

    Args:
        r: a final flow record (early records give no events).
        capture: capture name, part of the ``flow_id`` and written as ``capture`` when given.
        alerted: whether an alert was raised on the flow (``flow.alerted``).

    Returns:
        Event dicts, ready for ``orjson.dumps``.
    """
    if r.early:
        return []
    flow = {
        "pkts_toserver": r.c2s_packets,
        "pkts_toclient": r.s2c_packets,
        "bytes_toserver": r.c2s_bytes,
        "bytes_toclient": r.s2c_bytes,
        "start": eve_timestamp(r.first_ts),
        "end": eve_timestamp(r.last_ts),
        "age": int(r.last_ts - r.first_ts),
        "state": _state(r),
        "reason": _REASONS.get(r.end_reason, "unknown"),
        "alerted": alerted,
    }
    return [*_app_events(r, capture), {**common_fields(r, capture, "flow", r.first_ts), "flow": flow}]


def signature_id(name: str) -> int:
    """A stable signature id in 9,000,000-9,999,999 (a range no public rule set uses) for a name.

    Args:
        name: what the alert is about (``rule:block-vpn``).

    Returns:
        The id.
    """
    return 9_000_000 + int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 1_000_000
