"""Compiled (numba) inner loops of the matcher: name hashing, hash-table probes, interval search.

Theory of operation
-------------------
Host names are hashed **from the last byte to the first** with 64-bit FNV-1a, lower-casing ASCII
on the fly.  Walking backwards, the running hash at each ``.`` is exactly the hash of the suffix
after it, so one pass over a name gives the hash of the name and of every parent domain
(``a.b.example.com`` -> ``com``, ``example.com``, ``b.example.com``, the name).  Each hash is
looked up in an open-addressing table (power-of-two size, load <= 0.5, linear probing, slot =
Fibonacci hash of the key; each slot one 64-bit word, tag and value packed, so a probe costs one
cache line) whose values index a table of unique names; a hit is confirmed by
comparing the bytes, so hash collisions can never give a false match.  Each unique name points
(CSR) to the entries that name it, with their kinds, so the caller's rules (exact, ``www.``,
mask) are applied per probe.

Addresses use elementary intervals: the start and one-past-end of every IP/subnet entry, sorted,
cut the address space into segments; each segment lists (CSR) the entries covering it, longest
prefix first.  A lookup is one binary search over the segment starts, on 128-bit keys held as two
``uint64`` arrays (IPv4 uses the low word only).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = [
    "build_table",
    "fill_segments",
    "hash_names",
    "match_name",
    "match_names",
    "probe",
    "search128",
]

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U64 = npt.NDArray[np.uint64]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

R_DOMAIN = 1
R_DOMAIN_WWW = 2
R_MASK = 3

K_DOMAIN = 0
K_MASK = 1


@njit(cache=True, nogil=True)
def _lower(b: np.uint8) -> np.uint8:  # pragma: no cover - compiled
    if 65 <= b <= 90:
        return np.uint8(b + 32)
    return b


@njit(cache=True, nogil=True)
def _rev_hash(buf: U8, start: int, end: int) -> np.uint64:  # pragma: no cover - compiled
    h = _FNV_OFFSET
    for i in range(end - 1, start - 1, -1):
        h = (h ^ np.uint64(_lower(buf[i]))) * _FNV_PRIME
    return h


@njit(cache=True, nogil=True)
def hash_names(buf: U8, off: I64) -> U64:  # pragma: no cover - compiled
    """Reverse FNV-1a hash of each name ``buf[off[i]:off[i+1]]``."""
    n = off.shape[0] - 1
    out = np.empty(n, np.uint64)
    for i in range(n):
        out[i] = _rev_hash(buf, off[i], off[i + 1])
    return out


@njit(cache=True, nogil=True)
def build_table(hashes: U64, bits: int) -> U64:  # pragma: no cover - compiled
    """Open-addressing table of ``2**bits`` slots, each one ``uint64``: the hash's upper 32 bits
    (tag) above ``name index + 1`` (0: empty slot) - a probe reads one word, one cache line."""
    size = 1 << bits
    mask = size - 1
    shift = np.uint64(64 - bits)
    table = np.zeros(size, np.uint64)
    for i in range(hashes.shape[0]):
        h = hashes[i]
        slot = np.int64((h * _GOLDEN) >> shift)
        while table[slot] != 0:
            slot = (slot + 1) & mask
        table[slot] = ((h >> np.uint64(32)) << np.uint64(32)) | np.uint64(i + 1)
    return table


@njit(cache=True, nogil=True)
def _probe(
    table: U64, bits: int, nbuf: U8, noff: I64, h: np.uint64, q: U8, qs: int, qe: int
) -> int:  # pragma: no cover - compiled
    mask = (1 << bits) - 1
    slot = np.int64((h * _GOLDEN) >> np.uint64(64 - bits))
    tag = h >> np.uint64(32)
    ln = qe - qs
    while True:
        w = table[slot]
        if w == 0:
            return -1
        if (w >> np.uint64(32)) == tag:
            v = np.int64(w & np.uint64(0xFFFFFFFF)) - 1
            s = noff[v]
            if noff[v + 1] - s == ln:
                same = True
                for j in range(ln):
                    if nbuf[s + j] != _lower(q[qs + j]):
                        same = False
                        break
                if same:
                    return int(v)
        slot = (slot + 1) & mask


@njit(cache=True, nogil=True)
def probe(table: U64, bits: int, nbuf: U8, noff: I64, q: U8) -> int:  # pragma: no cover - compiled
    """Index of the name equal to ``q`` (ASCII case-insensitive), or -1."""
    return _probe(table, bits, nbuf, noff, _rev_hash(q, 0, q.shape[0]), q, 0, q.shape[0])


@njit(cache=True, nogil=True)
def _emit(
    out_q: I64, out_e: I64, out_r: U8, count: int, qi: int, e: int, r: int
) -> int:  # pragma: no cover - compiled
    if count < out_q.shape[0]:
        out_q[count] = qi
        out_e[count] = e
        out_r[count] = r
    return count + 1


@njit(cache=True, nogil=True)
def _match_one(
    qbuf: U8,
    s: int,
    e: int,
    qi: int,
    table: U64,
    bits: int,
    nbuf: U8,
    noff: I64,
    ent_off: I64,
    ent: I32,
    ent_kind: U8,
    out_q: I64,
    out_e: I64,
    out_r: U8,
    count: int,
) -> int:  # pragma: no cover - compiled
    """Match ``qbuf[s:e]``; return the new count, -1 for a non-ASCII name, -2 for an invalid one.

    Valid names are those :func:`sluice.registry.names.canon_host` accepts: labels of 1-63
    characters from ``[A-Za-z0-9_-]``, at most 253 characters (one trailing dot ignored).
    """
    if e > s and qbuf[e - 1] == 46:
        e -= 1
    if e <= s:
        return count
    if e - s > 253:
        return -2
    lab = 0
    for i in range(s, e):
        b = qbuf[i]
        if b >= 128:
            return -1
        if b == 46:
            if lab == 0:
                return -2
            lab = 0
        elif (97 <= b <= 122) or (65 <= b <= 90) or (48 <= b <= 57) or b == 45 or b == 95:
            lab += 1
            if lab > 63:
                return -2
        else:
            return -2
    www = e - s > 4 and _lower(qbuf[s]) == 119 and _lower(qbuf[s + 1]) == 119
    www = www and _lower(qbuf[s + 2]) == 119 and qbuf[s + 3] == 46
    h = _FNV_OFFSET
    dot = np.uint64(46)
    for i in range(e - 1, s - 2, -1):
        if i < s or qbuf[i] == 46:
            v = _probe(table, bits, nbuf, noff, h, qbuf, i + 1, e)
            if v >= 0:
                full = i < s
                for k in range(ent_off[v], ent_off[v + 1]):
                    kind = ent_kind[k]
                    if kind == K_MASK:
                        count = _emit(out_q, out_e, out_r, count, qi, ent[k], R_MASK)
                    elif full:
                        count = _emit(out_q, out_e, out_r, count, qi, ent[k], R_DOMAIN)
                    elif www and i == s + 3:
                        count = _emit(out_q, out_e, out_r, count, qi, ent[k], R_DOMAIN_WWW)
            if i < s:
                break
            h = (h ^ dot) * _FNV_PRIME
        else:
            h = (h ^ np.uint64(_lower(qbuf[i]))) * _FNV_PRIME
    return count


@njit(cache=True, nogil=True)
def match_names(
    qbuf: U8,
    qstart: I64,
    qend: I64,
    table: U64,
    bits: int,
    nbuf: U8,
    noff: I64,
    ent_off: I64,
    ent: I32,
    ent_kind: U8,
    out_q: I64,
    out_e: I64,
    out_r: U8,
    status: U8,
) -> int:  # pragma: no cover - compiled
    """Match every query name; write (query, entry, reason) triples; return their count.

    ``status[i]`` is set to 1 for a name with non-ASCII bytes (the caller converts it with IDNA
    and asks again).  When the count exceeds ``out_q.size`` the caller re-runs with more room.

    Same result, in the same order, as :func:`_match_one` per name, but in batches: first the
    hashes of every suffix of a batch of names, then one pass that reads all their table slots
    (independent loads, so the memory misses overlap), then the matching.
    """
    n = qstart.shape[0]
    cap = 512
    hh = np.empty(cap, np.uint64)
    p_start = np.empty(cap, np.int64)
    p_end = np.empty(cap, np.int64)
    p_q = np.empty(cap, np.int64)
    p_how = np.empty(cap, np.uint8)  # 1: the whole name, 2: the name after "www."
    slots = np.empty(cap, np.int64)
    words = np.empty(cap, np.uint64)
    shift = np.uint64(64 - bits)
    mask = (1 << bits) - 1
    dot = np.uint64(46)
    count = 0
    qi = 0
    while qi < n:
        k = 0
        while qi < n and k + 128 <= cap:  # a valid name has at most 127 labels
            s = qstart[qi]
            e = qend[qi]
            if e > s and qbuf[e - 1] == 46:
                e -= 1
            if e <= s:
                qi += 1
                continue
            bad = 0
            if e - s > 253:
                bad = 2
            lab = 0
            if bad == 0:
                for i in range(s, e):
                    b = qbuf[i]
                    if b >= 128:
                        bad = 1
                        break
                    if b == 46:
                        if lab == 0:
                            bad = 2
                            break
                        lab = 0
                    elif (97 <= b <= 122) or (65 <= b <= 90) or (48 <= b <= 57) or b == 45 or b == 95:
                        lab += 1
                        if lab > 63:
                            bad = 2
                            break
                    else:
                        bad = 2
                        break
            if bad == 1:
                status[qi] = 1
                qi += 1
                continue
            if bad == 2:
                qi += 1
                continue
            www = e - s > 4 and _lower(qbuf[s]) == 119 and _lower(qbuf[s + 1]) == 119
            www = www and _lower(qbuf[s + 2]) == 119 and qbuf[s + 3] == 46
            h = _FNV_OFFSET
            for i in range(e - 1, s - 2, -1):
                if i < s or qbuf[i] == 46:
                    hh[k] = h
                    p_start[k] = i + 1
                    p_end[k] = e
                    p_q[k] = qi
                    p_how[k] = 1 if i < s else (2 if (www and i == s + 3) else 0)
                    k += 1
                    if i < s:
                        break
                    h = (h ^ dot) * _FNV_PRIME
                else:
                    h = (h ^ np.uint64(_lower(qbuf[i]))) * _FNV_PRIME
            qi += 1
        for t in range(k):  # independent loads: the misses overlap
            slot = np.int64((hh[t] * _GOLDEN) >> shift)
            slots[t] = slot
            words[t] = table[slot]
        for t in range(k):
            h = hh[t]
            tag = h >> np.uint64(32)
            slot = slots[t]
            w = words[t]
            qs = p_start[t]
            ln = p_end[t] - qs
            v = -1
            while w != 0:
                if (w >> np.uint64(32)) == tag:
                    c = np.int64(w & np.uint64(0xFFFFFFFF)) - 1
                    st = noff[c]
                    if noff[c + 1] - st == ln:
                        same = True
                        for j in range(ln):
                            if nbuf[st + j] != _lower(qbuf[qs + j]):
                                same = False
                                break
                        if same:
                            v = int(c)
                            break
                slot = (slot + 1) & mask
                w = table[slot]
            if v < 0:
                continue
            how = p_how[t]
            q = p_q[t]
            for x in range(ent_off[v], ent_off[v + 1]):
                kind = ent_kind[x]
                if kind == K_MASK:
                    count = _emit(out_q, out_e, out_r, count, q, ent[x], R_MASK)
                elif how == 1:
                    count = _emit(out_q, out_e, out_r, count, q, ent[x], R_DOMAIN)
                elif how == 2:
                    count = _emit(out_q, out_e, out_r, count, q, ent[x], R_DOMAIN_WWW)
    return count


@njit(cache=True, nogil=True)
def match_name(
    q: U8,
    table: U64,
    bits: int,
    nbuf: U8,
    noff: I64,
    ent_off: I64,
    ent: I32,
    ent_kind: U8,
    out_e: I64,
    out_r: U8,
) -> int:  # pragma: no cover - compiled
    """Match one ASCII name; write (entry, reason) pairs; return their count (-1: non-ASCII)."""
    out_q = np.empty(out_e.shape[0], np.int64)
    return _match_one(
        q, 0, q.shape[0], 0, table, bits, nbuf, noff, ent_off, ent, ent_kind, out_q, out_e, out_r, 0
    )


@njit(cache=True, nogil=True)
def search128(phi: U64, plo: U64, qhi: U64, qlo: U64) -> I64:  # pragma: no cover - compiled
    """For each query, the last index ``i`` with ``(phi[i], plo[i]) <= q`` (-1 when none)."""
    n = phi.shape[0]
    out = np.empty(qhi.shape[0], np.int64)
    for k in range(qhi.shape[0]):
        hi, lo = qhi[k], qlo[k]
        a, b = 0, n
        while a < b:
            m = (a + b) >> 1
            if phi[m] < hi or (phi[m] == hi and plo[m] <= lo):
                a = m + 1
            else:
                b = m
        out[k] = a - 1
    return out


@njit(cache=True, nogil=True)
def fill_segments(
    seg_start: I64, seg_end: I64, eids: I64, nseg: int
) -> tuple[I64, I64]:  # pragma: no cover - compiled
    """CSR of the entries covering each segment, in the order given (longest prefix first)."""
    counts = np.zeros(nseg + 1, np.int64)
    for i in range(seg_start.shape[0]):
        for s in range(seg_start[i], seg_end[i]):
            counts[s + 1] += 1
    off = np.cumsum(counts)
    cur = off[:-1].copy()
    out = np.empty(off[-1], np.int64)
    for i in range(seg_start.shape[0]):
        for s in range(seg_start[i], seg_end[i]):
            out[cur[s]] = eids[i]
            cur[s] += 1
    return off, out
