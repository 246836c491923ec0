"""Compiled (numba) fast path of the RKN CSV importer: the common row shapes, straight from bytes.

Theory of operation
-------------------
:func:`scan_rows` walks the dump's bytes once, line by line, and handles the row shapes that
make up almost all of a real dump exactly as the Python parser in
:mod:`sluice.registry.importers.rkn_csv` would (``_fast_row`` and ``add_record``):

* a plain ASCII domain with no URL (``domain``), a ``*.d`` mask (``domain-mask``, whatever the
  URL field holds), an ``http://host/path`` URL (``url``), an ``https://host/...`` URL
  (``domain`` of the host), a canonical IPv4 address or IPv4 network with no domain and no URL
  (``ip`` / ``subnet``, host bits cleared, ``/32`` written as the address).

Each such row writes its entry key (one kind letter, see
:data:`~sluice.registry.importers._common.KIND_LETTER`, then the canonical
indicator) followed by ``\\n`` into one output buffer, so that the caller gets every key with
one ``bytes.decode().split()``.  The decision fields (everything after the third ``;``) are
de-duplicated in the kernel by an open-addressing table (64-bit FNV-1a of the raw bytes,
confirmed byte for byte); the caller decodes each distinct one once.

Everything else is left to the Python parser, which decides (and rejects with line numbers)
as before: lines with quotes, a field count other than six, white space, control or non-ASCII
bytes in the first three fields, IPv6, several addresses, non-canonical text, anything that
does not validate, lines longer than :data:`MAX_FAST_LINE` bytes, empty lines.  A row is never
decided differently by the fast path: when in doubt it is handed back.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["MAX_FAST_LINE", "gather_keys", "key_prefixes", "match_sorted", "scan_rows", "sort_keys"]


MAX_FAST_LINE = 4096
"""Longer lines (in bytes) go to the Python parser."""

U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

_C_DOMAIN = 97  # 'a', as KIND_LETTER
_C_MASK = 98  # 'b'
_C_IP = 99  # 'c'
_C_SUBNET = 100  # 'd'
_C_URL = 101  # 'e'


@njit(cache=True, nogil=True)
def _name(buf: U8, s: int, e: int, out: U8, o: int) -> int:  # pragma: no cover - compiled
    """Write the canonical form of the host name ``buf[s:e]`` at ``out[o:]``; -1 when invalid.

    As :func:`sluice.registry.names.canon_host` for ASCII text without white space: one
    trailing dot dropped, lower case, labels of 1-63 bytes from ``[a-z0-9_-]``, <= 253 bytes.
    """
    if e > s and buf[e - 1] == 46:
        e -= 1
    if e <= s or e - s > 253:
        return -1
    lab = 0
    for i in range(s, e):
        b = buf[i]
        if b == 46:
            if lab == 0:
                return -1
            lab = 0
        else:
            if 65 <= b <= 90:
                b = b + 32
            elif not ((97 <= b <= 122) or (48 <= b <= 57) or b == 45 or b == 95):
                return -1
            lab += 1
            if lab > 63:
                return -1
        out[o] = b
        o += 1
    if lab == 0:
        return -1
    return o


@njit(cache=True, nogil=True)
def _octet(buf: U8, s: int, e: int) -> int:  # pragma: no cover - compiled
    """Value of a canonical decimal octet ``buf[s:e]`` (0-255, no leading zero), else -1."""
    n = e - s
    if n < 1 or n > 3 or (n > 1 and buf[s] == 48):
        return -1
    v = 0
    for i in range(s, e):
        b = buf[i]
        if b < 48 or b > 57:
            return -1
        v = v * 10 + (b - 48)
    return v if v <= 255 else -1


@njit(cache=True, nogil=True)
def _v4(buf: U8, s: int, e: int) -> int:  # pragma: no cover - compiled
    """The canonical dotted IPv4 address ``buf[s:e]`` as an integer, else -1."""
    v = 0
    a = s
    dots = 0
    for i in range(s, e + 1):
        if i == e or buf[i] == 46:
            o = _octet(buf, a, i)
            if o < 0:
                return -1
            v = (v << 8) | o
            a = i + 1
            if i < e:
                dots += 1
    return v if dots == 3 else -1


@njit(cache=True, nogil=True)
def _put_dec(out: U8, o: int, v: int) -> int:  # pragma: no cover - compiled
    if v >= 100:
        out[o] = 48 + v // 100
        o += 1
    if v >= 10:
        out[o] = 48 + (v // 10) % 10
        o += 1
    out[o] = 48 + v % 10
    return o + 1


@njit(cache=True, nogil=True)
def _hexval(b: int) -> int:  # pragma: no cover - compiled
    if 48 <= b <= 57:
        return b - 48
    if 97 <= b <= 102:
        return b - 87
    if 65 <= b <= 70:
        return b - 55
    return -1


@njit(cache=True, nogil=True)
def _v6(buf: U8, s: int, e: int, words: I64) -> bool:  # pragma: no cover - compiled
    """Parse an IPv6 address of hex groups and colons only (a strict subset of what ``ipaddress``
    accepts, with the same value) into ``words``; False for anything else."""
    if e - s < 2 or e - s > 39:
        return False
    ngroups = 0
    gap = -1  # group index where "::" stands
    i = s
    if buf[i] == 58:
        if buf[i + 1] != 58:
            return False
        gap = 0
        i += 2
    while i < e:
        v = 0
        nd = 0
        while i < e and buf[i] != 58:
            h = _hexval(buf[i])
            if h < 0 or nd == 4:
                return False
            v = v * 16 + h
            nd += 1
            i += 1
        if nd == 0:
            return False
        if ngroups == 8:
            return False
        words[ngroups] = v
        ngroups += 1
        if i < e:  # at a colon
            i += 1
            if i < e and buf[i] == 58:
                if gap >= 0:
                    return False
                gap = ngroups
                i += 1
            elif i == e:
                return False  # a single trailing colon
    if gap < 0:
        return ngroups == 8
    if ngroups > 7:
        return False
    fill = 8 - ngroups
    for k in range(ngroups - 1, gap - 1, -1):
        words[k + fill] = words[k]
    for k in range(gap, gap + fill):
        words[k] = 0
    return True


@njit(cache=True, nogil=True)
def _put_v6(out: U8, o: int, words: I64) -> int:  # pragma: no cover - compiled
    """RFC 5952 text, as ``str(ipaddress.IPv6Address)``: first longest run (>= 2) of zeros."""
    best, best_len, run, run_len = -1, 0, -1, 0
    for k in range(8):
        if words[k] == 0:
            if run < 0:
                run = k
            run_len += 1
            if run_len > best_len:
                best, best_len = run, run_len
        else:
            run, run_len = -1, 0
    if best_len < 2:
        best = -1
    k = 0
    while k < 8:
        if k == best:
            out[o] = 58
            o += 1
            if k == 0:
                out[o] = 58
                o += 1
            k += best_len
            continue
        v = words[k]
        started = False
        for sh in (12, 8, 4, 0):
            d = (v >> sh) & 15
            if d or started or sh == 0:
                out[o] = d + 48 if d < 10 else d + 87
                o += 1
                started = True
        if k < 7:
            out[o] = 58
            o += 1
        k += 1
    return o


@njit(cache=True, nogil=True)
def _row_v6(
    buf: U8, s0: int, e0: int, out: U8, o: int, tail: int, words: I64
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """An IPv6 address or network alone in the address field (IPv4-mapped ones: Python)."""
    slash = e0
    for i in range(s0, e0):
        if buf[i] == 47:
            slash = i
            break
    if not _v6(buf, s0, slash, words):
        return 0, o, 0
    plen = 128
    if slash < e0:
        n = e0 - slash - 1
        if n < 1 or n > 3 or (n > 1 and buf[slash + 1] == 48):
            return 0, o, 0
        plen = 0
        for i in range(slash + 1, e0):
            b = buf[i]
            if b < 48 or b > 57:
                return 0, o, 0
            plen = plen * 10 + (b - 48)
        if plen > 128:
            return 0, o, 0
        for k in range(8):  # clear the host bits
            keep = plen - 16 * k
            if keep <= 0:
                words[k] = 0
            elif keep < 16:
                words[k] = words[k] & (0xFFFF ^ ((1 << (16 - keep)) - 1))
    mapped = words[5] == 0xFFFF
    for k in range(5):
        mapped = mapped and words[k] == 0
    if mapped:
        return 0, o, 0
    code = _C_IP if plen == 128 else _C_SUBNET
    out[o] = code
    o = _put_v6(out, o + 1, words)
    if plen != 128:
        out[o] = 47
        o = _put_dec(out, o + 1, plen)
    out[o] = 10
    return code, o + 1, tail


@njit(cache=True, nogil=True)
def _row(buf: U8, ls: int, le: int, out: U8, o: int, words: I64) -> tuple[int, int, int]:  # pragma: no cover
    """Classify one line; return ``(kind letter or 0, new output position, decision start)``."""
    if le - ls > MAX_FAST_LINE or le <= ls:
        return 0, o, 0
    p0 = p1 = p2 = 0
    ns = 0
    for i in range(ls, le):
        b = buf[i]
        if b == 59:
            if ns == 0:
                p0 = i
            elif ns == 1:
                p1 = i
            elif ns == 2:
                p2 = i
            elif ns == 5:
                return 0, o, 0
            ns += 1
        elif b == 34:
            return 0, o, 0
    if ns != 5:
        return 0, o, 0
    s0, e0 = ls, p0
    s1, e1 = p0 + 1, p1
    s2, e2 = p1 + 1, p2
    tail = p2 + 1
    for i in range(s0, e2):  # first three fields: printable ASCII only
        b = buf[i]
        if (b <= 32 or b >= 127) and b != 59:
            return 0, o, 0
    start = o
    if e1 > s1 and buf[s1] == 42:  # '*' domain: a mask (any URL field), else the general path
        if e1 - s1 < 3 or buf[s1 + 1] != 46:
            return 0, o, 0
        out[o] = _C_MASK
        out[o + 1] = 42
        out[o + 2] = 46
        o = _name(buf, s1 + 2, e1, out, o + 3)
        if o < 0:
            return 0, start, 0
        out[o] = 10
        return _C_MASK, o + 1, tail
    if e2 > s2:  # a URL: http://host[/path] or https://host[/path], host [a-z0-9.-]+
        https = False
        hs = s2 + 7
        if (
            e2 - s2 > 8
            and buf[s2] == 104
            and buf[s2 + 1] == 116
            and buf[s2 + 2] == 116
            and buf[s2 + 3] == 112
        ):
            if buf[s2 + 4] == 115:
                https = True
                hs = s2 + 8
            if buf[hs - 3] != 58 or buf[hs - 2] != 47 or buf[hs - 1] != 47:
                return 0, o, 0
        else:
            return 0, o, 0
        he = hs
        while he < e2:
            b = buf[he]
            if (97 <= b <= 122) or (48 <= b <= 57) or b == 46 or b == 45:
                he += 1
            else:
                break
        if he == hs or (48 <= buf[he - 1] <= 57):
            return 0, o, 0
        if he < e2:
            if buf[he] != 47:
                return 0, o, 0
            for i in range(he + 1, e2):
                b = buf[i]
                if b == 34 or b == 35:  # [!$-~]: every printable byte but '"' and '#'
                    return 0, o, 0
        if https:
            out[o] = _C_DOMAIN
            o = _name(buf, hs, he, out, o + 1)
            if o < 0:
                return 0, start, 0
            out[o] = 10
            return _C_DOMAIN, o + 1, tail
        out[o] = _C_URL
        for j in range(7):
            out[o + 1 + j] = buf[s2 + j]
        o = _name(buf, hs, he, out, o + 8)
        if o < 0:
            return 0, start, 0
        if he < e2:
            for i in range(he, e2):
                out[o] = buf[i]
                o += 1
        else:
            out[o] = 47
            o += 1
        out[o] = 10
        return _C_URL, o + 1, tail
    if e1 > s1:  # a domain, no URL
        if 48 <= buf[e1 - 1] <= 57:
            return 0, o, 0
        out[o] = _C_DOMAIN
        o = _name(buf, s1, e1, out, o + 1)
        if o < 0:
            return 0, start, 0
        out[o] = 10
        return _C_DOMAIN, o + 1, tail
    # neither domain nor URL: one canonical IPv4 or IPv6 address or network
    colon = False
    for i in range(s0, e0):
        if buf[i] == 58:
            colon = True
            break
    if colon:
        return _row_v6(buf, s0, e0, out, o, tail, words)
    slash = -1
    for i in range(s0, e0):
        if buf[i] == 47:
            slash = i
            break
    if slash < 0:
        if _v4(buf, s0, e0) < 0:
            return 0, o, 0
        out[o] = _C_IP
        o += 1
        for i in range(s0, e0):
            out[o] = buf[i]
            o += 1
        out[o] = 10
        return _C_IP, o + 1, tail
    addr = _v4(buf, s0, slash)
    plen = _octet(buf, slash + 1, e0)
    if addr < 0 or plen < 0 or plen > 32:
        return 0, o, 0
    mask = ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1)
    net = addr & mask
    out[o] = _C_IP if plen == 32 else _C_SUBNET
    o += 1
    for k in range(4):
        o = _put_dec(out, o, (net >> (24 - 8 * k)) & 255)
        if k < 3:
            out[o] = 46
            o += 1
    if plen != 32:
        out[o] = 47
        o = _put_dec(out, o + 1, plen)
    out[o] = 10
    return (_C_IP if plen == 32 else _C_SUBNET), o + 1, tail


@njit(cache=True, nogil=True)
def scan_rows(
    buf: U8, begin: int, nlines: int
) -> tuple[U8, I64, I64, U8, I32, I64, I64, int]:  # pragma: no cover - compiled
    """Scan the ``nlines`` newline-terminated lines from ``buf[begin:]``.

    Returns:
        ``(keys, line_start, line_end, kind, decision, dec_start, dec_end, n_decisions)``:
        ``keys`` holds one ``letter + indicator + "\\n"`` per fast row, in line order;
        ``line_start``/``line_end`` each line's bytes (end before ``\\r\\n``/``\\n``); ``kind`` the
        kind letter of each line (0: left to the Python parser); ``decision`` the index of the
        line's distinct decision bytes ``buf[dec_start[d]:dec_end[d]]`` (-1 when none).
    """
    n = buf.shape[0]
    out = np.empty(n - begin + 3 * nlines + 16, np.uint8)
    lstart = np.empty(nlines, np.int64)
    lend = np.empty(nlines, np.int64)
    kind = np.zeros(nlines, np.uint8)
    dec = np.full(nlines, -1, np.int32)
    words = np.zeros(8, np.int64)
    bits = 4
    while (1 << bits) < 2 * nlines + 16:
        bits += 1
    size = 1 << bits
    tmask = size - 1
    shift = np.uint64(64 - bits)
    tkeys = np.zeros(size, np.uint64)
    tvals = np.full(size, -1, np.int32)
    ds = np.empty(nlines + 1, np.int64)
    de = np.empty(nlines + 1, np.int64)
    nd = 0
    o = 0
    pos = begin
    for li in range(nlines):
        e = pos
        while buf[e] != 10:
            e += 1
        le = e
        while le > pos and buf[le - 1] == 13:
            le -= 1
        lstart[li] = pos
        lend[li] = le
        k, o2, tail = _row(buf, pos, le, out, o, words)
        pos = e + 1
        if k == 0:
            continue
        o = o2
        kind[li] = k
        h = _FNV_OFFSET
        for i in range(tail, le):
            h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
        slot = np.int64((h * _GOLDEN) >> shift)
        ln = le - tail
        while True:
            v = tvals[slot]
            if v == -1:
                tkeys[slot] = h
                tvals[slot] = nd
                ds[nd] = tail
                de[nd] = le
                dec[li] = nd
                nd += 1
                break
            if tkeys[slot] == h and de[v] - ds[v] == ln:
                same = True
                for j in range(ln):
                    if buf[ds[v] + j] != buf[tail + j]:
                        same = False
                        break
                if same:
                    dec[li] = v
                    break
            slot = (slot + 1) & tmask
    return out[:o], lstart, lend, kind, dec, ds[:nd], de[:nd], nd


@njit(cache=True, nogil=True)
def key_prefixes(buf: U8, off: I64, idx: I64, level: int) -> npt.NDArray[np.uint64]:  # pragma: no cover
    """Bytes ``8*level .. 8*level+8`` of the ``\n``-terminated keys ``idx``, big-endian.

    Zero-padded past a key's end: keys hold no NUL, so the prefixes sort as the keys do.
    """
    pre = np.zeros(idx.shape[0], np.uint64)
    for t in range(idx.shape[0]):
        i = idx[t]
        s, e = off[i] + 8 * level, off[i + 1] - 1
        v = np.uint64(0)
        for j in range(8):
            v = v << np.uint64(8)
            if s + j < e:
                v = v | np.uint64(buf[s + j])
        pre[t] = v
    return pre


def sort_keys(buf: U8, off: I64) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Order the ``\n``-terminated keys ``buf[off[i]:off[i+1]-1]`` by their bytes (stable).

    Most-significant-first radix passes of 8 bytes: each pass sorts (numpy, stable) only the
    keys still tied with a neighbour, by their next 8 bytes; ties of keys that have ended are
    equal keys.  Cache-friendly, unlike a comparison sort over a million scattered strings.

    Returns:
        ``(order, first)``: key indices in sorted order, and whether each position of ``order``
        starts a new distinct key (equal keys are adjacent, in their input order).
    """
    n = off.shape[0] - 1
    everything = np.arange(n, dtype=np.int64)
    pre = key_prefixes(buf, off, everything, 0)
    order = np.argsort(pre, kind="stable").astype(np.int64)
    sp = pre[order]
    first = np.ones(n, np.bool_)
    first[1:] = sp[1:] != sp[:-1]
    done = sp == 0
    level = 1
    while True:
        run = np.cumsum(first) - 1
        size = np.bincount(run, minlength=1)
        active = np.flatnonzero((size[run] > 1) & ~done)
        if active.shape[0] == 0:
            return order, first
        idx = order[active]
        p = key_prefixes(buf, off, idx, level)
        r = run[active]
        o2 = np.lexsort((p, r))
        order[active] = idx[o2]
        ps, rs = p[o2], r[o2]
        nb = np.ones(active.shape[0], np.bool_)
        nb[1:] = (ps[1:] != ps[:-1]) | (rs[1:] != rs[:-1])
        first[active] = nb
        done[active] = ps == 0
        level += 1


