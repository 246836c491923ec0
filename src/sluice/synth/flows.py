"""Builders of whole application flows (one TCP connection or UDP exchange each) plus their truth.

Each builder takes a :class:`FlowSpec` (addresses, start time, RTT, sizes, variant, framing) and
a :class:`~sluice.synth.payloads.PayloadPool`, builds the session with real payloads, and
returns the session together with the application facts for :class:`FlowTruth`. The scenario
generator and the demo both use them.
"""

from __future__ import annotations

__all__ = [
    "BUILDERS",
    "DEFAULT_DOMAINS",
    "QUIC_DOMAINS",
    "FlowSpec",
    "build_flow",
    "client_mac",
    "ephemeral_port",
    "estimate_packets",
    "server_address",
]

import hashlib
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.synth._rand import seeded
from sluice.synth.payloads import (
    QUIC_V1,
    QUIC_V2,
    SSH_CLIENT_SOFTWARE,
    SSH_SERVER_SOFTWARE,
    DnsAnswer,
    DnsType,
    PayloadPool,
    dns_query,
    dns_response,
    dns_tcp,
    http_request,
    http_response,
    quic_short_packet,
    quic_with_new_ids,
    socks5_connect,
    socks5_greeting,
    socks5_method_choice,
    socks5_reply,
    ssh_banner,
    ssh_ecdh_init,
    ssh_ecdh_reply,
    ssh_kexinit,
    ssh_newkeys,
    tls_app_records,
)
from sluice.synth.sessions import (
    EthernetFraming,
    Framing,
    TcpSession,
    TunnelFraming,
    UdpExchange,
)
from sluice.synth.truth import FlowTruth

DEFAULT_DOMAINS: tuple[str, ...] = (
    "www.google.com",
    "www.youtube.com",
    "i.ytimg.com",
    "www.facebook.com",
    "www.instagram.com",
    "www.wikipedia.org",
    "en.wikipedia.org",
    "www.amazon.com",
    "www.reddit.com",
    "www.linkedin.com",
    "www.netflix.com",
    "www.microsoft.com",
    "login.microsoftonline.com",
    "www.apple.com",
    "api.github.com",
    "github.com",
    "www.cloudflare.com",
    "cdn.jsdelivr.net",
    "fonts.googleapis.com",
    "fonts.gstatic.com",
    "www.bing.com",
    "duckduckgo.com",
    "www.yandex.ru",
    "vk.com",
    "mail.ru",
    "ok.ru",
    "www.ozon.ru",
    "www.avito.ru",
    "www.twitch.tv",
    "www.tiktok.com",
    "web.telegram.org",
    "web.whatsapp.com",
    "www.spotify.com",
    "open.spotify.com",
    "www.dropbox.com",
    "www.zoom.us",
    "slack.com",
    "discord.com",
    "www.paypal.com",
    "www.ebay.com",
    "www.bbc.co.uk",
    "www.nytimes.com",
    "www.theguardian.com",
    "www.medium.com",
    "stackoverflow.com",
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "deb.debian.org",
    "archive.ubuntu.com",
    "www.mozilla.org",
    "addons.mozilla.org",
    "update.googleapis.com",
    "play.googleapis.com",
    "clients4.google.com",
    "www.gstatic.com",
    "connect.facebook.net",
    "static.xx.fbcdn.net",
    "scontent.cdninstagram.com",
    "pbs.twimg.com",
    "x.com",
    "www.binance.com",
    "www.coinbase.com",
    "blockchain.info",
    "www.kraken.com",
    "rutracker.org",
    "www.pornhub.com",
    "thepiratebay.org",
    "www.torproject.org",
    "protonvpn.com",
    "nordvpn.com",
    "www.expressvpn.com",
    "psiphon.ca",
    "getlantern.org",
    "www.example.com",
    "www.example.org",
    "www.example.net",
)
"""Server names used when the caller gives none: popular sites plus names a register blocks."""

QUIC_DOMAINS: tuple[str, ...] = (
    "www.google.com",
    "www.youtube.com",
    "i.ytimg.com",
    "fonts.gstatic.com",
    "www.gstatic.com",
    "www.facebook.com",
    "static.xx.fbcdn.net",
    "scontent.cdninstagram.com",
    "www.cloudflare.com",
    "cdn.jsdelivr.net",
    "play.googleapis.com",
    "update.googleapis.com",
)
"""Names served over HTTP/3 in the default mix (QUIC handshakes are the costly ones)."""


