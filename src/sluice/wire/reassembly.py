"""Bounded, sans-IO reassembly of one byte stream from segments.

Theory of operation
-------------------
A :class:`StreamReassembler` turns ``(offset, data)`` segments that may arrive out of order,
overlap or repeat into the bytes of the stream, delivered once each and in order. It serves both
TCP (the caller passes ``tcp_relative(seq, isn)``; RFC 9293 §3.4 sequence numbers wrap modulo
2**32, so the caller owns the ISN) and QUIC CRYPTO frames (RFC 9000 §19.6 gives the offset
directly).

State is ``contiguous`` (how many stream bytes have been delivered; the next expected offset)
and a sorted list of disjoint pending intervals above it. A new segment is first trimmed to the
window ``[contiguous, max_bytes)``; if it starts at or before ``contiguous`` and nothing is
pending (the usual in-order case) it is returned directly, without a copy when it starts exactly
at ``contiguous``. Otherwise it is merged into the pending intervals and whatever became
contiguous is returned.

Overlaps keep the bytes that arrived first ("first copy wins", as Zeek and most IDS stream
engines do by default); a later segment only fills holes.

Limits: only the first ``max_bytes`` of the stream are ever accepted (sluice reassembles
handshakes, not whole flows), and at most ``max_segments`` disjoint pending intervals are
held. Data refused by either limit is dropped and ``overflowed`` is set, so that memory never
exceeds about ``max_bytes`` per stream.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SEGMENTS",
    "StreamReassembler",
    "tcp_relative",
]

from bisect import bisect_left

DEFAULT_MAX_BYTES = 65536
"""Default window: the first 64 KiB of a stream."""

DEFAULT_MAX_SEGMENTS = 64
"""Default limit on disjoint out-of-order intervals held at once."""

_SEQ_MOD = 1 << 32


def tcp_relative(seq: int, isn: int) -> int:
    """Offset of TCP sequence number ``seq`` from ``isn``, modulo 2**32 (RFC 9293 §3.4).

    Args:
        seq: the segment's sequence number.
        isn: the sequence number of the first stream byte (the SYN's sequence number + 1).

    Returns:
        ``(seq - isn) mod 2**32``; a segment from before ``isn`` gives a value near 2**32, which
        :meth:`StreamReassembler.feed` treats as beyond its window.
    """
    return (seq - isn) % _SEQ_MOD


class StreamReassembler:
    """Reassemble the first ``max_bytes`` of one stream from segments (sans-IO).

    Args:
        max_bytes: stream bytes accepted from offset 0; later data is dropped.
        max_segments: disjoint out-of-order intervals held at once; a segment that would
            exceed it is dropped.

    Attributes:
        contiguous: stream bytes delivered so far (the next offset expected).
        overflowed: True once any data was dropped because of ``max_bytes`` or
            ``max_segments``.
    """

    __slots__ = (
        "_data",
        "_ends",
        "_starts",
        "contiguous",
        "max_bytes",
        "max_segments",
        "overflowed",
    )

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_segments: int = DEFAULT_MAX_SEGMENTS
    ) -> None:
        if max_bytes < 0 or max_segments < 1:
            raise ValueError("max_bytes must be >= 0 and max_segments >= 1")
        self.max_bytes = max_bytes
        self.max_segments = max_segments
        self.contiguous = 0
        self.overflowed = False
        # Pending intervals, sorted, disjoint and not adjacent: [_starts[i], _ends[i]).
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._data: list[bytes] = []

    @property
    def pending_bytes(self) -> int:
        """Bytes held above a gap, waiting for the gap to fill."""
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    @property
    def pending_segments(self) -> int:
        """Disjoint intervals held above a gap."""
        return len(self._starts)

    def feed(self, offset: int, data: bytes | bytearray | memoryview) -> bytes:
        """Add one segment and return the bytes that became contiguous.

        Args:
            offset: stream offset of ``data[0]`` (0 is the first stream byte).
            data: the segment payload.

        Returns:
            The newly contiguous bytes, starting at the previous value of ``contiguous``
            (empty if the segment filled no gap at the front).
        """
        n = len(data)
        end = offset + n
        cont = self.contiguous
        if n == 0 or end <= cont:
            return b""
        limit = self.max_bytes
        if end > limit:
            self.overflowed = True
            if offset >= limit:
                return b""
            end = limit
        if offset < cont:
            data = data[cont - offset : end - offset]
            offset = cont
        elif end - offset != n:
            data = data[: end - offset]
        if offset == cont and not self._starts:
            self.contiguous = end
            return data if type(data) is bytes else bytes(data)
        return self._insert(offset, end, data)

    def _insert(self, start: int, end: int, data: bytes | bytearray | memoryview) -> bytes:
        starts, ends, chunks = self._starts, self._ends, self._data
        # Intervals that overlap or touch [start, end) are merged with it.
        lo = bisect_left(ends, start)
        hi = lo
        while hi < len(starts) and starts[hi] <= end:
            hi += 1
        if lo == hi:
            if len(starts) >= self.max_segments and start > self.contiguous:
                self.overflowed = True
                return b""
            starts.insert(lo, start)
            ends.insert(lo, end)
            chunks.insert(lo, bytes(data))
        else:
            m_start = min(start, starts[lo])
            m_end = max(end, ends[hi - 1])
            buf = bytearray(m_end - m_start)
            buf[start - m_start : end - m_start] = data
            for i in range(lo, hi):  # earlier copies win over the new segment
                buf[starts[i] - m_start : ends[i] - m_start] = chunks[i]
            starts[lo:hi] = [m_start]
            ends[lo:hi] = [m_end]
            chunks[lo:hi] = [bytes(buf)]
        if starts[0] > self.contiguous:
            return b""
        out = chunks[0]
        self.contiguous = ends[0]
        del starts[0], ends[0], chunks[0]
        return out
