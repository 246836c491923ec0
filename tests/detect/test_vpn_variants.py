"""The commercial VPN variants (:mod:`sluice.detect._commercial`): real captures, packets sluice
writes itself (each with a near miss that must not match), and random bytes that must never raise.

Real captures: nDPI's corpus (``../shared``) and the lab's nebula/AnyConnect sessions
(``/work/labdata``); a test skips with a message when its capture is absent.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.batch.flows import batch_flows
from sluice.detect import _commercial
from sluice.detect import fingerprints as fp
from sluice.features.view import FlowView
from sluice.flows.record import AppMeta, FlowRecord
from sluice.io.pcap_writer import PcapWriter
from sluice.io.source import LinkType
from sluice.synth.packets import IpProto, TcpFlag, ipv4, tcp, udp

from .conftest import ndpi_records

LABDATA = Path(os.environ.get("SLUICE_LABDATA", "/work/labdata"))
C, S = "10.20.0.1", "198.51.100.7"

# -- packets sluice writes -------------------------------------------------------------------------


def _records(frames: list[bytes]) -> list[FlowRecord]:
    """Final records of raw IPv4 packets, one per 10 ms, through the batch path."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pcap"
        with path.open("wb") as f:
            w = PcapWriter(f, int(LinkType.RAW), snaplen=0xFFFF)
            for i, fr in enumerate(frames):
                w.write(1.0 + i / 100, fr)
        return [r for r in batch_flows(str(path), workers=1).records if not r.early]


def udp_flow(*datagrams: tuple[int, bytes], cport: int = 40000, sport: int = 51820) -> FlowRecord:
    """One UDP flow: (direction, payload) pairs, 0 client to server."""
    frames = []
    for d, payload in datagrams:
        a, b, pa, pb = (C, S, cport, sport) if d == 0 else (S, C, sport, cport)
        frames.append(ipv4(a, b, IpProto.UDP, udp(pa, pb, payload, src_ip=a, dst_ip=b)))
    (rec,) = _records(frames)
    return rec


def tcp_flow(*segments: tuple[int, bytes], port: int = 443) -> FlowRecord:
    """One TCP connection (handshake, then each (direction, payload) acknowledged)."""
    seq = [1000, 5000]
    ends = [(C, 40001), (S, port)]
    frames = [
        ipv4(C, S, IpProto.TCP, tcp(40001, port, 999, 0, TcpFlag.SYN, src_ip=C, dst_ip=S)),
        ipv4(S, C, IpProto.TCP, tcp(port, 40001, 4999, 1000, TcpFlag.SYN | TcpFlag.ACK, src_ip=S, dst_ip=C)),
        ipv4(C, S, IpProto.TCP, tcp(40001, port, 1000, 5000, TcpFlag.ACK, src_ip=C, dst_ip=S)),
    ]
    for d, data in segments:
        (a, pa), (b, pb) = ends[d], ends[1 - d]
        flags = TcpFlag.ACK | TcpFlag.PSH
        frames.append(
            ipv4(a, b, IpProto.TCP, tcp(pa, pb, seq[d], seq[1 - d], flags, data, src_ip=a, dst_ip=b))
        )
        seq[d] += len(data)
        frames.append(
            ipv4(b, a, IpProto.TCP, tcp(pb, pa, seq[1 - d], seq[d], TcpFlag.ACK, src_ip=b, dst_ip=a))
        )
    (rec,) = _records(frames)
    return rec


def best(rec: FlowRecord) -> fp.RuleMatch | None:
    got = fp.match_record(rec)
    return got[0] if got else None


def assert_named(rec: FlowRecord, family: str, code: str) -> fp.RuleMatch:
    m = best(rec)
    assert m is not None, "not recognised"
    assert (m.label, m.family) == ("vpn", family), m
    assert code in {e.code for e in m.evidence}, m.evidence
    assert all(e.reason for e in m.evidence)
    assert 0 <= m.decided_at < len(rec.pkt_sizes)
    return m


def assert_not(rec: FlowRecord, family: str) -> None:
    assert not [m for m in fp.match_record(rec) if m.family == family]


def rnd(n: int, seed: int) -> bytes:
    """Deterministic filler bytes (not zero, not structured)."""
    out, x = bytearray(), seed * 2654435761 + 12345
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        out.append(x >> 56)
    return bytes(out)


# -- WireGuard with its reserved bytes in use (WARP) -------------------------------------------------