@njit(cache=True, nogil=True)
def _cmp(abuf: U8, a0: int, a1: int, bbuf: U8, b0: int, b1: int) -> int:  # pragma: no cover
    la, lb = a1 - a0, b1 - b0
    m = la if la < lb else lb
    for i in range(m):
        x = abuf[a0 + i]
        y = bbuf[b0 + i]
        if x != y:
            return -1 if x < y else 1
    return -1 if la < lb else (1 if la > lb else 0)


@njit(cache=True, nogil=True)
def match_sorted(abuf: U8, aoff: I64, bbuf: U8, boff: I64) -> tuple[I64, bool]:  # pragma: no cover
    """For each key of sorted list ``b``, its index in sorted list ``a`` (-1 when absent).

    Keys are ``buf[off[i]:off[i+1]-1]`` (one separator byte after each).  Returns
    ``(pos, ok)``; ``ok`` is False when either list is not strictly increasing (the caller then
    matches another way).
    """
    na = aoff.shape[0] - 1
    nb = boff.shape[0] - 1
    pos = np.full(nb, -1, np.int64)
    for i in range(1, na):
        if _cmp(abuf, aoff[i - 1], aoff[i] - 1, abuf, aoff[i], aoff[i + 1] - 1) >= 0:
            return pos, False
    for j in range(1, nb):
        if _cmp(bbuf, boff[j - 1], boff[j] - 1, bbuf, boff[j], boff[j + 1] - 1) >= 0:
            return pos, False
    i = 0
    j = 0
    while i < na and j < nb:
        c = _cmp(abuf, aoff[i], aoff[i + 1] - 1, bbuf, boff[j], boff[j + 1] - 1)
        if c == 0:
            pos[j] = i
            i += 1
            j += 1
        elif c < 0:
            i += 1
        else:
            j += 1
    return pos, True


@njit(cache=True, nogil=True)
def gather_keys(buf: U8, off: I64, idx: I64) -> U8:  # pragma: no cover - compiled
    """The ``\\n``-terminated keys ``idx`` (see :func:`sort_keys`) one after the other."""
    total = 0
    for i in idx:
        total += off[i + 1] - off[i]
    out = np.empty(total, np.uint8)
    o = 0
    for i in idx:
        s, e = off[i], off[i + 1]
        out[o : o + e - s] = buf[s:e]
        o += e - s
    return out
