"""Fuzzing the L2–L4 walk and the packet loop with cut and garbled real frames.

Property (STYLE.md): a prefix of a real frame followed by random bytes either decodes or raises
:class:`~sluice.errors.DecodeError`; nothing else escapes. The same frames through a strict
:class:`~sluice.flows.loop.PacketLoop` (flow table and application inspectors included) never
raise at all: every refusal is counted.
"""

from __future__ import annotations

import random
from functools import cache

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.flows.loop import PacketLoop
from sluice.flows.record import FlowRecord
from sluice.synth.payloads import QUIC_V1, dns_query, dns_tcp, quic_exchange, tls_exchange
from sluice.synth.sessions import TcpSession, UdpExchange
from sluice.wire.frame import LinkType, RawPacket
from sluice.wire.packet import Packet, decode_packet

from .test_l2l4 import C4, C6, MALFORMED, S4, S6, SAMPLES, tunnel_sessions

LINKTYPES = [int(lt) for lt in LinkType] + [147]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@cache
def app_frames() -> list[tuple[int, bytes]]:
    """Frames carrying real application bytes: TLS, QUIC, DNS over TCP, HTTP in tunnels."""
    out: list[tuple[int, bytes]] = []
    tls = tls_exchange("fuzz.example", version="1.2")
    s = TcpSession((C4, 50000), (S4, 443), start_ts=1.0, rng=random.Random(1))
    for from_client, data in tls.messages[:3]:
        (s.client_send if from_client else s.server_send)(data)
    out += [(s.linktype, fr) for _ts, fr in s.packets if len(fr) > 80]
    q = quic_exchange("fuzz.example", version=QUIC_V1)
    u = UdpExchange((C6, 50001), (S6, 443), start_ts=1.0)
    u.client_send(q.datagrams[0][2])
    d = TcpSession((C4, 50002), (S4, 53), start_ts=1.0, rng=random.Random(2))
    d.client_send(dns_tcp(dns_query("fuzz.example", txid=7)))
    out += [(u.linktype, fr) for _ts, fr in u.packets]
    out += [(d.linktype, fr) for _ts, fr in d.packets if len(fr) > 80]
    for sess, _text in tunnel_sessions().values():
        out += [(sess.linktype, fr) for _ts, fr in sess.packets[3:4]]
    return out


def corpus() -> list[tuple[int, bytes]]:
    """Every real frame the fuzzer starts from."""
    return (
        [(s.linktype, s.frame) for s in SAMPLES] + [(lt, fr) for _n, lt, fr, _r in MALFORMED] + app_frames()
    )


CORPUS = corpus()


def _decode_or_decode_error(linktype: int, frame: bytes) -> Packet:
    pkt = Packet()
    try:
        decode_packet(frame, linktype, pkt)
    except DecodeError as exc:
        assert exc.reason.count(".") == 1 and exc.reason == exc.reason.lower()
        assert isinstance(exc.offset, int)
    return pkt


@FUZZ
@given(which=st.integers(0, len(CORPUS) - 1), cut=st.floats(0.0, 1.0), tail=st.binary(max_size=48))
@example(which=0, cut=1.0, tail=b"")
def test_prefix_plus_random_bytes(which: int, cut: float, tail: bytes) -> None:
    linktype, frame = CORPUS[which]
    _decode_or_decode_error(linktype, frame[: int(len(frame) * cut)] + tail)


@FUZZ
@given(
    which=st.integers(0, len(CORPUS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_garbled_bytes(which: int, flips: list[tuple[int, int]]) -> None:
    linktype, frame = CORPUS[which]
    buf = bytearray(frame or b"\x00")  # the corpus holds one empty frame (raw.truncated)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    _decode_or_decode_error(linktype, bytes(buf))


@FUZZ
@given(which=st.integers(0, len(CORPUS) - 1), linktype=st.sampled_from(LINKTYPES))
def test_any_link_type(which: int, linktype: int) -> None:
    _decode_or_decode_error(linktype, CORPUS[which][1])


@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(
    picks=st.lists(
        st.tuples(st.integers(0, len(CORPUS) - 1), st.floats(0.0, 1.0), st.binary(max_size=16)),
        min_size=1,
        max_size=12,
    )
)
def test_loop_never_raises_on_damaged_frames(picks: list[tuple[int, float, bytes]]) -> None:
    loop = PacketLoop(strict=True)  # strict: anything but a counted DecodeError is re-raised
    out: list[FlowRecord] = []
    for i, (which, cut, tail) in enumerate(picks):
        linktype, frame = CORPUS[which]
        data = frame[: int(len(frame) * cut)] + tail
        loop.process(RawPacket(1.0 + i, linktype, data, len(data)), out)
    summary = loop.finish(out)
    assert summary.packets == len(picks)
    dropped = sum(n for reason, n in summary.anomalies.items() if reason.split(".")[0] in _L2L4_LAYERS)
    assert summary.ip_packets + summary.non_ip + dropped == summary.packets
    assert "internal.error" not in summary.anomalies


_L2L4_LAYERS = {
    "ethernet",
    "vlan",
    "mpls",
    "pppoe",
    "sll",
    "sll2",
    "null",
    "raw",
    "link",
    "ipv4",
    "ipv6",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "gre",
    "tunnel",
}


def test_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 90
    assert {lt for lt, _ in CORPUS} >= {int(lt) for lt in LinkType} | {147}