def server_address(host: str, ip_version: int = 4) -> str:
    """A stable server address for ``host``: 198.18.0.0/15 (RFC 2544) or 2001:db8::/32."""
    h = int.from_bytes(hashlib.sha256(host.encode()).digest()[:8], "big")
    if ip_version == 6:
        return str(ipaddress.IPv6Address((0x20010DB8 << 96) | (h & ((1 << 64) - 1)) | 1))
    return str(ipaddress.IPv4Address((198 << 24) | (18 << 16) | ((h % ((1 << 17) - 2)) + 1)))


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """Everything one flow builder needs."""

    flow_id: int
    """Index of the flow."""
    kind: str
    """Builder name (a key of :data:`BUILDERS`)."""
    start_ts: float
    """Time of the first packet."""
    client: tuple[str, int]
    """Client ``(ip, port)``."""
    server: tuple[str, int]
    """Server ``(ip, port)`` (the resolver for DNS, the proxy for SOCKS5)."""
    host: str
    """Server name (SNI, Host, DNS question, SOCKS target)."""
    rtt_s: float
    """Round-trip time between the capture point and the server."""
    sizes: tuple[int, ...] = ()
    """Response sizes in bytes (the part a packet budget scales)."""
    variant: str = ""
    """Kind-specific choice: TLS ``1.2``/``1.3``, QUIC ``1``/``2``, DNS type name ..."""
    seed: int = 0
    """Seed of the flow's own random source."""
    framing: Framing = field(default_factory=EthernetFraming)
    """Link-layer framing of the flow's packets."""
    interface: int = 0
    """Capture interface index."""
    rate_bps: float = 100e6
    """Pacing rate of bulk data."""
    reorder: bool = False
    """Deliver two segments of the first large response out of order."""
    mtu: int | None = None
    """Fragment UDP datagrams above this IP size (``None``: never)."""


Built = tuple[TcpSession | UdpExchange, dict[str, Any]]

_REQ_PATHS = (
    "/",
    "/index.html",
    "/api/v1/items",
    "/static/app.js",
    "/static/style.css",
    "/images/logo.png",
    "/search?q=news",
    "/feed",
    "/watch?v=dQw4w9WgXcQ",
)


def _tcp(spec: FlowSpec, rng: random.Random) -> TcpSession:
    return TcpSession(
        spec.client,
        spec.server,
        start_ts=spec.start_ts,
        rtt_s=spec.rtt_s,
        framing=spec.framing,
        rng=rng,
        rate_bps=spec.rate_bps,
    )