def wg_init(reserved: bytes, sender: bytes, length: int = 148) -> bytes:
    return b"\x01" + reserved + sender + rnd(length - 8, 1)


def wg_resp(reserved: bytes, sender: bytes, receiver: bytes) -> bytes:
    return b"\x02" + reserved + sender + receiver + rnd(92 - 12, 2)


def test_warp_handshake_with_a_client_id_in_the_reserved_bytes() -> None:
    rec = udp_flow((0, wg_init(b"\x5a\x11\x07", b"ABCD")), (1, wg_resp(b"\x5a\x11\x07", b"WXYZ", b"ABCD")))
    m = assert_named(rec, "commercial:cloudflarewarp", "wireguard.reserved_nonzero")
    assert "wireguard.index_echo" in {e.code for e in m.evidence}


def test_warp_near_misses() -> None:
    # byte 0 = 1 and a client id, but 150 bytes: not an initiation
    assert_not(
        udp_flow(
            (0, wg_init(b"\x5a\x11\x07", b"ABCD", 150)), (1, wg_resp(b"\x5a\x11\x07", b"WXYZ", b"ABCD"))
        ),
        "commercial:cloudflarewarp",
    )
    # the response does not name the initiator's index
    assert_not(
        udp_flow((0, wg_init(b"\x5a\x11\x07", b"ABCD")), (1, wg_resp(b"\x5a\x11\x07", b"WXYZ", b"QQQQ"))),
        "commercial:cloudflarewarp",
    )
    # plain WireGuard stays the wireguard rule's
    plain = udp_flow((0, wg_init(bytes(3), b"ABCD")), (1, wg_resp(bytes(3), b"WXYZ", b"ABCD")))
    assert_not(plain, "commercial:cloudflarewarp")
    assert_named(plain, "wireguard", "wireguard.index_echo")


# -- nebula ----------------------------------------------------------------------------------------


def nebula_header(type_: int, subtype: int, remote: int, counter: int, version: int = 1) -> bytes:
    return (
        bytes([version << 4 | type_, subtype])
        + bytes(2)
        + remote.to_bytes(4, "big")
        + counter.to_bytes(8, "big")
    )


def test_nebula_handshake() -> None:
    rec = udp_flow(
        (0, nebula_header(0, 0, 0, 1) + rnd(218, 3)),
        (1, nebula_header(0, 0, 0x1234ABCD, 2) + rnd(256, 4)),
        sport=4242,
    )
    m = assert_named(rec, "nebula", "nebula.handshake_init")
    assert "nebula.handshake_reply" in {e.code for e in m.evidence} and m.confidence > 0.95


@pytest.mark.parametrize(
    "header",
    [
        nebula_header(0, 0, 0, 5),  # counter not 1
        nebula_header(0, 0, 0, 1, version=2),  # version 2
        nebula_header(0, 0, 7, 1),  # a remote index before the peer gave one
        nebula_header(1, 0, 0, 1),  # a data message, not the handshake
    ],
)
def test_nebula_near_misses(header: bytes) -> None:
    assert_not(udp_flow((0, header + rnd(218, 5)), (1, rnd(100, 6)), sport=4242), "nebula")


@pytest.mark.parametrize("session", ["000", "001", "002", "003"])
def test_nebula_lab_sessions(session: str) -> None:
    path = LABDATA / "c41" / "nebula" / f"nebula-default-s41-{session}.pcap"
    if not path.exists():
        pytest.skip(f"lab data not present: {path}")
    recs = [r for r in batch_flows(str(path), workers=1).records if not r.early]
    named = [r for r in recs if (m := best(r)) and m.family == "nebula"]
    assert len(named) == 1 and named[0].proto == 17


# -- AnyConnect DTLS -------------------------------------------------------------------------------


def dtls_hello(record_ver: bytes, client_ver: bytes, sid: bytes, hs_type: int = 1) -> bytes:
    body = client_ver + rnd(32, 7) + bytes([len(sid)]) + sid + b"\x00" + b"\x00\x02\xc0\x2b\x01\x00"
    hs = (
        bytes([hs_type])
        + len(body).to_bytes(3, "big")
        + b"\x00\x00"
        + bytes(3)
        + len(body).to_bytes(3, "big")
    )
    return b"\x16" + record_ver + bytes(8) + len(hs + body).to_bytes(2, "big") + hs + body


def test_anyconnect_legacy_dtls_version() -> None:
    hello = dtls_hello(b"\x01\x00", b"\x01\x00", rnd(32, 8))
    rec = udp_flow((0, hello), (1, dtls_hello(b"\x01\x00", b"\x01\x00", b"", hs_type=3)), sport=443)
    assert_named(rec, "anyconnect", "anyconnect.dtls_bad_version")


