"""Compiled (numba) inner loop of the batch feature path: packet shape and payload-head columns.

Theory of operation: :func:`shape_and_heads` fills the first columns of the feature matrix (up
to ``s2c.ssh_banner``) for many records at once, from flat arrays the caller builds once per
batch (CSR layout: ``off[i]:off[i + 1]`` are record ``i``'s packets, ``hoff[2 i + d]:hoff[2 i +
d + 1]`` its direction-``d`` head). Every value must be *bit for bit* what the per-record
definition (:func:`sluice.features.flow.feature_row`) gives, so the loop repeats that code's
arithmetic in the same order and keeps clear of anything whose rounding could differ:

* ratios are integer counts divided by an integer length (one correctly rounded division, as in
  Python);
* the entropy's terms ``c / n * log2(c / n)`` are not computed here but read from ``terms``, a
  table the caller fills with Python's own ``math.log2``; they are added in the order Python's
  ``Counter`` yields them (first appearance of each byte value), from 0, one by one, or with
  Neumaier's compensation when ``compensated`` (what ``sum`` does from Python 3.12 on);
* the inter-arrival columns need ``log1p``; the caller computes them with Python's ``math`` and
  passes them in (``iat_logs``, the first ``min(8, packets)`` of each record, in order).

Records the loop cannot represent (directions other than 0/1, sequences of unequal length, heads
longer than the table) never reach it: the caller computes their rows with the definition.
"""

from __future__ import annotations

__all__ = ["burst_columns", "shape_and_heads"]

import numpy as np
import numpy.typing as npt
from numba import njit

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

EARLY = 8
"""Packets the shape columns read (``sluice.flows.table.EARLY_PACKETS``)."""
COL_IAT = 5 + EARLY
"""First inter-arrival column (filled from ``iat_logs``)."""
COL_AFTER_IAT = COL_IAT + EARLY
"""First column after the inter-arrival ones."""
COL_HEADS = COL_AFTER_IAT + 10
"""First column of the c2s head block (14 columns per direction)."""
N_COLS = COL_HEADS + 28
"""Columns this kernel fills: ``proto.tcp`` up to ``s2c.ssh_banner``."""


@njit(cache=True, nogil=True)
def _payload_lens(
    proto: int, ipv: int, cflags: int, sflags: int, sizes: I64, dirs: I64, a: int, m: int, lens: I64
) -> None:  # pragma: no cover - compiled
    """``FlowView.payload_lens`` of one record into ``lens[:m]``."""
    ip_hdr = 40 if ipv == 6 else 20
    if proto != 6:
        sub = ip_hdr + 8 if proto == 17 else ip_hdr + 4 if proto == 1 or proto == 58 else ip_hdr
        for j in range(m):
            s = sizes[a + j] - sub
            lens[j] = s if s > 0 else 0
        return
    syn0 = -1
    syn1 = -1
    if (cflags | sflags) & 2:
        seen0 = False
        seen1 = False
        for j in range(min(4, m)):
            d = dirs[a + j]
            if d == 0:
                if not seen0:
                    seen0 = True
                    if cflags & 2:
                        syn0 = j
            elif not seen1:
                seen1 = True
                if sflags & 2:
                    syn1 = j
    base = -1
    plain = False
    for j in range(m):
        if j == syn0 or j == syn1:  # noqa: SIM109 - numba compiles this, not `in` on a tuple
            continue
        s = sizes[a + j]
        if not plain or s < base:
            base = s
            plain = True
    if not plain:
        base = ip_hdr + 20
    base = min(max(base, ip_hdr + 20), ip_hdr + 60)
    for j in range(m):
        if j == syn0 or j == syn1:  # noqa: SIM109 - numba compiles this, not `in` on a tuple
            lens[j] = 0
        else:
            s = sizes[a + j] - base
            lens[j] = s if s > 0 else 0


