"""What the dissectors start from: one captured frame, its link-layer type and its time.

Every packet source (capture files, live interfaces, NFQUEUE; :mod:`sluice.io`) yields
:class:`RawPacket`; :func:`sluice.wire.packet.decode_packet` dissects one.
"""

from __future__ import annotations

__all__ = ["LinkType", "RawPacket"]

from enum import IntEnum
from typing import NamedTuple


class LinkType(IntEnum):
    """Link-layer header types (tcpdump.org/linktypes.html) that sluice dissects."""

    NULL = 0  #: BSD loopback, 4-byte address family in host byte order
    ETHERNET = 1
    RAW = 101  #: raw IPv4 or IPv6, version from the first nibble
    LOOP = 108  #: OpenBSD loopback, address family in network byte order
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


class RawPacket(NamedTuple):
    """One captured frame."""

    ts: float
    """Capture time, seconds since the epoch."""
    linktype: int
    """Link-layer header type of ``data`` (:class:`LinkType` value)."""
    data: bytes
    """The captured bytes (may be shorter than ``wirelen``)."""
    wirelen: int
    """Length of the frame on the wire."""
    interface: int = 0
    """Interface index within the source (pcapng IDB index)."""
