"""From a captured frame to one :class:`Packet`: link layer, tunnels, IP, transport.

Theory of operation: :func:`decode_packet` walks the layers of one frame, outermost first. Each
encapsulation it looks through (GRE, VXLAN, Teredo, GTP-U, IP-in-IP, 6in4) is pushed on
``Packet.tunnels`` with its outer addresses, and the walk continues on the inner packet, so the
fields of the packet describe the innermost IP datagram and its transport header. The packet is
filled in place, so when a :class:`~sluice.errors.DecodeError` stops the walk the caller still has
the layers that did decode.
"""

from __future__ import annotations

__all__ = ["MAX_TUNNEL_DEPTH", "Packet", "decode_packet"]

from dataclasses import dataclass

from sluice.errors import DecodeError
from sluice.wire.ethernet import (
    EtherType,
    LinkHeader,
    decode_bsd_null,
    decode_ethernet,
    decode_linux_sll,
    decode_linux_sll2,
)
from sluice.wire.frame import LinkType
from sluice.wire.ip import Fragment, IpProto, decode_ipv4, decode_ipv6
from sluice.wire.transport import decode_icmp, decode_tcp, decode_udp
from sluice.wire.tunnel import (
    GTPU_PORT,
    TEREDO_PORT,
    VXLAN_PORT,
    Inner,
    Tunnel,
    decode_gre,
    try_gtpu,
    try_teredo,
    try_vxlan,
)

MAX_TUNNEL_DEPTH = 4

_IPIP_NAMES = {(4, 4): "ipip", (4, 6): "6in4", (6, 4): "4in6", (6, 6): "6in6"}


@dataclass(slots=True)
class Packet:
    """The decoded view of one frame; fields describe the innermost IP datagram."""

    vlans: tuple[int, ...] = ()
    """VLAN IDs of the outermost Ethernet header, outermost first."""
    mpls: tuple[int, ...] = ()
    """MPLS labels, outermost first."""
    tunnels: tuple[Tunnel, ...] = ()
    """Encapsulations looked through, outermost first."""
    ip_version: int = 0
    """4 or 6; 0 when the frame carries no IP."""
    src: bytes = b""
    """Source address of the innermost IP header."""
    dst: bytes = b""
    """Destination address of the innermost IP header."""
    proto: int = 0
    """IP protocol of the innermost datagram."""
    ip_len: int = 0
    """Total length of the innermost datagram (header included), from its header."""
    ttl: int = 0
    """TTL or hop limit of the innermost datagram."""
    fragment: Fragment | None = None
    """Fragmentation of the innermost datagram, when it is a fragment."""
    sport: int = 0
    """Source port (0 for protocols without ports, and for non-first fragments)."""
    dport: int = 0
    """Destination port."""
    tcp_flags: int = 0
    """TCP control bits."""
    seq: int = 0
    """TCP sequence number."""
    ack: int = 0
    """TCP acknowledgement number."""
    window: int = 0
    """TCP window."""
    icmp_type: int = -1
    """ICMP/ICMPv6 type, -1 when not ICMP."""
    icmp_code: int = -1
    """ICMP/ICMPv6 code."""
    payload: bytes = b""
    """Transport payload as captured (may be cut by the snap length)."""
    ethertype: int = 0
    """EtherType of the outermost link payload (ARP and others end the walk there)."""
    l4_header_len: int = 0
    """Length of the transport header (UDP 8, TCP its data offset, ICMP 4), 0 for others."""
    reassembled: tuple[bytes, int, int] | None = None
    """On the fragment that completes a datagram: (transport payload, TCP seq, TCP flags)."""


def _link(data: bytes, linktype: int) -> tuple[LinkHeader, int]:
    if linktype == LinkType.ETHERNET:
        return decode_ethernet(data, 0)
    if linktype in (LinkType.RAW, LinkType.IPV4, LinkType.IPV6):
        if not data:
            raise DecodeError("raw.truncated", 0)
        nibble = data[0] >> 4
        if nibble == 4:
            return LinkHeader(EtherType.IPV4), 0
        if nibble == 6:
            return LinkHeader(EtherType.IPV6), 0
        raise DecodeError("raw.bad_version", 0, f"first nibble {nibble}")
    if linktype == LinkType.LINUX_SLL:
        return decode_linux_sll(data, 0)
    if linktype == LinkType.LINUX_SLL2:
        return decode_linux_sll2(data, 0)
    if linktype == LinkType.NULL:
        return decode_bsd_null(data, 0)
    if linktype == LinkType.LOOP:
        return decode_bsd_null(data, 0, network_order=True)
    raise DecodeError("link.unsupported", 0, f"link type {linktype}")