@njit(cache=True, nogil=True)
def _head_block(
    h: U8,
    n: int,
    terms: F64,
    compensated: bool,
    counts: I64,
    order: I64,
    popcount: I64,
    o: F64,
    col: int,
) -> None:  # pragma: no cover - compiled
    """The 14 head columns of one direction (stats, first 3 bytes, magic) from ``col`` on."""
    if n == 0:
        o[col] = 0.0
        for j in range(1, 10):
            o[col + j] = -1.0
        for j in range(10, 14):
            o[col + j] = 0.0
        return
    distinct = 0
    printable = 0
    pop = 0
    high = 0
    run = 0
    best = 0
    for j in range(n):
        b = h[j]
        if counts[b] == 0:
            order[distinct] = b
            distinct += 1
        counts[b] += 1
        pop += popcount[b]
        if 0x20 <= b < 0x7F:
            printable += 1
            run += 1
            if run > best:
                best = run
        else:
            run = 0
        if b >= 0x80:
            high += 1
    # -sum(c / n * log2(c / n) for c in Counter(head).values()), starting from the int 0
    acc = 0.0 + terms[counts[order[0]], n]
    comp = 0.0
    for t in range(1, distinct):
        x = terms[counts[order[t]], n]
        s = acc + x
        if compensated:
            if abs(acc) >= abs(x):
                comp += (acc - s) + x
            else:
                comp += (x - s) + acc
        acc = s
    if compensated and comp != 0.0 and np.isfinite(comp):
        acc += comp
    zero = counts[0]
    for t in range(distinct):
        counts[order[t]] = 0
    o[col] = float(n)
    o[col + 1] = -acc
    o[col + 2] = printable / n
    o[col + 3] = pop / n
    o[col + 4] = zero / n
    o[col + 5] = high / n
    o[col + 6] = float(best)
    for j in range(3):
        o[col + 7 + j] = float(h[j]) if n > j else -1.0
    o[col + 10] = 1.0 if n >= 3 and 0x14 <= h[0] <= 0x17 and h[1] == 0x03 else 0.0
    method = 0.0
    if n >= 4:
        c0, c1, c2, c3 = h[0], h[1], h[2], h[3]
        # GET  POST PUT  HEAD OPTI CONN DELE PATC
        if (
            (c0 == 71 and c1 == 69 and c2 == 84 and c3 == 32)
            or (c0 == 80 and c1 == 79 and c2 == 83 and c3 == 84)
            or (c0 == 80 and c1 == 85 and c2 == 84 and c3 == 32)
            or (c0 == 72 and c1 == 69 and c2 == 65 and c3 == 68)
            or (c0 == 79 and c1 == 80 and c2 == 84 and c3 == 73)
            or (c0 == 67 and c1 == 79 and c2 == 78 and c3 == 78)
            or (c0 == 68 and c1 == 69 and c2 == 76 and c3 == 69)
            or (c0 == 80 and c1 == 65 and c2 == 84 and c3 == 67)
        ):
            method = 1.0
    o[col + 11] = method
    o[col + 12] = (
        1.0 if n >= 5 and h[0] == 72 and h[1] == 84 and h[2] == 84 and h[3] == 80 and h[4] == 47 else 0.0
    )
    o[col + 13] = 1.0 if n >= 4 and h[0] == 83 and h[1] == 83 and h[2] == 72 and h[3] == 45 else 0.0


