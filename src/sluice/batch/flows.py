"""The batch path: a whole capture as columns, flows by sorting, the same records as streaming.

Theory of operation:

1. :func:`~sluice.batch.index.index_capture` finds every record (numba).
2. :func:`~sluice.batch.kernels.parse_l2l4` decodes the common case into columns; every packet it
   does not handle is decoded by :meth:`PacketLoop.decode` — the streaming path's own code — and
   written into the same columns, so unusual packets follow exactly one implementation.
3. A 64-bit hash of each packet's canonical flow key, a stable argsort, and one walk over the
   sorted packets assign flows with the streaming table's rules (orientation, client, idle and
   active timeouts). Flow ids follow the order of each flow's first packet, as in streaming.
4. Sums per flow are one numba pass; only the few packets an application inspector needs (the
   first payloads of each flow) are handed to Python, through :meth:`PacketLoop.inspect_payload`.

The path holds the capture's columns in memory (about 130 bytes per packet, the capture itself
memory-mapped); ``max_flows`` applies to the streaming path only.
"""

from __future__ import annotations

__all__ = ["BatchResult", "batch_flows"]

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sluice.batch import kernels as K
from sluice.batch.index import CaptureIndex, index_capture
from sluice.flows.app import AppInspector
from sluice.flows.loop import PacketLoop, RunSummary
from sluice.flows.record import AppMeta, FlowRecord, format_addr
from sluice.flows.table import SEQUENCE_PACKETS, FlowConfig, flow_key, format_tunnels
from sluice.io.source import RawPacket

_SYN = 0x02


@dataclass
class BatchResult:
    """Flow records of one capture and the run's summary."""

    records: list[FlowRecord]
    """Final records in flow-id order (then early ones, when asked for)."""
    summary: RunSummary
    """Packets, flows and anomalies."""


class _Columns:
    def __init__(self, n: int) -> None:
        self.status = np.full(n, K.SLOW, np.int64)
        self.ipver = np.zeros(n, np.int64)
        self.src_hi = np.zeros(n, np.uint64)
        self.src_lo = np.zeros(n, np.uint64)
        self.dst_hi = np.zeros(n, np.uint64)
        self.dst_lo = np.zeros(n, np.uint64)
        self.sport = np.zeros(n, np.int64)
        self.dport = np.zeros(n, np.int64)
        self.proto = np.zeros(n, np.int64)
        self.flags = np.zeros(n, np.int64)
        self.seq = np.zeros(n, np.int64)
        self.iplen = np.zeros(n, np.int64)
        self.vlan = np.zeros(n, np.int64)
        self.pay_off = np.zeros(n, np.int64)
        self.pay_len = np.zeros(n, np.int64)
        self.ctx = np.zeros(n, np.int64)
        self.lfrag = np.zeros(n, np.bool_)


def _addr_words(addr: bytes) -> tuple[int, int]:
    if len(addr) == 4:
        return 0, int.from_bytes(addr, "big")
    return int.from_bytes(addr[:8], "big"), int.from_bytes(addr[8:], "big")


def _words_addr(ver: int, hi: int, lo: int) -> bytes:
    if ver == 4:
        return int(lo).to_bytes(4, "big")
    return int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big")


def _vlan_tuple(code: int) -> tuple[int, ...]:
    n = code >> 24
    return tuple((code >> (12 * (n - 1 - k))) & 0xFFF for k in range(n))


