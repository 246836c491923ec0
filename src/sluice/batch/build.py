"""Per-flow work of the batch path: application inspection and flow records, on every core.

Flows are numbered by their first packet; the work for a contiguous range of flow ids depends on
nothing outside that range, so ranges are handed to forked worker processes (the columns are
shared copy-on-write, nothing is pickled but the finished records). Each range runs exactly the
code the streaming path runs per flow — the same :class:`~sluice.flows.app.AppInspector`, fed
through :meth:`~sluice.flows.loop.PacketLoop.inspect_payload` — so results do not depend on how
many workers there are.
"""

from __future__ import annotations

__all__ = ["PARALLEL_MIN_FLOWS", "Columns", "FlowWork", "build_records"]

import itertools
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sluice.batch import kernels as K
from sluice.batch.index import CaptureIndex
from sluice.flows.app import AppInspector
from sluice.flows.loop import PacketLoop
from sluice.flows.record import HEAD_BYTES, AppMeta, FlowRecord, format_ipv6
from sluice.flows.table import SEQUENCE_PACKETS, FlowConfig, TunnelContext, format_tunnels

PARALLEL_MIN_FLOWS = 4000
"""Below this many flows the per-flow work runs in the calling process."""


class Columns:
    """Per-packet columns of the batch path, shape ``(n,)`` each."""

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
        self.noinspect = np.zeros(n, np.bool_)
        self.reasm = np.zeros(n, np.bool_)


@dataclass
class FlowWork:
    """Everything the per-flow work reads (built once, shared with workers)."""

    ix: CaptureIndex
    c: Columns
    valid: npt.NDArray[np.int64]
    nf: int
    pkt_flow: npt.NDArray[np.int64]
    pkt_idx: npt.NDArray[np.int64]
    pkt_dir: npt.NDArray[np.int64]
    pkt_iat: npt.NDArray[np.float64]
    by_flow: npt.NDArray[np.int64]
    first_of: npt.NDArray[np.int64]
    client_a: npt.NDArray[np.bool_]
    inv_ctx: dict[int, tuple[tuple[int, ...], TunnelContext]]
    fwd: npt.NDArray[np.bool_]
    slow_payload: dict[int, bytes]
    reassembled: dict[int, tuple[bytes, int, int]]
    reasons: list[str]
    cfg: FlowConfig
    early: bool


@dataclass
class _Sums:
    packets: npt.NDArray[np.int64]
    nbytes: npt.NDArray[np.int64]
    pbytes: npt.NDArray[np.int64]
    flags: npt.NDArray[np.int64]
    last_ts: npt.NDArray[np.float64]
    first_pay: npt.NDArray[np.int64]


def _sums(w: FlowWork, limit: int) -> _Sums:
    nf = w.nf
    s = _Sums(
        np.zeros((nf, 2), np.int64),
        np.zeros((nf, 2), np.int64),
        np.zeros((nf, 2), np.int64),
        np.zeros((nf, 2), np.int64),
        np.zeros(nf, np.float64),
        np.zeros((nf, 2), np.int64),
    )
    K.aggregate(
        w.valid,
        limit,
        w.pkt_flow,
        w.pkt_idx,
        w.pkt_dir,
        w.ix.ts,
        w.ix.wirelen,
        w.c.pay_len,
        w.c.flags,
        w.c.lfrag,
        nf,
        s.packets,
        s.nbytes,
        s.pbytes,
        s.flags,
        s.last_ts,
        s.first_pay,
    )
    return s


