"""One bounds-checked reader over a bytes-like buffer.

Every dissector reads through a :class:`Cursor`; a read past the end raises
:class:`~sluice.errors.DecodeError` with the caller's layer in the reason, so ``IndexError`` and
``struct.error`` never escape a dissector.
"""

from __future__ import annotations

__all__ = ["Cursor"]

from sluice.errors import DecodeError


class Cursor:
    """A read position in ``data[start:end]``.

    Args:
        data: the buffer (``bytes`` or ``memoryview``; never copied).
        layer: the protocol name used in error reasons (``"tcp"`` gives ``tcp.truncated``).
        start: first readable offset.
        end: one past the last readable offset (default: end of ``data``).
    """

    __slots__ = ("_data", "end", "layer", "pos")

    def __init__(
        self, data: bytes | memoryview, layer: str = "wire", start: int = 0, end: int | None = None
    ) -> None:
        self._data = data
        self.layer = layer
        self.pos = start
        self.end = len(data) if end is None else min(end, len(data))

    @property
    def data(self) -> bytes | memoryview:
        """The underlying buffer."""
        return self._data

    @property
    def remaining(self) -> int:
        """Bytes left to read."""
        return self.end - self.pos

    def error(self, what: str, detail: str = "") -> DecodeError:
        """Build a :class:`DecodeError` ``<layer>.<what>`` at the current position."""
        return DecodeError(f"{self.layer}.{what}", self.pos, detail)

    def _need(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise DecodeError(f"{self.layer}.truncated", p, f"need {n} bytes, have {self.end - p}")
        self.pos = p + n
        return p

    def u8(self) -> int:
        """Read one byte."""
        p = self._need(1)
        return self._data[p]

    def u16(self) -> int:
        """Read a big-endian 16-bit integer."""
        p = self._need(2)
        d = self._data
        return (d[p] << 8) | d[p + 1]

    def u24(self) -> int:
        """Read a big-endian 24-bit integer."""
        p = self._need(3)
        return int.from_bytes(self._data[p : p + 3], "big")

    def u32(self) -> int:
        """Read a big-endian 32-bit integer."""
        p = self._need(4)
        return int.from_bytes(self._data[p : p + 4], "big")

    def u64(self) -> int:
        """Read a big-endian 64-bit integer."""
        p = self._need(8)
        return int.from_bytes(self._data[p : p + 8], "big")

    def uint(self, n: int) -> int:
        """Read an ``n``-byte big-endian unsigned integer."""
        p = self._need(n)
        return int.from_bytes(self._data[p : p + n], "big")

    def varint(self) -> int:
        """Read a QUIC variable-length integer (RFC 9000 §16)."""
        first = self.u8()
        length = 1 << (first >> 6)
        value = first & 0x3F
        if length > 1:
            value = (value << (8 * (length - 1))) | self.uint(length - 1)
        return value

    def take(self, n: int) -> bytes:
        """Read ``n`` bytes."""
        p = self._need(n)
        return bytes(self._data[p : p + n])

    def view(self, n: int) -> memoryview:
        """Read ``n`` bytes without copying."""
        p = self._need(n)
        return memoryview(self._data)[p : p + n]

    def rest(self) -> bytes:
        """Read everything that is left."""
        return self.take(self.remaining)

    def skip(self, n: int) -> None:
        """Advance ``n`` bytes."""
        self._need(n)

    def peek_u8(self, at: int = 0) -> int:
        """Byte at ``pos + at`` without advancing."""
        p = self.pos + at
        if p >= self.end or p < 0:
            raise DecodeError(f"{self.layer}.truncated", p, "peek past end")
        return self._data[p]

    def sub(self, n: int, layer: str | None = None) -> Cursor:
        """A cursor over the next ``n`` bytes (advancing this one past them)."""
        p = self._need(n)
        return Cursor(self._data, layer or self.layer, p, p + n)

    def vec8(self) -> bytes:
        """A byte string with a one-byte length prefix."""
        return self.take(self.u8())

    def vec16(self) -> bytes:
        """A byte string with a two-byte length prefix."""
        return self.take(self.u16())
