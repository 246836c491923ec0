"""Packet encoders: published vectors, properties, and tshark's verdict on every layer."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.io.pcap_writer import PcapngWriter
from sluice.io.source import LinkType
from sluice.synth.packets import (
    EtherType,
    IpProto,
    TcpFlag,
    bsd_null,
    ethernet,
    gre,
    gtpu,
    icmp_echo,
    icmpv6_echo,
    internet_checksum,
    ip_packet,
    ipv4,
    ipv4_fragments,
    ipv6,
    ipv6_dest_opts,
    ipv6_fragment_header,
    ipv6_fragments,
    ipv6_hop_by_hop,
    ipv6_routing,
    linux_sll,
    linux_sll2,
    tcp,
    teredo,
    udp,
    vxlan,
)
from tests.synth.capture_util import needs_tshark, tshark_fields

C, S = "10.0.0.1", "192.0.2.7"
C6, S6 = "2001:db8::1", "2001:db8::2"
M1, M2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
T1, T2 = "172.16.0.1", "172.16.0.2"


def reference_checksum(data: bytes) -> int:
    """RFC 1071 §4.1, word by word with end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_numerical_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement), checksum 220d
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_ipv4_header_checksum_of_a_known_header() -> None:
    # a classic captured header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7
    pkt = ipv4("192.168.0.1", "192.168.0.199", IpProto.UDP, bytes(0x73 - 20), ttl=64, ident=0)
    assert pkt[:20].hex() == "450000730000400040 11b861c0a80001c0a800c7".replace(" ", "")


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_checksum_matches_rfc1071_reference(data: bytes) -> None:
    assert internet_checksum(data) == reference_checksum(data)


@settings(max_examples=100)
@given(st.binary(max_size=1500), st.integers(0, 65535), st.integers(0, 65535), st.booleans())
def test_transport_checksums_verify_to_zero(payload: bytes, sport: int, dport: int, v6: bool) -> None:
    src, dst = (C6, S6) if v6 else (C, S)
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    seg = tcp(sport, dport, 1, 2, TcpFlag.ACK, payload, src_ip=src, dst_ip=dst)
    dgram = udp(sport, dport, payload, src_ip=src, dst_ip=dst)
    assert dgram[6:8] != b"\x00\x00"  # zero means "no checksum" in UDP
    for proto, l4 in ((6, seg), (17, dgram)):
        if v6:
            pseudo = s + d + struct.pack("!IxxxB", len(l4), proto)
        else:
            pseudo = s + d + struct.pack("!BBH", 0, proto, len(l4))
        assert reference_checksum(pseudo + l4) == 0


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=6000), st.integers(68, 1500), st.integers(0, 65535))
def test_ipv4_fragments_reassemble(payload: bytes, mtu: int, ident: int) -> None:
    frags = ipv4_fragments(C, S, IpProto.UDP, payload, mtu=mtu, ident=ident)
    data = bytearray()
    for i, frag in enumerate(frags):
        assert len(frag) <= mtu or len(frags) == 1
        assert internet_checksum(frag[:20]) == 0
        total, ident_f, flags = struct.unpack_from("!HHH", frag, 2)
        assert total == len(frag) and ident_f == ident
        offset = (flags & 0x1FFF) * 8
        assert offset == len(data)
        assert bool(flags & 0x2000) == (i < len(frags) - 1)
        data += frag[20:]
    assert bytes(data) == payload


@settings(max_examples=50)
@given(st.binary(min_size=1, max_size=5000), st.integers(1280, 1500))
def test_ipv6_fragments_reassemble(payload: bytes, mtu: int) -> None:
    frags = ipv6_fragments(C6, S6, IpProto.UDP, payload, mtu=mtu, ident=9)
    data = bytearray()
    for i, frag in enumerate(frags):
        assert len(frag) <= mtu and frag[6] == IpProto.FRAGMENT
        nh, _, off_m, ident = struct.unpack_from("!BBHI", frag, 40)
        assert nh == IpProto.UDP and ident == 9
        assert off_m & 0xFFF8 == len(data) and bool(off_m & 1) == (i < len(frags) - 1)
        data += frag[48:]
    assert bytes(data) == payload


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        ethernet("02:00:00:00:00", M2, EtherType.IPV4, b"")
    with pytest.raises(ValueError):
        ethernet(M1, M2, EtherType.IPV4, b"", vlans=(70000,))
    with pytest.raises(ValueError):
        ethernet(M1, M2, EtherType.IPV4, b"", mpls=(1 << 20,))
    with pytest.raises(ValueError):
        ipv4(C6, S6, 6, b"")
    with pytest.raises(ValueError):
        ipv6(C, S, 6, b"")
    with pytest.raises(ValueError):
        tcp(1, 2, 0, 0, 0, src_ip=C, dst_ip=S6)
    with pytest.raises(ValueError):
        tcp(1, 2, 0, 0, 0, src_ip=C, dst_ip=S, options=bytes(44))
    with pytest.raises(ValueError):
        ipv4(C, S, 6, b"", options=bytes(44))
    with pytest.raises(ValueError):
        ipv4(C, S, 6, b"", frag_offset=5)
    with pytest.raises(ValueError):
        ipv6(C6, S6, 6, b"", ext_headers=[(IpProto.DSTOPTS, b"\x00")])
    with pytest.raises(ValueError):
        ip_packet(C, S6, 6, b"")
    with pytest.raises(ValueError):
        vxlan(1 << 24, b"")
    with pytest.raises(ValueError):
        ipv4_fragments(C, S, 17, bytes(100), mtu=24)


