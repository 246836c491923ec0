"""L2–L4 dissection: every link type, IP options and extension headers, tunnels, malformed input.

Frames are built with the project's encoders (:mod:`sluice.synth.packets`,
:mod:`sluice.synth.sessions`); what they cannot build (PPPoE, IPv6 AH, PPTP GRE, GTP-U extension
headers, Teredo authentication) is packed here with :mod:`struct`, citing the RFC. The frame
library at the top (:data:`SAMPLES`, :data:`MALFORMED`, :func:`tunnel_sessions`) is shared with
the fuzz and batch tests.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from sluice.errors import DecodeError
from sluice.flows.loop import PacketLoop, RunSummary
from sluice.flows.record import FlowRecord
from sluice.synth import packets as P
from sluice.synth.sessions import (
    EthernetFraming,
    Framing,
    RawIpFraming,
    TcpSession,
    TunnelFraming,
    UdpExchange,
)
from sluice.wire.ethernet import decode_bsd_null, decode_ethernet, ethertype_after_mpls
from sluice.wire.frame import LinkType, RawPacket
from sluice.wire.ip import Fragment, decode_ipv4, decode_ipv6
from sluice.wire.packet import Packet, decode_packet
from sluice.wire.transport import TcpFlags, decode_tcp, decode_udp
from sluice.wire.tunnel import Inner, Tunnel, decode_gre, try_gtpu, try_teredo, try_vxlan

# --------------------------------------------------------------------------------------------
# frame library

MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"
C4, S4 = "10.9.0.1", "10.2.0.2"  # client sorts after the server: exercises orientation
C6, S6 = "2001:db8:9::1", "2001:db8:2::2"
O4C, O4S = "203.0.113.5", "192.0.2.1"  # outer (tunnel) endpoints
O6C, O6S = "2001:db8:ff::5", "2001:db8:ff::1"
SYN, ACK, PSH, FIN = int(P.TcpFlag.SYN), int(P.TcpFlag.ACK), int(P.TcpFlag.PSH), int(P.TcpFlag.FIN)
MSS_OPT = struct.pack("!BBH", 2, 4, 1460)
HTTP_GET = b"GET /index.html HTTP/1.1\r\nHost: example.org\r\n\r\n"


def ab(addr: str) -> bytes:
    """Packed form of an address."""
    return ipaddress.ip_address(addr).packed


def tcp_ip(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: int,
    payload: bytes = b"",
    *,
    seq: int = 1000,
    ack: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 or IPv6 packet carrying one TCP segment."""
    seg = P.tcp(sport, dport, seq, ack, flags, payload, src_ip=src, dst_ip=dst, options=options)
    return P.ip_packet(src, dst, P.IpProto.TCP, seg)


