"""Byte statistics of a payload (compiled): the one definition both flow paths use."""

from __future__ import annotations

__all__ = ["byte_stats"]

import numba
import numpy as np
import numpy.typing as npt


@numba.njit(cache=True, nogil=True)
def byte_stats(buf: npt.NDArray[np.uint8], start: int, length: int) -> tuple[float, float]:
    """Shannon entropy (bits per byte) and printable fraction of ``buf[start:start+length]``."""
    if length <= 0:
        return -1.0, -1.0
    counts = np.zeros(256, np.int64)
    for k in range(start, start + length):
        counts[buf[k]] += 1
    ent = 0.0
    printable = 0
    for b in range(256):
        c = counts[b]
        if c:
            p = c / length
            ent -= p * np.log2(p)
            if (0x20 <= b < 0x7F) or b == 9 or b == 10 or b == 13:
                printable += c
    return ent + 0.0, printable / length