class _Job:
    """The shared state of one batch run, reachable from forked workers."""

    def __init__(self, w: FlowWork, loop: PacketLoop) -> None:
        self.w = w
        self.loop = loop
        self.final = _sums(w, 1 << 62)
        self.early = _sums(w, w.cfg.early_packets) if w.early and w.cfg.early_packets else None
        self.row_starts = np.searchsorted(w.pkt_flow[w.by_flow], np.arange(w.nf + 1))
        self.mem = memoryview(w.ix.buf)  # type: ignore[arg-type]  # numpy arrays are buffers

    def run(self, lo: int, hi: int) -> tuple[list[FlowRecord], list[FlowRecord], dict[str, int]]:
        before = Counter(self.loop.summary.anomalies)
        metas, early_metas = self._inspect(lo, hi)
        finals = self._records(lo, hi, self.final, metas, False)
        earlies: list[FlowRecord] = []
        if self.early is not None:
            k = self.w.cfg.early_packets
            recs = self._records(lo, hi, self.early, early_metas, True)
            earlies = [r for r in recs if r.packets == k]
        after = Counter(self.loop.summary.anomalies)
        after.subtract(before)
        return finals, earlies, {k: v for k, v in after.items() if v}

    def _payload(self, i: int) -> bytes:
        got = self.w.slow_payload.get(i)
        if got is not None:
            return got
        off = int(self.w.c.pay_off[i])
        return self.mem[off : off + int(self.w.c.pay_len[i])].tobytes()

    def _inspect(self, lo: int, hi: int) -> tuple[dict[int, AppMeta], dict[int, AppMeta]]:
        w, c = self.w, self.w.c
        rows = w.by_flow[self.row_starts[lo] : self.row_starts[hi]]
        # empty segments matter to an inspector only when they carry a SYN (the ISN); the
        # streaming path feeds the others too, as no-ops
        first_packets = w.pkt_idx[rows] < w.cfg.inspect_packets
        useful = ((c.pay_len[rows] > 0) | (c.flags[rows] & 0x02 != 0)) & ~c.noinspect[rows]
        cand = rows[first_packets & (useful | c.reasm[rows])]
        metas: dict[int, AppMeta] = {}
        early_metas: dict[int, AppMeta] = {}
        k_early = w.cfg.early_packets if self.early is not None else 0
        columns = zip(
            cand.tolist(),
            w.pkt_flow[cand].tolist(),
            w.pkt_idx[cand].tolist(),
            w.pkt_dir[cand].tolist(),
            c.seq[cand].tolist(),
            c.flags[cand].tolist(),
            strict=True,
        )
        insp: AppInspector | None = None
        cur = -1
        snapped = True
        inspect_payload = self.loop.inspect_payload
        reassembled = w.reassembled
        for i, f, k, d, seq, flags in columns:
            if f != cur:
                if insp is not None and not snapped:
                    early_metas[cur] = insp.meta.copy()
                cur, insp, snapped = f, None, not k_early
            if not snapped and k >= k_early:
                if insp is not None:
                    early_metas[f] = insp.meta.copy()
                snapped = True
            if insp is None:
                cport, sport = self._ports(i, f)
                insp = AppInspector(int(c.proto[i]), cport, sport)
                metas[f] = insp.meta
            if not insp.done:
                whole = reassembled.get(i)
                if whole is not None:
                    inspect_payload(insp, d, *whole)
                else:
                    inspect_payload(insp, d, self._payload(i), seq, flags)
        if insp is not None and not snapped:
            early_metas[cur] = insp.meta.copy()
        return metas, early_metas

    def _ports(self, i: int, f: int) -> tuple[int, int]:
        c = self.w.c
        a, b = (int(c.sport[i]), int(c.dport[i])) if self.w.fwd[i] else (int(c.dport[i]), int(c.sport[i]))
        return (a, b) if self.w.client_a[f] else (b, a)

    def _records(
        self, lo: int, hi: int, s: _Sums, metas: dict[int, AppMeta], early: bool
    ) -> list[FlowRecord]:
        w, c = self.w, self.w.c
        seq_limit = min(w.cfg.early_packets if early else SEQUENCE_PACKETS, SEQUENCE_PACKETS)
        rows = w.by_flow[self.row_starts[lo] : self.row_starts[hi]]
        rows = rows[w.pkt_idx[rows] < seq_limit]
        starts = (np.searchsorted(w.pkt_flow[rows], np.arange(lo, hi + 1))).tolist()
        sizes, dirs, iats = c.iplen[rows].tolist(), w.pkt_dir[rows].tolist(), w.pkt_iat[rows].tolist()
        first = w.first_of[lo:hi]
        fwd0 = w.fwd[first]
        ver = c.ipver[first].tolist()
        a_hi = np.where(fwd0, c.src_hi[first], c.dst_hi[first]).tolist()
        a_lo = np.where(fwd0, c.src_lo[first], c.dst_lo[first]).tolist()
        b_hi = np.where(fwd0, c.dst_hi[first], c.src_hi[first]).tolist()
        b_lo = np.where(fwd0, c.dst_lo[first], c.src_lo[first]).tolist()
        a_port = np.where(fwd0, c.sport[first], c.dport[first]).tolist()
        b_port = np.where(fwd0, c.dport[first], c.sport[first]).tolist()
        proto, ctx = c.proto[first].tolist(), c.ctx[first].tolist()
        first_ts = w.ix.ts[first].tolist()
        client_a = w.client_a[lo:hi].tolist()
        pk, nb = s.packets[lo:hi].tolist(), s.nbytes[lo:hi].tolist()
        pb, ff = s.pbytes[lo:hi].tolist(), s.flags[lo:hi].tolist()
        lts = s.last_ts[lo:hi].tolist()
        stats = self._payload_stats(s.first_pay[lo:hi])
        out: list[FlowRecord] = []
        for j in range(hi - lo):
            f = lo + j
            a = _addr(ver[j], a_hi[j], a_lo[j])
            b = _addr(ver[j], b_hi[j], b_lo[j])
            ca = client_a[j]
            vlans, tun = w.inv_ctx[ctx[j]]
            st = stats[j]
            meta = metas.get(f)
            if meta is None:
                meta = AppMeta()
            elif early:
                meta = meta.copy()
            s0, s1 = starts[j], starts[j + 1]
            out.append(
                FlowRecord(
                    f,
                    early,
                    "early" if early else w.reasons[f],
                    ver[j],
                    a if ca else b,
                    a_port[j] if ca else b_port[j],
                    b if ca else a,
                    b_port[j] if ca else a_port[j],
                    proto[j],
                    vlans,
                    format_tunnels(tun, ca),
                    first_ts[j],
                    lts[j],
                    pk[j][0],
                    pk[j][1],
                    nb[j][0],
                    nb[j][1],
                    pb[j][0],
                    pb[j][1],
                    ff[j][0],
                    ff[j][1],
                    tuple(sizes[s0:s1]),
                    tuple(dirs[s0:s1]),
                    tuple(iats[s0:s1]),
                    st[0],
                    st[1],
                    st[2],
                    st[3],
                    st[4],
                    st[5],
                    st[6],
                    meta,
                )
            )
        return out

    def _payload_stats(
        self, first_pay: npt.NDArray[np.int64]
    ) -> list[tuple[float, float, float, float, int, str, str]]:
        out = []
        buf, slow = self.w.ix.buf, self.w.slow_payload
        pay_off, pay_len = self.w.c.pay_off, self.w.c.pay_len
        for i_c, i_s in first_pay.tolist():
            row: list[float] = []
            heads: list[str] = []
            for i in (i_c, i_s):
                if i < 0:
                    row += [-1.0, -1.0]
                    heads.append("")
                    continue
                data = slow.get(i)
                if data is not None:
                    e, p = K.byte_stats(np.frombuffer(data, np.uint8), 0, len(data))
                    heads.append(data[:HEAD_BYTES].hex())
                else:
                    off = int(pay_off[i])
                    e, p = K.byte_stats(buf, off, int(pay_len[i]))
                    heads.append(buf[off : off + min(HEAD_BYTES, int(pay_len[i]))].tobytes().hex())
                row += [round(float(e), 6), round(float(p), 6)]
            clen = int(pay_len[i_c]) if i_c >= 0 else 0
            out.append((row[0], row[1], row[2], row[3], clen, heads[0], heads[1]))
        return out