def _reorder(size: int, step: int = 1448) -> list[int] | None:
    n = -(-size // step)
    if n < 3:
        return None
    order = list(range(n))
    order[1], order[2] = order[2], order[1]
    return order


def _tls_conversation(
    s: TcpSession, spec: FlowSpec, pool: PayloadPool, rng: random.Random, host: str
) -> dict[str, Any]:
    version: Literal["1.2", "1.3"] = "1.2" if spec.variant == "1.2" else "1.3"
    alpn = ("h2", "http/1.1") if rng.random() < 0.85 else ("http/1.1",)
    ex = pool.tls(host, version=version, alpn=alpn)
    for from_client, data in ex.messages:
        if from_client:
            s.client_send(data)
        else:
            s.server_send(data)
    reordered = False
    for i, size in enumerate(spec.sizes):
        req = tls_app_records(rng.randrange(90, 900), rng, pool.filler, overhead=ex.record_overhead)
        s.client_send(req, delay_s=rng.uniform(0.0005, 0.3) if i else None)
        resp = tls_app_records(size, rng, pool.filler, overhead=ex.record_overhead)
        order = _reorder(len(resp)) if spec.reorder and not reordered else None
        reordered = reordered or order is not None
        s.server_send(resp, order=order)
    return {
        "app": "tls",
        "sni": ex.sni,
        "alpn": ex.alpn_offered,
        "alpn_selected": ex.alpn_selected,
        "tls_version": ex.version,
        "out_of_order": reordered,
    }


def build_tls(spec: FlowSpec, pool: PayloadPool) -> Built:
    """HTTPS page load or bulk download: real handshake, then application-data records."""
    rng = seeded(spec.seed)
    s = _tcp(spec, rng)
    facts = _tls_conversation(s, spec, pool, rng, spec.host)
    if rng.random() < 0.9:
        s.close("client" if rng.random() < 0.7 else "server")
    return s, facts


def build_quic(spec: FlowSpec, pool: PayloadPool) -> Built:
    """HTTP/3 over QUIC: a real aioquic exchange, then 1-RTT packets for the rest of the data."""
    rng = seeded(spec.seed)
    version = QUIC_V2 if spec.variant == "2" else QUIC_V1
    qx = quic_with_new_ids(pool.quic(spec.host, version=version), rng)
    u = UdpExchange(
        spec.client,
        spec.server,
        start_ts=spec.start_ts,
        rtt_s=spec.rtt_s,
        framing=spec.framing,
        rng=rng,
    )
    factor = spec.rtt_s / 0.03
    t = spec.start_ts
    for from_client, rel, data in qx.datagrams:
        t = max(t, spec.start_ts + rel * factor)
        u.send(from_client, data, at=t)
    full = max(len(d) for _, _, d in qx.datagrams)
    remaining = sum(spec.sizes)
    pace = full * 8 / spec.rate_bps
    n = 0
    t += spec.rtt_s
    if remaining:
        u.send(True, quic_short_packet(qx.server_cid, rng.randrange(60, 90), rng, pool.filler), at=t)
        t += spec.rtt_s
    while remaining > 0:
        size = min(full, remaining + 30)
        u.send(False, quic_short_packet(qx.client_cid, size, rng, pool.filler), at=t)
        remaining -= size - 30
        n += 1
        if n % 2 == 0 or remaining <= 0:
            ack = quic_short_packet(qx.server_cid, rng.randrange(30, 46), rng, pool.filler)
            u.send(True, ack, at=t + 0.00002)
        t += pace
    return u, {
        "app": "quic",
        "sni": qx.sni,
        "alpn": (qx.alpn,),
        "alpn_selected": qx.alpn,
        "quic_version": qx.version,
    }


def _dns_answers(spec: FlowSpec, rng: random.Random, qtype: int) -> tuple[list[DnsAnswer], int]:
    if rng.random() < 0.05:
        return [], 3  # NXDOMAIN
    answers: list[DnsAnswer] = []
    name = spec.host
    if rng.random() < 0.35:
        target = f"{spec.host.split('.', 1)[-1]}.edgekey.net"
        answers.append(DnsAnswer(name, DnsType.CNAME, target, ttl=rng.choice((60, 300, 3600))))
        name = target
    if qtype in (DnsType.A, DnsType.AAAA):
        v = 6 if qtype == DnsType.AAAA else 4
        for i in range(rng.randrange(1, 5)):
            addr = server_address(f"{spec.host}#{i}", v) if i else server_address(spec.host, v)
            answers.append(DnsAnswer(name, qtype, addr, ttl=rng.choice((30, 60, 300))))
    elif qtype == DnsType.TXT:
        for i, size in enumerate(spec.sizes or (200,)):
            text = f"v=spf1 include:_spf{i}.{spec.host} " + "a" * max(size - 40, 0)
            answers.append(DnsAnswer(name, DnsType.TXT, text, ttl=300))
    return answers, 0


def _dns_messages(spec: FlowSpec, rng: random.Random) -> tuple[bytes, bytes, dict[str, Any]]:
    qtype = DnsType[spec.variant] if spec.variant else DnsType.A
    txid = rng.randrange(1 << 16)
    query = dns_query(spec.host, qtype, txid=txid, udp_size=4096 if qtype == DnsType.TXT else 1232)
    answers, rcode = _dns_answers(spec, rng, qtype)
    resp = dns_response(spec.host, qtype, answers, txid=txid, rcode=rcode)
    facts = {
        "app": "dns",
        "dns_qname": spec.host,
        "dns_qtype": int(qtype),
        "dns_rcode": rcode,
        "dns_answers": tuple(a.value if a.rtype != DnsType.TXT else "TXT" for a in answers),
    }
    return query, resp, facts


def build_dns(spec: FlowSpec, pool: PayloadPool) -> Built:
    """One DNS question and answer over UDP (fragmented when ``spec.mtu`` is exceeded)."""
    rng = seeded(spec.seed)
    u = UdpExchange(
        spec.client,
        spec.server,
        start_ts=spec.start_ts,
        rtt_s=spec.rtt_s,
        framing=spec.framing,
        rng=rng,
        mtu=spec.mtu,
    )
    query, resp, facts = _dns_messages(spec, rng)
    u.client_send(query)
    u.server_send(resp)
    facts["fragmented"] = u.packet_count > 2
    return u, facts


def build_dns_tcp(spec: FlowSpec, pool: PayloadPool) -> Built:
    """One DNS question and answer over TCP (length-prefixed messages)."""
    rng = seeded(spec.seed)
    s = _tcp(spec, rng)
    query, resp, facts = _dns_messages(spec, rng)
    s.client_send(dns_tcp(query))
    s.server_send(dns_tcp(resp))
    s.close("client")
    return s, facts


def _html(size: int, rng: random.Random) -> bytes:
    words = ("lorem", "ipsum", "dolor", "sit", "amet", "traffic", "policy", "sluice", "gate")
    head = b"<!DOCTYPE html><html><head><title>synthetic</title></head><body><p>"
    out = bytearray(head)
    while len(out) < size - 20:
        out += rng.choice(words).encode() + b" "
    return bytes(out[: max(size - 20, 0)]) + b"</p></body></html>\n"


def build_http(spec: FlowSpec, pool: PayloadPool) -> Built:
    """Plain HTTP/1.1: one or more GETs on a keep-alive connection."""
    rng = seeded(spec.seed)
    s = _tcp(spec, rng)
    first_path = rng.choice(_REQ_PATHS)
    for i, size in enumerate(spec.sizes or (1000,)):
        path = first_path if i == 0 else rng.choice(_REQ_PATHS)
        s.client_send(http_request("GET", spec.host, path), delay_s=rng.uniform(0.001, 0.2) if i else None)
        if i == 0:
            body = _html(size, rng)
            ctype = "text/html; charset=utf-8"
        else:
            off = rng.randrange(len(pool.filler) - size)
            body, ctype = pool.filler[off : off + size], "application/octet-stream"
        s.server_send(http_response(200, body, content_type=ctype))
    s.close("client" if rng.random() < 0.5 else "server")
    return s, {
        "app": "http",
        "http_method": "GET",
        "http_host": spec.host,
        "http_url": f"http://{spec.host}{first_path}",
        "http_status": 200,
    }


def _ssh_encrypted(rng: random.Random, pool: PayloadPool, plain: int) -> bytes:
    # chacha20-poly1305@openssh.com: 4-byte encrypted length, padded payload, 16-byte tag
    n = 4 + max(16, (plain + 4 + 7) // 8 * 8) + 16
    off = rng.randrange(len(pool.filler) - n)
    return pool.filler[off : off + n]


def build_ssh(spec: FlowSpec, pool: PayloadPool) -> Built:
    """SSH: banners, key exchange in clear, then an interactive session and an optional copy."""
    rng = seeded(spec.seed)
    s = _tcp(spec, rng)
    s.server_send(ssh_banner(SSH_SERVER_SOFTWARE))
    s.client_send(ssh_banner(SSH_CLIENT_SOFTWARE))
    s.client_send(ssh_kexinit(rng, client=True))
    s.server_send(ssh_kexinit(rng, client=False))
    s.client_send(ssh_ecdh_init(rng))
    s.server_send(ssh_ecdh_reply(rng) + ssh_newkeys(rng))
    s.client_send(ssh_newkeys(rng) + _ssh_encrypted(rng, pool, 30))
    s.server_send(_ssh_encrypted(rng, pool, 30))
    for _ in range(rng.randrange(5, 30)):  # keystrokes and echoes
        s.client_send(_ssh_encrypted(rng, pool, 12), delay_s=rng.uniform(0.05, 0.6))
        s.server_send(_ssh_encrypted(rng, pool, rng.randrange(12, 200)))
    for size in spec.sizes:
        chunks = []
        while size > 0:
            n = min(size, 32768)
            chunks.append(_ssh_encrypted(rng, pool, n))
            size -= n
        s.server_send(b"".join(chunks))
    s.close("client")
    return s, {
        "app": "ssh",
        "ssh_client_banner": f"SSH-2.0-{SSH_CLIENT_SOFTWARE}",
        "ssh_server_banner": f"SSH-2.0-{SSH_SERVER_SOFTWARE}",
    }


def build_socks5(spec: FlowSpec, pool: PayloadPool) -> Built:
    """SOCKS5 CONNECT to ``host:443`` through a proxy, then TLS inside the tunnel."""
    rng = seeded(spec.seed)
    s = _tcp(spec, rng)
    s.client_send(socks5_greeting((0,)))
    s.server_send(socks5_method_choice(0))
    s.client_send(socks5_connect(spec.host, 443))
    s.server_send(socks5_reply(0, (spec.server[0], rng.randrange(20000, 60000))))
    facts = _tls_conversation(s, spec, pool, rng, spec.host)
    s.close("client")
    facts["app"] = "socks5"
    facts["socks_target"] = f"{spec.host}:443"
    return s, facts


BUILDERS: dict[str, Callable[[FlowSpec, PayloadPool], Built]] = {
    "https": build_tls,
    "tls_bulk": build_tls,
    "quic": build_quic,
    "dns": build_dns,
    "dns_tcp": build_dns_tcp,
    "http": build_http,
    "ssh": build_ssh,
    "socks5": build_socks5,
}
"""Flow builders by scenario kind."""

_FIXED_PACKETS = {
    "https": 12,
    "tls_bulk": 12,
    "quic": 14,
    "dns": 2,
    "dns_tcp": 10,
    "http": 8,
    "ssh": 60,
    "socks5": 20,
}


def estimate_packets(kind: str, sizes: tuple[int, ...]) -> tuple[float, float]:
    """Rough packet count of a flow as ``(fixed, per_size_unit * sum(sizes))``.

    The second part scales linearly with the sizes, which lets a generator pick a size scale
    to hit a packet budget.
    """
    fixed = float(_FIXED_PACKETS.get(kind, 10))
    per_byte = 1.5 / 1448 if kind != "quic" else 1.5 / 1170
    extra = 3.0 * len(sizes) if kind in ("https", "http") else 0.0
    return fixed + extra, per_byte * sum(sizes) if kind != "dns" else 0.0


def _framing_facts(framing: Framing) -> dict[str, Any]:
    out: dict[str, Any] = {"linktype": int(framing.linktype)}
    base = framing
    if isinstance(framing, TunnelFraming):
        out["tunnel"] = framing.kind
        out["tunnel_endpoints"] = (framing.outer_client, framing.outer_server)
        base = framing.outer
    if isinstance(base, EthernetFraming):
        out["vlans"] = tuple(base.vlans)
    return out


def build_flow(spec: FlowSpec, pool: PayloadPool) -> tuple[list[tuple[float, bytes]], FlowTruth]:
    """Build one flow and its ground truth.

    Args:
        spec: what to build.
        pool: source of real handshakes and filler.

    Returns:
        The frames in time order and the flow's :class:`FlowTruth`.

    Raises:
        KeyError: unknown ``spec.kind``.
    """
    session, facts = BUILDERS[spec.kind](spec, pool)
    frames = session.packets
    truth = FlowTruth(
        flow_id=spec.flow_id,
        kind=spec.kind,
        transport="tcp" if isinstance(session, TcpSession) else "udp",
        ip_version=session.ip_version,
        client_ip=spec.client[0],
        client_port=spec.client[1],
        server_ip=spec.server[0],
        server_port=spec.server[1],
        start_ts=frames[0][0],
        end_ts=frames[-1][0],
        packets=len(frames),
        packets_c2s=session.packets_c2s,
        packets_s2c=session.packets_s2c,
        bytes_c2s=session.bytes_c2s,
        bytes_s2c=session.bytes_s2c,
        interface=spec.interface,
        **_framing_facts(spec.framing),
        **facts,
    )
    return frames, truth


def ephemeral_port(rng: random.Random) -> int:
    """A client port from the Linux ephemeral range."""
    return rng.randrange(32768, 61000)


def client_mac(ip: str) -> bytes:
    """A stable locally administered MAC for a client address."""
    return b"\x02" + hashlib.sha256(ip.encode()).digest()[:5]