def test_anyconnect_dtls_resumes_the_cstp_session() -> None:
    sid = rnd(32, 9)
    rec = udp_flow(
        (0, dtls_hello(b"\xfe\xff", b"\xfe\xfd", sid)),
        (1, dtls_hello(b"\xfe\xfd", b"\xfe\xfd", rnd(32, 10), hs_type=2)),
        sport=443,
    )
    m = assert_named(rec, "anyconnect", "anyconnect.dtls_session_resumed")
    assert "anyconnect.dtls_no_cookie" in {e.code for e in m.evidence}


def test_anyconnect_near_miss_fresh_dtls_handshake() -> None:
    # WebRTC-style: DTLS 1.2, empty session id, answered by a HelloVerifyRequest
    rec = udp_flow(
        (0, dtls_hello(b"\xfe\xff", b"\xfe\xfd", b"")),
        (1, dtls_hello(b"\xfe\xff", b"\xfe\xff", b"", hs_type=3)),
        sport=443,
    )
    assert_not(rec, "anyconnect")


def test_anyconnect_in_ndpis_capture() -> None:
    recs = [r for r in ndpi_records("anyconnect-vpn.pcap") if (m := best(r)) and m.family == "anyconnect"]
    assert [(r.server, r.server_port, r.proto) for r in recs] == [("8.37.102.91", 443, 17)]


@pytest.mark.parametrize("session", ["anyconnect-dtls-s41-000", "anyconnect-dtls-s41-002"])
def test_anyconnect_lab_ocserv_dtls(session: str) -> None:
    path = LABDATA / "c41" / "anyconnect" / f"{session}.pcap"
    if not path.exists():
        pytest.skip(f"lab data not present: {path}")
    recs = [r for r in batch_flows(str(path), workers=1).records if not r.early and r.proto == 17]
    assert recs and all((m := best(r)) and m.family == "anyconnect" for r in recs)


# -- SoftEther / VPN Gate --------------------------------------------------------------------------


