"""Application metadata found by the flow path in real traffic, on both paths.

TLS comes from Python's ssl module (OpenSSL) in memory-BIO mode, QUIC from aioquic, DNS, HTTP,
SSH and SOCKS5 from the synth package's RFC encoders; every capture goes through the streaming
and the batch path (:func:`~tests.flows.test_table.both_paths`), which must agree.
"""

from __future__ import annotations

import random
import re
from functools import cache

import pytest

from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig
from sluice.synth.payloads import (
    QUIC_V1,
    QUIC_V2,
    DnsAnswer,
    DnsType,
    TlsExchange,
    dns_query,
    dns_response,
    dns_tcp,
    http_request,
    http_response,
    quic_exchange,
    socks5_connect,
    socks5_greeting,
    socks5_method_choice,
    socks5_reply,
    ssh_banner,
    ssh_kexinit,
    tls_exchange,
)
from sluice.synth.sessions import EthernetFraming, LinuxSllFraming, TcpSession, UdpExchange
from sluice.wire import tls
from sluice.wire.frame import LinkType
from sluice.wire.ja4 import ja4
from tests.wire.test_l2l4 import C4, C6, S4, S6

from .test_table import Frame, both_paths, finals

JA4_RE = re.compile(r"^[tq]1[23]d\d{4}(h2|h3|00)_[0-9a-f]{12}_[0-9a-f]{12}$")


@cache
def tls_ex(sni: str | None, version: str) -> TlsExchange:
    """One real TLS exchange per (sni, version), made once per run."""
    return tls_exchange(sni, version="1.2" if version == "1.2" else "1.3", alpn=("h2", "http/1.1"))


def frames_of(*sessions: TcpSession | UdpExchange) -> list[Frame]:
    """All frames of the sessions, merged in time order."""
    return sorted((ts, s.linktype, fr) for s in sessions for ts, fr in s.packets)


