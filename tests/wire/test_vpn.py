"""OpenVPN, WireGuard, IKE/ESP and the SOCKS opening: real captures, round trips, fuzz.

Real first payloads come from the nDPI corpus (``../shared``; skipped when absent). The
property tests hold for any bytes: ``try_decode_*`` returns a record or ``None`` and never
raises; ``decode_*`` returns a record or raises :class:`~sluice.errors.DecodeError`, nothing else;
a record the test builds field by field decodes back to the same fields.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.wire.cursor import Cursor
from sluice.wire.ipsec import (
    EXCHANGE_NAMES,
    NAT_T_PORT,
    EspHeader,
    IkeHeader,
    decode_ike,
    try_decode_esp_in_udp,
    try_decode_ike,
)
from sluice.wire.openvpn import (
    CLIENT_HARD_RESETS,
    SERVER_HARD_RESETS,
    OpenVpnOpcode,
    OpenVpnPacket,
    control_layout,
    decode_openvpn,
    first_byte_is_hard_reset,
    hmac_size_by_length,
    try_decode_openvpn,
)
from sluice.wire.pptp import CONTROL_MESSAGE, starts_ppp_frame, try_decode_pptp
from sluice.wire.socks import (
    Socks5Greeting,
    Socks5MethodSelection,
    opens_like_socks5,
    socks_opening,
    try_decode_socks,
)
from sluice.wire.tailscale import DISCO_MAGIC, try_decode_disco
from sluice.wire.tinc import PROTOCOL_MAJOR, TincIdRequest, try_decode_tinc_id
from sluice.wire.wireguard import (
    MESSAGE_SIZES,
    WireGuardMessage,
    WireGuardType,
    decode_wireguard,
    try_decode_wireguard,
)
from tests.corpus_util import Endpoint, corpus_file, first_payloads, udp_datagrams

# -- real captures ------------------------------------------------------------------------------


def _first_datagrams(name: str) -> dict[tuple[Endpoint, Endpoint], bytes]:
    out: dict[tuple[Endpoint, Endpoint], bytes] = {}
    for src, dst, payload in udp_datagrams(corpus_file(name)):
        if payload:
            out.setdefault((src, dst), payload)
    return out


def test_openvpn_udp_reset_exchanges() -> None:
    """Each client hard reset in openvpn.pcap is answered by a server reset naming its session."""
    firsts = _first_datagrams("openvpn.pcap")
    layouts = set()
    pairs = 0
    for (src, dst), payload in sorted(firsts.items()):
        client = try_decode_openvpn(payload, tcp=False)
        answer = firsts.get((dst, src))
        if client is None or client.opcode not in CLIENT_HARD_RESETS or answer is None:
            continue
        server = try_decode_openvpn(answer, tcp=False)
        assert server is not None and server.opcode in SERVER_HARD_RESETS, (src, dst)
        assert client.key_id == server.key_id == 0 and client.length is None
        assert server.mentions(client.session_id)  # the server acknowledges the client's session
        layouts.add(control_layout(client, server=False))
        layouts.add(control_layout(server, server=True, peer_session_id=client.session_id))
        pairs += 1
    assert pairs >= 5
    assert {"plain", "tls-auth (HMAC 20 bytes)"} <= layouts


def test_openvpn_over_tcp_has_its_length_prefix() -> None:
    heads = first_payloads(corpus_file("443-opvn.pcap"))
    got = {k: try_decode_openvpn(p, tcp=True) for k, p in heads.items()}
    assert all(p is not None for p in got.values())
    client = next(p for p in got.values() if p and p.opcode == OpenVpnOpcode.P_CONTROL_HARD_RESET_CLIENT_V2)
    server = next(p for p in got.values() if p and p.opcode == OpenVpnOpcode.P_CONTROL_HARD_RESET_SERVER_V2)
    for p, payload in ((client, heads_of(heads, client)), (server, heads_of(heads, server))):
        assert p.length == len(payload) - 2  # one whole packet in the first segment
    assert control_layout(client, server=False) == "tls-auth (HMAC 20 bytes)"
    assert server.mentions(client.session_id)


def heads_of(heads: dict[tuple[str, int, str, int], bytes], p: OpenVpnPacket) -> bytes:
    return next(v for v in heads.values() if try_decode_openvpn(v, tcp=True) == p)


def test_wireguard_handshake_and_data() -> None:
    firsts = _first_datagrams("wireguard.pcap")
    msgs = {k: (try_decode_wireguard(p), len(p)) for k, p in firsts.items()}
    assert all(m is not None and m.fits(n) for m, n in msgs.values())
    inits = {k: m for k, (m, _) in msgs.items() if m and m.message_type == WireGuardType.INITIATION}
    assert inits
    for (src, dst), init in inits.items():
        resp, n = msgs[(dst, src)]
        assert resp is not None and resp.kind == "response" and n == MESSAGE_SIZES[WireGuardType.RESPONSE]
        assert resp.receiver_index == init.sender_index != 0
    data = [m for m, _ in msgs.values() if m and m.kind == "transport data"]
    assert data and all(0 < m.counter < 1 << 32 and m.receiver_index for m in data)


def test_ike_headers_fit_their_datagrams() -> None:
    firsts = _first_datagrams("ipsec_isakmp_esp.pcap")
    kinds = set()
    for (src, dst), payload in firsts.items():
        if NAT_T_PORT not in (src[1], dst[1]) and 500 not in (src[1], dst[1]):
            continue
        hdr = try_decode_ike(payload)
        assert hdr is not None and hdr.fits(len(payload)), (src, dst)
        assert hdr.non_esp_marker == (NAT_T_PORT in (src[1], dst[1]))
        assert hdr.major_version == 2 and hdr.minor_version == 0
        if hdr.exchange == "IKE_SA_INIT" and hdr.flags & 0x08:  # the initiator's first message
            assert hdr.responder_spi == bytes(8) and hdr.message_id == 0
        kinds.add(hdr.exchange)
    assert kinds == {"IKE_SA_INIT", "IKE_AUTH"}


# -- round trips of records the test builds ------------------------------------------------------


def _ovpn_bytes(p: OpenVpnPacket) -> bytes:
    packet = bytes([(p.opcode << 3) | p.key_id]) + p.session_id + p.body
    return packet if p.length is None else struct.pack(">H", p.length) + packet


@st.composite
def ovpn_packets(draw: st.DrawFn) -> OpenVpnPacket:
    tcp = draw(st.booleans())
    return OpenVpnPacket(
        opcode=draw(st.integers(0, 31)),
        key_id=draw(st.integers(0, 7)),
        session_id=draw(st.binary(min_size=8, max_size=8)),
        length=draw(st.integers(14, 1700)) if tcp else None,
        body=draw(st.binary(max_size=80)),
    )


@given(ovpn_packets())
def test_openvpn_round_trip(p: OpenVpnPacket) -> None:
    data = _ovpn_bytes(p)
    assert decode_openvpn(Cursor(data, "openvpn"), tcp=p.length is not None) == p
    assert try_decode_openvpn(data, tcp=p.length is not None) == p
    assert p.size == len(data) - (0 if p.length is None else 2)


def test_openvpn_layouts_built_by_hand() -> None:
    sid, peer = bytes(range(1, 9)), bytes(range(11, 19))
    pid = b"\x00\x00\x00\x01" + struct.pack(">I", 1_600_000_000)
    op = OpenVpnOpcode.P_CONTROL_HARD_RESET_CLIENT_V2
    assert control_layout(OpenVpnPacket(op, 0, sid, None, pid + bytes(5)), server=False) == "tls-crypt"
    for h in (16, 20, 32, 48):
        p = OpenVpnPacket(op, 0, sid, None, bytes(h) + pid + bytes(5))
        assert control_layout(p, server=False) == f"tls-auth (HMAC {h} bytes)"
    assert control_layout(OpenVpnPacket(op, 0, sid, None, bytes(5)), server=False) == "plain"
    srv = OpenVpnPacket(OpenVpnOpcode.P_CONTROL_HARD_RESET_SERVER_V2, 0, peer, None, b"\x01" + bytes(4) + sid)
    assert control_layout(srv, server=True, peer_session_id=sid) == "plain"
    assert control_layout(srv, server=True, peer_session_id=peer) == ""  # acks another session
    assert control_layout(srv, server=True) == "plain"  # no client reset seen: any session will do
    v3 = OpenVpnOpcode.P_CONTROL_HARD_RESET_CLIENT_V3
    assert control_layout(OpenVpnPacket(v3, 0, sid, None, b"\xff" * 40), server=False) == "tls-crypt-v2"
    assert control_layout(OpenVpnPacket(v3, 0, sid, None, b"\xff" * 39), server=False) == ""
    assert hmac_size_by_length(42, server=False) == 20 and hmac_size_by_length(54, server=True) == 20
    assert hmac_size_by_length(43, server=False) == 0


@st.composite
def wg_messages(draw: st.DrawFn) -> tuple[WireGuardMessage, bytes]:
    t = draw(st.sampled_from(list(WireGuardType)))
    a, b = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    counter = draw(st.integers(0, 2**64 - 1))
    tail = draw(st.binary(max_size=40))
    head = bytes([t, 0, 0, 0])
    if t == WireGuardType.INITIATION:
        return WireGuardMessage(t, a, 0, 0), head + struct.pack("<I", a) + bytes(8) + tail
    if t == WireGuardType.RESPONSE:
        return WireGuardMessage(t, a, b, 0), head + struct.pack("<II", a, b) + bytes(4) + tail
    if t == WireGuardType.COOKIE_REPLY:
        return WireGuardMessage(t, 0, b, 0), head + struct.pack("<I", b) + bytes(8) + tail
    return WireGuardMessage(t, 0, b, counter), head + struct.pack("<IQ", b, counter) + tail


@given(wg_messages())
def test_wireguard_round_trip(built: tuple[WireGuardMessage, bytes]) -> None:
    msg, data = built
    assert decode_wireguard(Cursor(data, "wireguard")) == msg
    assert try_decode_wireguard(data) == msg


def test_wireguard_fits_its_sizes() -> None:
    for t, size in MESSAGE_SIZES.items():
        m = WireGuardMessage(t, 1, 1, 0)
        assert m.fits(size) and not m.fits(size + 16) and not m.fits(size - 1)
    data = WireGuardMessage(WireGuardType.TRANSPORT_DATA, 0, 1, 0)
    assert data.fits(32) and data.fits(1440) and not data.fits(16) and not data.fits(33)


@st.composite
def ike_headers(draw: st.DrawFn) -> IkeHeader:
    return IkeHeader(
        initiator_spi=draw(st.binary(min_size=8, max_size=8).filter(lambda b: b[:4] != bytes(4))),
        responder_spi=draw(st.binary(min_size=8, max_size=8)),
        next_payload=draw(st.integers(0, 255)),
        major_version=draw(st.sampled_from([1, 2])),
        minor_version=0,
        exchange_type=draw(st.sampled_from(sorted(EXCHANGE_NAMES))),
        flags=draw(st.integers(0, 255)),
        message_id=draw(st.integers(0, 2**32 - 1)),
        length=draw(st.integers(0, 2**32 - 1)),
        non_esp_marker=draw(st.booleans()),
    )


def _ike_bytes(h: IkeHeader) -> bytes:
    return (bytes(4) if h.non_esp_marker else b"") + struct.pack(
        ">8s8sBBBBII",
        h.initiator_spi,
        h.responder_spi,
        h.next_payload,
        (h.major_version << 4) | h.minor_version,
        h.exchange_type,
        h.flags,
        h.message_id,
        h.length,
    )


@given(ike_headers(), st.binary(max_size=20))
def test_ike_round_trip(h: IkeHeader, tail: bytes) -> None:
    data = _ike_bytes(h) + tail
    assert decode_ike(Cursor(data, "ike")) == h
    assert try_decode_ike(data) == h
    assert h.fits(h.length + (4 if h.non_esp_marker else 0))


@given(
    st.integers(1, 2**32 - 1).filter(lambda s: s >> 24 != 0xFF),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=8, max_size=8),
)
def test_esp_round_trip(spi: int, seq: int, rest: bytes) -> None:
    assert try_decode_esp_in_udp(struct.pack(">II", spi, seq) + rest) == EspHeader(spi, seq)


# -- any bytes ----------------------------------------------------------------------------------

STRICT: dict[str, Callable[[bytes], object]] = {
    "openvpn-udp": lambda b: decode_openvpn(Cursor(b, "openvpn"), tcp=False),
    "openvpn-tcp": lambda b: decode_openvpn(Cursor(b, "openvpn"), tcp=True),
    "wireguard": lambda b: decode_wireguard(Cursor(b, "wireguard")),
    "ike": lambda b: decode_ike(Cursor(b, "ike")),
}
LENIENT: dict[str, Callable[[bytes], object]] = {
    "openvpn-udp": lambda b: try_decode_openvpn(b, tcp=False),
    "openvpn-tcp": lambda b: try_decode_openvpn(b, tcp=True),
    "wireguard": try_decode_wireguard,
    "ike": try_decode_ike,
}


def _check_any(name: str, data: bytes) -> None:
    lenient = LENIENT[name](data)
    try:
        strict = STRICT[name](data)
    except DecodeError as exc:
        assert exc.reason.split(".")[0] in ("openvpn", "wireguard", "ike"), exc.reason
        assert lenient is None, (name, data.hex())
        return
    assert lenient is None or lenient == strict


@pytest.mark.parametrize("name", sorted(STRICT))
@given(data=st.binary(max_size=120))
@example(data=b"")
@example(data=b"\x00\x0e" + bytes(9))
@example(data=b"\x01\x00\x00\x00" + bytes(12))
@example(data=bytes(4) + b"\x11" * 17 + b"\x20\x22" + bytes(9))
def test_any_bytes(name: str, data: bytes) -> None:
    """A record, None or a DecodeError of the protocol's own layer: never another exception."""
    _check_any(name, data)
    try_decode_esp_in_udp(data)
    if name.startswith("openvpn"):
        # the cheap test never turns away a hard reset the decoder would give
        tcp = name == "openvpn-tcp"
        p = try_decode_openvpn(data, tcp=tcp)
        if p is not None and p.key_id == 0 and p.opcode in CLIENT_HARD_RESETS | SERVER_HARD_RESETS:
            assert first_byte_is_hard_reset(data, tcp=tcp)


