"""IPv4 (RFC 791) and IPv6 (RFC 8200) headers, with IPv4 options and IPv6 extension headers."""

from __future__ import annotations

__all__ = [
    "Fragment",
    "IpHeader",
    "IpProto",
    "decode_ipv4",
    "decode_ipv6",
]

import struct
from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError

_V4 = struct.Struct("!BBHHHBBH4s4s")
_V6 = struct.Struct("!IHBB16s16s")

MAX_IPV6_EXTENSIONS = 8


class IpProto(IntEnum):
    """IP protocol numbers sluice follows (IANA)."""

    HOPOPT = 0
    ICMP = 1
    IPIP = 4
    TCP = 6
    UDP = 17
    IPV6 = 41
    ROUTING = 43
    FRAGMENT = 44
    GRE = 47
    ESP = 50
    AH = 51
    ICMPV6 = 58
    NONE = 59
    DSTOPTS = 60
    MOBILITY = 135
    SCTP = 132


_IPV6_EXT = frozenset((IpProto.HOPOPT, IpProto.ROUTING, IpProto.DSTOPTS, IpProto.MOBILITY, 139, 140))


@dataclass(frozen=True, slots=True)
class Fragment:
    """Fragmentation fields of an IP datagram that is a fragment."""

    ident: int
    """Identification (IPv4 16 bits, IPv6 32 bits)."""
    offset: int
    """Offset of this fragment's data in the datagram, bytes."""
    more: bool
    """More fragments follow."""


@dataclass(frozen=True, slots=True)
class IpHeader:
    """An IPv4 or IPv6 header, extension headers walked."""

    version: int
    """4 or 6."""
    src: bytes
    """Source address, 4 or 16 bytes."""
    dst: bytes
    """Destination address, 4 or 16 bytes."""
    proto: int
    """Protocol of the payload (after IPv6 extension headers)."""
    total_length: int
    """Datagram length from the header (IPv6: 40 + payload length)."""
    ttl: int
    """TTL or hop limit."""
    fragment: Fragment | None = None
    """Set when the datagram is a fragment."""
    options: tuple[tuple[int, bytes], ...] = ()
    """IPv4 options or IPv6 extension headers, as (code, bytes); unknown ones kept."""


def _v4_options(buf: bytes | memoryview, off: int, end: int) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    while off < end:
        code = buf[off]
        if code == 0:  # end of option list
            break
        if code == 1:  # no-operation
            off += 1
            continue
        if off + 1 >= end:
            raise DecodeError("ipv4.bad_option", off)
        length = buf[off + 1]
        if length < 2 or off + length > end:
            raise DecodeError("ipv4.bad_option", off, f"option {code} length {length}")
        out.append((code, bytes(buf[off + 2 : off + length])))
        off += length
    return tuple(out)


def decode_ipv4(buf: bytes | memoryview, off: int = 0) -> tuple[IpHeader, int, int]:
    """Decode an IPv4 header (RFC 791 §3.1).

    Returns:
        (header, offset of the payload, end of the payload within ``buf``). The end is the
        datagram's end by its total length, cut to the captured bytes.

    Raises:
        DecodeError: ``ipv4.truncated``, ``ipv4.bad_version``, ``ipv4.bad_ihl``,
            ``ipv4.bad_total_length``, ``ipv4.bad_option``.
    """
    if off + 20 > len(buf):
        raise DecodeError("ipv4.truncated", off)
    vihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = _V4.unpack_from(buf, off)
    if vihl >> 4 != 4:
        raise DecodeError("ipv4.bad_version", off, f"version {vihl >> 4}")
    hlen = (vihl & 0x0F) * 4
    if hlen < 20:
        raise DecodeError("ipv4.bad_ihl", off, f"header length {hlen}")
    if off + hlen > len(buf):
        raise DecodeError("ipv4.truncated", off)
    if total < hlen:
        if total == 0:  # TSO/offloaded captures write 0; trust the captured length
            total = len(buf) - off
        else:
            raise DecodeError("ipv4.bad_total_length", off, f"total {total} < header {hlen}")
    options = _v4_options(buf, off + 20, off + hlen) if hlen > 20 else ()
    fragment = None
    if frag & 0x3FFF:  # MF set or offset non-zero
        fragment = Fragment(ident, (frag & 0x1FFF) * 8, bool(frag & 0x2000))
    end = min(off + total, len(buf))
    header = IpHeader(4, src, dst, proto, total, ttl, fragment, options)
    return header, off + hlen, end


def decode_ipv6(buf: bytes | memoryview, off: int = 0) -> tuple[IpHeader, int, int]:
    """Decode an IPv6 header (RFC 8200 §3) and walk its extension headers (§4).

    AH (RFC 4302) is walked as an extension header; ESP ends the walk (its payload is encrypted).

    Returns:
        (header, offset of the upper-layer payload, end of the payload within ``buf``).

    Raises:
        DecodeError: ``ipv6.truncated``, ``ipv6.bad_version``, ``ipv6.bad_extension``,
            ``ipv6.too_many_extensions``.
    """
    if off + 40 > len(buf):
        raise DecodeError("ipv6.truncated", off)
    vtcfl, plen, nh, hlim, src, dst = _V6.unpack_from(buf, off)
    if vtcfl >> 28 != 6:
        raise DecodeError("ipv6.bad_version", off, f"version {vtcfl >> 28}")
    end = min(off + 40 + plen, len(buf)) if plen else len(buf)  # jumbogram/TSO: captured length
    off += 40
    fragment = None
    exts: list[tuple[int, bytes]] = []
    while nh in _IPV6_EXT or nh in (IpProto.FRAGMENT, IpProto.AH):
        if len(exts) >= MAX_IPV6_EXTENSIONS:
            raise DecodeError("ipv6.too_many_extensions", off)
        if off + 8 > end:
            raise DecodeError("ipv6.bad_extension", off, f"extension {nh} truncated")
        code = nh
        if nh == IpProto.FRAGMENT:
            nh = buf[off]
            (fo,) = struct.unpack_from("!H", buf, off + 2)
            (ident,) = struct.unpack_from("!I", buf, off + 4)
            fragment = Fragment(ident, fo & 0xFFF8, bool(fo & 1))
            length = 8
        elif nh == IpProto.AH:
            nh = buf[off]
            length = (buf[off + 1] + 2) * 4
        else:
            nh = buf[off]
            length = (buf[off + 1] + 1) * 8
        if off + length > end:
            raise DecodeError("ipv6.bad_extension", off, f"extension {code} length {length}")
        exts.append((code, bytes(buf[off + 2 : off + length])))
        off += length
        if fragment is not None and fragment.offset:
            break  # the rest of the chain is in the first fragment
    header = IpHeader(6, src, dst, nh, 40 + plen, hlim, fragment, tuple(exts))
    return header, off, end