def tls_session(
    ex: TlsExchange,
    *,
    order: list[int] | None = None,
    client: tuple[str, int] = (C4, 50000),
    server: tuple[str, int] = (S4, 443),
    start: float = 1.0,
    seed: int = 0,
) -> TcpSession:
    """A TCP connection replaying a TLS exchange; the ClientHello cut into len(order) segments."""
    hello = ex.messages[0][1]
    mss = 1460
    if order is not None:
        mss = -(-len(hello) // len(order)) + 12  # 12: timestamp option
    s = TcpSession(
        client,
        server,
        start_ts=start,
        mss=mss,
        rng=random.Random(seed),
        framing=LinuxSllFraming(2) if ":" in client[0] else None,
    )
    s.client_send(hello, order=order)
    for from_client, data in ex.messages[1:]:
        (s.client_send if from_client else s.server_send)(data)
    s.close()
    return s


def one_flow(frames: list[Frame], config: FlowConfig | None = None) -> FlowRecord:
    """The single final record of a capture (both paths agreeing), with no anomalies."""
    records, summary = both_paths(frames, config)
    assert not summary.anomalies, summary.anomalies
    (rec,) = finals(records)
    return rec


# --------------------------------------------------------------------------------------------
# TLS


@pytest.mark.parametrize("order", [[2, 0, 1], [1, 2, 0], [2, 1, 0]], ids=["201", "120", "210"])
def test_tls13_client_hello_in_three_segments_out_of_order(order: list[int]) -> None:
    ex = tls_ex("www.example.org", "1.3")
    s = tls_session(ex, order=order)
    hello = ex.messages[0][1]
    c2s_data = [fr for ts, fr in s.packets[3:6]]
    assert len(c2s_data) == 3 and all(len(fr) < len(hello) for fr in c2s_data)
    rec = one_flow(frames_of(s))
    m = rec.meta
    assert (m.app, m.sni, m.alpn) == ("tls", "www.example.org", ("h2", "http/1.1"))
    assert JA4_RE.match(m.ja4), m.ja4
    assert m.ja4 == ja4(tls.decode_client_hello(hello[9:]), "t")  # the reassembled hello is intact
    assert m.ja4.startswith("t13d") and m.ja4[8:10] == "h2"  # JA4_a: first ALPN is h2
    assert 0x0304 in m.tls_versions and m.tls_version == 0x0304
    assert m.tls_cipher in (0x1301, 0x1302, 0x1303)
    assert m.cert_subject == ""  # encrypted in TLS 1.3
    assert rec.server_port == 443 and rec.to_dict()["server_name"] == "www.example.org"


def test_tls12_server_certificate() -> None:
    ex = tls_ex("shop.example.test", "1.2")
    assert ex.version == "TLSv1.2"
    rec = one_flow(frames_of(tls_session(ex, order=[1, 0], client=(C6, 50443), server=(S6, 8443))))
    m = rec.meta
    assert m.sni == "shop.example.test" and m.tls_version == 0x0303 and m.ja4.startswith("t12d")
    assert m.cert_subject == "CN=sluice-synth"
    assert m.cert_issuer == "O=sluice synthetic traffic, CN=sluice synthetic CA"
    assert m.cert_san == ("sluice-synth", "*.test")
    assert m.tls_cipher >= 0 and rec.ip_version == 6


def test_tls_without_sni() -> None:
    rec = one_flow(frames_of(tls_session(tls_ex(None, "1.3"))))
    assert rec.meta.sni == "" and rec.meta.app == "tls"
    assert rec.meta.ja4.startswith("t13i")  # JA4: 'i' when there is no SNI


def _corrupt_cipher_suites(hello: bytes) -> bytes:
    """Make the ClientHello's cipher_suites length odd (RFC 8446 §4.1.2: a list of uint16)."""
    sid_len = hello[5 + 4 + 2 + 32]
    at = 5 + 4 + 2 + 32 + 1 + sid_len
    n = int.from_bytes(hello[at : at + 2], "big")
    return hello[:at] + (n - 1).to_bytes(2, "big") + hello[at + 2 :]


def test_malformed_tls_counted_by_reason() -> None:
    ex = tls_ex("bad.example", "1.3")
    s = TcpSession((C4, 50001), (S4, 443), start_ts=1.0, rng=random.Random(3))
    s.client_send(_corrupt_cipher_suites(ex.messages[0][1]))
    s.server_send(ex.messages[1][1])
    v = TcpSession((C4, 50002), (S4, 443), start_ts=1.5, rng=random.Random(4))
    v.client_send(ex.messages[0][1])
    v.server_send(b"\x16\x03\x07\x00\x05hello")  # record version 3.7 (RFC 8446 §5.1)
    good = tls_session(tls_ex("good.example", "1.3"), start=2.0, seed=5)
    records, summary = both_paths(frames_of(s, v, good))
    assert dict(summary.anomalies) == {"tls.bad_cipher_suites": 1, "tls.bad_record_version": 1}
    by_port = {r.client_port: r for r in finals(records)}
    assert by_port[50001].meta.app == "tls" and by_port[50001].meta.sni == ""
    assert by_port[50002].meta.sni == "bad.example" and by_port[50002].meta.tls_version == 0
    assert by_port[50000].meta.sni == "good.example"  # other flows are not affected


# --------------------------------------------------------------------------------------------
# QUIC


@pytest.mark.parametrize(("version", "name"), [(QUIC_V1, "V-1"), (QUIC_V2, "V-2")], ids=["v1", "v2"])
def test_quic_initial(version: int, name: str) -> None:
    q = quic_exchange("video.example.net", version=version)
    u = UdpExchange((C6, 55000), (S6, 443), start_ts=1.0, framing=EthernetFraming(vlans=(30,)))
    for from_client, t, data in q.datagrams:
        u.send(from_client, data, at=1.0 + t)
    rec = one_flow(frames_of(u))
    m = rec.meta
    assert (m.app, m.sni, m.quic_version, m.alpn) == ("quic", "video.example.net", name, ("h3",))
    assert JA4_RE.match(m.ja4) and m.ja4.startswith("q13d")
    assert 0x0304 in m.tls_versions
    assert rec.vlans == (30,) and rec.c2s_packets + rec.s2c_packets == len(q.datagrams)


# --------------------------------------------------------------------------------------------
# DNS


def test_dns_over_udp() -> None:
    u = UdpExchange((C4, 40000), (S4, 53), start_ts=1.0)
    u.client_send(dns_query("www.example.org", DnsType.A, txid=0x1234))
    u.server_send(
        dns_response(
            "www.example.org",
            DnsType.A,
            [
                DnsAnswer("www.example.org", DnsType.CNAME, "cdn.example.net"),
                DnsAnswer("cdn.example.net", DnsType.A, "192.0.2.10"),
                DnsAnswer("cdn.example.net", DnsType.A, "192.0.2.11"),
            ],
            txid=0x1234,
        )
    )
    nx = UdpExchange((C4, 40001), (S4, 53), start_ts=2.0)
    nx.client_send(dns_query("nope.example", DnsType.TXT, txid=9))
    nx.server_send(dns_response("nope.example", DnsType.TXT, [], txid=9, rcode=3))
    records, summary = both_paths(frames_of(u, nx))
    assert not summary.anomalies
    ok, missing = finals(records)
    assert (ok.meta.app, ok.meta.dns_query, ok.meta.dns_qtype, ok.meta.dns_rcode) == (
        "dns",
        "www.example.org",
        1,
        0,
    )
    assert ok.meta.dns_answers == ("cdn.example.net.", "192.0.2.10", "192.0.2.11")
    assert ok.to_dict()["server_name"] == "www.example.org"
    assert (missing.meta.dns_query, missing.meta.dns_qtype, missing.meta.dns_rcode) == ("nope.example", 16, 3)
    assert missing.meta.dns_answers == ()


def test_dns_over_tcp() -> None:
    t = TcpSession((C6, 40002), (S6, 53), start_ts=1.0, rng=random.Random(1))
    t.client_send(dns_tcp(dns_query("v6.example.org", DnsType.AAAA, txid=7)))
    t.server_send(
        dns_tcp(
            dns_response(
                "v6.example.org",
                DnsType.AAAA,
                [DnsAnswer("v6.example.org", DnsType.AAAA, "2001:db8::53")],
                txid=7,
            )
        )
    )
    t.close()
    m = one_flow(frames_of(t)).meta
    assert (m.app, m.dns_query, m.dns_qtype, m.dns_rcode, m.dns_answers) == (
        "dns",
        "v6.example.org",
        28,
        0,
        ("2001:db8::53",),
    )


# --------------------------------------------------------------------------------------------
# HTTP, SSH, SOCKS


def test_http_get_and_response() -> None:
    h = TcpSession((C4, 40003), (S4, 80), start_ts=1.0, rng=random.Random(2))
    h.client_send(http_request("GET", "example.org", "/path?q=1", user_agent="curl/8.5.0"))
    h.server_send(http_response(404, b"<h1>no</h1>", server="Apache/2.4.62"))
    h.close()
    m = one_flow(frames_of(h)).meta
    assert (m.app, m.http_method, m.http_host, m.http_url) == (
        "http",
        "GET",
        "example.org",
        "http://example.org/path?q=1",
    )
    assert (m.http_user_agent, m.http_status, m.http_server) == ("curl/8.5.0", 404, "Apache/2.4.62")
    assert m.connect_target == ""


def test_http_connect() -> None:
    c = TcpSession((C4, 40004), (S4, 3128), start_ts=1.0, rng=random.Random(3))
    c.client_send(
        b"CONNECT blocked.example:443 HTTP/1.1\r\nHost: blocked.example:443\r\nUser-Agent: Wget/1.21\r\n\r\n"
    )
    c.server_send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    c.client_send(tls_ex("blocked.example", "1.3").messages[0][1])
    m = one_flow(frames_of(c)).meta
    assert (m.app, m.http_method, m.connect_target, m.http_status) == (
        "http",
        "CONNECT",
        "blocked.example:443",
        200,
    )
    assert m.http_user_agent == "Wget/1.21"
    assert m.sni == "blocked.example"  # the ClientHello relayed after the 200


def test_ssh_banners_both_sides() -> None:
    s = TcpSession((C4, 40005), (S4, 22), start_ts=1.0, rng=random.Random(4))
    s.server_send(ssh_banner("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10"))
    s.client_send(ssh_banner("PuTTY_Release_0.81"))
    s.client_send(ssh_kexinit(random.Random(5)))
    m = one_flow(frames_of(s)).meta
    assert m.app == "ssh"
    assert (m.ssh_client, m.ssh_server) == (
        "SSH-2.0-PuTTY_Release_0.81",
        "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10",
    )


@pytest.mark.parametrize(
    ("host", "port", "want"),
    [("example.org", 443, "example.org:443"), ("192.0.2.44", 8080, "192.0.2.44:8080")],
)
def test_socks5_target(host: str, port: int, want: str) -> None:
    k = TcpSession((C4, 40006), (S4, 1080), start_ts=1.0, rng=random.Random(6))
    k.client_send(socks5_greeting((0, 2)))
    k.server_send(socks5_method_choice(0))
    k.client_send(socks5_connect(host, port))
    k.server_send(socks5_reply())
    m = one_flow(frames_of(k)).meta
    assert (m.app, m.socks_target) == ("socks", want)


def test_tls_inside_http_connect_and_socks() -> None:
    """What a proxy relays after CONNECT's 2xx or SOCKS's reply is inspected as TLS."""
    ex = tls_ex("inner.example", "1.3")
    c = TcpSession((C4, 40010), (S4, 3128), start_ts=1.0, rng=random.Random(10))
    c.client_send(b"CONNECT inner.example:443 HTTP/1.1\r\nHost: inner.example:443\r\n\r\n")
    c.server_send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    k = TcpSession((C4, 40011), (S4, 1080), start_ts=1.0, rng=random.Random(11))
    k.client_send(socks5_greeting())
    k.server_send(socks5_method_choice())
    k.client_send(socks5_connect("inner.example", 443))
    k.server_send(socks5_reply())
    for sess in (c, k):
        for from_client, data in ex.messages:
            (sess.client_send if from_client else sess.server_send)(data)
    records, summary = both_paths(frames_of(c, k))
    assert not summary.anomalies
    http_rec, socks_rec = finals(records)
    assert (http_rec.meta.connect_target, http_rec.meta.sni) == ("inner.example:443", "inner.example")
    assert (socks_rec.meta.socks_target, socks_rec.meta.sni) == ("inner.example:443", "inner.example")
    for rec in (http_rec, socks_rec):
        assert rec.meta.tls_version == 0x0304 and JA4_RE.match(rec.meta.ja4)


def test_fragmented_quic_initial_is_reassembled() -> None:
    q = quic_exchange("frag.example", version=QUIC_V1)
    u = UdpExchange((C4, 55001), (S4, 443), start_ts=1.0, mtu=576, rng=random.Random(12))
    for from_client, t, data in q.datagrams[:3]:
        u.send(from_client, data, at=1.0 + t)
    frames = frames_of(u)
    assert len(frames) > 3  # the 1200-byte Initials travel in 576-byte fragments
    rec = one_flow(frames)
    assert (rec.meta.app, rec.meta.sni, rec.meta.quic_version) == ("quic", "frag.example", "V-1")
    assert rec.packets == len(frames)


def test_fragments_in_reverse_order_still_inspected() -> None:
    """Later fragments before the first are orphans for flow accounting (ports unknown yet),
    but the datagram they complete is still inspected."""
    q = quic_exchange("rev.example", version=QUIC_V1)
    u = UdpExchange((C4, 55002), (S4, 443), start_ts=1.0, mtu=576, rng=random.Random(13))
    u.send(True, q.datagrams[0][2], at=1.0)
    frames = frames_of(u)
    reordered = [(ts, lt, fr) for (ts, _l, _f), (_t, lt, fr) in zip(frames, reversed(frames), strict=True)]
    records, summary = both_paths(reordered)
    assert dict(summary.anomalies) == {"ip.fragment_orphan": len(frames) - 1}
    orphans, real = finals(records)
    assert (orphans.client_port, orphans.packets, orphans.meta.app) == (0, len(frames) - 1, "")
    assert (real.client_port, real.meta.sni) == (55002, "rev.example")


def test_fragmented_dns_response_over_ipv6() -> None:
    d = UdpExchange((C6, 40012), (S6, 53), start_ts=1.0, mtu=1280, rng=random.Random(14))
    d.client_send(dns_query("big.example", DnsType.TXT, txid=5))
    answers = [
        DnsAnswer("big.example", DnsType.TXT, "v=" + "x" * 1500),
        DnsAnswer("big.example", DnsType.A, "192.0.2.7"),
    ]
    d.server_send(dns_response("big.example", DnsType.TXT, answers, txid=5))
    frames = frames_of(d)
    assert len(frames) == 3
    m = one_flow(frames).meta
    assert (m.dns_query, m.dns_rcode, m.dns_answers[1:]) == ("big.example", 0, ("192.0.2.7",))
    assert m.dns_answers[0].startswith("v=xxx")


def test_unknown_payload_leaves_meta_empty() -> None:
    u = UdpExchange((C4, 40007), (S4, 9999), start_ts=1.0)
    u.client_send(bytes(range(200)))
    rec = one_flow(frames_of(u))
    assert rec.meta.app == "" and rec.to_dict()["server_name"] == ""


def test_app_sessions_all_agree_together() -> None:
    """Every application above, interleaved in one capture with two link types."""
    frames: list[Frame] = []
    for s in app_sessions().values():
        frames += [(ts, lt, fr) for ts, lt, fr in s]
    records, summary = both_paths(sorted(frames), FlowConfig(early_packets=4))
    apps = sorted(r.meta.app for r in finals(records))
    assert apps == sorted(["tls", "tls", "quic", "dns", "dns", "http", "http", "ssh", "socks"])
    assert not summary.anomalies


@cache
def app_sessions() -> dict[str, list[Frame]]:
    """Real application sessions as frames, for the tests here and the batch property tests."""
    out: dict[str, list[Frame]] = {}
    out["tls13"] = frames_of(tls_session(tls_ex("www.example.org", "1.3"), order=[2, 0, 1], start=1.0))
    out["tls12-v6"] = frames_of(
        tls_session(
            tls_ex("shop.example.test", "1.2"), client=(C6, 50443), server=(S6, 443), start=1.2, seed=1
        )
    )
    q = quic_exchange("video.example.net", version=QUIC_V1)
    u = UdpExchange((C6, 55000), (S6, 443), start_ts=1.1)
    for from_client, dt, data in q.datagrams[:6]:
        u.send(from_client, data, at=1.1 + dt)
    out["quic"] = frames_of(u)
    d = UdpExchange((C4, 40000), (S4, 53), start_ts=1.3)
    d.client_send(dns_query("www.example.org", txid=1))
    d.server_send(
        dns_response(
            "www.example.org", DnsType.A, [DnsAnswer("www.example.org", DnsType.A, "192.0.2.1")], txid=1
        )
    )
    out["dns-udp"] = frames_of(d)
    t = TcpSession((C4, 40002), (S4, 53), start_ts=1.4, rng=random.Random(1))
    t.client_send(dns_tcp(dns_query("tcp.example.org", DnsType.AAAA, txid=2)))
    t.server_send(dns_tcp(dns_response("tcp.example.org", DnsType.AAAA, [], txid=2)))
    out["dns-tcp"] = frames_of(t)
    h = TcpSession((C4, 40003), (S4, 80), start_ts=1.5, rng=random.Random(2))
    h.client_send(http_request("GET", "example.org", "/"))
    h.server_send(http_response(200, b"x" * 3000))
    h.close()
    out["http"] = frames_of(h)
    c = TcpSession((C4, 40004), (S4, 3128), start_ts=1.6, rng=random.Random(3))
    c.client_send(http_request("CONNECT", "example.org:443", "example.org:443"))
    c.server_send(b"HTTP/1.1 200 OK\r\n\r\n")
    out["connect"] = frames_of(c)
    s = TcpSession((C4, 40005), (S4, 22), start_ts=1.7, rng=random.Random(4))
    s.server_send(ssh_banner("OpenSSH_8.9p1"))
    s.client_send(ssh_banner())
    out["ssh"] = frames_of(s)
    k = TcpSession((C4, 40006), (S4, 1080), start_ts=1.8, rng=random.Random(6))
    k.client_send(socks5_greeting())
    k.server_send(socks5_method_choice())
    k.client_send(socks5_connect("example.org", 443))
    out["socks"] = frames_of(k)
    assert {lt for frames in out.values() for _ts, lt, _fr in frames} == {
        LinkType.ETHERNET,
        LinkType.LINUX_SLL2,
    }
    return out