def udp_ip(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 or IPv6 packet carrying one UDP datagram."""
    return P.ip_packet(src, dst, P.IpProto.UDP, P.udp(sport, dport, payload, src_ip=src, dst_ip=dst))


def ethertype_of(packet: bytes) -> int:
    """EtherType for an IP packet, from its version nibble."""
    return 0x86DD if packet[0] >> 4 == 6 else 0x0800


def eth(packet: bytes, *, vlans: tuple[int, ...] = (), mpls: tuple[int, ...] = ()) -> bytes:
    """An Ethernet II frame around an IP packet."""
    return P.ethernet(MAC_C, MAC_S, ethertype_of(packet), packet, vlans, mpls)


def eth_raw_type(ethertype: int, rest: bytes) -> bytes:
    """An Ethernet II header with any EtherType, followed by ``rest``."""
    return P.mac_bytes(MAC_S) + P.mac_bytes(MAC_C) + struct.pack("!H", ethertype) + rest


def pppoe(packet: bytes, session: int = 0x1234) -> bytes:
    """PPPoE session frame (RFC 2516 §4: VER=1, TYPE=1, CODE=0) with PPP protocol (RFC 1661 §2)."""
    ppp = struct.pack("!H", 0x0057 if packet[0] >> 4 == 6 else 0x0021) + packet
    return eth_raw_type(0x8864, struct.pack("!BBHH", 0x11, 0x00, session, len(ppp)) + ppp)


def ipv6_ah(src: str, dst: str, next_header: int, payload: bytes, spi: int = 0x100) -> bytes:
    """IPv6 with an Authentication Header (RFC 4302 §2): 12-byte ICV, Payload Len = 6 - 2 words."""
    ah = struct.pack("!BBHII", next_header, 4, 0, spi, 1) + bytes(range(12))
    return P.ipv6(src, dst, 51, ah + payload)


def pptp_gre(ppp: bytes, call_id: int = 7, seq: int = 1, ack: int = 0) -> bytes:
    """Enhanced GRE of PPTP (RFC 2637 §4.1): K, S and A set, version 1, protocol 0x880B."""
    head = struct.pack("!HHHHII", 0x3081, 0x880B, len(ppp), call_id, seq, ack)
    return head + ppp


def gtpu_ext(teid: int, inner: bytes, *, seq: int = 9) -> bytes:
    """GTP-U G-PDU with E and S set and a PDU Session Container extension (TS 29.281 §5.2).

    The extension is one 4-byte unit: length 1, two content bytes (PDU type, QFI), next type 0.
    """
    opt = struct.pack("!HBB", seq, 0, 0x85)
    ext = bytes([1, 0x00, 0x09, 0x00])
    body = opt + ext + inner
    return struct.pack("!BBHI", 0x36, 0xFF, len(body), teid) + body


def teredo_auth(inner6: bytes, origin: tuple[str, int]) -> bytes:
    """Teredo authentication indicator (RFC 4380 §5.1.1), then origin indication, then IPv6."""
    client_id, auth = b"cli", b"\xaa\xbb"
    head = struct.pack("!BBBB", 0, 1, len(client_id), len(auth)) + client_id + auth
    head += b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00"  # nonce, confirmation
    return head + P.teredo(inner6, origin=(origin[0], origin[1]))


def outer4(proto: int, payload: bytes, *, src: str = O4C, dst: str = O4S) -> bytes:
    """An outer IPv4 packet (tunnel carrier)."""
    return P.ipv4(src, dst, proto, payload, df=False)


def outer_udp4(sport: int, dport: int, payload: bytes, *, src: str = O4C, dst: str = O4S) -> bytes:
    """An outer IPv4/UDP packet (tunnel carrier)."""
    return outer4(P.IpProto.UDP, P.udp(sport, dport, payload, src_ip=src, dst_ip=dst), src=src, dst=dst)


@dataclass(frozen=True)
class Sample:
    """One real frame and what decode_packet must find in it."""

    name: str
    linktype: int
    frame: bytes
    expect: dict[str, object] = field(default_factory=dict)


INNER_TCP4 = tcp_ip(C4, S4, 50000, 443, SYN, options=MSS_OPT)
INNER_TCP6 = tcp_ip(C6, S6, 50001, 80, ACK | PSH, HTTP_GET)
INNER_UDP4 = udp_ip(C4, S4, 40000, 53, b"\x12\x34query")
T4 = {
    "ip_version": 4,
    "src": ab(C4),
    "dst": ab(S4),
    "proto": 6,
    "sport": 50000,
    "dport": 443,
    "tcp_flags": SYN,
    "payload": b"",
}
T6 = {
    "ip_version": 6,
    "src": ab(C6),
    "dst": ab(S6),
    "proto": 6,
    "sport": 50001,
    "dport": 80,
    "tcp_flags": ACK | PSH,
    "payload": HTTP_GET,
}
U4 = {
    "ip_version": 4,
    "src": ab(C4),
    "dst": ab(S4),
    "proto": 17,
    "sport": 40000,
    "dport": 53,
    "payload": b"\x12\x34query",
}


def _ipv4_with_options() -> bytes:
    # router alert (RFC 2113: 148, len 4), NOP, record route (RFC 791: 7, len 11, ptr 4, 2 slots)
    opts = b"\x94\x04\x00\x00" + b"\x01" + b"\x07\x0b\x04" + bytes(8)
    seg = P.tcp(50000, 443, 1, 0, SYN, src_ip=C4, dst_ip=S4)
    return P.ipv4(C4, S4, 6, seg, options=opts)


def _ipv6_ext_chain() -> bytes:
    seg = P.tcp(50001, 80, 1, 0, ACK | PSH, HTTP_GET, src_ip=C6, dst_ip=S6)
    hbh = P.ipv6_hop_by_hop(b"\x05\x02\x00\x00")  # router alert (RFC 2711)
    rt = P.ipv6_routing([S6, "2001:db8:3::3"])
    return P.ipv6(C6, S6, 6, seg, ext_headers=[hbh, rt, P.ipv6_dest_opts()])


def _samples() -> list[Sample]:
    v6_tcp6 = tcp_ip(C6, S6, 50001, 80, ACK | PSH, HTTP_GET)
    gtp_inner = udp_ip(C4, S4, 40000, 53, b"\x12\x34query")
    inner_eth = P.ethernet("02:00:00:00:01:01", "02:00:00:00:01:02", 0x0800, INNER_TCP4, vlans=(0x00A,))
    icmp4 = P.ipv4(C4, S4, 1, P.icmp_echo(7, 1, b"ping"))
    icmp6 = P.ipv6(C6, S6, 58, P.icmpv6_echo(7, 1, b"ping", src_ip=C6, dst_ip=S6))
    ppp = b"\xff\x03\x00\xfd" + bytes(range(40))  # PPP with MPPE-compressed payload
    return [
        Sample("ethernet", LinkType.ETHERNET, eth(INNER_TCP4), {**T4, "vlans": (), "ethertype": 0x800}),
        Sample("ethernet-ipv6", LinkType.ETHERNET, eth(INNER_TCP6), T6),
        Sample("vlan", LinkType.ETHERNET, eth(INNER_UDP4, vlans=(0x2064,)), {**U4, "vlans": (100,)}),
        Sample("qinq", LinkType.ETHERNET, eth(INNER_TCP6, vlans=(200, 0xE12C)), {**T6, "vlans": (200, 300)}),
        Sample(
            "qinq-0x9100",
            LinkType.ETHERNET,
            eth_raw_type(0x9100, struct.pack("!HH", 5, 0x8100) + struct.pack("!HH", 6, 0x0800) + INNER_TCP4),
            {**T4, "vlans": (5, 6)},
        ),
        Sample(
            "mpls",
            LinkType.ETHERNET,
            eth(INNER_UDP4, mpls=(16, 1000, 0xFFFFF)),
            {**U4, "mpls": (16, 1000, 0xFFFFF)},
        ),
        Sample(
            "mpls-ipv6",
            LinkType.ETHERNET,
            eth(INNER_TCP6, vlans=(9,), mpls=(3000,)),
            {**T6, "vlans": (9,), "mpls": (3000,)},
        ),
        Sample("pppoe", LinkType.ETHERNET, pppoe(INNER_TCP4), T4),
        Sample("pppoe-ipv6", LinkType.ETHERNET, pppoe(INNER_TCP6), T6),
        Sample("sll", LinkType.LINUX_SLL, P.linux_sll(0x0800, INNER_TCP4), T4),
        Sample("sll2", LinkType.LINUX_SLL2, P.linux_sll2(0x86DD, INNER_TCP6), T6),
        Sample("raw-ipv4", LinkType.RAW, INNER_TCP4, T4),
        Sample("raw-ipv6", LinkType.RAW, INNER_TCP6, T6),
        Sample("linktype-ipv4", LinkType.IPV4, INNER_UDP4, U4),
        Sample("linktype-ipv6", LinkType.IPV6, INNER_TCP6, T6),
        Sample("null-le-ipv4", LinkType.NULL, P.bsd_null(2, INNER_TCP4), T4),
        Sample("null-be-ipv4", LinkType.NULL, P.bsd_null(2, INNER_TCP4, big_endian=True), T4),
        Sample("null-le-ipv6-macos", LinkType.NULL, P.bsd_null(30, INNER_TCP6), T6),
        Sample("null-be-ipv6-freebsd", LinkType.NULL, P.bsd_null(28, INNER_TCP6, big_endian=True), T6),
        Sample("null-le-ipv6-linux", LinkType.NULL, P.bsd_null(10, INNER_TCP6), T6),
        Sample("loop-ipv4", LinkType.LOOP, P.bsd_null(2, INNER_UDP4, big_endian=True), U4),
        Sample("loop-ipv6-openbsd", LinkType.LOOP, P.bsd_null(24, INNER_TCP6, big_endian=True), T6),
        Sample("ipv4-options", LinkType.RAW, _ipv4_with_options(), {**T4, "payload": b""}),
        Sample("ipv6-ext-chain", LinkType.RAW, _ipv6_ext_chain(), T6),
        Sample(
            "ipv6-ah",
            LinkType.RAW,
            ipv6_ah(C6, S6, 6, P.tcp(50001, 80, 1, 0, ACK | PSH, HTTP_GET, src_ip=C6, dst_ip=S6)),
            T6,
        ),
        Sample(
            "icmp",
            LinkType.ETHERNET,
            eth(icmp4),
            {
                "proto": 1,
                "icmp_type": 8,
                "icmp_code": 0,
                "sport": 0,
                "dport": 0,
                "payload": struct.pack("!HH", 7, 1) + b"ping",
            },
        ),
        Sample(
            "icmpv6",
            LinkType.ETHERNET,
            eth(icmp6),
            {
                "proto": 58,
                "icmp_type": 128,
                "icmp_code": 0,
                "ip_version": 6,
                "payload": struct.pack("!HH", 7, 1) + b"ping",
            },
        ),
        Sample(
            "arp", LinkType.ETHERNET, eth_raw_type(0x0806, bytes(28)), {"ip_version": 0, "ethertype": 0x806}
        ),
        Sample("llc", LinkType.ETHERNET, eth_raw_type(46, bytes(46)), {"ip_version": 0, "ethertype": 0}),
        Sample(
            "pppoe-lcp",
            LinkType.ETHERNET,
            eth_raw_type(0x8864, struct.pack("!BBHHH", 0x11, 0, 1, 6, 0xC021) + bytes(4)),
            {"ip_version": 0},
        ),
        Sample(
            "gre-key",
            LinkType.ETHERNET,
            eth(outer4(47, P.gre(0x0800, INNER_TCP4, key=0xBEEF))),
            {**T4, "tunnels": (Tunnel("gre", ab(O4C), ab(O4S), 0xBEEF),)},
        ),
        Sample(
            "gre-csum-seq",
            LinkType.RAW,
            outer4(47, P.gre(0x86DD, INNER_TCP6, key=1, seq=77, checksum=True)),
            {**T6, "tunnels": (Tunnel("gre", ab(O4C), ab(O4S), 1),)},
        ),
        Sample(
            "gre-teb",
            LinkType.ETHERNET,
            eth(outer4(47, P.gre(0x6558, inner_eth))),
            {**T4, "vlans": (10,), "tunnels": (Tunnel("gre", ab(O4C), ab(O4S), 0),)},
        ),
        Sample(
            "gre-pptp",
            LinkType.ETHERNET,
            eth(outer4(47, pptp_gre(ppp))),
            {"proto": 47, "src": ab(O4C), "dst": ab(O4S), "tunnels": (), "payload": ppp},
        ),
        Sample(
            "vxlan",
            LinkType.ETHERNET,
            eth(outer_udp4(49152, 4789, P.vxlan(4242, inner_eth))),
            {**T4, "vlans": (10,), "tunnels": (Tunnel("vxlan", ab(O4C), ab(O4S), 4242),)},
        ),
        Sample(
            "vxlan-reply-from-4789",
            LinkType.ETHERNET,
            eth(outer_udp4(4789, 49152, P.vxlan(4242, inner_eth), src=O4S, dst=O4C)),
            {**T4, "vlans": (10,), "tunnels": (Tunnel("vxlan", ab(O4S), ab(O4C), 4242),)},
        ),
        Sample(
            "ipip",
            LinkType.ETHERNET,
            eth(outer4(4, INNER_TCP4)),
            {**T4, "tunnels": (Tunnel("ipip", ab(O4C), ab(O4S)),)},
        ),
        Sample(
            "6in4",
            LinkType.ETHERNET,
            eth(outer4(41, v6_tcp6)),
            {**T6, "tunnels": (Tunnel("6in4", ab(O4C), ab(O4S)),)},
        ),
        Sample(
            "4in6",
            LinkType.ETHERNET,
            eth(P.ipv6(O6C, O6S, 4, INNER_TCP4)),
            {**T4, "tunnels": (Tunnel("4in6", ab(O6C), ab(O6S)),)},
        ),
        Sample(
            "6in6",
            LinkType.RAW,
            P.ipv6(O6C, O6S, 41, v6_tcp6),
            {**T6, "tunnels": (Tunnel("6in6", ab(O6C), ab(O6S)),)},
        ),
        Sample(
            "teredo",
            LinkType.ETHERNET,
            eth(outer_udp4(3544, 51000, P.teredo(v6_tcp6))),
            {**T6, "tunnels": (Tunnel("teredo", ab(O4C), ab(O4S)),)},
        ),
        Sample(
            "teredo-origin-auth",
            LinkType.ETHERNET,
            eth(outer_udp4(51000, 3544, teredo_auth(v6_tcp6, ("198.51.100.7", 40000)))),
            {**T6, "tunnels": (Tunnel("teredo", ab(O4C), ab(O4S)),)},
        ),
        Sample(
            "gtpu",
            LinkType.ETHERNET,
            eth(outer_udp4(2152, 2152, P.gtpu(0x1001, gtp_inner, seq=3))),
            {**U4, "tunnels": (Tunnel("gtpu", ab(O4C), ab(O4S), 0x1001),)},
        ),
        Sample(
            "gtpu-ext",
            LinkType.ETHERNET,
            eth(outer_udp4(2152, 2152, gtpu_ext(0x2002, INNER_TCP6))),
            {**T6, "tunnels": (Tunnel("gtpu", ab(O4C), ab(O4S), 0x2002),)},
        ),
        Sample(
            "gre-in-vxlan-in-ipip",
            LinkType.RAW,
            P.ipv6(
                O6C,
                O6S,
                4,
                outer_udp4(
                    1,
                    4789,
                    P.vxlan(
                        7,
                        P.ethernet(
                            MAC_C,
                            MAC_S,
                            0x0800,
                            outer4(47, P.gre(0x0800, INNER_UDP4, key=5), src="10.255.0.1", dst="10.255.0.2"),
                        ),
                    ),
                ),
            ),
            {
                **U4,
                "tunnels": (
                    Tunnel("4in6", ab(O6C), ab(O6S)),
                    Tunnel("vxlan", ab(O4C), ab(O4S), 7),
                    Tunnel("gre", ab("10.255.0.1"), ab("10.255.0.2"), 5),
                ),
            },
        ),
        Sample(
            "udp-4789-not-vxlan",
            LinkType.ETHERNET,
            eth(udp_ip(C4, S4, 40000, 4789, b"\x00" * 30)),
            {"proto": 17, "sport": 40000, "dport": 4789, "tunnels": ()},
        ),
        Sample(
            "udp-3544-not-teredo",
            LinkType.ETHERNET,
            eth(udp_ip(C4, S4, 3544, 40000, b"\x60" + bytes(50))),
            {"proto": 17, "sport": 3544, "dport": 40000, "tunnels": ()},
        ),
        Sample(
            "udp-2152-not-gtp",
            LinkType.ETHERNET,
            eth(udp_ip(C4, S4, 2152, 2152, b"\x30\x01" + bytes(30))),
            {"proto": 17, "sport": 2152, "dport": 2152, "tunnels": ()},
        ),
        Sample(
            "esp",
            LinkType.RAW,
            P.ipv4(C4, S4, 50, struct.pack("!II", 0x1234, 1) + bytes(32)),
            {"proto": 50, "sport": 0, "payload": struct.pack("!II", 0x1234, 1) + bytes(32)},
        ),
    ]


SAMPLES: list[Sample] = _samples()


def _mutate(frame: bytes, at: int, value: bytes) -> bytes:
    return frame[:at] + value + frame[at + len(value) :]


def _nested_ipip(depth: int) -> bytes:
    pkt = INNER_TCP4
    for _ in range(depth):
        pkt = outer4(4, pkt)
    return pkt


def _malformed() -> list[tuple[str, int, bytes, str]]:
    e_tcp = eth(INNER_TCP4)  # Ethernet 14 + IPv4 20 + TCP at 34
    e_udp = eth(INNER_UDP4)
    gre_frame = eth(outer4(47, P.gre(0x0800, INNER_TCP4)))
    nine_labels = b"".join(struct.pack("!I", (100 + i) << 12 | 64) for i in range(9))
    v6 = INNER_TCP6
    nine_dest = P.ipv6(C6, S6, 59, b"", ext_headers=[P.ipv6_dest_opts()] * 9)
    bad_ext = P.ipv6(C6, S6, 6, b"", ext_headers=[P.ipv6_hop_by_hop()])
    bad_ext = bad_ext[:41] + b"\x09" + bad_ext[42:]  # hop-by-hop length 80 bytes, only 8 present
    return [
        ("tcp.bad_data_offset", LinkType.ETHERNET, _mutate(e_tcp, 34 + 12, b"\x40"), "tcp.bad_data_offset"),
        ("tcp.truncated", LinkType.ETHERNET, _mutate(e_tcp, 34 + 12, b"\xf0"), "tcp.truncated"),
        ("ipv4.bad_ihl", LinkType.ETHERNET, _mutate(e_tcp, 14, b"\x44"), "ipv4.bad_ihl"),
        ("ipv4.bad_version", LinkType.ETHERNET, _mutate(e_tcp, 14, b"\x55"), "ipv4.bad_version"),
        (
            "ipv4.bad_total_length",
            LinkType.ETHERNET,
            _mutate(e_tcp, 16, b"\x00\x0a"),
            "ipv4.bad_total_length",
        ),
        (
            "ipv4.bad_option",
            LinkType.RAW,
            P.ipv4(C4, S4, 6, P.tcp(1, 2, 0, 0, SYN, src_ip=C4, dst_ip=S4), options=b"\x07\x01\x00\x00"),
            "ipv4.bad_option",
        ),
        ("ipv4.truncated", LinkType.ETHERNET, e_tcp[: 14 + 19], "ipv4.truncated"),
        ("udp.bad_length", LinkType.ETHERNET, _mutate(e_udp, 34 + 4, b"\x00\x04"), "udp.bad_length"),
        ("udp.truncated", LinkType.RAW, INNER_UDP4[:26], "udp.truncated"),
        ("gre.bad_version", LinkType.ETHERNET, _mutate(gre_frame, 34 + 1, b"\x02"), "gre.bad_version"),
        ("gre.truncated", LinkType.RAW, outer4(47, b"\x20\x00\x08\x00\x00"), "gre.truncated"),
        (
            "mpls.too_many_labels",
            LinkType.ETHERNET,
            eth_raw_type(0x8847, nine_labels + INNER_TCP4),
            "mpls.too_many_labels",
        ),
        (
            "mpls.unknown_payload",
            LinkType.ETHERNET,
            eth_raw_type(0x8847, struct.pack("!I", 16 << 12 | 0x100 | 64) + b"\x00" * 20),
            "mpls.unknown_payload",
        ),
        ("mpls.truncated", LinkType.ETHERNET, eth_raw_type(0x8847, b"\x00\x01"), "mpls.truncated"),
        (
            "vlan.too_many_tags",
            LinkType.ETHERNET,
            eth(INNER_TCP4, vlans=(1, 2, 3, 4, 5)),
            "vlan.too_many_tags",
        ),
        ("vlan.truncated", LinkType.ETHERNET, eth_raw_type(0x8100, b"\x00"), "vlan.truncated"),
        ("pppoe.bad_header", LinkType.ETHERNET, _mutate(pppoe(INNER_TCP4), 14, b"\x12"), "pppoe.bad_header"),
        ("pppoe.truncated", LinkType.ETHERNET, pppoe(INNER_TCP4)[:20], "pppoe.truncated"),
        ("ethernet.truncated", LinkType.ETHERNET, e_tcp[:13], "ethernet.truncated"),
        ("sll.truncated", LinkType.LINUX_SLL, P.linux_sll(0x800, b"")[:15], "sll.truncated"),
        ("sll2.truncated", LinkType.LINUX_SLL2, P.linux_sll2(0x800, b"")[:19], "sll2.truncated"),
        ("null.truncated", LinkType.NULL, b"\x02\x00", "null.truncated"),
        ("null.unknown_family", LinkType.NULL, P.bsd_null(7, INNER_TCP4), "null.unknown_family"),
        ("loop.unknown_family", LinkType.LOOP, P.bsd_null(2, INNER_TCP4), "null.unknown_family"),
        ("raw.bad_version", LinkType.RAW, b"\x55" + INNER_TCP4[1:], "raw.bad_version"),
        ("raw.truncated", LinkType.RAW, b"", "raw.truncated"),
        ("link.unsupported", 147, INNER_TCP4, "link.unsupported"),
        ("ipv6.truncated", LinkType.RAW, v6[:39], "ipv6.truncated"),
        ("ipv6.bad_version", LinkType.ETHERNET, eth_raw_type(0x86DD, b"\x40" + v6[1:]), "ipv6.bad_version"),
        ("ipv6.bad_extension", LinkType.RAW, bad_ext, "ipv6.bad_extension"),
        ("ipv6.too_many_extensions", LinkType.RAW, nine_dest, "ipv6.too_many_extensions"),
        ("icmp.truncated", LinkType.RAW, P.ipv4(C4, S4, 1, b"\x08\x00"), "icmp.truncated"),
        ("icmpv6.truncated", LinkType.RAW, P.ipv6(C6, S6, 58, b"\x80"), "icmpv6.truncated"),
        ("tunnel.too_deep", LinkType.RAW, _nested_ipip(5), "tunnel.too_deep"),
    ]


MALFORMED: list[tuple[str, int, bytes, str]] = _malformed()


def decode(linktype: int, frame: bytes) -> Packet:
    """decode_packet into a fresh Packet."""
    pkt = Packet()
    decode_packet(frame, linktype, pkt)
    return pkt


def run_loop(
    frames: Sequence[tuple[float, int, bytes]], loop: PacketLoop | None = None
) -> tuple[list[FlowRecord], RunSummary]:
    """Feed (ts, linktype, frame) through a strict PacketLoop; final and early records."""
    loop = loop or PacketLoop(strict=True)
    out: list[FlowRecord] = []
    for ts, lt, fr in frames:
        loop.process(RawPacket(ts, lt, fr, len(fr)), out)
    summary = loop.finish(out)
    return out, summary


def finals(records: list[FlowRecord]) -> list[FlowRecord]:
    """The final records, in flow-id order."""
    return sorted((r for r in records if not r.early), key=lambda r: r.flow_id)


class VxlanFraming:
    """VXLAN as RFC 7348 §5 sends it: destination port 4789 in both directions.

    (``TunnelFraming(kind="vxlan")`` of the synth package swaps the ports on the server's
    packets, sending them from 4789 to the client VTEP's source port; sluice accepts that too,
    see the ``vxlan-reply-from-4789`` cases.)
    """

    def __init__(self, outer: Framing, vtep_c: str, vtep_s: str, vni: int) -> None:
        self.outer, self.vtep_c, self.vtep_s, self.vni = outer, vtep_c, vtep_s, vni

    @property
    def linktype(self) -> int:
        """Link type of the outer framing."""
        return self.outer.linktype

    def __call__(self, packet: bytes, from_client: bool) -> bytes:
        src, dst = (self.vtep_c, self.vtep_s) if from_client else (self.vtep_s, self.vtep_c)
        sport = 50123 if from_client else 61234  # each VTEP hashes the inner flow its own way
        inner = P.ethernet("02:00:00:00:01:01", "02:00:00:00:01:02", ethertype_of(packet), packet)
        dgram = P.udp(sport, 4789, P.vxlan(self.vni, inner), src_ip=src, dst_ip=dst)
        return self.outer(P.ipv4(src, dst, 17, dgram, df=False), from_client)


def tunnel_framings() -> dict[str, tuple[Callable[[], Framing], str, str]]:
    """Tunnel framings by name: (factory, inner family, expected ``tunnels`` text)."""
    gre_vx = VxlanFraming(
        TunnelFraming(EthernetFraming(), "gre", O4C, O4S, key=3), "172.16.0.9", "172.16.0.1", 42
    )
    return {
        "gre": (lambda: TunnelFraming(EthernetFraming(), "gre", O4C, O4S, key=99), "4", f"gre:{O4C}>{O4S}"),
        "vxlan": (
            lambda: VxlanFraming(EthernetFraming(vlans=(7,)), O4C, O4S, 42),
            "4",
            f"vxlan/42:{O4C}>{O4S}",
        ),
        "vxlan-reply-from-4789": (
            lambda: TunnelFraming(EthernetFraming(), "vxlan", O4C, O4S, key=9),
            "4",
            f"vxlan/9:{O4C}>{O4S}",
        ),
        "gtpu": (
            lambda: TunnelFraming(EthernetFraming(), "gtpu", O4C, O4S, key=0x77),
            "4",
            f"gtpu:{O4C}>{O4S}",
        ),
        "ipip": (lambda: TunnelFraming(RawIpFraming(), "ipip", O4C, O4S), "4", f"ipip:{O4C}>{O4S}"),
        "6in4": (lambda: TunnelFraming(EthernetFraming(), "ipip", O4C, O4S), "6", f"6in4:{O4C}>{O4S}"),
        "4in6": (lambda: TunnelFraming(EthernetFraming(), "ipip", O6C, O6S), "4", f"4in6:{O6C}>{O6S}"),
        "teredo": (lambda: TunnelFraming(EthernetFraming(), "teredo", O4C, O4S), "6", f"teredo:{O4C}>{O4S}"),
        "gre+vxlan": (lambda: gre_vx, "4", f"gre:{O4C}>{O4S}|vxlan/42:172.16.0.9>172.16.0.1"),
    }


def tunnel_sessions(start: float = 1000.0) -> dict[str, tuple[TcpSession, str]]:
    """One short HTTP-over-TCP session per tunnel kind: (session, expected ``tunnels``)."""
    out: dict[str, tuple[TcpSession, str]] = {}
    for i, (name, (factory, fam, text)) in enumerate(tunnel_framings().items()):
        client, server = (C4, S4) if fam == "4" else (C6, S6)
        s = TcpSession(
            (client, 51000 + i), (server, 80), start_ts=start + i, framing=factory(), rng=random.Random(i)
        )
        s.client_send(HTTP_GET)
        s.server_send(b"HTTP/1.1 204 No Content\r\n\r\n")
        s.close()
        out[name] = (s, text)
    return out


# --------------------------------------------------------------------------------------------
# decode_packet on every sample


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_decodes_to_expected_fields(sample: Sample) -> None:
    pkt = decode(sample.linktype, sample.frame)
    for name, want in sample.expect.items():
        assert getattr(pkt, name) == want, name


def test_sample_names_unique() -> None:
    assert len({s.name for s in SAMPLES}) == len(SAMPLES)


def test_tcp_fields_and_options_offset() -> None:
    frame = eth(tcp_ip(C4, S4, 1234, 80, SYN | ACK, b"x", seq=0xFFFFFFF0, ack=77, options=MSS_OPT))
    pkt = decode(LinkType.ETHERNET, frame)
    assert (pkt.seq, pkt.ack, pkt.window, pkt.tcp_flags) == (0xFFFFFFF0, 77, 65535, SYN | ACK)
    assert pkt.payload == b"x"  # the 4 option bytes are skipped
    tcp, off = decode_tcp(frame, 34, len(frame))
    assert tcp.options == MSS_OPT and off == 34 + 24
    assert TcpFlags(tcp.flags) == TcpFlags.SYN | TcpFlags.ACK


def test_ip_lengths_and_ttl() -> None:
    pkt = decode(LinkType.RAW, INNER_TCP6)
    assert pkt.ip_len == len(INNER_TCP6) and pkt.ttl == 64
    pkt4 = decode(LinkType.RAW, P.ipv4(C4, S4, 17, P.udp(1, 2, b"abc", src_ip=C4, dst_ip=S4), ttl=3))
    assert pkt4.ip_len == 31 and pkt4.ttl == 3


def test_ethernet_padding_is_not_payload() -> None:
    # a 60-byte minimum Ethernet frame: the padding after the IP datagram is not UDP payload
    frame = eth(udp_ip(C4, S4, 1, 2, b"hi")) + b"\x00" * 16
    assert decode(LinkType.ETHERNET, frame).payload == b"hi"


def test_udp_length_bounds_payload() -> None:
    dgram = bytearray(P.udp(1, 2, b"abcdef", src_ip=C4, dst_ip=S4))
    dgram[4:6] = struct.pack("!H", 8 + 3)  # UDP says 3 bytes of payload, IP carries 6
    pkt = decode(LinkType.RAW, P.ipv4(C4, S4, 17, bytes(dgram)))
    assert pkt.payload == b"abc"
    assert decode_udp(bytes(dgram), 0, len(dgram)) == (1, 2, 8, 11)


def test_ipv4_total_length_zero_uses_captured_length() -> None:
    pkt = bytearray(INNER_UDP4)
    pkt[2:4] = b"\x00\x00"  # TSO captures write 0
    got = decode(LinkType.RAW, bytes(pkt))
    assert got.ip_len == len(pkt) and got.payload == b"\x12\x34query"


def test_ipv4_snaplen_cut_keeps_header_fields() -> None:
    frame = eth(tcp_ip(C4, S4, 1, 2, ACK, b"y" * 100))[:60]
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.ip_len == 20 + 20 + 100
    assert pkt.payload == b"y" * (60 - 54)


def test_ipv4_options_record() -> None:
    hdr, off, end = decode_ipv4(_ipv4_with_options())
    assert hdr.options == ((148, b"\x00\x00"), (7, b"\x04" + bytes(8)))
    assert off == 20 + 16 and end == len(_ipv4_with_options())
    assert hdr.fragment is None


def test_ipv6_extension_headers_record() -> None:
    hdr, off, _end = decode_ipv6(_ipv6_ext_chain())
    assert [code for code, _ in hdr.options] == [0, 43, 60]
    assert hdr.proto == 6
    routing = hdr.options[1][1]
    assert routing[:2] == bytes([4, 1])  # SRH type 4, segments left 1
    assert ab("2001:db8:3::3") in routing
    assert off == 40 + 8 + (8 + 32) + 8


def test_ipv6_ah_is_walked() -> None:
    pkt = ipv6_ah(C6, S6, 17, P.udp(5, 6, b"zz", src_ip=C6, dst_ip=S6), spi=0xABCDEF)
    hdr, off, _end = decode_ipv6(pkt)
    assert hdr.proto == 17 and off == 40 + 24
    assert hdr.options[0][0] == 51
    assert struct.unpack("!I", hdr.options[0][1][2:6])[0] == 0xABCDEF


def test_ipv6_no_next_header() -> None:
    pkt = decode(LinkType.RAW, P.ipv6(C6, S6, 59, b"", ext_headers=[P.ipv6_dest_opts()]))
    assert pkt.proto == 59 and pkt.payload == b"" and pkt.sport == 0


def test_ipv4_fragments_decode() -> None:
    dgram = P.udp(7000, 53, bytes(range(256)) * 12, src_ip=C4, dst_ip=S4)
    frags = P.ipv4_fragments(C4, S4, 17, dgram, mtu=1000, ident=0x4242)
    assert len(frags) == 4
    first = decode(LinkType.RAW, frags[0])
    assert first.fragment == Fragment(0x4242, 0, True)
    assert (first.sport, first.dport) == (7000, 53)
    later = decode(LinkType.RAW, frags[2])
    assert later.fragment == Fragment(0x4242, 2 * 976, True)
    assert (later.sport, later.dport) == (0, 0)
    assert later.payload == dgram[2 * 976 : 3 * 976]
    last = decode(LinkType.RAW, frags[3])
    assert last.fragment is not None and not last.fragment.more


def test_ipv6_fragments_decode() -> None:
    dgram = P.udp(7000, 53, bytes(3000), src_ip=C6, dst_ip=S6)
    frags = P.ipv6_fragments(C6, S6, 17, dgram, mtu=1280, ident=0xDEADBEEF)
    first, later = decode(LinkType.RAW, frags[0]), decode(LinkType.RAW, frags[1])
    assert first.fragment == Fragment(0xDEADBEEF, 0, True) and first.sport == 7000
    assert later.fragment == Fragment(0xDEADBEEF, 1232, True) and later.sport == 0
    assert later.proto == 17 and later.payload == dgram[1232:2464]


def test_gre_decoder_offsets() -> None:
    raw = P.gre(0x0800, INNER_TCP4, key=0x01020304, seq=9, checksum=True)
    assert decode_gre(raw, 0, len(raw)) == (Inner.IPV4, 16, 0x01020304)
    teb = P.gre(0x6558, b"\x00" * 14)
    assert decode_gre(teb, 0, len(teb)) == (Inner.ETHERNET, 4, 0)
    pptp = pptp_gre(b"\xff\x03")
    assert decode_gre(pptp, 0, len(pptp)) == (None, 16, (2 << 16) | 7)
    erspan = struct.pack("!HHI", 0x1000, 0x88BE, 5) + bytes(8) + b"\x00" * 14
    assert decode_gre(erspan, 0, len(erspan)) == (Inner.ETHERNET, 16, 0)


def test_udp_tunnel_probes_refuse_lookalikes() -> None:
    assert try_vxlan(b"\x08" + bytes(7) + bytes(14), 0, 22) == (0, 8)
    assert try_vxlan(b"\x0c" + bytes(7) + bytes(14), 0, 22) is None  # reserved flag set
    assert try_vxlan(b"\x08" + bytes(7) + bytes(13), 0, 21) is None  # no room for Ethernet
    six = INNER_TCP6
    assert try_teredo(six, 0, len(six)) == 0
    assert try_teredo(six, 0, len(six) - 1) is None  # IPv6 length disagrees with UDP
    g = P.gtpu(5, INNER_TCP4)
    assert try_gtpu(g, 0, len(g)) == (5, 8)
    assert try_gtpu(g, 0, len(g) + 1) is None  # GTP length disagrees
    assert try_gtpu(b"\x30\x01" + g[2:], 0, len(g)) is None  # echo request, not a G-PDU
    ge = gtpu_ext(6, INNER_TCP4)
    assert try_gtpu(ge, 0, len(ge)) == (6, 16)


def test_link_decoders_directly() -> None:
    hdr, off = decode_ethernet(eth(INNER_TCP4, vlans=(0xF00A, 20)))
    assert hdr.vlans == (10, 20) and off == 22 and hdr.ethertype == 0x800
    labels, etype, off = ethertype_after_mpls(struct.pack("!II", 5 << 12, 6 << 12 | 0x100) + INNER_TCP6, 0)
    assert (labels, etype, off) == ((5, 6), 0x86DD, 8)
    eight = b"".join(struct.pack("!I", i << 12 | (0x100 if i == 7 else 0)) for i in range(8))
    assert ethertype_after_mpls(eight + INNER_TCP4, 0)[0] == tuple(range(8))
    assert decode_bsd_null(struct.pack("<I", 2))[0].ethertype == 0x800
    assert decode_bsd_null(struct.pack(">I", 24), network_order=True)[0].ethertype == 0x86DD


def test_four_tunnel_layers_allowed() -> None:
    pkt = decode(LinkType.RAW, _nested_ipip(4))
    assert [t.kind for t in pkt.tunnels] == ["ipip"] * 4
    assert (pkt.sport, pkt.dport) == (50000, 443)


# --------------------------------------------------------------------------------------------
# malformed input


@pytest.mark.parametrize(("name", "linktype", "frame", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_raises_documented_reason(name: str, linktype: int, frame: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(linktype, frame)
    assert info.value.reason == reason
    assert info.value.layer == reason.split(".")[0]
    assert 0 <= info.value.offset <= len(frame)


def test_malformed_keeps_decoded_layers_and_offset() -> None:
    frame = _mutate(eth(INNER_TCP4, vlans=(33,)), 38 + 12, b"\x30")
    pkt = Packet()
    with pytest.raises(DecodeError) as info:
        decode_packet(frame, LinkType.ETHERNET, pkt)
    assert info.value.offset == 38  # start of the TCP header
    assert pkt.vlans == (33,) and pkt.ip_version == 4 and pkt.src == ab(C4) and pkt.proto == 6
    assert pkt.sport == 0  # the TCP layer did not decode


def test_loop_counts_malformed_by_reason_and_goes_on() -> None:
    frames = [(1.0 + i, lt, fr) for i, (_n, lt, fr, _r) in enumerate(MALFORMED)]
    frames.append((100.0, LinkType.ETHERNET, eth(INNER_TCP4)))
    records, summary = run_loop(frames)
    want: dict[str, int] = {}
    for _n, _lt, _fr, reason in MALFORMED:
        want[reason] = want.get(reason, 0) + 1
    assert dict(summary.anomalies) == want
    assert summary.packets == len(MALFORMED) + 1 and summary.ip_packets == 1
    assert len(finals(records)) == 1
    kept = summary.malformed
    assert [m.reason for m in kept] == [m[3] for m in MALFORMED]
    assert kept[0].index == 0 and kept[0].head == MALFORMED[0][2][:32].hex()


# --------------------------------------------------------------------------------------------
# flows: link types, fragments, tunnels


@pytest.mark.parametrize(
    "sample",
    [s for s in SAMPLES if s.expect.get("sport") == 50000 or s.expect.get("sport") == 50001],
    ids=lambda s: s.name,
)
def test_every_link_type_gives_one_oriented_flow(sample: Sample) -> None:
    records, summary = run_loop([(5.0, sample.linktype, sample.frame)])
    (rec,) = finals(records)
    assert summary.ip_packets == 1 and not summary.anomalies
    assert rec.client_port == sample.expect["sport"] and rec.server_port == sample.expect["dport"]
    assert rec.client in (C4, C6) and rec.server in (S4, S6)


def test_fragmented_udp_one_flow_with_ports() -> None:
    u = UdpExchange((C4, 40000), (S4, 53), start_ts=10.0, mtu=600, rng=random.Random(1))
    u.client_send(bytes(range(256)) * 8)
    u.server_send(b"x" * 1500)
    frames = [(ts, u.linktype, fr) for ts, fr in u.packets]
    assert len(frames) == 4 + 3
    records, summary = run_loop(frames)
    (rec,) = finals(records)
    assert (rec.client, rec.client_port, rec.server, rec.server_port) == (C4, 40000, S4, 53)
    assert (rec.c2s_packets, rec.s2c_packets) == (4, 3)
    assert (rec.c2s_payload_bytes, rec.s2c_payload_bytes) == (2048, 1500)
    assert rec.c2s_first_payload_len == 576 - 8  # first fragment only (576-byte steps)
    assert "ip.fragment_orphan" not in summary.anomalies


def test_fragmented_ipv6_one_flow() -> None:
    u = UdpExchange((C6, 40000), (S6, 53), start_ts=10.0, mtu=1280, rng=random.Random(2))
    u.client_send(bytes(4000))
    records, summary = run_loop([(ts, u.linktype, fr) for ts, fr in u.packets])
    (rec,) = finals(records)
    assert rec.c2s_packets == 4 and rec.client_port == 40000 and rec.server_port == 53
    assert not summary.anomalies


def test_orphan_fragment_counted() -> None:
    dgram = P.udp(7000, 53, bytes(3000), src_ip=C4, dst_ip=S4)
    frags = P.ipv4_fragments(C4, S4, 17, dgram, mtu=1500, ident=99)
    records, summary = run_loop([(1.0, LinkType.RAW, frags[1]), (1.1, LinkType.RAW, frags[2])])
    assert summary.anomalies["ip.fragment_orphan"] == 2
    (rec,) = finals(records)
    assert (rec.client_port, rec.server_port) == (0, 0)
    assert rec.c2s_first_payload_len == 0 and rec.c2s_payload_bytes == 3008 - 1480


def test_fragment_tracker_keys_by_ident() -> None:
    a = P.ipv4_fragments(C4, S4, 17, P.udp(1111, 53, bytes(2000), src_ip=C4, dst_ip=S4), ident=1)
    b = P.ipv4_fragments(C4, S4, 17, P.udp(2222, 53, bytes(2000), src_ip=C4, dst_ip=S4), ident=2)
    frames = [
        (1.0, LinkType.RAW, a[0]),
        (1.1, LinkType.RAW, b[0]),
        (1.2, LinkType.RAW, b[1]),
        (1.3, LinkType.RAW, a[1]),
    ]
    records, summary = run_loop(frames)
    got = {r.client_port: r.c2s_packets for r in finals(records)}
    assert got == {1111: 2, 2222: 2} and not summary.anomalies


@pytest.mark.parametrize("name", list(tunnel_framings()))
def test_tunnelled_session_is_one_flow_with_oriented_tunnels(name: str) -> None:
    s, text = tunnel_sessions()[name]
    records, summary = run_loop([(ts, s.linktype, fr) for ts, fr in s.packets])
    assert not summary.anomalies
    (rec,) = finals(records)
    assert rec.tunnels == text
    assert rec.client in (C4, C6) and rec.client_port == s.client[1] and rec.server_port == 80
    assert rec.c2s_packets == s.packets_c2s and rec.s2c_packets == s.packets_s2c
    assert rec.c2s_payload_bytes == len(HTTP_GET)
    assert rec.meta.http_method == "GET" and rec.meta.http_status == 204


def test_tunnel_orientation_follows_client_when_server_speaks_first() -> None:
    """A flow whose first packet is the server's SYN+ACK keeps the outer addresses client first."""
    frames = []
    for i, (src, dst, osrc, odst, sp, dp, flags) in enumerate(
        [
            (S4, C4, O4S, O4C, 443, 50000, SYN | ACK),
            (C4, S4, O4C, O4S, 50000, 443, ACK),
        ]
    ):
        inner = tcp_ip(src, dst, sp, dp, flags)
        frames.append((1.0 + i, int(LinkType.RAW), outer4(47, P.gre(0x0800, inner), src=osrc, dst=odst)))
    records, _ = run_loop(frames)
    (rec,) = finals(records)
    assert (rec.client, rec.server, rec.tunnels) == (C4, S4, f"gre:{O4C}>{O4S}")


def test_gtpu_teids_differ_per_direction_one_flow() -> None:
    up = eth(outer_udp4(2152, 2152, P.gtpu(0x100, INNER_UDP4)))
    down_inner = udp_ip(S4, C4, 53, 40000, b"answer")
    down = eth(outer_udp4(2152, 2152, gtpu_ext(0x200, down_inner), src=O4S, dst=O4C))
    records, _ = run_loop([(1.0, LinkType.ETHERNET, up), (1.1, LinkType.ETHERNET, down)])
    (rec,) = finals(records)
    assert (rec.c2s_packets, rec.s2c_packets) == (1, 1)
    assert rec.tunnels == f"gtpu:{O4C}>{O4S}"


def test_same_inner_flow_in_different_tunnels_is_two_flows() -> None:
    a = outer4(4, INNER_TCP4)
    b = outer4(4, INNER_TCP4, src="198.51.100.200")
    c = INNER_TCP4
    records, _ = run_loop([(1.0, LinkType.RAW, a), (1.1, LinkType.RAW, b), (1.2, LinkType.RAW, c)])
    assert sorted(r.tunnels for r in finals(records)) == [
        "",
        f"ipip:198.51.100.200>{O4S}",
        f"ipip:{O4C}>{O4S}",
    ]


def test_vlan_is_part_of_the_flow_key() -> None:
    records, _ = run_loop(
        [
            (1.0, LinkType.ETHERNET, eth(INNER_TCP4, vlans=(10,))),
            (1.1, LinkType.ETHERNET, eth(INNER_TCP4, vlans=(11,))),
        ]
    )
    assert sorted(r.vlans for r in finals(records)) == [(10,), (11,)]