def _addr(ver: int, hi: int, lo: int) -> str:
    if ver == 4:
        return f"{lo >> 24}.{(lo >> 16) & 255}.{(lo >> 8) & 255}.{lo & 255}"
    return format_ipv6((hi << 64) | lo)


_JOB: _Job | None = None


def _run_range(bounds: tuple[int, int]) -> tuple[list[FlowRecord], list[FlowRecord], dict[str, int]]:
    assert _JOB is not None
    return _JOB.run(*bounds)


def build_records(
    w: FlowWork,
    loop: PacketLoop,
    workers: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[FlowRecord]:
    """Final records of every flow in id order, then the early records (when asked for).

    Args:
        w: the flows and columns.
        loop: the run's packet loop (its summary receives the inspectors' anomaly counts).
        workers: worker processes; None picks one per core for large captures.
        progress: called with the fraction of flows done as ranges complete.
    """
    global _JOB
    job = _Job(w, loop)
    n = workers or ((os.cpu_count() or 1) if w.nf >= PARALLEL_MIN_FLOWS else 1)
    n = max(1, min(n, w.nf or 1))
    if n == 1 or "fork" not in multiprocessing.get_all_start_methods():
        parts = [job.run(0, w.nf)]
        if progress is not None:
            progress(1.0)
    else:
        ranges = list(itertools.pairwise(np.linspace(0, w.nf, 4 * n + 1).astype(int).tolist()))
        _JOB = job
        parts = []
        try:
            with multiprocessing.get_context("fork").Pool(n) as pool:
                for part in pool.imap(_run_range, ranges):  # in order: records stay in flow order
                    parts.append(part)
                    if progress is not None:
                        progress(len(parts) / len(ranges))
        finally:
            _JOB = None
    finals: list[FlowRecord] = []
    earlies: list[FlowRecord] = []
    for fin, ear, anomalies in parts:
        finals += fin
        earlies += ear
        if n > 1:
            loop.summary.anomalies.update(anomalies)
    return finals + earlies
