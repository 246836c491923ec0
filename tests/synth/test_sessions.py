"""Session builders: tshark's TCP analysis and reassembly must find nothing wrong."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest

from sluice.io.source import LinkType
from sluice.synth.sessions import (
    EthernetFraming,
    Framing,
    LinuxSllFraming,
    NullFraming,
    RawIpFraming,
    TcpSession,
    TunnelFraming,
    UdpExchange,
)
from tests.synth.capture_util import needs_tshark, tshark_fields, write_sessions

START = 1_720_000_000.0


def payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


TCP_FIELDS = (
    "tcp.stream",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq",
    "tcp.len",
    "tcp.payload",
    "tcp.flags.str",
    "tcp.analysis.flags",
    "tcp.analysis.out_of_order",
    "tcp.analysis.lost_segment",
    "tcp.checksum.status",
    "frame.time_epoch",
)


def reassemble(rows: list[dict[str, str]]) -> dict[tuple[str, str], bytes]:
    """(stream, source port) -> bytes placed at their relative sequence numbers."""
    parts: dict[tuple[str, str], dict[int, bytes]] = defaultdict(dict)
    for r in rows:
        if r["tcp.len"] and int(r["tcp.len"]):
            parts[(r["tcp.stream"], r["tcp.srcport"])][int(r["tcp.seq"])] = bytes.fromhex(r["tcp.payload"])
    out = {}
    for key, segs in parts.items():
        data = bytearray()
        for seq in sorted(segs):
            assert seq == len(data) + 1, f"gap or overlap at {seq} in {key}"
            data += segs[seq]
        out[key] = bytes(data)
    return out


def conversation(s: TcpSession, seed: int, *, big: int = 60_000) -> tuple[bytes, bytes]:
    req1, resp1 = payload(3000, seed), payload(big, seed + 1)
    req2, resp2 = payload(500, seed + 2), payload(10, seed + 3)
    s.client_send(req1)
    s.server_send(resp1)
    s.client_send(req2)
    s.server_send(resp2)
    s.close()
    return req1 + req2, resp1 + resp2


@needs_tshark
def test_tcp_session_is_clean_and_reassembles(tmp_path: Path) -> None:
    s = TcpSession(("10.0.0.1", 40001), ("192.0.2.7", 443), start_ts=START, rtt_s=0.04)
    c2s, s2c = conversation(s, 1)
    path = tmp_path / "tcp.pcapng"
    write_sessions(path, [s])
    rows = tshark_fields(path, TCP_FIELDS)
    assert len(rows) == s.packet_count == s.packets_c2s + s.packets_s2c
    assert {r["tcp.stream"] for r in rows} == {"0"}
    assert [r["tcp.analysis.flags"] for r in rows] == [""] * len(rows)
    assert {r["tcp.checksum.status"] for r in rows} == {"1"}
    flags = [r["tcp.flags.str"].replace("·", "") for r in rows]
    assert flags[:3] == ["S", "AS", "A"]
    assert flags[-3:] == ["AF", "AF", "A"]
    data = reassemble(rows)
    assert data[("0", "40001")] == c2s
    assert data[("0", "443")] == s2c
    assert (s.bytes_c2s, s.bytes_s2c) == (len(c2s), len(s2c))
    times = [float(r["frame.time_epoch"]) for r in rows]
    assert times == sorted(times)
    # the SYN-ACK and the first answer are one RTT behind the client packets that caused them
    assert times[1] - times[0] == pytest.approx(0.04, abs=1e-6)
    first_server_data = next(
        float(r["frame.time_epoch"]) for r in rows if r["tcp.srcport"] == "443" and r["tcp.len"] != "0"
    )
    last_request = max(
        float(r["frame.time_epoch"]) for r in rows[:10] if r["tcp.srcport"] == "40001" and r["tcp.len"] != "0"
    )
    assert first_server_data >= last_request + 0.04


@needs_tshark
def test_out_of_order_segments_are_seen_as_such(tmp_path: Path) -> None:
    s = TcpSession(("10.0.0.1", 40002), ("192.0.2.7", 80), start_ts=START, rtt_s=0.02)
    s.client_send(b"GET / HTTP/1.1\r\n\r\n")
    body = payload(5 * 1448, 9)
    s.server_send(body, order=[0, 2, 1, 3, 4])
    s.close("server")
    path = tmp_path / "ooo.pcapng"
    write_sessions(path, [s])
    rows = tshark_fields(path, TCP_FIELDS)
    ooo = [r for r in rows if r["tcp.analysis.out_of_order"]]
    lost = [r for r in rows if r["tcp.analysis.lost_segment"]]
    assert len(ooo) == 1 and len(lost) == 1
    assert int(ooo[0]["tcp.seq"]) == 1 + 1448  # segment 1 arrives after segment 2
    assert reassemble(rows)[("0", "80")] == body


FRAMINGS: list[tuple[str, Framing, bool]] = [
    ("eth", EthernetFraming(), False),
    ("vlan", EthernetFraming(vlans=(7,)), False),
    ("qinq-mpls", EthernetFraming(vlans=(300, 7), mpls=(16,)), False),
    ("raw", RawIpFraming(), False),
    ("raw6", RawIpFraming(), True),
    ("sll", LinuxSllFraming(1), False),
    ("sll2", LinuxSllFraming(2), True),
    ("null", NullFraming(), True),
    ("gre", TunnelFraming(EthernetFraming(), "gre", "172.16.0.1", "172.16.0.2", key=5), False),
    ("vxlan", TunnelFraming(EthernetFraming(), "vxlan", "172.16.0.1", "172.16.0.2", key=9), False),
    ("gtpu", TunnelFraming(EthernetFraming(), "gtpu", "172.16.0.1", "172.16.0.2", key=77), False),
    ("ipip", TunnelFraming(EthernetFraming(), "ipip", "172.16.0.1", "172.16.0.2"), False),
    ("6in4", TunnelFraming(RawIpFraming(), "ipip", "172.16.0.1", "172.16.0.2"), True),
    ("teredo", TunnelFraming(EthernetFraming(), "teredo", "172.16.0.1", "172.16.0.2"), True),
]


@needs_tshark
def test_every_framing_carries_clean_tcp(tmp_path: Path) -> None:
    sessions = []
    expected = {}
    for i, (_, framing, v6) in enumerate(FRAMINGS):
        client = ("2001:db8::1" if v6 else "10.0.0.1", 41000 + i)
        server = ("2001:db8::2" if v6 else "192.0.2.7", 443)
        s = TcpSession(client, server, start_ts=START + i, rtt_s=0.01, framing=framing, mss=1220)
        expected[str(41000 + i)] = conversation(s, 100 + i, big=8000)
        sessions.append(s)
    path = tmp_path / "framings.pcapng"
    write_sessions(path, sessions)
    rows = tshark_fields(path, (*TCP_FIELDS, "frame.protocols"))
    assert len(rows) == sum(s.packet_count for s in sessions)
    assert [r["tcp.analysis.flags"] for r in rows] == [""] * len(rows)
    assert {r["tcp.checksum.status"] for r in rows} == {"1"}
    data = reassemble(rows)
    streams = {r["tcp.srcport"]: r["tcp.stream"] for r in rows if r["tcp.srcport"] != "443"}
    for port, (c2s, s2c) in expected.items():
        assert data[(streams[port], port)] == c2s
        assert data[(streams[port], "443")] == s2c
    stacks = {r["tcp.srcport"]: r["frame.protocols"] for r in rows if r["tcp.srcport"] != "443"}
    assert stacks["41002"].startswith("eth:ethertype:ieee8021ad:ethertype:vlan:ethertype:mpls:ip")
    assert stacks["41008"].startswith("eth:ethertype:ip:gre:ip:tcp")
    assert stacks["41009"].startswith("eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp")
    assert stacks["41010"].startswith("eth:ethertype:ip:udp:gtp:ip:tcp")
    assert stacks["41012"].startswith("raw:ip:ipv6:tcp")
    assert stacks["41013"].startswith("eth:ethertype:ip:udp:teredo:ipv6:tcp")


@needs_tshark
def test_udp_fragmented_datagrams_reassemble(tmp_path: Path) -> None:
    big4, big6 = payload(4000, 5), payload(3000, 6)
    u4 = UdpExchange(("10.0.0.1", 42000), ("192.0.2.7", 42001), start_ts=START, mtu=1500)
    u4.client_send(b"question")
    u4.server_send(big4)
    u6 = UdpExchange(("2001:db8::1", 42002), ("2001:db8::2", 42003), start_ts=START, mtu=1280)
    u6.client_send(b"question")
    u6.server_send(big6)
    assert u4.packet_count == 1 + 3 and u6.packet_count == 1 + 3
    path = tmp_path / "frag.pcapng"
    write_sessions(path, [u4, u6])
    rows = tshark_fields(path, ("udp.srcport", "data.data", "udp.checksum.status", "ip.checksum.status"))
    got = {r["udp.srcport"]: bytes.fromhex(r["data.data"]) for r in rows if r["udp.srcport"]}
    assert got["42001"] == big4 and got["42003"] == big6
    assert got["42000"] == got["42002"] == b"question"
    assert {r["udp.checksum.status"] for r in rows if r["udp.srcport"]} == {"1"}


def test_session_rules() -> None:
    s = TcpSession(("10.0.0.1", 1), ("10.0.0.2", 2), start_ts=START)
    with pytest.raises(ValueError, match="permutation"):
        s.client_send(bytes(5000), order=[0, 0, 1, 2])
    s.client_send(b"x")
    with pytest.raises(ValueError):
        s.open()
    s.reset()
    with pytest.raises(ValueError, match="closed"):
        s.server_send(b"y")
    with pytest.raises(ValueError):
        s.close()
    with pytest.raises(ValueError, match="famil"):
        TcpSession(("10.0.0.1", 1), ("2001:db8::1", 2), start_ts=START)
    with pytest.raises(ValueError, match="Teredo"):
        t = TunnelFraming(RawIpFraming(), "teredo", "10.0.0.1", "10.0.0.2")
        UdpExchange(("10.0.0.1", 1), ("10.0.0.2", 2), start_ts=START, framing=t).client_send(b"")


def test_sessions_are_reproducible_from_their_random_source() -> None:
    def build(seed: int) -> list[tuple[float, bytes]]:
        s = TcpSession(("10.0.0.1", 40001), ("192.0.2.7", 443), start_ts=START, rng=random.Random(seed))
        conversation(s, 3, big=20000)
        return s.packets

    assert build(1) == build(1)
    assert build(1) != build(2)  # other ISNs
    assert [len(f) for _, f in build(1)] == [len(f) for _, f in build(2)]


def test_linktypes() -> None:
    assert TcpSession(("10.0.0.1", 1), ("10.0.0.2", 2), start_ts=0).linktype == LinkType.ETHERNET
    assert LinuxSllFraming(2).linktype == LinkType.LINUX_SLL2
    assert TunnelFraming(RawIpFraming(), "gre", "10.0.0.1", "10.0.0.2").linktype == LinkType.RAW
