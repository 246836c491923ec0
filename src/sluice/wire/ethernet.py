"""Link layers: Ethernet II with 802.1Q/802.1ad tags and MPLS, Linux cooked (SLL, SLL2), BSD null.

Each ``decode_*`` takes the buffer and an offset and returns the header record and the offset of
the next layer. Sans-IO: bytes in, records out.
"""

from __future__ import annotations

__all__ = [
    "ArpHrd",
    "EtherType",
    "LinkHeader",
    "SllPacketType",
    "decode_bsd_null",
    "decode_ethernet",
    "decode_linux_sll",
    "decode_linux_sll2",
    "ethertype_after_mpls",
]

import struct
from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_SLL = struct.Struct("!HHH8sH")
_SLL2 = struct.Struct("!HHIHBB8s")

MAX_VLAN_TAGS = 4
MAX_MPLS_LABELS = 8


class EtherType(IntEnum):
    """EtherType values sluice follows (IEEE registry)."""

    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100  #: IEEE 802.1Q customer tag
    QINQ = 0x88A8  #: IEEE 802.1ad service tag
    QINQ_OLD = 0x9100
    IPV6 = 0x86DD
    MPLS = 0x8847
    MPLS_MULTICAST = 0x8848
    TEB = 0x6558  #: transparent Ethernet bridging (Ethernet inside GRE)
    PPPOE_SESSION = 0x8864  #: PPPoE session stage (RFC 2516), PPP inside


class ArpHrd(IntEnum):
    """``ARPHRD_*`` device types (include/uapi/linux/if_arp.h): a Linux cooked capture's hardware
    type, and the devices a live capture reads from."""

    ETHER = 1
    RAWIP = 519
    LOOPBACK = 772
    NONE = 0xFFFE


class SllPacketType(IntEnum):
    """Linux cooked-capture packet types (``PACKET_*``, include/uapi/linux/if_packet.h)."""

    HOST = 0  #: addressed to this host
    BROADCAST = 1
    MULTICAST = 2
    OTHERHOST = 3
    OUTGOING = 4  #: sent by this host


_TAG_TYPES = frozenset((EtherType.VLAN, EtherType.QINQ, EtherType.QINQ_OLD))
_MPLS_TYPES = frozenset((EtherType.MPLS, EtherType.MPLS_MULTICAST))


@dataclass(frozen=True, slots=True)
class LinkHeader:
    """What the link layer tells about a frame."""

    ethertype: int
    """Protocol of the payload (EtherType value; IPv4/IPv6 guessed after MPLS)."""
    vlans: tuple[int, ...] = ()
    """VLAN IDs, outermost first."""
    mpls: tuple[int, ...] = ()
    """MPLS labels, outermost first."""


def _need(buf: bytes | memoryview, off: int, n: int, reason: str) -> None:
    if off + n > len(buf):
        raise DecodeError(reason, off, f"need {n} bytes, have {len(buf) - off}")


def ethertype_after_mpls(buf: bytes | memoryview, off: int) -> tuple[tuple[int, ...], int, int]:
    """Walk an MPLS label stack (RFC 3032 §2.1) and guess the payload from its first nibble.

    Returns:
        (labels, ethertype of the payload, offset of the payload).

    Raises:
        DecodeError: ``mpls.truncated``, ``mpls.too_many_labels``, ``mpls.unknown_payload``.
    """
    labels: list[int] = []
    while True:
        _need(buf, off, 4, "mpls.truncated")
        (entry,) = _U32.unpack_from(buf, off)
        off += 4
        labels.append(entry >> 12)
        if entry & 0x100:  # bottom of stack
            break
        if len(labels) >= MAX_MPLS_LABELS:
            raise DecodeError("mpls.too_many_labels", off)
    _need(buf, off, 1, "mpls.truncated")
    nibble = buf[off] >> 4
    if nibble == 4:
        return tuple(labels), EtherType.IPV4, off
    if nibble == 6:
        return tuple(labels), EtherType.IPV6, off
    raise DecodeError("mpls.unknown_payload", off, f"first nibble {nibble}")