REAL = {
    "openvpn-udp": ("openvpn.pcap", None),
    "openvpn-tcp": ("443-opvn.pcap", None),
    "wireguard": ("wireguard.pcap", None),
    "ike": ("ipsec_isakmp_esp.pcap", None),
}


@pytest.fixture(scope="module")
def samples() -> dict[str, list[bytes]]:
    out = {}
    for name, (capture, _) in REAL.items():
        path = corpus_file(capture)
        if name == "openvpn-tcp":
            out[name] = sorted(first_payloads(path).values())
        else:
            out[name] = sorted({p for _s, _d, p in udp_datagrams(path) if p})[:50]
    return out


@pytest.mark.parametrize("name", sorted(REAL))
@given(cut=st.integers(0, 2000), tail=st.binary(max_size=64), pick=st.integers(0, 10**6))
def test_real_sample_cut_and_extended(
    samples: dict[str, list[bytes]], name: str, cut: int, tail: bytes, pick: int
) -> None:
    """A real first payload cut anywhere, random bytes appended: record, None or DecodeError."""
    pool = samples[name]
    sample = pool[pick % len(pool)]
    _check_any(name, sample[: cut % (len(sample) + 1)] + tail)


# -- the SOCKS opening ---------------------------------------------------------------------------


@given(client=st.binary(max_size=16), server=st.binary(max_size=12))
@example(client=b"\x05\x01\x00", server=b"\x05\x00")
@example(client=b"\x05\x02\x00\x02", server=b"\x05\x02")
@example(client=b"\x05\x01\x00\x03\x00\x00\x50", server=b"\x05\x00\x00\x03\x00")
@example(client=b"\x04\x01\x00\x50\x00\x00\x00\x01", server=b"")
def test_socks_opening_never_raises_and_agrees_with_the_decoder(client: bytes, server: bytes) -> None:
    op = socks_opening(client, server)
    assert op.version == (client[0] if client else None)
    assert opens_like_socks5(client) == (op.version == 5)
    if op.greeting is not None:
        assert try_decode_socks(client, from_client=True) == op.greeting
        assert op.greeting == Socks5Greeting(tuple(client[2:]), len(client))
    elif len(client) >= 3 and client[0] == 5 and client[1] and len(client) == 2 + client[1]:
        pytest.fail("a greeting alone was not recognised")
    if op.selection_alone:
        assert (
            op.selection == try_decode_socks(server, from_client=False) == Socks5MethodSelection(server[1], 2)
        )
    assert (op.selection is not None) == (len(server) >= 2 and server[0] == 5)


