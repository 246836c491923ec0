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
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sluice.batch import kernels as K
from sluice.batch.build import Columns, FlowWork, build_records
from sluice.batch.index import CaptureIndex, index_capture
from sluice.flows.loop import PacketLoop, RunSummary
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig, flow_key
from sluice.io.limits import ReadLimits
from sluice.io.source import RawPacket

if TYPE_CHECKING:
    import pandas as pd

_SYN = 0x02


@dataclass
class BatchResult:
    """Flow records of one capture and the run's summary."""

    records: list[FlowRecord]
    """Final records in flow-id order (then early ones, when asked for)."""
    summary: RunSummary
    """Packets, flows and anomalies."""

    def to_pandas(self) -> pd.DataFrame:
        """The records as a pandas DataFrame (needs the ``pandas`` extra); see :mod:`sluice.io.frames`.

        Returns:
            One row per record, timestamps as ``datetime64[us, UTC]``, absent values ``<NA>``.

        Raises:
            ImportError: pandas is not installed.
        """
        from sluice.io.frames import flows_frame

        return flows_frame(self.records)


def _addr_words(addr: bytes) -> tuple[int, int]:
    if len(addr) == 4:
        return 0, int.from_bytes(addr, "big")
    return int.from_bytes(addr[:8], "big"), int.from_bytes(addr[8:], "big")


def _vlan_tuple(code: int) -> tuple[int, ...]:
    n = code >> 24
    return tuple((code >> (12 * (n - 1 - k))) & 0xFFF for k in range(n))


def batch_flows(
    path: str,
    config: FlowConfig | None = None,
    *,
    strict: bool = False,
    early: bool = False,
    progress: Callable[[float, str], None] | None = None,
    workers: int | None = None,
    limits: ReadLimits | None = None,
    shard: tuple[int, int] | None = None,
) -> BatchResult:
    """Flows of one capture file by the batch path.

    Args:
        path: pcap or pcapng file, optionally gzip-compressed; ``-`` or a pipe is read into
            memory (within ``limits``).
        config: timeouts and limits (as the streaming path).
        strict: re-raise bugs instead of counting them.
        early: also build the early record of every flow that reached ``config.early_packets``.
        progress: called with (fraction done, stage name) as the stages go.
        workers: processes for the per-flow work (inspection, records); default: one per core
            for large captures, 1 for small ones. Results do not depend on it.
        limits: gzip ratio and in-memory size limits (default: from the environment).
        shard: ``(i, n)``: only the flows whose symmetric 5-tuple hash falls in bucket ``i`` of
            ``n`` (:mod:`sluice.cluster`). The whole capture is still read, so timeouts see the
            capture's clock; ``flow_id`` is then the index of the flow's first packet in the
            capture, and only shard 0 counts the packets and the read and decode anomalies, so
            the shards' summaries add up to the whole capture's.

    Raises:
        CaptureError: the file cannot be read as a capture at all.
    """
    cfg = config or FlowConfig()
    loop = PacketLoop(cfg, strict=strict)
    summary = loop.summary
    if progress is not None:
        progress(0.0, "index")
    ix = index_capture(path, limits)
    if progress is not None:
        progress(0.2, "parse")
    summary.merge_counts(ix.anomalies)
    n = len(ix)
    summary.packets = n
    c = Columns(n)
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
    reassembled: dict[int, tuple[bytes, int, int]] = {}
    slow_payload = _decode_slow(ix, c, loop, ctx_ids, reassembled)
    summary.non_ip = int(np.count_nonzero(c.status == K.NON_IP))
    valid = np.flatnonzero(c.status == K.OK)
    summary.ip_packets = len(valid)
    if progress is not None:
        progress(0.4, "flows")
    if shard is not None and shard[0] > 0:  # shard 0 alone counts what every shard read
        summary.packets = summary.ip_packets = summary.non_ip = 0
        summary.anomalies.clear()
        summary.malformed.clear()
    records = _flows(
        ix, c, valid, cfg, loop, ctx_ids, slow_payload, reassembled, early, workers, progress, shard
    )
    summary.flows = sum(1 for r in records if not r.early)
    # the streaming path emits (and counts) an early record for every flow that reaches K packets
    summary.early_records = (
        sum(1 for r in records if not r.early and r.packets >= cfg.early_packets) if cfg.early_packets else 0
    )
    return BatchResult(records, summary)