def test_softether_connect_cgi() -> None:
    req = b"POST /vpnsvc/connect.cgi HTTP/1.1\r\nHost: vpn.example\r\nContent-Type: image/jpeg\r\n\r\n"
    rec = tcp_flow((0, req), (1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert_named(rec, "softether", "softether.connect_cgi")
    other = tcp_flow((0, req.replace(b"connect.cgi", b"connect.php")), (1, b"HTTP/1.1 200 OK\r\n\r\n"))
    assert_not(other, "softether")


def test_softether_vpngate_ip_port_and_pack() -> None:
    rec = udp_flow((0, b"IP=203.0.113.9,PORT=5555"), (1, b"IP=198.51.100.7,PORT=443"), sport=5555)
    assert_named(rec, "softether", "softether.vpngate_ip_port")
    pack = (3).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"host_name" + rnd(90, 11)
    assert_named(udp_flow((0, pack), (1, rnd(40, 12)), sport=5004), "softether", "softether.pack_host_name")
    # the same text inside a longer datagram, and a PACK-like count of zero: not SoftEther
    assert_not(udp_flow((0, b"IP=203.0.113.9,PORT=5555;and more text here"), sport=5555), "softether")
    assert_not(udp_flow((0, bytes(4) + pack[4:]), sport=5004), "softether")


# -- ZeroTier --------------------------------------------------------------------------------------


def zt_hello(src: bytes, identity: bytes) -> bytes:
    header = rnd(8, 13) + rnd(5, 14) + src + b"\x01" + rnd(8, 15)
    return header + b"\x01" + b"\x0b\x01\x0c\x00\x05" + rnd(8, 16) + identity + b"\x00" + rnd(64, 17)


def test_zerotier_hello() -> None:
    src = bytes.fromhex("89e92ceee5")
    rec = udp_flow((0, zt_hello(src, src)), (1, rnd(120, 18)), cport=9993, sport=9993)
    assert_named(rec, "zerotier", "zerotier.hello")
    miss = udp_flow(
        (0, zt_hello(src, bytes.fromhex("89e92ceee6"))), (1, rnd(120, 18)), cport=9993, sport=9993
    )
    assert_not(miss, "zerotier")


# -- Tailscale DERP --------------------------------------------------------------------------------


def test_tailscale_derp_upgrade_and_server_key() -> None:
    req = b"GET /derp HTTP/1.1\r\nHost: derp1.tailscale.com\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n\r\n"
    rec = tcp_flow((0, req), (1, b"HTTP/1.1 101 Switching Protocols\r\n\r\n"), port=80)
    assert_named(rec, "commercial:tailscale", "tailscale.derp_upgrade")
    frame = b"\x01" + (40).to_bytes(4, "big") + "DERP\N{KEY}".encode() + rnd(32, 19)
    rec = tcp_flow((0, rnd(30, 20)), (1, frame), port=8443)
    assert_named(rec, "commercial:tailscale", "tailscale.derp_server_key")
    miss = tcp_flow(
        (0, b"GET /derpy-cats HTTP/1.1\r\nHost: x\r\n\r\n"), (1, b"HTTP/1.1 200 OK\r\n\r\n"), port=80
    )
    assert_not(miss, "commercial:tailscale")


def test_tailscale_derp_names() -> None:
    rec = tcp_flow((0, rnd(200, 21)), (1, rnd(200, 22)))
    for name, hit in [
        ("derp12.tailscale.com", True),
        ("derp7d.tailscale.com", True),
        ("login.tailscale.com", False),
    ]:
        named = dataclasses.replace(rec, meta=AppMeta(app="tls", sni=name))
        m = best(named)
        assert (m is not None and m.family == "commercial:tailscale") is hit, name


# -- OpenVPN behind an XOR key ---------------------------------------------------------------------


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


KEY = b"t3Gk9"


def ovpn_resets(hmac: int = 64) -> tuple[bytes, bytes]:
    client = b"\x38" + rnd(8, 23) + rnd(hmac, 24) + b"\x00\x00\x00\x01" + rnd(4, 25) + b"\x00" + bytes(4)
    server = b"\x40" + rnd(8, 26) + rnd(hmac, 27) + b"\x00\x00\x00\x01" + rnd(4, 28) + b"\x01" + bytes(4)
    server += client[1:9] + bytes(4)
    return xor(client, KEY), xor(server, KEY)


def test_openvpn_xor_udp_and_tcp() -> None:
    c, s = ovpn_resets()
    assert (len(c), len(s)) == (86, 98)
    assert_named(udp_flow((0, c), (1, s), sport=1214), "openvpn", "openvpn.xor_opcode_pair")
    rec = tcp_flow((0, len(c).to_bytes(2, "big") + c), (1, len(s).to_bytes(2, "big") + s), port=465)
    m = assert_named(rec, "openvpn", "openvpn.xor_reset_lengths")
    assert m.rule == "openvpn-xor"


def test_openvpn_xor_near_misses() -> None:
    c, s = ovpn_resets()
    # first bytes not related by the reset opcodes
    assert_not(udp_flow((0, c), (1, bytes([s[0] ^ 1]) + s[1:]), sport=1214), "openvpn")
    # lengths that no HMAC size explains
    assert_not(udp_flow((0, c + b"\x00"), (1, s), sport=1214), "openvpn")
    # TCP length prefix that does not match the segment
    assert_not(tcp_flow((0, b"\x00\x50" + c), (1, len(s).to_bytes(2, "big") + s), port=465), "openvpn")


def test_openvpn_variants_in_ndpis_captures() -> None:
    obf = [r for r in ndpi_records("openvpn_obfuscated.pcapng") if (m := best(r)) and m.rule == "openvpn-xor"]
    assert {(r.server_port, r.proto) for r in obf} == {(465, 6), (1214, 17)}
    for name in ("openvpn_nohmac.pcapng", "openvpn-tlscrypt.pcap"):
        families = [m.family for r in ndpi_records(name) if (m := best(r)) is not None]
        assert "openvpn" in families, name


# -- certificates and names ------------------------------------------------------------------------


def test_pia_certificate_and_vpn_names() -> None:
    rec = tcp_flow((0, rnd(200, 29)), (1, rnd(200, 30)))
    pia = dataclasses.replace(rec, meta=AppMeta(app="tls", cert_issuer="O=Private Internet Access, CN=PIA"))
    assert_named(pia, "commercial:pia", "pia.certificate")
    other = dataclasses.replace(rec, meta=AppMeta(app="tls", cert_issuer="O=Private Internet Archive"))
    assert_not(other, "commercial:pia")
    gate = dataclasses.replace(rec, meta=AppMeta(app="tls", sni="public-vpn-141.opengw.net"))
    assert_named(gate, "softether", "softether.server_name")
    assert_not(dataclasses.replace(rec, meta=AppMeta(app="tls", sni="notopengw.net")), "softether")


def test_pia_in_ndpis_capture() -> None:
    named = [r for r in ndpi_records("pia.pcap") if (m := best(r)) and m.family == "commercial:pia"]
    assert [(r.server, r.server_port) for r in named] == [("143.244.45.60", 443)]


# -- random bytes never raise ----------------------------------------------------------------------


@cache
def _template(proto: int) -> FlowRecord:
    if proto == 17:
        return udp_flow((0, rnd(100, 31)), (1, rnd(100, 32)))
    return tcp_flow((0, rnd(100, 33)), (1, rnd(100, 34)))


@settings(max_examples=300, deadline=None)
@given(
    proto=st.sampled_from([6, 17]),
    c=st.binary(max_size=64),
    s=st.binary(max_size=64),
    first_len=st.integers(0, 2000),
    sizes=st.lists(st.integers(0, 1600), max_size=8),
    sni=st.text(max_size=40),
    cert=st.text(max_size=60),
)
def test_rules_never_raise_on_random_bytes(
    proto: int, c: bytes, s: bytes, first_len: int, sizes: list[int], sni: str, cert: str
) -> None:
    base = _template(proto)
    pkt_sizes = tuple(sizes) or base.pkt_sizes
    rec = dataclasses.replace(
        base,
        c2s_head=c.hex(),
        s2c_head=s.hex(),
        c2s_first_payload_len=first_len,
        pkt_sizes=pkt_sizes,
        pkt_dirs=tuple(i % 2 for i in range(len(pkt_sizes))),
        meta=AppMeta(app="tls", sni=sni, cert_subject=cert, cert_issuer=cert),
    )
    view = FlowView(rec)
    for _name, rule in _commercial.RULES:
        m = rule(view)
        if m is not None:
            assert 0.0 < m.confidence <= 1.0 and m.evidence and m.label == "vpn"
            assert m.decided_at >= 0


def _valid_samples() -> list[tuple[int, bytes, bytes]]:
    c, s = ovpn_resets()
    zt = zt_hello(b"\x89\xe9\x2c\xee\xe5", b"\x89\xe9\x2c\xee\xe5")
    pack = (3).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"host_name" + rnd(90, 11)
    return [
        (17, wg_init(b"\x5a\x11\x07", b"ABCD"), wg_resp(b"\x5a\x11\x07", b"WXYZ", b"ABCD")),
        (17, nebula_header(0, 0, 0, 1) + rnd(218, 3), nebula_header(0, 0, 9, 2) + rnd(100, 4)),
        (17, dtls_hello(b"\x01\x00", b"\x01\x00", rnd(32, 8)), b""),
        (17, dtls_hello(b"\xfe\xff", b"\xfe\xfd", rnd(32, 9)), dtls_hello(b"\xfe\xfd", b"\xfe\xfd", b"", 2)),
        (17, zt, b""),
        (17, pack, b"IP=1.2.3.4,PORT=5"),
        (17, c, s),
        (6, len(c).to_bytes(2, "big") + c, len(s).to_bytes(2, "big") + s),
        (6, b"POST /vpnsvc/vpn.cgi HTTP/1.1\r\n", b"\x01\x00\x00\x00\x28DERP\xf0\x9f\x94\x91"),
    ]


@settings(max_examples=300, deadline=None)
@given(
    sample=st.integers(0, 8),
    cut_c=st.integers(0, 64),
    cut_s=st.integers(0, 64),
    tail_c=st.binary(max_size=16),
    tail_s=st.binary(max_size=16),
    first_len=st.integers(0, 200),
)
def test_rules_never_raise_on_cut_and_extended_samples(
    sample: int, cut_c: int, cut_s: int, tail_c: bytes, tail_s: bytes, first_len: int
) -> None:
    """A valid head cut anywhere and extended with random bytes: a match or None, nothing else."""
    proto, c, s = _valid_samples()[sample]
    base = _template(proto)
    rec = dataclasses.replace(
        base,
        c2s_head=(c[:cut_c] + tail_c)[:64].hex(),
        s2c_head=(s[:cut_s] + tail_s)[:64].hex(),
        c2s_first_payload_len=first_len,
    )
    view = FlowView(rec)
    for _name, rule in _commercial.RULES:
        m = rule(view)
        if m is not None:
            assert 0.0 < m.confidence <= 1.0 and m.evidence and m.label == "vpn"
            assert -1 <= m.decided_at < len(rec.pkt_sizes)