def batch_flows(
    path: str,
    config: FlowConfig | None = None,
    *,
    strict: bool = False,
    early: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    """Flows of one capture file by the batch path.

    Args:
        path: pcap or pcapng file, optionally gzip-compressed.
        config: timeouts and limits (as the streaming path).
        strict: re-raise bugs instead of counting them.
        early: also build the early record of every flow that reached ``config.early_packets``.
        progress: called with the number of packets done, now and then.

    Raises:
        CaptureError: the file cannot be read as a capture at all.
    """
    cfg = config or FlowConfig()
    loop = PacketLoop(cfg, strict=strict)
    summary = loop.summary
    ix = index_capture(path)
    summary.merge_counts(ix.anomalies)
    n = len(ix)
    summary.packets = n
    c = _Columns(n)
    K.parse_l2l4(
        ix.buf,
        ix.offset,
        ix.caplen,
        ix.linktype,
        c.status,
        c.ipver,
        c.src_hi,
        c.src_lo,
        c.dst_hi,
        c.dst_lo,
        c.sport,
        c.dport,
        c.proto,
        c.flags,
        c.seq,
        c.iplen,
        c.vlan,
        c.pay_off,
        c.pay_len,
    )
    ctx_ids: dict[tuple[tuple[int, ...], tuple[tuple[str, bytes, bytes, int], ...]], int] = {}
    fast = c.status == K.OK
    codes, inverse = np.unique(c.vlan[fast], return_inverse=True)
    mapped = np.array(
        [ctx_ids.setdefault((_vlan_tuple(int(v)), ()), len(ctx_ids)) for v in codes], dtype=np.int64
    )
    c.ctx[fast] = mapped[inverse] if len(codes) else 0
    slow_payload = _decode_slow(ix, c, loop, ctx_ids)
    summary.non_ip = int(np.count_nonzero(c.status == K.NON_IP))
    valid = np.flatnonzero(c.status == K.OK)
    summary.ip_packets = len(valid)
    if progress is not None:
        progress(n)
    records = _flows(ix, c, valid, cfg, loop, ctx_ids, slow_payload, early)
    summary.flows = sum(1 for r in records if not r.early)
    summary.early_records = sum(1 for r in records if r.early)
    return BatchResult(records, summary)


def _decode_slow(
    ix: CaptureIndex,
    c: _Columns,
    loop: PacketLoop,
    ctx_ids: dict[tuple[tuple[int, ...], tuple[tuple[str, bytes, bytes, int], ...]], int],
) -> dict[int, bytes]:
    payloads: dict[int, bytes] = {}
    for i in np.flatnonzero(c.status == K.SLOW).tolist():
        off, cl = int(ix.offset[i]), int(ix.caplen[i])
        raw = RawPacket(
            float(ix.ts[i]),
            int(ix.linktype[i]),
            bytes(ix.buf[off : off + cl]),
            int(ix.wirelen[i]),
            int(ix.iface[i]),
        )
        pkt = loop.decode(i, raw)
        if pkt is None:
            c.status[i] = K.DROPPED
            continue
        if not pkt.ip_version:
            c.status[i] = K.NON_IP
            continue
        key, _fwd = flow_key(pkt)
        c.status[i] = K.OK
        c.ipver[i] = pkt.ip_version
        c.src_hi[i], c.src_lo[i] = _addr_words(pkt.src)
        c.dst_hi[i], c.dst_lo[i] = _addr_words(pkt.dst)
        c.sport[i], c.dport[i], c.proto[i] = pkt.sport, pkt.dport, pkt.proto
        c.flags[i], c.seq[i], c.iplen[i] = pkt.tcp_flags, pkt.seq, pkt.ip_len
        c.pay_len[i] = len(pkt.payload)
        c.lfrag[i] = pkt.fragment is not None and pkt.fragment.offset > 0
        c.ctx[i] = ctx_ids.setdefault((key[5], key[6]), len(ctx_ids))
        payloads[i] = pkt.payload
    return payloads


def _flows(
    ix: CaptureIndex,
    c: _Columns,
    valid: npt.NDArray[np.int64],
    cfg: FlowConfig,
    loop: PacketLoop,
    ctx_ids: dict[tuple[tuple[int, ...], tuple[tuple[str, bytes, bytes, int], ...]], int],
    slow_payload: dict[int, bytes],
    early: bool,
) -> list[FlowRecord]:
    m = len(valid)
    n = len(ix)
    fwd = np.zeros(n, np.bool_)
    h = np.zeros(m, np.uint64)
    K.canonical_hash(
        valid, c.src_hi, c.src_lo, c.sport, c.dst_hi, c.dst_lo, c.dport, c.proto, c.ctx, fwd, h
    )
    order = np.argsort(h, kind="stable")
    clock = np.maximum.accumulate(ix.ts[valid]) if m else np.zeros(0)
    pkt_flow = np.full(n, -1, np.int64)
    pkt_idx = np.zeros(n, np.int64)
    pkt_dir = np.zeros(n, np.int64)
    pkt_iat = np.zeros(n, np.float64)
    flow_first = np.zeros(m, np.int64)
    flow_client_a = np.zeros(m, np.bool_)
    flow_last = np.zeros(m, np.int64)
    flow_reason = np.zeros(m, np.int64)
    flow_maxts = np.zeros(m, np.float64)
    for attempt in range(2):
        if attempt:  # two keys shared a hash: group by the full key instead
            h = _group_ids(c, valid, fwd)
            order = np.argsort(h, kind="stable")
        nf = K.assign_flows(
            order,
            valid,
            ix.ts,
            clock,
            c.src_hi,
            c.src_lo,
            c.sport,
            c.dst_hi,
            c.dst_lo,
            c.dport,
            c.proto,
            c.ctx,
            fwd,
            c.flags,
            h,
            cfg.idle_timeout_s,
            cfg.active_timeout_s,
            pkt_flow,
            pkt_idx,
            pkt_dir,
            pkt_iat,
            flow_first,
            flow_client_a,
            flow_last,
            flow_reason,
            flow_maxts,
        )
        if nf >= 0:
            break
    final_clock = float(clock[-1]) if m else 0.0
    reason = _end_reasons(cfg, final_clock, flow_reason[:nf], flow_maxts[:nf])
    flow_first = flow_first[:nf]
    flow_client_a = flow_client_a[:nf]
    rank = np.empty(nf, np.int64)
    rank[np.argsort(flow_first, kind="stable")] = np.arange(nf)
    pkt_flow[valid] = rank[pkt_flow[valid]]
    first_of = np.empty(nf, np.int64)
    first_of[rank] = flow_first
    client_a = np.empty(nf, np.bool_)
    client_a[rank] = flow_client_a
    reasons = [""] * nf
    for old_id, r in enumerate(reason):
        reasons[int(rank[old_id])] = r
    # packets of each flow in index order
    by_flow = valid[np.lexsort((valid, pkt_flow[valid]))]
    starts = np.searchsorted(pkt_flow[by_flow], np.arange(nf + 1))
    inv_ctx = {v: k for k, v in ctx_ids.items()}
    ctx = _Ctx(
        ix,
        c,
        pkt_flow,
        pkt_idx,
        pkt_dir,
        pkt_iat,
        by_flow,
        starts,
        first_of,
        client_a,
        inv_ctx,
        fwd,
        slow_payload,
        reasons,
    )
    metas, early_metas = _inspect(ctx, cfg, loop, early)
    records = _records(ctx, valid, nf, 1 << 62, metas, False)
    if early and cfg.early_packets:
        recs_early = _records(ctx, valid, nf, cfg.early_packets, early_metas, True)
        records += [r for r in recs_early if r.packets == cfg.early_packets]
    return records


@dataclass
class _Ctx:
    ix: CaptureIndex
    c: _Columns
    pkt_flow: npt.NDArray[np.int64]
    pkt_idx: npt.NDArray[np.int64]
    pkt_dir: npt.NDArray[np.int64]
    pkt_iat: npt.NDArray[np.float64]
    by_flow: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    first_of: npt.NDArray[np.int64]
    client_a: npt.NDArray[np.bool_]
    inv_ctx: dict[int, tuple[tuple[int, ...], tuple[tuple[str, bytes, bytes, int], ...]]]
    fwd: npt.NDArray[np.bool_]
    slow_payload: dict[int, bytes]
    reasons: list[str]

    def payload(self, i: int) -> bytes:
        got = self.slow_payload.get(i)
        if got is not None:
            return got
        off = int(self.c.pay_off[i])
        return bytes(self.ix.buf[off : off + int(self.c.pay_len[i])])


def _inspect(
    x: _Ctx, cfg: FlowConfig, loop: PacketLoop, early: bool
) -> tuple[dict[int, AppMeta], dict[int, AppMeta]]:
    c = x.c
    limit = cfg.inspect_packets
    cand = x.by_flow[
        (x.pkt_idx[x.by_flow] < limit) & ((c.pay_len[x.by_flow] > 0) | (c.flags[x.by_flow] != 0))
    ]
    metas: dict[int, AppMeta] = {}
    early_metas: dict[int, AppMeta] = {}
    k_early = cfg.early_packets if early else 0
    flows = x.pkt_flow[cand].tolist()
    idxs = x.pkt_idx[cand].tolist()
    cand_l = cand.tolist()
    insp: AppInspector | None = None
    cur = -1
    snap_done = True
    for i, f, k in zip(cand_l, flows, idxs, strict=True):
        if f != cur:
            if insp is not None and not snap_done:
                early_metas[cur] = insp.meta.copy()
            cur = f
            insp = None
            snap_done = not k_early
        if not snap_done and k >= k_early:
            if insp is not None:
                early_metas[f] = insp.meta.copy()
            snap_done = True
        if insp is None:
            proto = int(c.proto[i])
            a_port, b_port = _ab_ports(x, i)
            cport, sport = (a_port, b_port) if x.client_a[f] else (b_port, a_port)
            insp = AppInspector(proto, cport, sport)
            metas[f] = insp.meta
        if insp.done or c.lfrag[i]:
            continue
        loop.inspect_payload(insp, int(x.pkt_dir[i]), x.payload(i), int(c.seq[i]), int(c.flags[i]))
    if insp is not None and not snap_done:
        early_metas[cur] = insp.meta.copy()
    return metas, early_metas


def _group_ids(
    c: _Columns, valid: npt.NDArray[np.int64], fwd: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint64]:
    f = fwd[valid]
    cols = []
    for a, b in ((c.src_hi, c.dst_hi), (c.src_lo, c.dst_lo), (c.sport, c.dport)):
        av, bv = a[valid], b[valid]
        cols += [np.where(f, av, bv), np.where(f, bv, av)]
    cols += [c.proto[valid], c.ctx[valid]]
    keys = np.lexsort(cols[::-1])
    change = np.zeros(len(valid), np.bool_)
    for col in cols:
        s = col[keys]
        change[1:] |= s[1:] != s[:-1]
    gid = np.empty(len(valid), np.uint64)
    gid[keys] = np.cumsum(change).astype(np.uint64)
    return gid


def _end_reasons(
    cfg: FlowConfig, final_clock: float, flow_reason: npt.NDArray[np.int64],
    flow_maxts: npt.NDArray[np.float64],
) -> list[str]:
    """Why each flow ended, as the streaming table decides it.

    A flow whose key comes back is ended by that packet (idle or active timeout); any other flow
    ends ``idle`` if the capture clock went past its last packet by more than the idle timeout
    (the streaming table's sweep), else at the ``end`` of the capture.
    """
    gap = final_clock - flow_maxts
    names = np.where(flow_reason == 1, "idle", np.where(flow_reason == 2, "active",
                     np.where(gap > cfg.idle_timeout_s, "idle", "end")))
    return [str(v) for v in names]


def _ab_ports(x: _Ctx, i: int) -> tuple[int, int]:
    c = x.c
    if x.fwd[i]:
        return int(c.sport[i]), int(c.dport[i])
    return int(c.dport[i]), int(c.sport[i])


def _records(
    x: _Ctx,
    valid: npt.NDArray[np.int64],
    nf: int,
    limit: int,
    metas: dict[int, AppMeta],
    early: bool,
) -> list[FlowRecord]:
    c, ix = x.c, x.ix
    packets = np.zeros((nf, 2), np.int64)
    nbytes = np.zeros((nf, 2), np.int64)
    pbytes = np.zeros((nf, 2), np.int64)
    fflags = np.zeros((nf, 2), np.int64)
    last_ts = np.zeros(nf, np.float64)
    first_pay = np.zeros((nf, 2), np.int64)
    K.aggregate(
        valid,
        limit,
        x.pkt_flow,
        x.pkt_idx,
        x.pkt_dir,
        ix.ts,
        ix.wirelen,
        c.pay_len,
        c.flags,
        c.lfrag,
        nf,
        packets,
        nbytes,
        pbytes,
        fflags,
        last_ts,
        first_pay,
    )
    seq_limit = min(limit, SEQUENCE_PACKETS)
    seq_rows = x.by_flow[x.pkt_idx[x.by_flow] < seq_limit]
    seq_starts = np.searchsorted(x.pkt_flow[seq_rows], np.arange(nf + 1)).tolist()
    sizes_all = c.iplen[seq_rows].tolist()
    dirs_all = x.pkt_dir[seq_rows].tolist()
    iats_all = x.pkt_iat[seq_rows].tolist()
    stats = _payload_stats(x, first_pay)
    out: list[FlowRecord] = []
    ts = ix.ts
    first_of = x.first_of.tolist()
    client_a = x.client_a.tolist()
    pk, nb, pb, ff = packets.tolist(), nbytes.tolist(), pbytes.tolist(), fflags.tolist()
    lts = last_ts.tolist()
    for f in range(nf):
        i0 = first_of[f]
        ver = int(c.ipver[i0])
        a_is_client = client_a[f]
        src = _words_addr(ver, int(c.src_hi[i0]), int(c.src_lo[i0]))
        dst = _words_addr(ver, int(c.dst_hi[i0]), int(c.dst_lo[i0]))
        sp, dp = int(c.sport[i0]), int(c.dport[i0])
        fwd0 = bool(x.fwd[i0])
        a, ap, b, bp = (src, sp, dst, dp) if fwd0 else (dst, dp, src, sp)
        client, cport, server, sport = (a, ap, b, bp) if a_is_client else (b, bp, a, ap)
        vlans, tun = x.inv_ctx[int(c.ctx[i0])]
        s0, s1 = seq_starts[f], seq_starts[f + 1]
        st = stats[f]
        meta = metas.get(f)
        out.append(
            FlowRecord(
                flow_id=f,
                early=early,
                end_reason="early" if early else x.reasons[f],
                ip_version=ver,
                client=format_addr(client),
                client_port=cport,
                server=format_addr(server),
                server_port=sport,
                proto=int(c.proto[i0]),
                vlans=vlans,
                tunnels=format_tunnels(tun, a_is_client),
                first_ts=float(ts[i0]),
                last_ts=lts[f],
                c2s_packets=pk[f][0],
                s2c_packets=pk[f][1],
                c2s_bytes=nb[f][0],
                s2c_bytes=nb[f][1],
                c2s_payload_bytes=pb[f][0],
                s2c_payload_bytes=pb[f][1],
                c2s_tcp_flags=ff[f][0],
                s2c_tcp_flags=ff[f][1],
                pkt_sizes=tuple(sizes_all[s0:s1]),
                pkt_dirs=tuple(dirs_all[s0:s1]),
                pkt_iats=tuple(iats_all[s0:s1]),
                c2s_entropy=st[0],
                c2s_printable=st[1],
                s2c_entropy=st[2],
                s2c_printable=st[3],
                c2s_first_payload_len=st[4],
                meta=meta.copy() if meta is not None else AppMeta(),
            )
        )
    return out


def _payload_stats(
    x: _Ctx, first_pay: npt.NDArray[np.int64]
) -> list[tuple[float, float, float, float, int]]:
    out = []
    for i_c, i_s in first_pay.tolist():
        row: list[float] = []
        for i in (i_c, i_s):
            if i < 0:
                row += [-1.0, -1.0]
                continue
            data = x.slow_payload.get(i)
            if data is not None:
                e, p = K.byte_stats(np.frombuffer(data, np.uint8), 0, len(data))
            else:
                e, p = K.byte_stats(x.ix.buf, int(x.c.pay_off[i]), int(x.c.pay_len[i]))
            row += [round(float(e), 6), round(float(p), 6)]
        clen = int(x.c.pay_len[i_c]) if i_c >= 0 else 0
        out.append((row[0], row[1], row[2], row[3], clen))
    return out