@njit(cache=True, nogil=True)
def shape_and_heads(
    ints: I64,
    off: I64,
    sizes: I64,
    dirs: I64,
    iat_logs: F64,
    hoff: I64,
    heads: U8,
    terms: F64,
    compensated: bool,
    out: F64,
) -> None:  # pragma: no cover - compiled
    """Fill ``out[:, :N_COLS]``.

    Args:
        ints: per record ``proto, ip_version, c2s_tcp_flags, s2c_tcp_flags, c2s_first_payload_len``.
        off: CSR offsets of the records' packets in ``sizes``/``dirs`` (length ``n + 1``).
        sizes: IP lengths of the packets.
        dirs: their directions (0 or 1).
        iat_logs: ``log1p(max(0.0, iat) * 1e6)`` of each record's first ``min(8, packets)``.
        hoff: CSR offsets of the heads in ``heads``, record ``i`` direction ``d`` at ``2 i + d``.
        heads: the heads' bytes.
        terms: ``terms[c, n] = c / n * log2(c / n)`` for ``1 <= c <= n``.
        compensated: add the entropy's terms as Python >= 3.12's ``sum`` does.
        out: the feature matrix (its other columns are left alone).
    """
    n_rec = ints.shape[0]
    lens = np.zeros(max(1, int(np.max(off[1:] - off[:-1])) if n_rec else 1), dtype=np.int64)
    counts = np.zeros(256, dtype=np.int64)
    order = np.zeros(256, dtype=np.int64)
    nz = np.zeros(EARLY, dtype=np.int64)
    popcount = np.zeros(256, dtype=np.int64)
    for b in range(256):
        popcount[b] = popcount[b >> 1] + (b & 1)
    ip = 0
    for i in range(n_rec):
        o = out[i]
        proto = ints[i, 0]
        cflags = ints[i, 2]
        sflags = ints[i, 3]
        o[0] = 1.0 if proto == 6 else 0.0
        o[1] = 1.0 if proto == 17 else 0.0
        o[2] = 0.0 if proto == 6 or proto == 17 else 1.0
        o[3] = 1.0 if (cflags | sflags) & 2 else 0.0
        a = off[i]
        m = off[i + 1] - a
        _payload_lens(proto, ints[i, 1], cflags, sflags, sizes, dirs, a, m, lens)
        k = min(EARLY, m)
        o[4] = float(k)
        c2s_n = 0
        s2c_n = 0
        c2s_b = 0
        s2c_b = 0
        changes = 0
        mx = 0
        n_nz = 0
        mod16 = 0
        for j in range(EARLY):
            if j >= k:
                o[5 + j] = 0.0
                o[COL_IAT + j] = -1.0
                continue
            d = dirs[a + j]
            ln = lens[j]
            o[5 + j] = float(ln) if d == 0 else float(-ln)
            o[COL_IAT + j] = iat_logs[ip]
            ip += 1
            if j and d != dirs[a + j - 1]:
                changes += 1
            if ln > 0:
                if d == 0:
                    c2s_n += 1
                    c2s_b += ln
                else:
                    s2c_n += 1
                    s2c_b += ln
                if ln > mx:
                    mx = ln
                if ln % 16 == 0:
                    mod16 += 1
                nz[n_nz] = ln
                n_nz += 1
        distinct = 0
        for t in range(n_nz):
            dup = False
            for u in range(t):
                if nz[u] == nz[t]:
                    dup = True
                    break
            if not dup:
                distinct += 1
        c = COL_AFTER_IAT
        o[c] = float(c2s_n)
        o[c + 1] = float(s2c_n)
        o[c + 2] = float(c2s_b)
        o[c + 3] = float(s2c_b)
        o[c + 4] = float(changes)
        o[c + 5] = float(mx)
        o[c + 6] = float(distinct)
        o[c + 7] = mod16 / n_nz if n_nz else -1.0
        for d in range(2):
            got = 0
            if d == 0 and ints[i, 4] != 0:
                got = ints[i, 4]
            else:
                for j in range(m):
                    if dirs[a + j] == d and lens[j] > 0:
                        got = lens[j]
                        break
            o[c + 8 + d] = float(got)
        for d in range(2):
            h0 = hoff[2 * i + d]
            hn = hoff[2 * i + d + 1] - h0
            _head_block(
                heads[h0 : h0 + hn], hn, terms, compensated, counts, order, popcount, o, COL_HEADS + 14 * d
            )


