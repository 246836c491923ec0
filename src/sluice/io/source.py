"""What every packet source yields: raw frames with their link type and time.

Capture files, live interfaces and NFQUEUE all produce :class:`RawPacket`; everything after
the source is the same code.
"""

from __future__ import annotations

__all__ = ["LinkType", "PacketSource", "RawPacket", "SourceStats"]

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, Protocol


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


@dataclass
class SourceStats:
    """What a source saw besides packets: anomalies by stable reason code."""

    anomalies: dict[str, int] = field(default_factory=dict)
    """Counted problems (``capture.truncated_record`` ...)."""
    bytes_read: int = 0
    """Bytes consumed from the underlying file or socket (for progress)."""
    bytes_total: int | None = None
    """Total size when known (files), for progress bars."""

    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` to the counter of ``reason``."""
        self.anomalies[reason] = self.anomalies.get(reason, 0) + n


class PacketSource(Protocol):
    """An iterable of :class:`RawPacket` with running statistics."""

    stats: SourceStats

    def __iter__(self) -> Iterator[RawPacket]: ...

    def close(self) -> None: ...
