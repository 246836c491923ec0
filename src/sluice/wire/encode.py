"""Packet encoders: link layers, IPv4/IPv6, TCP/UDP/ICMP and tunnels, as bytes (the push side
of the decoders in :mod:`sluice.wire.ethernet`, :mod:`~sluice.wire.ip`,
:mod:`~sluice.wire.transport` and :mod:`~sluice.wire.tunnel`; ``sluice.synth.packets`` re-exports
them for the fixture and benchmark writers).

Theory of operation
-------------------
Every function returns the bytes of one header plus its payload, so layers compose from the
inside out::

    seg = tcp(51000, 443, seq, ack, TcpFlag.ACK | TcpFlag.PSH, data, src_ip=c, dst_ip=s)
    frame = ethernet(cmac, smac, EtherType.IPV4, ipv4(c, s, IpProto.TCP, seg))

Checksums are always computed (IPv4 header, TCP, UDP and ICMPv6 with their pseudo-headers, RFC
768/793/1071/8200 §8.1), so the tools that verify them (Wireshark with checksum validation on)
accept the packets. Addresses are strings (``"10.0.0.1"``, ``"2001:db8::1"``),
:mod:`ipaddress` objects, or already packed 4/16-byte ``bytes`` (the fast path used by the
session builders). MAC addresses are ``"02:00:00:00:00:01"`` strings or 6 bytes.

Tunnel helpers (:func:`gre`, :func:`vxlan`, :func:`teredo`, :func:`gtpu`) return the tunnel
header plus the inner packet; wrap the result in :func:`ipv4` (GRE: protocol 47) or
:func:`udp` (VXLAN 4789, Teredo 3544, GTP-U 2152). IP-in-IP and 6in4 are plain :func:`ipv4`
with protocol 4 or 41.

The internet checksum uses the identity ``2**16 ≡ 1 (mod 0xffff)``: the one's-complement sum
of the 16-bit words of a buffer equals the buffer read as one big-endian integer modulo
0xffff (with 0 standing for 0xffff unless every word is zero), which CPython computes at C
speed.
"""

from __future__ import annotations

__all__ = [
    "GTPU_PORT",
    "TEREDO_PORT",
    "VXLAN_PORT",
    "Address",
    "ArpHrd",
    "EtherType",
    "IpProto",
    "SllPacketType",
    "TcpFlag",
    "bsd_null",
    "ethernet",
    "gre",
    "gtpu",
    "icmp",
    "icmp_echo",
    "icmpv6",
    "icmpv6_echo",
    "internet_checksum",
    "ip_bytes",
    "ip_packet",
    "ipv4",
    "ipv4_fragments",
    "ipv6",
    "ipv6_dest_opts",
    "ipv6_fragment_header",
    "ipv6_fragments",
    "ipv6_hop_by_hop",
    "ipv6_routing",
    "linux_sll",
    "linux_sll2",
    "mac_bytes",
    "tcp",
    "teredo",
    "udp",
    "vxlan",
]

import ipaddress
import struct
from collections.abc import Sequence
from functools import lru_cache

from sluice.wire.ethernet import ArpHrd, EtherType, SllPacketType
from sluice.wire.ip import IpProto
from sluice.wire.transport import TcpFlags as TcpFlag
from sluice.wire.tunnel import GTPU_PORT, TEREDO_PORT, VXLAN_PORT