def _syn(sport: int, src: str = C, dst: str = S) -> bytes:
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07"
    seg = tcp(sport, 443, 1000, 0, TcpFlag.SYN, b"", src_ip=src, dst_ip=dst, options=opts)
    return ip_packet(src, dst, IpProto.TCP, seg)


def _udp4(payload: bytes, sport: int, src: str = C, dst: str = S) -> bytes:
    return ipv4(src, dst, IpProto.UDP, udp(sport, 40002, payload, src_ip=src, dst_ip=dst))


def _udp6(payload: bytes, sport: int) -> bytes:
    return ipv6(C6, S6, IpProto.UDP, udp(sport, 40002, payload, src_ip=C6, dst_ip=S6))


def _eth(pkt: bytes, **kw: tuple[int, ...]) -> bytes:
    et = EtherType.IPV6 if pkt[0] >> 4 == 6 else EtherType.IPV4
    return ethernet(M1, M2, et, pkt, **kw)


def _zoo() -> list[tuple[int, bytes, str]]:
    """(interface, frame, protocol stack tshark must report)."""
    big4 = udp(40010, 40002, bytes(range(256)) * 12, src_ip=C, dst_ip=S)
    big6 = udp(40011, 40002, bytes(range(256)) * 12, src_ip=C6, dst_ip=S6)
    ext = [
        ipv6_hop_by_hop(),
        ipv6_dest_opts(b"\x1e\x02\x00\x00"),
        ipv6_routing([S6, "2001:db8::99"], segments_left=0),
        ipv6_fragment_header(0, False, 99),
    ]
    syn6 = tcp(40012, 443, 1, 0, TcpFlag.SYN, b"", src_ip=C6, dst_ip=S6)
    echo6 = ipv6(C6, S6, IpProto.ICMPV6, icmpv6_echo(1, 2, b"ping6", src_ip=C6, dst_ip=S6))
    inner_eth = ethernet(M1, M2, EtherType.IPV4, _syn(40015))
    zoo: list[tuple[int, bytes, str]] = [
        (0, _eth(_syn(40001)), "eth:ethertype:ip:tcp"),
        (0, _eth(_udp4(b"hello", 40002), vlans=(100,)), "eth:ethertype:vlan:ethertype:ip:udp:data"),
        (
            0,
            _eth(_udp6(b"hello", 40003), vlans=(200, 10)),
            "eth:ethertype:ieee8021ad:ethertype:vlan:ethertype:ipv6:udp:data",
        ),
        (
            0,
            _eth(ipv4(C, S, IpProto.ICMP, icmp_echo(7, 1, b"ping")), mpls=(100, 200)),
            "eth:ethertype:mpls:ip:icmp:data",
        ),
        (
            0,
            _eth(ipv4(C, S, 17, udp(40004, 40002, b"x", src_ip=C, dst_ip=S), options=b"\x94\x04")),
            "eth:ethertype:ip:udp:data",
        ),
    ]
    frags4 = ipv4_fragments(C, S, IpProto.UDP, big4, mtu=1500, ident=77)
    for i, f in enumerate(frags4):
        last = i == len(frags4) - 1
        zoo.append((0, _eth(f), "eth:ethertype:ip:udp:data" if last else "eth:ethertype:ip:data"))
    zoo.append(
        (
            0,
            _eth(ipv6(C6, S6, IpProto.TCP, syn6, ext_headers=ext)),
            "eth:ethertype:ipv6:ipv6.hopopts:ipv6.dstopts:ipv6.routing:ipv6.fraghdr:tcp",
        )
    )
    frags6 = ipv6_fragments(C6, S6, IpProto.UDP, big6, mtu=1280, ident=5)
    for i, f in enumerate(frags6):
        tail = "udp:data" if i == len(frags6) - 1 else "data"
        zoo.append((0, _eth(f), f"eth:ethertype:ipv6:ipv6.fraghdr:{tail}"))
    zoo += [
        (0, _eth(echo6), "eth:ethertype:ipv6:icmpv6:data"),
        (
            0,
            _eth(ipv4(T1, T2, IpProto.GRE, gre(0x0800, _syn(40013), key=7, seq=1, checksum=True))),
            "eth:ethertype:ip:gre:ip:tcp",
        ),
        (
            0,
            _eth(ipv4(T1, T2, IpProto.GRE, gre(EtherType.TEB, inner_eth, key=9))),
            "eth:ethertype:ip:gre:eth:ethertype:ip:tcp",
        ),
        (
            0,
            _eth(_udp_to(4789, vxlan(5001, ethernet(M1, M2, EtherType.IPV4, _syn(40014))))),
            "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp",
        ),
        (
            0,
            _eth(_udp_to(3544, teredo(echo6, origin=("198.51.100.1", 40000)))),
            "eth:ethertype:ip:udp:teredo:ipv6:icmpv6",
        ),
        (
            0,
            _eth(_udp_to(2152, gtpu(0x1234, _udp4(b"user", 40016), seq=3))),
            "eth:ethertype:ip:udp:gtp:ip:udp:data",
        ),
        (0, _eth(_udp_to(2152, gtpu(0x99, _syn(40017)))), "eth:ethertype:ip:udp:gtp:ip:tcp"),
        (0, _eth(ipv4(T1, T2, IpProto.IPIP, _syn(40018))), "eth:ethertype:ip:ip:tcp"),
        (0, _eth(ipv4(T1, T2, IpProto.IPV6, _syn(40019, C6, S6))), "eth:ethertype:ip:ipv6:tcp"),
        (1, _syn(40020), "raw:ip:tcp"),
        (1, _udp6(b"raw6", 40021), "raw:ipv6:udp:data"),
        (2, linux_sll(0x0800, _syn(40022), pkttype=4), "sll:ethertype:ip:tcp"),
        (3, linux_sll2(0x86DD, _udp6(b"sll2", 40023), ifindex=3), "sll:ethertype:ipv6:udp:data"),
        (4, bsd_null(2, _udp4(b"null", 40024)), "null:ip:udp:data"),
        (5, bsd_null(30, _udp6(b"loop", 40025), big_endian=True), "null:ipv6:udp:data"),
    ]
    return zoo