# -- PPTP, tinc, Tailscale disco ---------------------------------------------------------------


def test_pptp_control_connection_in_the_corpus() -> None:
    heads = first_payloads(corpus_file("pptp.pcap"))
    got = [h for p in heads.values() if (h := try_decode_pptp(p)) is not None]
    assert got, "no PPTP control message"
    request = min(got, key=lambda h: h.control_type or 0)
    assert request.control_type == 1 and request.length == 156  # Start-Control-Connection-Request
    assert all(h.message_type == CONTROL_MESSAGE for h in got)


def test_tinc_id_requests_in_the_corpus() -> None:
    heads = first_payloads(corpus_file("tinc.pcap"))
    ids = [i for p in heads.values() if (i := try_decode_tinc_id(p)) is not None]
    assert len(ids) >= 2 and {i.major for i in ids} == {PROTOCOL_MAJOR}
    assert all(i.name for i in ids)


def test_tailscale_disco_in_the_corpus() -> None:
    firsts = _first_datagrams("tailscale.pcap")
    discos = [d for p in firsts.values() if (d := try_decode_disco(p)) is not None]
    assert discos and all(d.sender_key is not None and len(d.sender_key) == 32 for d in discos)


@given(data=st.binary(max_size=80))
@example(data=b"\x00\x9c\x00\x01\x1a\x2b\x3c\x4d\x00\x01")
@example(data=b"\x00\x9c\x00\x01\x1a\x2b\x3c\x4d")
@example(data=b"0 node_1 17.7\n")
@example(data=b"0 node_1 17\n")
@example(data=b"0 node_1 17.")
@example(data=DISCO_MAGIC + bytes(31))
def test_small_decoders_take_any_bytes(data: bytes) -> None:
    """Record or None, never an exception; and a record only for the shape the protocol has."""
    pptp = try_decode_pptp(data)
    assert (pptp is not None) == (
        len(data) >= 8 and data[2:4] == b"\x00\x01" and data[4:8] == bytes.fromhex("1a2b3c4d")
    )
    if pptp is not None:
        assert pptp.length == int.from_bytes(data[:2], "big")
        assert pptp.control_type == (int.from_bytes(data[8:10], "big") if len(data) >= 10 else None)
    tinc = try_decode_tinc_id(data)
    if tinc is not None:
        head = f"0 {tinc.name} {tinc.major}".encode()
        assert data.startswith(head) and data[len(head) : len(head) + 1] in (b"\n", b".")
        assert (tinc.minor is None) == (data[len(head) : len(head) + 1] == b"\n")
    disco = try_decode_disco(data)
    assert (disco is not None) == data.startswith(DISCO_MAGIC)
    assert starts_ppp_frame(data) == data.startswith(b"\xff\x03")


@given(
    name=st.from_regex(r"[A-Za-z0-9_]{1,64}", fullmatch=True),
    minor=st.none() | st.integers(0, 10**6),
    tail=st.binary(max_size=20),
)
def test_tinc_round_trip(name: str, minor: int | None, tail: bytes) -> None:
    line = f"0 {name} 17" + ("" if minor is None else f".{minor}") + "\n"
    assert try_decode_tinc_id(line.encode() + tail) == TincIdRequest(name, 17, minor)
    assert try_decode_tinc_id(line.encode()[:-1]) is None  # cut before its newline
