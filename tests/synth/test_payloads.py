"""Application payloads: real TLS/QUIC from OpenSSL and aioquic, RFC-built DNS/HTTP/SSH/SOCKS5.

One capture holds every payload kind in its own session; one tshark run decodes it and each
test compares tshark's reading with what was sent.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import pytest

from sluice.synth.payloads import (
    QUIC_V1,
    QUIC_V2,
    DnsAnswer,
    DnsType,
    PayloadPool,
    QuicExchange,
    TlsExchange,
    dns_query,
    dns_response,
    dns_tcp,
    http_request,
    http_response,
    quic_exchange,
    quic_short_packet,
    quic_with_new_ids,
    random_bytes,
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
    tls_exchange,
)
from sluice.synth.sessions import TcpSession, UdpExchange
from tests.synth.capture_util import needs_tshark, tshark_fields, write_sessions

START = 1_720_000_000.0
CLIENT, SERVER = "10.0.0.1", "192.0.2.7"

FIELDS = (
    "tcp.srcport",
    "udp.srcport",
    "tls.handshake.type",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.record.content_type",
    "tls.record.opaque_type",
    "quic.version",
    "quic.dcid",
    "dns.qry.name",
    "dns.qry.type",
    "dns.flags.rcode",
    "dns.cname",
    "dns.a",
    "dns.aaaa",
    "dns.txt",
    "dns.count.answers",
    "http.host",
    "http.request.uri",
    "http.response.code",
    "http.content_length_header",
    "ssh.protocol",
    "ssh.message_code",
    "ssh.kex_algorithms",
    "socks.version",
    "socks.command",
    "socks.remote_name",
    "socks.dstport",
    "_ws.malformed",
)

DNS_CNAME = [
    DnsAnswer("www.example.org", DnsType.CNAME, "www.example.org.edgekey.net", 300),
    DnsAnswer("www.example.org.edgekey.net", DnsType.CNAME, "e1.a.akamaiedge.net", 60),
    DnsAnswer("e1.a.akamaiedge.net", DnsType.A, "198.18.1.1", 20),
    DnsAnswer("e1.a.akamaiedge.net", DnsType.A, "198.18.1.2", 20),
]


def _tcp(port: int, sport: int) -> TcpSession:
    return TcpSession((CLIENT, port), (SERVER, sport), start_ts=START, rtt_s=0.02)


def _play(s: TcpSession, messages: tuple[tuple[bool, bytes], ...]) -> None:
    for from_client, data in messages:
        (s.client_send if from_client else s.server_send)(data)


class Capture:
    """The sessions of the module's capture and what was put into them."""

    def __init__(self, tmp: Path) -> None:
        self.tls13 = tls_exchange("www.example.org", alpn=("h2", "http/1.1"), version="1.3")
        self.tls12 = tls_exchange("legacy.example.net", alpn=("http/1.1",), version="1.2")
        self.tls_nosni = tls_exchange(None, alpn=(), version="1.3")
        self.quic1 = quic_exchange("cdn.example.com", version=QUIC_V1, response_size=3000)
        self.quic2 = quic_exchange("v2.example.com", version=QUIC_V2, response_size=1000)
        sessions: list[TcpSession | UdpExchange] = []
        for port, ex in ((43001, self.tls13), (43002, self.tls12), (43003, self.tls_nosni)):
            s = _tcp(port, 443)
            _play(s, ex.messages)
            s.close()
            sessions.append(s)
        self.quic1_again = quic_with_new_ids(self.quic1, random.Random(44003))
        quics = ((44001, self.quic1), (44002, self.quic2), (44003, self.quic1_again))
        for port, qx in quics:
            u = UdpExchange((CLIENT, port), (SERVER, 443), start_ts=START)
            for from_client, rel, data in qx.datagrams:
                u.send(from_client, data, at=START + rel)
            sessions.append(u)
        dns = [
            (45001, "www.example.org", DnsType.A, DNS_CNAME, 0),
            (
                45002,
                "ipv6.example.net",
                DnsType.AAAA,
                [DnsAnswer("ipv6.example.net", DnsType.AAAA, "2001:db8::53")],
                0,
            ),
            (45003, "nothing.example", DnsType.A, [], 3),
            (
                45004,
                "example.com",
                DnsType.TXT,
                [DnsAnswer("example.com", DnsType.TXT, "v=spf1 -all " + "x" * 300)],
                0,
            ),
        ]
        self.dns = dns
        for port, name, qtype, answers, rcode in dns:
            u = UdpExchange((CLIENT, port), ("10.0.0.53", 53), start_ts=START)
            u.client_send(dns_query(name, qtype, txid=port))
            u.server_send(dns_response(name, qtype, answers, txid=port, rcode=rcode))
            sessions.append(u)
        s = _tcp(45005, 53)
        s.client_send(dns_tcp(dns_query("tcp.example.org", DnsType.A, txid=7)))
        s.server_send(dns_tcp(dns_response("www.example.org", DnsType.A, DNS_CNAME, txid=7)))
        s.close()
        sessions.append(s)
        s = _tcp(46001, 80)
        s.client_send(http_request("GET", "plain.example.com", "/path/page.html?q=1"))
        s.server_send(http_response(200, b"<html>" + b"x" * 5000 + b"</html>"))
        s.close()
        sessions.append(s)
        rng = random.Random(3)
        s = _tcp(47001, 22)
        s.server_send(ssh_banner("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10"))
        s.client_send(ssh_banner())
        s.client_send(ssh_kexinit(rng, client=True))
        s.server_send(ssh_kexinit(rng, client=False))
        s.client_send(ssh_ecdh_init(rng))
        s.server_send(ssh_ecdh_reply(rng) + ssh_newkeys(rng))
        s.client_send(ssh_newkeys(rng))
        s.close()
        sessions.append(s)
        s = _tcp(48001, 1080)
        s.client_send(socks5_greeting((0, 2)))
        s.server_send(socks5_method_choice(0))
        s.client_send(socks5_connect("inner.example.org", 443))
        s.server_send(socks5_reply(0, ("192.0.2.7", 50123)))
        self.tls_socks = tls_exchange("inner.example.org")
        _play(s, self.tls_socks.messages)
        s.close()
        sessions.append(s)
        self.path = tmp / "payloads.pcapng"
        write_sessions(self.path, sessions)
        self.rows = tshark_fields(self.path, FIELDS, two_pass=True)

    def by_port(self, port: int) -> list[dict[str, str]]:
        p = str(port)
        return [r for r in self.rows if p in (r["tcp.srcport"], r["udp.srcport"])]

    def values(self, port: int, field: str) -> list[str]:
        return [v for r in self.by_port(port) for v in r[field].split(",") if v]