def _udp_to(dport: int, payload: bytes) -> bytes:
    return ipv4(T1, T2, IpProto.UDP, udp(50000, dport, payload, src_ip=T1, dst_ip=T2))


@needs_tshark
def test_every_encoder_is_accepted_by_tshark(tmp_path: Path) -> None:
    zoo = _zoo()
    path = tmp_path / "zoo.pcapng"
    linktypes = (
        LinkType.ETHERNET,
        LinkType.RAW,
        LinkType.LINUX_SLL,
        LinkType.LINUX_SLL2,
        LinkType.NULL,
        LinkType.LOOP,
    )
    with path.open("wb") as fh, PcapngWriter(fh) as w:
        for lt in linktypes:
            w.add_interface(lt)
        for i, (iface, frame, _) in enumerate(zoo):
            w.write(iface, 1000.0 + i, frame)
    statuses = (
        "ip.checksum.status",
        "tcp.checksum.status",
        "udp.checksum.status",
        "icmp.checksum.status",
        "icmpv6.checksum.status",
        "gre.checksum.status",
    )
    rows = tshark_fields(path, ("frame.protocols", "_ws.expert.severity", *statuses))
    assert len(rows) == len(zoo)
    for (_, _, stack), row in zip(zoo, rows, strict=True):
        assert row["frame.protocols"] == stack
        for f in statuses:  # 1 = good; every checksum present must verify
            assert set(filter(None, row[f].split(","))) <= {"1"}, (stack, f, row[f])
        # severities: 2097152 chat, 4194304 note; warnings (6291456) and errors must not occur
        severities = {int(x) for x in row["_ws.expert.severity"].split(",") if x}
        assert all(s < 6291456 for s in severities), (stack, severities)
    checked = tshark_fields(path, statuses)
    assert sum(1 for r in checked for f in statuses if r[f]) > 40