def decode_packet(data: bytes, linktype: int, pkt: Packet) -> None:
    """Fill ``pkt`` from one captured frame.

    Args:
        data: the captured bytes.
        linktype: the link-layer header type (:class:`~sluice.io.source.LinkType`).
        pkt: a fresh :class:`Packet`, filled in place as layers decode.

    Raises:
        DecodeError: from whichever layer failed; ``pkt`` keeps the layers before it.
    """
    link, off = _link(data, linktype)
    pkt.vlans, pkt.mpls, pkt.ethertype = link.vlans, link.mpls, link.ethertype
    etype = link.ethertype
    tunnels: list[Tunnel] = []
    while True:
        if etype == EtherType.IPV4:
            ip, off, end = decode_ipv4(data, off)
        elif etype == EtherType.IPV6:
            ip, off, end = decode_ipv6(data, off)
        else:
            return  # not IP: ARP, LLDP, ... (ip_version stays 0)
        pkt.ip_version, pkt.src, pkt.dst, pkt.proto = ip.version, ip.src, ip.dst, ip.proto
        pkt.ip_len, pkt.ttl, pkt.fragment = ip.total_length, ip.ttl, ip.fragment
        if ip.fragment is not None and ip.fragment.offset:
            pkt.payload = data[off:end]
            break  # a later fragment: no transport header here
        inner: Inner | None = None
        ident = 0
        kind = ""
        proto = ip.proto
        if proto in (IpProto.IPIP, IpProto.IPV6) and ip.fragment is None:
            inner = Inner.IPV4 if proto == IpProto.IPIP else Inner.IPV6
            kind = _IPIP_NAMES[(ip.version, int(inner))]
        elif proto == IpProto.GRE and ip.fragment is None:
            inner, off, ident = decode_gre(data, off, end)
            kind = "gre"
            if inner is None:
                pkt.payload = data[off:end]
                break
        elif proto == IpProto.TCP:
            l4_start = off
            tcp, off = decode_tcp(data, off, end)
            pkt.sport, pkt.dport, pkt.tcp_flags = tcp.sport, tcp.dport, tcp.flags
            pkt.seq, pkt.ack, pkt.window = tcp.seq, tcp.ack, tcp.window
            pkt.l4_header_len = off - l4_start
            pkt.payload = data[off:end]
            break
        elif proto == IpProto.UDP:
            sport, dport, off, end = decode_udp(data, off, end)
            pkt.sport, pkt.dport = sport, dport
            if len(tunnels) < MAX_TUNNEL_DEPTH and ip.fragment is None:
                inner, kind, ident, off = _udp_tunnel(data, off, end, sport, dport)
            if inner is None:
                pkt.l4_header_len = 8
                pkt.payload = data[off:end]
                break
            pkt.sport = pkt.dport = 0
        elif proto in (IpProto.ICMP, IpProto.ICMPV6):
            layer = "icmp" if proto == IpProto.ICMP else "icmpv6"
            pkt.icmp_type, pkt.icmp_code = decode_icmp(data, off, end, layer=layer)
            pkt.l4_header_len = 4
            pkt.payload = data[off + 4 : end]
            break
        else:
            pkt.payload = data[off:end]
            break
        if len(tunnels) >= MAX_TUNNEL_DEPTH:
            raise DecodeError("tunnel.too_deep", off, f"more than {MAX_TUNNEL_DEPTH} layers")
        tunnels.append(Tunnel(kind, ip.src, ip.dst, ident))
        pkt.tunnels = tuple(tunnels)
        if inner == Inner.ETHERNET:
            link, off = decode_ethernet(data, off)
            etype = link.ethertype
            pkt.vlans = pkt.vlans + link.vlans
        else:
            etype = EtherType.IPV4 if inner == Inner.IPV4 else EtherType.IPV6


def _udp_tunnel(
    data: bytes, off: int, end: int, sport: int, dport: int
) -> tuple[Inner | None, str, int, int]:
    if VXLAN_PORT in (dport, sport):  # replies from 4789 exist in the wild (and in our lab)
        vx = try_vxlan(data, off, end)
        if vx is not None:
            return Inner.ETHERNET, "vxlan", vx[0], vx[1]
    if TEREDO_PORT in (sport, dport):
        pos = try_teredo(data, off, end)
        if pos is not None:
            return Inner.IPV6, "teredo", 0, pos
    if GTPU_PORT in (sport, dport):
        gt = try_gtpu(data, off, end)
        if gt is not None:
            inner = Inner.IPV4 if data[gt[1]] >> 4 == 4 else Inner.IPV6
            return inner, "gtpu", gt[0], gt[1]
    return None, "", 0, off
