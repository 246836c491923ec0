"""Compiled kernels of the name index: 64-bit hashes of strings and of their one-deletion variants."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = [
    "ascii_cores",
    "count_variants",
    "deletion_hashes",
    "edge_strip",
    "gather2",
    "osa_pairs",
    "tail_starts",
]

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


_LOOKALIKE = np.zeros(256, np.uint8)
for _d, _c in {"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"}.items():
    _LOOKALIKE[ord(_d)] = ord(_c)


@njit(cache=True, nogil=True)
def _is_letter(c: int) -> bool:  # pragma: no cover
    return 97 <= c <= 122


@njit(cache=True, nogil=True)
def _is_edge(c: int) -> bool:  # pragma: no cover
    return 48 <= c <= 57 or c == 45


@njit(cache=True, nogil=True)
def ascii_cores(
    buf: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    lookalike: npt.NDArray[np.uint8],
    out: npt.NDArray[np.uint8],
    out_start: npt.NDArray[np.int64],
    out_len: npt.NDArray[np.int64],
) -> int:  # pragma: no cover
    """:func:`~sluice.mirrors.stems.core` of lower-case ASCII labels, each written to ``out``
    followed by a ``.``: edge runs of digits and hyphens dropped, a digit between two letters
    read as the letter it imitates (``lookalike``), everything but ``a-z`` dropped.
    Returns the bytes written."""
    o = 0
    for k in range(offsets.shape[0] - 1):
        a, b = offsets[k], offsets[k + 1]
        while a < b and _is_edge(buf[a]):
            a += 1
        while b > a and _is_edge(buf[b - 1]):
            b -= 1
        out_start[k] = o
        for i in range(a, b):
            c = buf[i]
            if _is_letter(c):
                out[o] = c
                o += 1
            elif (
                48 <= c <= 57
                and a < i < b - 1
                and lookalike[c] != 0
                and _is_letter(buf[i - 1])
                and _is_letter(buf[i + 1])
            ):
                out[o] = lookalike[c]
                o += 1
        out_len[k] = o - out_start[k]
        out[o] = 46
        o += 1
    return o


@njit(cache=True, nogil=True)
def gather2(
    buf: npt.NDArray[np.uint8],
    s1: npt.NDArray[np.int64],
    e1: npt.NDArray[np.int64],
    s2: npt.NDArray[np.int64],
    e2: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:  # pragma: no cover
    """Strings ``buf[s1:e1] + buf[s2:e2]`` as an Arrow-style (data, int32 offsets) pair."""
    n = s1.shape[0]
    offs = np.empty(n + 1, np.int32)
    offs[0] = 0
    for k in range(n):
        offs[k + 1] = offs[k] + (e1[k] - s1[k]) + (e2[k] - s2[k])
    data = np.empty(max(int(offs[n]), 1), np.uint8)
    o = 0
    for k in range(n):
        for i in range(s1[k], e1[k]):
            data[o] = buf[i]
            o += 1
        for i in range(s2[k], e2[k]):
            data[o] = buf[i]
            o += 1
    return data, offs


@njit(cache=True, nogil=True)
def osa_pairs(
    a_buf: npt.NDArray[np.uint8],
    a_start: npt.NDArray[np.int64],
    a_end: npt.NDArray[np.int64],
    b_buf: npt.NDArray[np.uint8],
    b_start: npt.NDArray[np.int64],
    b_end: npt.NDArray[np.int64],
    limit: int,
) -> npt.NDArray[np.int64]:  # pragma: no cover
    """Optimal string alignment distance of each pair (``a[k]``, ``b[k]``), strings cut at ``limit``."""
    n = a_start.shape[0]
    out = np.empty(n, np.int64)
    prev2 = np.empty(limit + 1, np.int64)
    prev = np.empty(limit + 1, np.int64)
    cur = np.empty(limit + 1, np.int64)
    for k in range(n):
        sa, sb = a_start[k], b_start[k]
        la = min(a_end[k] - sa, limit)
        lb = min(b_end[k] - sb, limit)
        for j in range(lb + 1):
            prev[j] = j
            prev2[j] = 0
        for i in range(1, la + 1):
            cur[0] = i
            for j in range(1, lb + 1):
                cost = 0 if a_buf[sa + i - 1] == b_buf[sb + j - 1] else 1
                v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
                if (
                    i > 1
                    and j > 1
                    and a_buf[sa + i - 1] == b_buf[sb + j - 2]
                    and a_buf[sa + i - 2] == b_buf[sb + j - 1]
                ):
                    v = min(v, prev2[j - 2] + 1)
                cur[j] = v
            for j in range(lb + 1):
                prev2[j] = prev[j]
                prev[j] = cur[j]
        out[k] = prev[lb]
    return out


@njit(cache=True, nogil=True)
def _word_at(
    buf: npt.NDArray[np.uint8],
    p: int,
    end: int,
    wbuf: npt.NDArray[np.uint8],
    woffs: npt.NDArray[np.int64],
    w: int,
) -> bool:  # pragma: no cover
    n = woffs[w + 1] - woffs[w]
    if p + n > end:
        return False
    for i in range(n):  # noqa: SIM110 (a compiled kernel: no generator)
        if buf[p + i] != wbuf[woffs[w] + i]:
            return False
    return True


@njit(cache=True, nogil=True)
def edge_strip(
    buf: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    wbuf: npt.NDArray[np.uint8],
    woffs: npt.NDArray[np.int64],
    keep: int,
    out_start: npt.NDArray[np.int64],
    out_end: npt.NDArray[np.int64],
) -> None:  # pragma: no cover
    """Python's ``strip_fillers`` on many strings: the leading run of words (``^(?:w1|w2..)+``,
    words longest first: greedy, the longest word at each step) is cut when ``keep`` letters
    remain; then the trailing run (``(?:w1|w2..)+$`` searched leftmost: the first position from
    which the rest splits into words) is cut when ``keep`` letters remain before it."""
    nw = woffs.shape[0] - 1
    for k in range(offsets.shape[0] - 1):
        s, e = offsets[k], offsets[k + 1]
        p = s
        while True:
            found = -1
            for w in range(nw):
                if p < e and buf[p] == wbuf[woffs[w]] and _word_at(buf, p, e, wbuf, woffs, w):
                    found = w
                    break
            if found < 0:
                break
            p += woffs[found + 1] - woffs[found]
        if p > s and e - p >= keep:
            s = p
        ends_with_word = False
        for w in range(nw):
            n = woffs[w + 1] - woffs[w]
            if (
                e > s
                and buf[e - 1] == wbuf[woffs[w + 1] - 1]
                and e - n >= s
                and _word_at(buf, e - n, e, wbuf, woffs, w)
            ):
                ends_with_word = True
                break
        if not ends_with_word:
            out_start[k] = s
            out_end[k] = e
            continue
        # ok[i]: buf[i:e] splits into one or more words
        m = e - s
        ok = np.zeros(m + 1, np.bool_)
        ok[m] = True
        first = -1
        for i in range(m - 1, -1, -1):
            for w in range(nw):
                n = woffs[w + 1] - woffs[w]
                if i + n <= m and ok[i + n] and _word_at(buf, s + i, e, wbuf, woffs, w):
                    ok[i] = True
                    break
        for i in range(m):
            if ok[i]:
                first = i
                break
        if first >= keep:
            e = s + first
        out_start[k] = s
        out_end[k] = e


@njit(cache=True, nogil=True)
def tail_starts(
    buf: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], depth: int, out: npt.NDArray[np.int64]
) -> None:  # pragma: no cover
    """Where the last 1..``depth`` dot-separated labels of each string start (-1: fewer labels)."""
    for k in range(offsets.shape[0] - 1):
        s, e = offsets[k], offsets[k + 1]
        for d in range(depth):
            out[k, d] = -1
        d = 0
        for i in range(e - 1, s - 2, -1):
            if i < s or buf[i] == 46:
                if i + 1 < e and d < depth:
                    out[k, d] = i + 1
                    d += 1
                if d >= depth:
                    break
