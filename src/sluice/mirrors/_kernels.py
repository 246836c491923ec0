"""Compiled kernels of the name index: 64-bit hashes of strings and of their one-deletion variants."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["count_variants", "deletion_hashes"]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True)
def _hash_skip(buf: npt.NDArray[np.uint8], start: int, end: int, skip: int) -> np.uint64:  # pragma: no cover
    h = np.uint64(0xCBF29CE484222325)
    p = np.uint64(0x100000001B3)
    for i in range(start, end):
        if i != skip:
            h = (h ^ np.uint64(buf[i])) * p
    # length in the hash: "ab" minus nothing != "abc" minus "c" only by content, which is right
    return h


@njit(cache=True, nogil=True)
def count_variants(offsets: npt.NDArray[np.int64], min_len: int) -> int:  # pragma: no cover
    """Number of hashes :func:`deletion_hashes` writes (the string itself + one per deletion)."""
    n = 0
    for k in range(offsets.shape[0] - 1):
        m = offsets[k + 1] - offsets[k]
        n += 1 + (m if m >= min_len else 0)
    return n


@njit(cache=True, nogil=True)
def deletion_hashes(
    buf: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    min_len: int,
    out_hash: npt.NDArray[np.uint64],
    out_owner: npt.NDArray[np.int64],
    out_del: npt.NDArray[np.int8],
) -> int:  # pragma: no cover
    """Hash every string and, when at least ``min_len`` long, each of its one-deletion variants.

    Writes hash, owning string and deleted position (-1 for the string itself); returns the count.
    """
    o = 0
    for k in range(offsets.shape[0] - 1):
        s, e = offsets[k], offsets[k + 1]
        out_hash[o] = _hash_skip(buf, s, e, -1)
        out_owner[o] = k
        out_del[o] = -1
        o += 1
        if e - s >= min_len:
            for d in range(s, e):
                if d > s and buf[d] == buf[d - 1]:
                    continue  # same variant as deleting the previous equal letter
                out_hash[o] = _hash_skip(buf, s, e, d)
                out_owner[o] = k
                out_del[o] = min(d - s, 127)
                o += 1
    return o