@pytest.fixture(scope="module")
def cap(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    return Capture(tmp_path_factory.mktemp("payloads"))


@needs_tshark
def test_nothing_is_malformed(cap: Capture) -> None:
    assert not any(r["_ws.malformed"] for r in cap.rows)


@needs_tshark
def test_tls13_handshake_is_real(cap: Capture) -> None:
    ex = cap.tls13
    assert ex.version == "TLSv1.3" and ex.alpn_selected == "h2"
    assert ex.messages[0][1][:3] == b"\x16\x03\x01" and ex.messages[0][1][5] == 1
    assert cap.values(43001, "tls.handshake.extensions_server_name") == ["www.example.org"]
    assert cap.values(43001, "tls.handshake.extensions_alpn_str") == ["h2", "http/1.1"]
    server_versions = cap.values(443, "tls.handshake.extensions.supported_version")
    assert "0x0304" in server_versions
    assert "23" in cap.values(43001, "tls.record.opaque_type")  # encrypted records
    assert "20" in cap.values(43001, "tls.record.content_type")  # middlebox-compat CCS
    assert ex.record_overhead == 17


@needs_tshark
def test_tls12_and_no_sni(cap: Capture) -> None:
    assert cap.tls12.version == "TLSv1.2" and cap.tls12.alpn_selected == "http/1.1"
    assert cap.tls12.record_overhead in (16, 24)
    assert cap.values(43002, "tls.handshake.extensions_server_name") == ["legacy.example.net"]
    assert cap.tls_nosni.sni is None and cap.tls_nosni.alpn_selected is None
    assert cap.values(43003, "tls.handshake.extensions_server_name") == []
    assert "1" in cap.values(43003, "tls.handshake.type")


@needs_tshark
@pytest.mark.parametrize(
    ("port", "version", "sni"),
    [
        (44001, "0x00000001", "cdn.example.com"),
        (44002, "0x6b3343cf", "v2.example.com"),
        (44003, "0x00000001", "cdn.example.com"),
    ],
)
def test_quic_initial_decrypted_by_tshark(cap: Capture, port: int, version: str, sni: str) -> None:
    assert cap.values(port, "tls.handshake.extensions_server_name") == [sni]
    assert cap.values(port, "tls.handshake.extensions_alpn_str") == ["h3"]
    assert set(cap.values(port, "quic.version")) == {version}
    first = cap.quic1.datagrams[0] if port == 44001 else cap.quic2.datagrams[0]
    assert first[0] and len(first[2]) >= 1200  # client Initial padded to 1200 bytes


@needs_tshark
def test_quic_with_new_ids_is_another_connection(cap: Capture) -> None:
    old, new = cap.quic1, cap.quic1_again
    assert (new.client_cid, new.server_cid) != (old.client_cid, old.server_cid)
    assert [len(d) for _, _, d in new.datagrams] == [len(d) for _, _, d in old.datagrams]
    dcids = {p: set(cap.values(p, "quic.dcid")) for p in (44001, 44003)}
    assert dcids[44001] and not dcids[44001] & dcids[44003]
    # the server's Initial (ServerHello) still decrypts under the new keys
    server_hs = [r["tls.handshake.type"] for r in cap.rows if r["udp.srcport"] == "443"]
    assert server_hs.count("2") == 3


def test_quic_exchange_shape() -> None:
    qx = quic_exchange("shape.example", response_size=20000)
    assert qx.version == QUIC_V1 and qx.alpn == "h3"
    times = [t for _, t, _ in qx.datagrams]
    assert times == sorted(times) and times[0] == 0
    server_bytes = sum(len(d) for c, _, d in qx.datagrams if not c)
    assert server_bytes > 20000
    # short-header packets carry the peer's connection ID right after the first byte
    shorts = [(c, d) for c, _, d in qx.datagrams if not d[0] & 0x80]
    assert shorts
    for from_client, d in shorts:
        cid = qx.server_cid if from_client else qx.client_cid
        assert d[1 : 1 + len(cid)] == cid
    pkt = quic_short_packet(qx.client_cid, 1200, random.Random(1), random_bytes(1, 4096))
    assert len(pkt) == 1200 and pkt[0] & 0xC0 == 0x40 and pkt[1:9] == qx.client_cid


@needs_tshark
def test_dns_answers_read_back(cap: Capture) -> None:
    assert cap.values(45001, "dns.qry.name") == ["www.example.org"]
    r = [x for x in cap.by_port(53) if x["udp.srcport"] == "53"]
    by_name = {x["dns.qry.name"]: x for x in r}
    a = by_name["www.example.org"]
    assert a["dns.cname"] == "www.example.org.edgekey.net,e1.a.akamaiedge.net"
    assert a["dns.a"] == "198.18.1.1,198.18.1.2" and a["dns.count.answers"] == "4"
    assert by_name["ipv6.example.net"]["dns.aaaa"] == "2001:db8::53"
    assert by_name["nothing.example"]["dns.flags.rcode"] == "3"
    assert by_name["example.com"]["dns.txt"].startswith("v=spf1 -all xxx")
    tcp_rows = [x for x in cap.rows if x["tcp.srcport"] == "53" and x["dns.qry.name"]]
    assert tcp_rows and tcp_rows[0]["dns.a"] == "198.18.1.1,198.18.1.2"


def test_dns_names_are_compressed() -> None:
    msg = dns_response("www.example.org", DnsType.A, DNS_CNAME, txid=1, edns=False)
    # every answer's owner name is a pointer; the first one points at the question (offset 12)
    assert msg[12 + 17 + 4 : 12 + 17 + 6] == b"\xc0\x0c"
    uncompressed = (
        12
        + 17
        + 4
        + sum(len(a.name) + 2 + 10 + (4 if a.rtype == DnsType.A else len(a.value) + 2) for a in DNS_CNAME)
    )
    assert len(msg) < uncompressed - 40
    assert struct.unpack("!HHHHHH", msg[:12]) == (1, 0x8180, 1, 4, 0, 0)
    with pytest.raises(ValueError):
        dns_query("bad..label" + "x" * 70, txid=1)


@needs_tshark
def test_http_ssh_socks_read_back(cap: Capture) -> None:
    assert cap.values(46001, "http.host") == ["plain.example.com"]
    assert cap.values(46001, "http.request.uri") == ["/path/page.html?q=1"]
    assert cap.values(80, "http.response.code") == ["200"]
    assert cap.values(80, "http.content_length_header") == ["5013"]
    assert cap.values(47001, "ssh.protocol") == ["SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"]
    assert cap.values(22, "ssh.protocol") == ["SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10"]
    assert cap.values(47001, "ssh.message_code") == ["20", "30", "21"]
    assert cap.values(22, "ssh.message_code") == ["20", "31", "21"]
    kex = cap.values(47001, "ssh.kex_algorithms")  # the name-list, split at its commas
    assert kex[0] == "curve25519-sha256" and kex[-1] == "ext-info-c"
    assert "inner.example.org" in cap.values(48001, "socks.remote_name")
    assert "443" in cap.values(48001, "socks.dstport")
    assert cap.values(48001, "tls.handshake.extensions_server_name") == ["inner.example.org"]


def test_tls_app_records_framing() -> None:
    filler = random_bytes(2, 1 << 16)
    recs = tls_app_records(40000, random.Random(1), filler, overhead=17)
    off, plain = 0, 0
    while off < len(recs):
        ctype, ver, n = struct.unpack_from("!BHH", recs, off)
        assert (ctype, ver) == (23, 0x0303) and n <= 16384 + 17
        plain += n - 17
        off += 5 + n
    assert off == len(recs) and plain == 40000


def test_exchanges_round_trip_through_json() -> None:
    ex = tls_exchange("rt.example", version="1.2")
    assert TlsExchange.from_json(json.loads(json.dumps(ex.to_json()))) == ex
    qx = quic_exchange("rt.example", response_size=500)
    assert QuicExchange.from_json(json.loads(json.dumps(qx.to_json()))) == qx


def test_pool_reuses_and_reloads_identically() -> None:
    pool = PayloadPool(5, variants=2, filler_size=1 << 16)
    names = ["a.example", "b.example", "a.example", "a.example", "b.example", "a.example"]
    first = [pool.tls(n) for n in names] + [pool.quic("q.example") for _ in range(3)]
    assert pool.handshakes_made <= 2 + 2 + 2
    saved = json.loads(json.dumps(pool.to_json()))
    again = PayloadPool.from_json(saved)
    second = [again.tls(n) for n in names] + [again.quic("q.example") for _ in range(3)]
    assert second == first
    assert again.handshakes_made == 0
    assert again.filler == pool.filler


def test_socks_and_ssh_encodings() -> None:
    assert socks5_greeting((0, 2)) == b"\x05\x02\x00\x02"
    assert socks5_connect("10.1.2.3", 80) == b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"
    assert socks5_connect("x.org", 443) == b"\x05\x01\x00\x03\x05x.org\x01\xbb"
    assert socks5_connect("2001:db8::1", 22)[3] == 4
    pkt = ssh_kexinit(random.Random(1))
    length, pad = struct.unpack_from("!IB", pkt)
    assert len(pkt) == 4 + length and len(pkt) % 8 == 0 and pad >= 4 and pkt[5] == 20