def _after_type(buf: bytes | memoryview, off: int, etype: int) -> tuple[LinkHeader, int]:
    vlans: list[int] = []
    while etype in _TAG_TYPES:
        if len(vlans) >= MAX_VLAN_TAGS:
            raise DecodeError("vlan.too_many_tags", off)
        _need(buf, off, 4, "vlan.truncated")
        tci, etype = struct.unpack_from("!HH", buf, off)
        vlans.append(tci & 0x0FFF)
        off += 4
    mpls: tuple[int, ...] = ()
    if etype in _MPLS_TYPES:
        mpls, etype, off = ethertype_after_mpls(buf, off)
    elif etype == EtherType.PPPOE_SESSION:
        etype, off = _pppoe(buf, off)
    return LinkHeader(etype, tuple(vlans), mpls), off


_PPP_TO_ETHERTYPE = {0x0021: EtherType.IPV4, 0x0057: EtherType.IPV6}


def _pppoe(buf: bytes | memoryview, off: int) -> tuple[int, int]:
    """PPPoE session header (RFC 2516 §4) and the PPP protocol field (RFC 1661 §2)."""
    _need(buf, off, 8, "pppoe.truncated")
    if buf[off] != 0x11 or buf[off + 1] != 0x00:
        raise DecodeError("pppoe.bad_header", off, f"version/type {buf[off]:#x} code {buf[off + 1]}")
    (ppp,) = _U16.unpack_from(buf, off + 6)
    return _PPP_TO_ETHERTYPE.get(ppp, 0), off + 8


def decode_ethernet(buf: bytes | memoryview, off: int = 0) -> tuple[LinkHeader, int]:
    """Decode an Ethernet II header (IEEE 802.3 §3.2.6) with its tags.

    802.3 frames with a length instead of a type (LLC/SNAP) come back with ethertype 0.
    """
    _need(buf, off, 14, "ethernet.truncated")
    (etype,) = _U16.unpack_from(buf, off + 12)
    if etype < 0x0600:  # 802.3 length field: LLC frame, not IP
        return LinkHeader(0), off + 14
    return _after_type(buf, off + 14, etype)


def decode_linux_sll(buf: bytes | memoryview, off: int = 0) -> tuple[LinkHeader, int]:
    """Decode a Linux cooked-mode header, version 1 (16 bytes; protocol at offset 14)."""
    _need(buf, off, 16, "sll.truncated")
    (etype,) = _U16.unpack_from(buf, off + 14)
    return _after_type(buf, off + 16, etype)


def decode_linux_sll2(buf: bytes | memoryview, off: int = 0) -> tuple[LinkHeader, int]:
    """Decode a Linux cooked-mode header, version 2 (20 bytes; protocol first)."""
    _need(buf, off, 20, "sll2.truncated")
    (etype,) = _U16.unpack_from(buf, off)
    return _after_type(buf, off + 20, etype)


# Address families seen in DLT_NULL/DLT_LOOP headers: AF_INET is 2 everywhere; AF_INET6 differs.
_AF_INET6 = frozenset((10, 24, 28, 30))


def decode_bsd_null(
    buf: bytes | memoryview, off: int = 0, *, network_order: bool = False
) -> tuple[LinkHeader, int]:
    """Decode a BSD loopback header: a 4-byte address family in the writer's byte order.

    The byte order of ``DLT_NULL`` is the capturing host's; both are tried, as libpcap does.
    """
    _need(buf, off, 4, "null.truncated")
    raw = bytes(buf[off : off + 4])
    fam = int.from_bytes(raw, "big")
    if not network_order and fam > 0xFFFF:
        fam = int.from_bytes(raw, "little")
    if fam == 2:
        return LinkHeader(EtherType.IPV4), off + 4
    if fam in _AF_INET6:
        return LinkHeader(EtherType.IPV6), off + 4
    raise DecodeError("null.unknown_family", off, f"address family {fam}")
