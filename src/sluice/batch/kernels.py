"""Numba kernels of the batch path: L2–L4 parsing of the common case, flow assignment, sums.

The parser handles what most traffic is (Ethernet with up to two VLAN tags, Linux cooked, raw
IP; IPv4 without options or fragments; IPv6 without extension headers; TCP, UDP, ICMP) and marks
every other packet ``SLOW``, to be decoded by the streaming path's own dissectors, so the two paths
cannot disagree on anything unusual.
"""

from __future__ import annotations

__all__ = [
    "DROPPED",
    "NON_IP",
    "OK",
    "SLOW",
    "aggregate",
    "assign_flows",
    "byte_stats",
    "canonical_hash",
    "parse_l2l4",
]

import numba
import numpy as np

from sluice.flows.stats import byte_stats  # the per-packet path's kernel, shared

OK, SLOW, NON_IP, DROPPED = 0, 1, 2, 3


@numba.njit(cache=True, nogil=True, inline="always")
def _be16(b, p):
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@numba.njit(cache=True, nogil=True, inline="always")
def _be32(b, p):
    return (
        (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _be64(b, p):
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(b[p + k])
    return v


@numba.njit(cache=True, nogil=True)
def parse_l2l4(
    buf,
    offset,
    caplen,
    linktype,
    status,
    ipver,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    sport,
    dport,
    proto,
    flags,
    seq,
    iplen,
    vlan,
    pay_off,
    pay_len,
):
    n = len(offset)
    for i in range(n):
        status[i] = SLOW
        p = offset[i]
        end = p + caplen[i]
        lt = linktype[i]
        et = -1
        q = p
        nv = 0
        vcode = 0
        if lt == 1:
            if p + 14 > end:
                continue
            et = _be16(buf, p + 12)
            q = p + 14
            if et < 0x600:
                status[i] = NON_IP
                continue
            bad = False
            while et == 0x8100 or et == 0x88A8 or et == 0x9100:
                if nv == 2 or q + 4 > end:
                    bad = True
                    break
                vcode = (vcode << 12) | (_be16(buf, q) & 0xFFF)
                et = _be16(buf, q + 2)
                q += 4
                nv += 1
            if bad or et == 0x8847 or et == 0x8848 or et == 0x8864:
                continue
        elif lt == 101 or lt == 228 or lt == 229:
            if p >= end:
                continue
            nib = buf[p] >> 4
            if nib == 4:
                et = 0x800
            elif nib == 6:
                et = 0x86DD
            else:
                continue
        elif lt == 113:
            if p + 16 > end:
                continue
            et = _be16(buf, p + 14)
            q = p + 16
        elif lt == 276:
            if p + 20 > end:
                continue
            et = _be16(buf, p)
            q = p + 20
        else:
            continue
        if et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x8847 or et == 0x8848 or et == 0x8864:
            continue
        vlan[i] = (nv << 24) | vcode
        if et == 0x800:
            if q + 20 > end or buf[q] != 0x45:
                continue
            total = _be16(buf, q + 2)
            if total < 20 or _be16(buf, q + 6) & 0x3FFF:
                continue
            pr = np.int64(buf[q + 9])
            if pr == 4 or pr == 41 or pr == 47:
                continue
            src_hi[i] = 0
            src_lo[i] = np.uint64(_be32(buf, q + 12))
            dst_hi[i] = 0
            dst_lo[i] = np.uint64(_be32(buf, q + 16))
            l4 = q + 20
            l4end = min(q + total, end)
            ipver[i] = 4
        elif et == 0x86DD:
            if q + 40 > end or buf[q] >> 4 != 6:
                continue
            plen = _be16(buf, q + 4)
            pr = np.int64(buf[q + 6])
            if plen == 0 or pr in (0, 43, 44, 60, 51, 135, 139, 140, 4, 41, 47):
                continue
            src_hi[i] = _be64(buf, q + 8)
            src_lo[i] = _be64(buf, q + 16)
            dst_hi[i] = _be64(buf, q + 24)
            dst_lo[i] = _be64(buf, q + 32)
            l4 = q + 40
            total = 40 + plen
            l4end = min(q + total, end)
            ipver[i] = 6
        else:
            status[i] = NON_IP
            continue
        sp = 0
        dp = 0
        fl = 0
        sq = 0
        if pr == 6:
            if l4 + 20 > l4end:
                continue
            doff = (np.int64(buf[l4 + 12]) >> 4) * 4
            if doff < 20 or l4 + doff > l4end:
                continue
            sp = _be16(buf, l4)
            dp = _be16(buf, l4 + 2)
            sq = _be32(buf, l4 + 4)
            fl = np.int64(buf[l4 + 13])
            po = l4 + doff
        elif pr == 17:
            if l4 + 8 > l4end:
                continue
            sp = _be16(buf, l4)
            dp = _be16(buf, l4 + 2)
            ulen = _be16(buf, l4 + 4)
            if 0 < ulen < 8:
                continue
            if ulen:
                l4end = min(l4end, l4 + ulen)
            if dp == 4789 or sp == 4789 or sp == 3544 or dp == 3544 or sp == 2152 or dp == 2152:
                continue
            po = l4 + 8
        elif pr == 1 or pr == 58:
            if l4 + 4 > l4end:
                continue
            po = l4 + 4
        else:
            po = l4
        sport[i] = sp
        dport[i] = dp
        proto[i] = pr
        flags[i] = fl
        seq[i] = sq
        iplen[i] = total
        pay_off[i] = po
        pay_len[i] = max(0, l4end - po)
        status[i] = OK


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(h, v):
    h ^= v + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    return h


@numba.njit(cache=True, nogil=True)
def canonical_hash(valid, src_hi, src_lo, sport, dst_hi, dst_lo, dport, proto, ctx, fwd, h):
    """Orientation of every packet and a 64-bit hash of its canonical flow key."""
    for j in range(len(valid)):
        i = valid[j]
        a = (src_hi[i], src_lo[i], sport[i])
        b = (dst_hi[i], dst_lo[i], dport[i])
        f = a <= b
        fwd[i] = f
        if not f:
            a, b = b, a
        x = np.uint64(proto[i]) | (np.uint64(ctx[i]) << np.uint64(8))
        x = _mix(x, a[0])
        x = _mix(x, a[1])
        x = _mix(x, np.uint64(a[2]) | (np.uint64(b[2]) << np.uint64(16)))
        x = _mix(x, b[0])
        x = _mix(x, b[1])
        h[j] = x


@numba.njit(cache=True, nogil=True)
def assign_flows(
    order,
    valid,
    ts,
    clock,
    src_hi,
    src_lo,
    sport,
    dst_hi,
    dst_lo,
    dport,
    proto,
    ctx,
    fwd,
    flags,
    h,
    idle,
    active,
    pkt_flow,
    pkt_idx,
    pkt_dir,
    pkt_iat,
    flow_first,
    flow_client_a,
    flow_last,
    flow_reason,
    flow_maxts,
):
    """Walk packets grouped by key hash (index order within a key); split flows on timeouts.

    Returns the number of flows, or -1 if two different keys share a hash (caller falls back).
    """
    nf = 0
    m = len(order)
    j = 0
    while j < m:
        k = j
        i0 = valid[order[j]]
        while k < m and h[order[k]] == h[order[j]]:
            i = valid[order[k]]
            same_dir = fwd[i] == fwd[i0]
            if same_dir:
                eq = (
                    src_hi[i] == src_hi[i0]
                    and src_lo[i] == src_lo[i0]
                    and sport[i] == sport[i0]
                    and dst_hi[i] == dst_hi[i0]
                    and dst_lo[i] == dst_lo[i0]
                    and dport[i] == dport[i0]
                )
            else:
                eq = (
                    src_hi[i] == dst_hi[i0]
                    and src_lo[i] == dst_lo[i0]
                    and sport[i] == dport[i0]
                    and dst_hi[i] == src_hi[i0]
                    and dst_lo[i] == src_lo[i0]
                    and dport[i] == sport[i0]
                )
            if not eq or proto[i] != proto[i0] or ctx[i] != ctx[i0]:
                return -1
            k += 1
        first_ts = 0.0
        last_ts = 0.0
        cur = -1
        cnt = 0
        a_client = True
        for r in range(j, k):
            i = valid[order[r]]
            t = ts[i]
            now = clock[order[r]]
            if cur < 0 or now - last_ts > idle or now - first_ts > active:
                if cur >= 0:
                    flow_reason[cur] = 1 if now - last_ts > idle else 2
                cur = nf
                nf += 1
                flow_first[cur] = i
                synack = proto[i] == 6 and (flags[i] & 0x12) == 0x12
                a_client = fwd[i] != synack
                flow_client_a[cur] = a_client
                flow_reason[cur] = 0
                first_ts = t
                last_ts = t
                cnt = 0
                pkt_iat[i] = 0.0
            else:
                pkt_iat[i] = max(0.0, t - last_ts)
                last_ts = max(last_ts, t)
            pkt_flow[i] = cur
            flow_last[cur] = i
            flow_maxts[cur] = last_ts
            pkt_idx[i] = cnt
            pkt_dir[i] = 0 if fwd[i] == a_client else 1
            cnt += 1
        j = k
    return nf


@numba.njit(cache=True, nogil=True)
def aggregate(
    valid,
    limit,
    pkt_flow,
    pkt_idx,
    pkt_dir,
    ts,
    wirelen,
    pay_len,
    flags,
    lfrag,
    nf,
    packets,
    nbytes,
    pbytes,
    fflags,
    last_ts,
    first_pay,
):
    """Per-flow sums over packets whose in-flow index is below ``limit``; arrays are (nf, 2)."""
    for f in range(nf):
        last_ts[f] = -np.inf
        first_pay[f, 0] = -1
        first_pay[f, 1] = -1
    for j in range(len(valid)):
        i = valid[j]
        if pkt_idx[i] >= limit:
            continue
        f = pkt_flow[i]
        d = pkt_dir[i]
        packets[f, d] += 1
        nbytes[f, d] += wirelen[i]
        fflags[f, d] |= flags[i]
        if ts[i] > last_ts[f]:
            last_ts[f] = ts[i]
        if pay_len[i] > 0:
            pbytes[f, d] += pay_len[i]
            if first_pay[f, d] < 0 and not lfrag[i]:
                first_pay[f, d] = i