def _decode_slow(
    ix: CaptureIndex,
    c: Columns,
    loop: PacketLoop,
    ctx_ids: dict[tuple[tuple[int, ...], tuple[tuple[str, bytes, bytes, int], ...]], int],
    reassembled: dict[int, tuple[bytes, int, int]],
) -> dict[int, bytes]:
    """Decode with the streaming path's code every packet the numba parser left alone."""
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
        if pkt.fragment is not None:
            c.lfrag[i] = pkt.fragment.offset > 0
            c.noinspect[i] = pkt.reassembled is None
            if pkt.reassembled is not None:
                c.reasm[i] = True
                reassembled[i] = pkt.reassembled
        c.ctx[i] = ctx_ids.setdefault((key[5], key[6]), len(ctx_ids))
        payloads[i] = pkt.payload
    return payloads


def _flows(
    ix: CaptureIndex,
    c: Columns,
    valid: npt.NDArray[np.int64],
    cfg: FlowConfig,
    loop: PacketLoop,
    ctx_ids: dict[tuple[tuple[int, ...], tuple[tuple[str, bytes, bytes, int], ...]], int],
    slow_payload: dict[int, bytes],
    reassembled: dict[int, tuple[bytes, int, int]],
    early: bool,
    workers: int | None,
    progress: Callable[[float, str], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[FlowRecord]:
    m = len(valid)
    n = len(ix)
    fwd = np.zeros(n, np.bool_)
    h = np.zeros(m, np.uint64)
    K.canonical_hash(valid, c.src_hi, c.src_lo, c.sport, c.dst_hi, c.dst_lo, c.dport, c.proto, c.ctx, fwd, h)
    clock = np.maximum.accumulate(ix.ts[valid]) if m else np.zeros(0)
    final_clock = float(clock[-1]) if m else 0.0
    if shard is not None:  # a flow's packets share their canonical key, hence its hash
        keep = (h >> np.uint64(32)) % np.uint64(shard[1]) == np.uint64(shard[0])
        valid, h, clock = valid[keep], h[keep], clock[keep]
    order = np.argsort(h, kind="stable")
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
    work = FlowWork(
        ix=ix,
        c=c,
        valid=valid,
        nf=nf,
        pkt_flow=pkt_flow,
        pkt_idx=pkt_idx,
        pkt_dir=pkt_dir,
        pkt_iat=pkt_iat,
        by_flow=by_flow,
        first_of=first_of,
        client_a=client_a,
        inv_ctx={v: k for k, v in ctx_ids.items()},
        fwd=fwd,
        slow_payload=slow_payload,
        reassembled=reassembled,
        reasons=reasons,
        cfg=cfg,
        early=early,
    )
    records = build_records(
        work, loop, workers, None if progress is None else lambda f: progress(0.5 + 0.5 * f, "inspect")
    )
    if shard is not None:
        for rec in records:
            rec.flow_id = int(first_of[rec.flow_id])
    return records


def _group_ids(
    c: Columns, valid: npt.NDArray[np.int64], fwd: npt.NDArray[np.bool_]
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
    cfg: FlowConfig,
    final_clock: float,
    flow_reason: npt.NDArray[np.int64],
    flow_maxts: npt.NDArray[np.float64],
) -> list[str]:
    """Why each flow ended, as the streaming table decides it.

    A flow whose key comes back is ended by that packet (idle or active timeout); any other flow
    ends ``idle`` if the capture clock went past its last packet by more than the idle timeout
    (the streaming table's sweep), else at the ``end`` of the capture.
    """
    gap = final_clock - flow_maxts
    names = np.where(
        flow_reason == 1,
        "idle",
        np.where(flow_reason == 2, "active", np.where(gap > cfg.idle_timeout_s, "idle", "end")),
    )
    return [str(v) for v in names]
