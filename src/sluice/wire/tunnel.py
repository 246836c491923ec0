"""Encapsulations that sluice looks through: GRE, VXLAN, Teredo and GTP-U.

IP-in-IP and 6in4 need no header of their own (IP protocol 4 and 41); they are handled in
:mod:`sluice.wire.packet`. Each decoder here returns the inner payload's kind and offset, or
``None`` when the bytes do not look like that encapsulation (a UDP flow on port 4789 that is not
VXLAN stays a UDP flow).
"""

from __future__ import annotations

__all__ = [
    "GTPU_PORT",
    "TEREDO_PORT",
    "VXLAN_PORT",
    "Inner",
    "Tunnel",
    "decode_gre",
    "try_gtpu",
    "try_teredo",
    "try_vxlan",
]

import struct
from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError

VXLAN_PORT = 4789
TEREDO_PORT = 3544
GTPU_PORT = 2152

_GRE = struct.Struct("!HH")


class Inner(IntEnum):
    """What an encapsulation carries."""

    IPV4 = 4
    IPV6 = 6
    ETHERNET = 1


@dataclass(frozen=True, slots=True)
class Tunnel:
    """One layer of encapsulation, as seen in the packet (not flow-oriented)."""

    kind: str
    """``gre``, ``vxlan``, ``teredo``, ``gtpu``, ``ipip`` (4in4), ``6in4``, ``4in6``, ``6in6``."""
    src: bytes
    """Outer source address."""
    dst: bytes
    """Outer destination address."""
    ident: int = 0
    """GRE key, VXLAN VNI or GTP-U TEID (0 when absent)."""


def decode_gre(buf: bytes | memoryview, off: int, end: int) -> tuple[Inner | None, int, int]:
    """Decode a GRE header (RFC 2784, key and sequence of RFC 2890, PPTP's version 1 of RFC 2637).

    Returns:
        (inner kind or None when the payload is not IP/Ethernet, payload offset, key or 0).

    Raises:
        DecodeError: ``gre.truncated``, ``gre.bad_version``.
    """
    if off + 4 > end:
        raise DecodeError("gre.truncated", off)
    flags, proto = _GRE.unpack_from(buf, off)
    version = flags & 0x7
    if version > 1:
        raise DecodeError("gre.bad_version", off, f"version {version}")
    pos = off + 4
    if flags & 0x8000:  # checksum present
        pos += 4
    key = 0
    if flags & 0x2000:
        if pos + 4 > end:
            raise DecodeError("gre.truncated", pos)
        (key,) = struct.unpack_from("!I", buf, pos)
        pos += 4
    if flags & 0x1000:  # sequence number
        pos += 4
    if version == 1 and flags & 0x0080:  # PPTP acknowledgement number
        pos += 4
    if pos > end:
        raise DecodeError("gre.truncated", pos)
    if proto == 0x0800:
        return Inner.IPV4, pos, key
    if proto == 0x86DD:
        return Inner.IPV6, pos, key
    if proto == 0x6558:
        return Inner.ETHERNET, pos, key
    if proto == 0x88BE and version == 0 and flags & 0x1000:  # ERSPAN type II: 8-byte header
        return Inner.ETHERNET, pos + 8, key
    return None, pos, key


def try_vxlan(buf: bytes | memoryview, off: int, end: int) -> tuple[int, int] | None:
    """VXLAN (RFC 7348 §5): 8 bytes, I flag set, then an Ethernet frame.

    Returns:
        (VNI, offset of the inner Ethernet frame), or None if this is not VXLAN.
    """
    if off + 8 + 14 > end or buf[off] & 0x08 == 0 or buf[off] & 0xF7:
        return None
    (word,) = struct.unpack_from("!I", buf, off + 4)
    return word >> 8, off + 8


def try_teredo(buf: bytes | memoryview, off: int, end: int) -> int | None:
    """Teredo (RFC 4380 §5.1.1): IPv6 in UDP, after optional authentication/origin headers.

    Returns:
        offset of the inner IPv6 header, or None if this is not a Teredo data packet.
    """
    pos = off
    if pos + 2 <= end and buf[pos] == 0 and buf[pos + 1] == 1:  # authentication indicator
        if pos + 4 > end:
            return None
        pos += 4 + buf[pos + 2] + buf[pos + 3] + 8 + 1
    if pos + 2 <= end and buf[pos] == 0 and buf[pos + 1] == 0:  # origin indication
        pos += 8
    if pos + 40 > end or buf[pos] >> 4 != 6:
        return None
    (plen,) = struct.unpack_from("!H", buf, pos + 4)
    if pos + 40 + plen != end:
        return None
    return pos


def try_gtpu(buf: bytes | memoryview, off: int, end: int) -> tuple[int, int] | None:
    """GTP-U version 1 G-PDU (3GPP TS 29.281 §5.1) carrying IPv4 or IPv6.

    Returns:
        (TEID, offset of the inner IP header), or None if this is not a G-PDU with IP inside.
    """
    if off + 8 > end:
        return None
    flags, msg_type, length, teid = struct.unpack_from("!BBHI", buf, off)
    if flags >> 5 != 1 or not flags & 0x10 or msg_type != 0xFF:
        return None
    pos = off + 8
    if flags & 0x07:  # E, S or PN: sequence, N-PDU number and next extension type follow
        if pos + 4 > end:
            return None
        next_ext = buf[pos + 3]
        pos += 4
        while next_ext:
            if pos + 1 > end:
                return None
            ext_len = buf[pos] * 4
            if ext_len == 0 or pos + ext_len > end:
                return None
            next_ext = buf[pos + ext_len - 1]
            pos += ext_len
    if pos >= end or buf[pos] >> 4 not in (4, 6) or off + 8 + length != end:
        return None
    return teid, pos