@njit(cache=True, nogil=True)
def burst_columns(
    ints: I64,
    off: I64,
    sizes: I64,
    dirs: I64,
    n_bursts: int,
    nested_lo: int,
    nested_hi: int,
    nested_flight: int,
    out: F64,
    col: int,
) -> None:  # pragma: no cover - compiled
    """Fill the burst block (``burst0.bytes`` … ``late.s2c_max``) from column ``col`` on.

    The arithmetic is the definition's (:func:`sluice.features.flow._burst_features`): integer
    sums, one division per mean, so the values are equal bit for bit.
    """
    n_rec = ints.shape[0]
    width = max(1, int(np.max(off[1:] - off[:-1])) if n_rec else 1)
    lens = np.zeros(width, dtype=np.int64)
    bdir = np.zeros(width, dtype=np.int64)
    bsum = np.zeros(width, dtype=np.int64)
    for i in range(n_rec):
        o = out[i]
        a = off[i]
        m = off[i + 1] - a
        _payload_lens(ints[i, 0], ints[i, 1], ints[i, 2], ints[i, 3], sizes, dirs, a, m, lens)
        nb = 0
        late_n = np.zeros(2, dtype=np.int64)
        late_sum = np.zeros(2, dtype=np.int64)
        late_max = np.full(2, -1, dtype=np.int64)
        for j in range(m):
            ln = lens[j]
            if ln <= 0:
                continue
            d = dirs[a + j]
            if nb and bdir[nb - 1] == d:
                bsum[nb - 1] += ln
            else:
                bdir[nb] = d
                bsum[nb] = ln
                nb += 1
            if nb - 1 >= 2:
                late_n[d] += 1
                late_sum[d] += ln
                if ln > late_max[d]:
                    late_max[d] = ln
        for k in range(n_bursts):
            if k < nb:
                o[col + k] = float(bsum[k]) if bdir[k] == 0 else float(-bsum[k])
            else:
                o[col + k] = 0.0
        nested = 0
        for k in range(2, nb - 1):
            if (
                bdir[k] == 0
                and nested_lo <= bsum[k] <= nested_hi
                and bdir[k + 1] == 1
                and bsum[k + 1] >= nested_flight
            ):
                nested += 1
        c = col + n_bursts
        o[c] = float(nb)
        o[c + 1] = float(nested)
        for d in range(2):
            o[c + 2 + 3 * d] = float(late_n[d])
            o[c + 3 + 3 * d] = late_sum[d] / late_n[d] if late_n[d] else -1.0
            o[c + 4 + 3 * d] = float(late_max[d])


@njit(cache=True, nogil=True)
def app_burst_columns(
    ints: I64,
    off: I64,
    sizes: I64,
    dirs: I64,
    out: F64,
    cols: I64,
    n_app: int,
    tls12: int,
    finished_max: int,
) -> None:  # pragma: no cover - compiled
    """Fill the ``tls_app{k}.bytes`` block as :func:`sluice.features.flow._app_bursts` does.

    ``cols``: the columns ``c2s.tls_record``, ``c2s.head_byte0``, ``tls.selected_version``,
    ``tls.cert_present`` (already filled) and the first ``tls_app`` column. Integer sums, so the
    values are the definition's bit for bit.
    """
    n_rec = ints.shape[0]
    width = max(1, int(np.max(off[1:] - off[:-1])) if n_rec else 1)
    lens = np.zeros(width, dtype=np.int64)
    sd = np.zeros(width, dtype=np.int64)
    sn = np.zeros(width, dtype=np.int64)
    acc = np.zeros(n_app, dtype=np.int64)
    adir = np.zeros(n_app, dtype=np.int64)
    c = cols[4]
    for i in range(n_rec):
        o = out[i]
        if not (o[cols[0]] == 1.0 and o[cols[1]] == 22.0):
            for k in range(n_app):
                o[c + k] = -1.0
            continue
        a = off[i]
        m = off[i + 1] - a
        _payload_lens(ints[i, 0], ints[i, 1], ints[i, 2], ints[i, 3], sizes, dirs, a, m, lens)
        n = 0
        for j in range(m):
            d = dirs[a + j]
            if lens[j] > 0 and (d == 0 or d == 1):
                sd[n] = d
                sn[n] = lens[j]
                n += 1
        p = _skip_run(sd, n, _skip_run(sd, n, 0, 0), 1)
        if o[cols[2]] == tls12 and o[cols[3]] == 1.0:
            p = _skip_run(sd, n, _skip_run(sd, n, p, 0), 1)
        elif p < n and sn[p] <= finished_max:
            p += 1
        nb = 0
        for j in range(p, n):
            if nb and sd[j] == adir[nb - 1]:
                acc[nb - 1] += sn[j]
            elif nb < n_app:
                acc[nb] = sn[j]
                adir[nb] = sd[j]
                nb += 1
            else:
                break
        for k in range(n_app):
            if k < nb:
                o[c + k] = float(acc[k]) if adir[k] == 0 else float(-acc[k])
            else:
                o[c + k] = 0.0


@njit(cache=True, nogil=True)
def _skip_run(sd: I64, n: int, i: int, d: int) -> int:  # pragma: no cover - compiled
    while i < n and sd[i] == d:
        i += 1
    return i
