"""What every packet source yields: raw frames with their link type and time.

Capture files, live interfaces and NFQUEUE all produce :class:`RawPacket`; everything after
the source is the same code.
"""

from __future__ import annotations

__all__ = ["LinkType", "PacketSource", "RawPacket", "SourceStats"]

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sluice.wire.frame import LinkType, RawPacket


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