Address = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address
"""An IP address: text, packed 4/16 bytes, or an :mod:`ipaddress` object."""


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 internet checksum of ``data`` (odd lengths are zero-padded).

    Args:
        data: bytes to sum (for TCP/UDP: pseudo-header + header with zero checksum + payload).

    Returns:
        The 16-bit checksum value to store in the header.
    """
    if len(data) & 1:
        data += b"\x00"
    n = int.from_bytes(data, "big")
    s = n % 0xFFFF
    if s == 0 and n != 0:
        s = 0xFFFF
    return ~s & 0xFFFF


@lru_cache(maxsize=65536)
def _parse_ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def ip_bytes(addr: Address) -> bytes:
    """Pack an address given as text, :mod:`ipaddress` object or packed bytes.

    Raises:
        ValueError: not an IPv4 or IPv6 address.
    """
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"packed address must be 4 or 16 bytes, got {len(addr)}")
        return addr
    if isinstance(addr, str):
        return _parse_ip(addr)
    return addr.packed


@lru_cache(maxsize=4096)
def _parse_mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def mac_bytes(mac: str | bytes) -> bytes:
    """Pack a MAC address given as ``"aa:bb:cc:dd:ee:ff"`` or 6 bytes.

    Raises:
        ValueError: not 6 bytes.
    """
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")
        return mac
    return _parse_mac(mac)


# ---------------------------------------------------------------------------------------------
# Link layers


def ethernet(
    src_mac: str | bytes,
    dst_mac: str | bytes,
    ethertype: int,
    payload: bytes,
    vlans: tuple[int, ...] = (),
    mpls: tuple[int, ...] = (),
) -> bytes:
    """An Ethernet II frame (no FCS), optionally with VLAN tags and an MPLS label stack.

    Args:
        src_mac: source MAC address.
        dst_mac: destination MAC address.
        ethertype: EtherType of ``payload`` (ignored when ``mpls`` is given: MPLS does not
            name its payload; the stack is then followed directly by ``payload``).
        payload: the network-layer packet.
        vlans: 802.1Q tag control values, outermost first (the low 12 bits are the VLAN id,
            the top 3 bits the priority). With two or more tags the outer ones are 802.1ad
            service tags (TPID 0x88a8) and the innermost is 0x8100 (QinQ).
        mpls: MPLS labels, top of stack first (TC 0, TTL 64, bottom-of-stack bit on the last).

    Returns:
        The frame bytes.

    Raises:
        ValueError: a tag or label out of range.
    """
    parts = [mac_bytes(dst_mac), mac_bytes(src_mac)]
    for i, tci in enumerate(vlans):
        if not 0 <= tci <= 0xFFFF:
            raise ValueError(f"VLAN tag control out of range: {tci}")
        tpid = EtherType.VLAN if i == len(vlans) - 1 else EtherType.QINQ
        parts.append(struct.pack("!HH", tpid, tci))
    if mpls:
        parts.append(struct.pack("!H", EtherType.MPLS))
        for i, label in enumerate(mpls):
            if not 0 <= label < 1 << 20:
                raise ValueError(f"MPLS label out of range: {label}")
            bos = 1 if i == len(mpls) - 1 else 0
            parts.append(struct.pack("!I", (label << 12) | (bos << 8) | 64))
    else:
        parts.append(struct.pack("!H", ethertype))
    parts.append(payload)
    return b"".join(parts)


def _ll_addr(addr: bytes) -> tuple[int, bytes]:
    if len(addr) > 8:
        raise ValueError(f"link-layer address longer than 8 bytes: {len(addr)}")
    return len(addr), addr.ljust(8, b"\x00")


def linux_sll(
    protocol: int,
    payload: bytes,
    *,
    pkttype: int = SllPacketType.HOST,
    arphrd: int = ArpHrd.ETHER,
    addr: str | bytes = b"\x02\x00\x00\x00\x00\x01",
) -> bytes:
    """A Linux cooked capture v1 header (LINKTYPE_LINUX_SLL, 16 bytes) plus payload.

    Args:
        protocol: EtherType of ``payload``.
        payload: the network-layer packet.
        pkttype: :class:`SllPacketType` (to us, outgoing, ...).
        arphrd: ARPHRD hardware type of the interface.
        addr: link-layer source address (a MAC string or up to 8 bytes).
    """
    raw = mac_bytes(addr) if isinstance(addr, str) else addr
    n, padded = _ll_addr(raw)
    return struct.pack("!HHH8sH", pkttype, arphrd, n, padded, protocol) + payload


def linux_sll2(
    protocol: int,
    payload: bytes,
    *,
    ifindex: int = 1,
    pkttype: int = SllPacketType.HOST,
    arphrd: int = ArpHrd.ETHER,
    addr: str | bytes = b"\x02\x00\x00\x00\x00\x01",
) -> bytes:
    """A Linux cooked capture v2 header (LINKTYPE_LINUX_SLL2, 20 bytes) plus payload.

    Args:
        protocol: EtherType of ``payload``.
        payload: the network-layer packet.
        ifindex: interface index the packet was captured on.
        pkttype: :class:`SllPacketType`.
        arphrd: ARPHRD hardware type of the interface.
        addr: link-layer source address (a MAC string or up to 8 bytes).
    """
    raw = mac_bytes(addr) if isinstance(addr, str) else addr
    n, padded = _ll_addr(raw)
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, arphrd, pkttype, n, padded) + payload


def bsd_null(family: int, payload: bytes, *, big_endian: bool = False) -> bytes:
    """A BSD loopback header (4-byte address family) plus payload.

    Args:
        family: address family (2 for IPv4; 24, 28 or 30 for IPv6 depending on the OS).
        payload: the IP packet.
        big_endian: write the family in network order (LINKTYPE_LOOP) instead of the little-
            endian host order of LINKTYPE_NULL captures made on x86.
    """
    return struct.pack(">I" if big_endian else "<I", family) + payload


# ---------------------------------------------------------------------------------------------
# IPv4


def _ipv4_header(
    src: bytes,
    dst: bytes,
    proto: int,
    total_len: int,
    *,
    ttl: int,
    ident: int,
    options: bytes,
    df: bool,
    frag_offset: int,
    more_fragments: bool,
    tos: int,
) -> bytes:
    if len(options) % 4:
        options += b"\x00" * (4 - len(options) % 4)  # EOL padding
    ihl = 5 + len(options) // 4
    if ihl > 15:
        raise ValueError(f"IPv4 options too long: {len(options)} bytes")
    total = total_len + ihl * 4
    if total > 0xFFFF:
        raise ValueError(f"IPv4 datagram too long: {total} bytes")
    if frag_offset % 8 or not 0 <= frag_offset < 1 << 16:
        raise ValueError(f"fragment offset must be a multiple of 8 below 65536: {frag_offset}")
    flags = (0x4000 if df else 0) | (0x2000 if more_fragments else 0) | (frag_offset >> 3)
    head = (
        struct.pack("!BBHHHBB", 0x40 | ihl, tos, total, ident & 0xFFFF, flags, ttl, proto & 0xFF)
        + b"\x00\x00"
        + src
        + dst
        + options
    )
    csum = internet_checksum(head)
    return head[:10] + csum.to_bytes(2, "big") + head[12:]


def ipv4(
    src: Address,
    dst: Address,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    options: bytes = b"",
    df: bool = True,
    frag_offset: int = 0,
    more_fragments: bool = False,
    tos: int = 0,
) -> bytes:
    """An IPv4 datagram (RFC 791) with a correct header checksum.

    Args:
        src: source address.
        dst: destination address.
        proto: protocol number of ``payload`` (:class:`IpProto`).
        payload: the transport-layer bytes (or a fragment of them).
        ttl: time to live.
        ident: identification field.
        options: raw option bytes (padded with EOL to a multiple of 4, at most 40).
        df: set the Don't Fragment flag.
        frag_offset: byte offset of ``payload`` in the original datagram (multiple of 8).
        more_fragments: set the More Fragments flag.
        tos: DSCP/ECN byte.

    Returns:
        The datagram bytes.

    Raises:
        ValueError: a field out of range or an address that is not IPv4.
    """
    s, d = ip_bytes(src), ip_bytes(dst)
    if len(s) != 4 or len(d) != 4:
        raise ValueError("ipv4() needs IPv4 addresses")
    head = _ipv4_header(
        s,
        d,
        proto,
        len(payload),
        ttl=ttl,
        ident=ident,
        options=options,
        df=df,
        frag_offset=frag_offset,
        more_fragments=more_fragments,
        tos=tos,
    )
    return head + payload


def ipv4_fragments(
    src: Address,
    dst: Address,
    proto: int,
    payload: bytes,
    *,
    mtu: int = 1500,
    ttl: int = 64,
    ident: int = 0,
    options: bytes = b"",
    tos: int = 0,
) -> list[bytes]:
    """Split one IPv4 datagram into fragments that fit ``mtu`` (RFC 791 §3.2).

    Args:
        src: source address.
        dst: destination address.
        proto: protocol number of ``payload``.
        payload: the whole transport-layer datagram (checksum already over the whole).
        mtu: maximum IPv4 datagram size of each fragment.
        ttl: time to live.
        ident: identification shared by all fragments.
        options: options copied into every fragment (caller's responsibility to pass only
            options with the copy bit).
        tos: DSCP/ECN byte.

    Returns:
        The fragments in offset order (a single unfragmented datagram if it fits).

    Raises:
        ValueError: ``mtu`` too small to carry 8 bytes of data per fragment.
    """
    head_len = 20 + (len(options) + 3) // 4 * 4
    step = (mtu - head_len) // 8 * 8
    if step < 8:
        raise ValueError(f"MTU {mtu} too small for fragments")
    if len(payload) + head_len <= mtu:
        return [ipv4(src, dst, proto, payload, ttl=ttl, ident=ident, options=options, tos=tos)]
    frags = []
    for off in range(0, len(payload), step):
        chunk = payload[off : off + step]
        frags.append(
            ipv4(
                src,
                dst,
                proto,
                chunk,
                ttl=ttl,
                ident=ident,
                options=options,
                df=False,
                frag_offset=off,
                more_fragments=off + step < len(payload),
                tos=tos,
            )
        )
    return frags


# ---------------------------------------------------------------------------------------------
# IPv6


def _pad_options(body: bytes) -> bytes:
    """Pad an options area so that 2 + len is a multiple of 8 (Pad1 / PadN, RFC 8200 §4.2)."""
    need = (8 - (2 + len(body)) % 8) % 8
    if need == 1:
        return body + b"\x00"
    if need:
        return body + bytes([1, need - 2]) + b"\x00" * (need - 2)
    return body


def ipv6_hop_by_hop(options: bytes = b"") -> tuple[int, bytes]:
    """A Hop-by-Hop Options extension header body for :func:`ipv6` (PadN-padded)."""
    return IpProto.HOPOPT, _pad_options(options)


def ipv6_dest_opts(options: bytes = b"") -> tuple[int, bytes]:
    """A Destination Options extension header body for :func:`ipv6` (PadN-padded)."""
    return IpProto.DSTOPTS, _pad_options(options)


def ipv6_routing(
    addresses: Sequence[Address], *, routing_type: int = 4, segments_left: int | None = None
) -> tuple[int, bytes]:
    """A Routing extension header body (type 4, Segment Routing Header, RFC 8754 layout).

    Args:
        addresses: segment list (final destination first, as the SRH stores them).
        routing_type: routing type (4 = SRH; 0 and 2 share the layout of a reserved word plus
            addresses).
        segments_left: segments left (default ``len(addresses) - 1``).
    """
    segs = b"".join(ip_bytes(a) for a in addresses)
    left = len(addresses) - 1 if segments_left is None else segments_left
    if routing_type == 4:
        last = max(len(addresses) - 1, 0)
        head = bytes([routing_type, left, last, 0]) + b"\x00\x00"  # flags, tag
    else:
        head = bytes([routing_type, left]) + b"\x00\x00\x00\x00"
    return IpProto.ROUTING, head + segs


def ipv6_fragment_header(offset: int, more: bool, ident: int) -> tuple[int, bytes]:
    """A Fragment extension header body (RFC 8200 §4.5).

    Args:
        offset: byte offset of the fragment's data (multiple of 8).
        more: the M flag (more fragments follow).
        ident: fragment identification.
    """
    if offset % 8 or not 0 <= offset < 1 << 16:
        raise ValueError(f"fragment offset must be a multiple of 8 below 65536: {offset}")
    return IpProto.FRAGMENT, struct.pack("!HI", offset | int(more), ident & 0xFFFFFFFF)


def ipv6(
    src: Address,
    dst: Address,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
    ext_headers: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """An IPv6 packet (RFC 8200) with an optional chain of extension headers.

    Args:
        src: source address.
        dst: destination address.
        next_header: protocol of ``payload`` (the end of the chain).
        payload: the upper-layer bytes.
        hop_limit: hop limit.
        traffic_class: traffic class byte.
        flow_label: 20-bit flow label.
        ext_headers: ``(type, body)`` pairs in wire order. ``body`` excludes the next-header
            and length bytes, which this function fills in; for the Fragment header (44) the
            body is the 6 bytes from :func:`ipv6_fragment_header`, for the others it must make
            ``2 + len(body)`` a multiple of 8 (the helpers pad options for you).

    Returns:
        The packet bytes.

    Raises:
        ValueError: an address that is not IPv6, or a badly sized extension header.
    """
    s, d = ip_bytes(src), ip_bytes(dst)
    if len(s) != 16 or len(d) != 16:
        raise ValueError("ipv6() needs IPv6 addresses")
    chain = []
    first = next_header
    if ext_headers:
        first = ext_headers[0][0]
        for i, (_, body) in enumerate(ext_headers):
            nxt = ext_headers[i + 1][0] if i + 1 < len(ext_headers) else next_header
            if (2 + len(body)) % 8:
                raise ValueError(f"extension header {i} body of {len(body)} bytes is misaligned")
            hdr_len = 0 if ext_headers[i][0] == IpProto.FRAGMENT else (2 + len(body)) // 8 - 1
            chain.append(bytes([nxt, hdr_len]) + body)
    rest = b"".join(chain) + payload
    if len(rest) > 0xFFFF:
        raise ValueError(f"IPv6 payload too long for a non-jumbo packet: {len(rest)}")
    word = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return struct.pack("!IHBB", word, len(rest), first, hop_limit) + s + d + rest


def ipv6_fragments(
    src: Address,
    dst: Address,
    next_header: int,
    payload: bytes,
    *,
    mtu: int = 1280,
    ident: int = 1,
    hop_limit: int = 64,
) -> list[bytes]:
    """Split an upper-layer packet into IPv6 fragments (RFC 8200 §4.5) that fit ``mtu``.

    Returns:
        The fragment packets in offset order.
    """
    step = (mtu - 40 - 8) // 8 * 8
    if step < 8:
        raise ValueError(f"MTU {mtu} too small for fragments")
    out = []
    for off in range(0, len(payload), step):
        frag = ipv6_fragment_header(off, off + step < len(payload), ident)
        out.append(
            ipv6(
                src,
                dst,
                next_header,
                payload[off : off + step],
                hop_limit=hop_limit,
                ext_headers=[frag],
            )
        )
    return out


def ip_packet(src: Address, dst: Address, proto: int, payload: bytes, *, ttl: int = 64) -> bytes:
    """An IPv4 or IPv6 packet, chosen by the address family of ``src``.

    Raises:
        ValueError: mixed address families.
    """
    s, d = ip_bytes(src), ip_bytes(dst)
    if len(s) != len(d):
        raise ValueError("source and destination address families differ")
    if len(s) == 4:
        return ipv4(s, d, proto, payload, ttl=ttl)
    return ipv6(s, d, proto, payload, hop_limit=ttl)


# ---------------------------------------------------------------------------------------------
# Transport


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def tcp(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    *,
    src_ip: Address,
    dst_ip: Address,
    window: int = 65535,
    options: bytes = b"",
    urgent: int = 0,
) -> bytes:
    """A TCP segment (RFC 9293) with its checksum over the IPv4 or IPv6 pseudo-header.

    Args:
        sport: source port.
        dport: destination port.
        seq: sequence number (taken modulo 2**32).
        ack: acknowledgment number (modulo 2**32).
        flags: :class:`TcpFlag` bits.
        payload: segment data.
        src_ip: source address of the carrying IP packet (for the checksum).
        dst_ip: destination address (final destination when a routing header is used).
        window: receive window field.
        options: raw option bytes (NOP-padded to a multiple of 4, at most 40).
        urgent: urgent pointer.

    Returns:
        The segment bytes.

    Raises:
        ValueError: options too long or mixed address families.
    """
    s, d = ip_bytes(src_ip), ip_bytes(dst_ip)
    if len(s) != len(d):
        raise ValueError("source and destination address families differ")
    if len(options) % 4:
        options += b"\x01" * (4 - len(options) % 4)
    if len(options) > 40:
        raise ValueError(f"TCP options too long: {len(options)} bytes")
    off = (5 + len(options) // 4) << 12
    head = struct.pack(
        "!HHIIHHHH",
        sport,
        dport,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        off | (flags & 0x1FF),
        window,
        0,
        urgent,
    )
    seg = head + options + payload
    csum = internet_checksum(_pseudo(s, d, IpProto.TCP, len(seg)) + seg)
    return seg[:16] + csum.to_bytes(2, "big") + seg[18:]


def udp(
    sport: int,
    dport: int,
    payload: bytes,
    *,
    src_ip: Address,
    dst_ip: Address,
    checksum: bool = True,
) -> bytes:
    """A UDP datagram (RFC 768) with its checksum over the pseudo-header.

    Args:
        sport: source port.
        dport: destination port.
        payload: datagram data.
        src_ip: source address of the carrying IP packet.
        dst_ip: destination address.
        checksum: compute the checksum (IPv4 only may send zero = none; IPv6 always computes).

    Returns:
        The datagram bytes.

    Raises:
        ValueError: datagram too long or mixed address families.
    """
    s, d = ip_bytes(src_ip), ip_bytes(dst_ip)
    if len(s) != len(d):
        raise ValueError("source and destination address families differ")
    length = 8 + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram too long: {length}")
    dgram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    if not checksum and len(s) == 4:
        return dgram
    csum = internet_checksum(_pseudo(s, d, IpProto.UDP, length) + dgram) or 0xFFFF
    return dgram[:6] + csum.to_bytes(2, "big") + dgram[8:]


def icmp(type_: int, code: int, rest: bytes) -> bytes:
    """An ICMPv4 message (RFC 792): type, code, checksum, then ``rest``."""
    msg = bytes([type_, code, 0, 0]) + rest
    csum = internet_checksum(msg)
    return msg[:2] + csum.to_bytes(2, "big") + msg[4:]


def icmp_echo(ident: int, seq: int, payload: bytes = b"", *, reply: bool = False) -> bytes:
    """An ICMPv4 echo request (type 8) or reply (type 0)."""
    return icmp(0 if reply else 8, 0, struct.pack("!HH", ident, seq) + payload)


def icmpv6(type_: int, code: int, rest: bytes, *, src_ip: Address, dst_ip: Address) -> bytes:
    """An ICMPv6 message (RFC 4443) with its checksum over the IPv6 pseudo-header."""
    s, d = ip_bytes(src_ip), ip_bytes(dst_ip)
    msg = bytes([type_, code, 0, 0]) + rest
    csum = internet_checksum(_pseudo(s, d, IpProto.ICMPV6, len(msg)) + msg)
    return msg[:2] + csum.to_bytes(2, "big") + msg[4:]


def icmpv6_echo(
    ident: int,
    seq: int,
    payload: bytes = b"",
    *,
    src_ip: Address,
    dst_ip: Address,
    reply: bool = False,
) -> bytes:
    """An ICMPv6 echo request (type 128) or reply (type 129)."""
    rest = struct.pack("!HH", ident, seq) + payload
    return icmpv6(129 if reply else 128, 0, rest, src_ip=src_ip, dst_ip=dst_ip)


# ---------------------------------------------------------------------------------------------
# Tunnels


def gre(
    inner_proto: int,
    payload: bytes,
    key: int | None = None,
    *,
    seq: int | None = None,
    checksum: bool = False,
) -> bytes:
    """A GRE header (RFC 2784 / RFC 2890) plus the inner packet; carry it in IP protocol 47.

    Args:
        inner_proto: EtherType of ``payload`` (0x0800, 0x86dd, 0x6558 for Ethernet).
        payload: the encapsulated packet or frame.
        key: optional 32-bit key (K bit).
        seq: optional sequence number (S bit).
        checksum: include a checksum (C bit) over header and payload.
    """
    flags = (0x8000 if checksum else 0) | (0x2000 if key is not None else 0)
    flags |= 0x1000 if seq is not None else 0
    head = struct.pack("!HH", flags, inner_proto)
    tail = b""
    if key is not None:
        tail += struct.pack("!I", key & 0xFFFFFFFF)
    if seq is not None:
        tail += struct.pack("!I", seq & 0xFFFFFFFF)
    if checksum:
        msg = head + b"\x00\x00\x00\x00" + tail + payload
        csum = internet_checksum(msg)
        return head + struct.pack("!HH", csum, 0) + tail + payload
    return head + tail + payload


def vxlan(vni: int, inner_ethernet_frame: bytes) -> bytes:
    """A VXLAN header (RFC 7348, I flag set) plus an inner Ethernet frame.

    Carry the result in :func:`udp` to port :data:`VXLAN_PORT`.
    """
    if not 0 <= vni < 1 << 24:
        raise ValueError(f"VNI out of range: {vni}")
    return struct.pack("!II", 0x08000000, vni << 8) + inner_ethernet_frame


def teredo(inner_ipv6: bytes, *, origin: tuple[Address, int] | None = None) -> bytes:
    """A Teredo payload (RFC 4380): optional origin indication, then the IPv6 packet.

    Carry the result in :func:`udp` with port :data:`TEREDO_PORT` on one side.

    Args:
        inner_ipv6: the encapsulated IPv6 packet.
        origin: optional ``(ipv4, port)`` origin indication (obfuscated by XOR as the RFC says).
    """
    if origin is None:
        return inner_ipv6
    addr = ip_bytes(origin[0])
    if len(addr) != 4:
        raise ValueError("Teredo origin must be IPv4")
    obf_addr = bytes(b ^ 0xFF for b in addr)
    return struct.pack("!HH", 0x0000, origin[1] ^ 0xFFFF) + obf_addr + inner_ipv6


def gtpu(teid: int, inner_ip: bytes, *, seq: int | None = None) -> bytes:
    """A GTPv1-U G-PDU header (3GPP TS 29.281) plus the inner IP packet; carry it in UDP 2152.

    Args:
        teid: tunnel endpoint identifier.
        inner_ip: the user-plane IP packet.
        seq: optional sequence number (S flag; adds the 4-byte optional field).
    """
    if seq is None:
        return struct.pack("!BBHI", 0x30, 0xFF, len(inner_ip), teid & 0xFFFFFFFF) + inner_ip
    opt = struct.pack("!HBB", seq & 0xFFFF, 0, 0)
    head = struct.pack("!BBHI", 0x32, 0xFF, len(inner_ip) + 4, teid & 0xFFFFFFFF)
    return head + opt + inner_ip
