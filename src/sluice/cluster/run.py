"""Many captures on a Dask cluster: ``sluice flows --cluster`` and ``sluice analyze --cluster``.

Theory of operation:

1. :func:`plan_shards` splits the work by capture file; a capture larger than ``shard_bytes``
   is split further into ``n`` shards by a symmetric hash of each packet's canonical 5-tuple
   (:func:`~sluice.batch.flows.batch_flows` with ``shard=(i, n)``), so every packet of a flow —
   both directions, later fragments, a key that comes back after a timeout — lands in the same
   shard. Never by packet ranges: those cut flows in two.
2. Each shard is one Dask task on a worker: the batch path (and for ``analyze`` the combiner and
   the register lookup, loaded once per worker process), then one Parquet file per shard in
   ``shard_dir`` (which must be a directory every worker and the client can reach). The task
   returns only the file name and the run's counters; the records travel as Parquet
   (:mod:`sluice.cluster.rows`), not as Python objects.
3. The client reads the shards back and merges them: a sharded capture's flows carry the index
   of their first packet as ``flow_id``; sorted on it and renumbered, they take exactly the ids
   a serial run gives (flow ids follow the order of each flow's first packet). Counters add up
   (shard 0 alone counts what every shard read). The merged result is the serial result;
   ``tests/cluster`` checks it record for record.

A shard reads the whole capture (the cheap, numba part) to keep the capture's clock for timeouts;
the per-flow work (inspection, records, verdicts) is what the shards divide.
"""

from __future__ import annotations

__all__ = [
    "SHARD_BYTES",
    "ClusterRun",
    "Shard",
    "analyze_on_cluster",
    "flows_on_cluster",
    "open_client",
    "plan_shards",
]

import contextlib
import dataclasses
import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.errors import ConfigError
from sluice.flows.loop import RunSummary
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig

if TYPE_CHECKING:
    from sluice.detect.service import AnalysisResult, FlowVerdict

SHARD_BYTES = 128 * 1024 * 1024
"""A capture larger than this is split by flow hash (one shard per worker at most)."""

_SUMMARY_INTS = ("packets", "ip_packets", "non_ip", "flows", "early_records")


@dataclass(frozen=True, slots=True)
class Shard:
    """One task: a capture, or one hash bucket of a large capture."""

    path: str
    """The capture file."""
    index: int
    """Bucket number (0 ... count-1)."""
    count: int
    """Buckets of this capture (1: the whole capture)."""

    @property
    def bounds(self) -> tuple[int, int] | None:
        """``(index, count)`` for :func:`batch_flows`, None for a whole capture."""
        return (self.index, self.count) if self.count > 1 else None


@dataclass
class ClusterRun:
    """What the shards reported, per capture."""

    files: list[str] = field(default_factory=list)
    """The shard Parquet files, in plan order."""
    summaries: dict[str, RunSummary] = field(default_factory=dict)
    """Per capture: the shards' counters added up."""
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per capture: seconds the shards spent, by stage (summed over shards)."""
    shards: int = 0
    """Tasks run."""


@contextlib.contextmanager
def open_client(spec: str) -> Iterator[Any]:
    """A Dask client for ``spec``: ``local:N`` (a LocalCluster of N one-thread worker processes)
    or a scheduler address (``tcp://host:8786``).

    Raises:
        ConfigError: distributed is missing, ``local:N`` is malformed or no scheduler answers.
    """
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError("--cluster", "needs dask: pip install 'sluice[cluster]'") from exc
    dist: Any = distributed  # untyped
    if spec.startswith("local:"):
        try:
            n = int(spec[6:])
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError("--cluster", f"{spec}: N must be a positive number")
        with (
            dist.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            dist.Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = dist.Client(spec, timeout=30)
    except OSError as exc:
        raise ConfigError("--cluster", f"no scheduler answers at {spec}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()


def plan_shards(paths: Sequence[str], workers: int, shard_bytes: int = SHARD_BYTES) -> list[Shard]:
    """The tasks for ``paths``: one per capture, a large one split into at most ``workers`` buckets."""
    out = []
    for path in paths:
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        n = max(1, min(workers, math.ceil(size / shard_bytes))) if shard_bytes > 0 else 1
        out += [Shard(path, i, n) for i in range(n)]
    return out


# --- on the workers ----------------------------------------------------------------------------

_COMBINERS: dict[tuple[str | None, bool, float | None], Any] = {}
_REGISTERS: dict[str, Any] = {}


def _combiner(model_dir: str | None, no_model: bool, fet_veto: float | None) -> Any:
    key = (model_dir, no_model, fet_veto)
    if key not in _COMBINERS:  # once per worker process
        from sluice.detect.combiner import Combiner
        from sluice.detect.model import DEFAULT_MODEL_DIR, ModelScorer, load_model

        if no_model:
            _COMBINERS[key] = Combiner(None, fet_veto=fet_veto)
        else:
            fitted, _manifest = load_model(model_dir or DEFAULT_MODEL_DIR)
            _COMBINERS[key] = Combiner(ModelScorer(fitted), fet_veto=fet_veto)
    return _COMBINERS[key]


def _register(url: str) -> Any:
    if url not in _REGISTERS:
        from sluice.decide import open_register

        _REGISTERS[url] = open_register(url)
    return _REGISTERS[url]


def _summary_dict(s: RunSummary) -> dict[str, Any]:
    return {**{k: getattr(s, k) for k in _SUMMARY_INTS}, "anomalies": dict(s.anomalies)}


def flows_task(shard: Shard, config: dict[str, Any], early: bool, out: str) -> dict[str, Any]:
    """One shard of ``sluice flows``: records to ``out`` (Parquet); its counters."""
    from sluice.batch.flows import batch_flows
    from sluice.cluster.rows import write_records

    t0 = time.perf_counter()
    run = batch_flows(shard.path, FlowConfig(**config), early=early, workers=1, shard=shard.bounds)
    t1 = time.perf_counter()
    write_records(out, run.records)
    return {
        "summary": _summary_dict(run.summary),
        "seconds": {"flows": t1 - t0, "write": time.perf_counter() - t1},
    }


def analyze_task(
    shard: Shard,
    config: dict[str, Any],
    detector: tuple[str | None, bool, float | None],
    register: str | None,
    out: str,
) -> dict[str, Any]:
    """One shard of ``sluice analyze``: the shard's verdict rows to ``out`` (Parquet); its counters."""
    from sluice.batch.flows import batch_flows
    from sluice.cluster.rows import write_verdicts
    from sluice.detect.service import FlowVerdict, RegisterHit

    combiner = _combiner(*detector)
    lookup = _register(register) if register else None
    t0 = time.perf_counter()
    run = batch_flows(shard.path, FlowConfig(**config), workers=1, shard=shard.bounds)
    t1 = time.perf_counter()
    judged = combiner.judge_all(run.records)
    t2 = time.perf_counter()
    name = os.path.basename(shard.path)
    rows = []
    for rec, verdict in judged:
        hits: tuple[RegisterHit, ...] = ()
        if lookup is not None:
            hits = tuple(RegisterHit.from_match(m) for m in lookup.for_flow(rec) if not m.entry.proposed)
        rows.append(FlowVerdict(name, rec, verdict, hits))
    t3 = time.perf_counter()
    write_verdicts(out, rows)
    return {
        "summary": _summary_dict(run.summary),
        "seconds": {"flows": t1 - t0, "verdict": t2 - t1, "register": t3 - t2},
    }


# --- on the client -----------------------------------------------------------------------------


def _run(
    client: Any, shards: list[Shard], shard_dir: str, task: Any, *args: Any
) -> tuple[ClusterRun, list[tuple[Shard, str]]]:
    os.makedirs(shard_dir, exist_ok=True)
    outs = [
        os.path.join(
            os.path.abspath(shard_dir), f"{k:05d}-{os.path.basename(s.path)}-{s.index}of{s.count}.parquet"
        )
        for k, s in enumerate(shards)
    ]
    futures = [
        client.submit(task, s, *args, out, key=f"sluice-{os.path.basename(out)}-{time.time_ns()}", pure=False)
        for s, out in zip(shards, outs, strict=True)
    ]
    results = client.gather(futures)
    run = ClusterRun(files=outs, shards=len(shards))
    for s, res in zip(shards, results, strict=True):
        summ = run.summaries.setdefault(s.path, RunSummary())
        for k in _SUMMARY_INTS:
            setattr(summ, k, getattr(summ, k) + res["summary"][k])
        summ.anomalies.update(Counter(res["summary"]["anomalies"]))
        secs = run.seconds.setdefault(s.path, {})
        for k, v in res["seconds"].items():
            secs[k] = secs.get(k, 0.0) + v
    return run, list(zip(shards, outs, strict=True))


def _workers(client: Any) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _renumber(ids: Sequence[int], early: Sequence[bool]) -> dict[int, int]:
    """Global first-packet indices of final records to serial flow ids (0, 1, ... in that order)."""
    finals = sorted(i for i, e in zip(ids, early, strict=True) if not e)
    return {old: new for new, old in enumerate(finals)}


def flows_on_cluster(
    client: Any,
    paths: Sequence[str],
    config: FlowConfig,
    shard_dir: str,
    *,
    early: bool = False,
    shard_bytes: int = SHARD_BYTES,
) -> tuple[list[tuple[str, list[FlowRecord]]], ClusterRun]:
    """``sluice flows`` of ``paths`` on the cluster: per capture, its records as a serial run gives them.

    Raises:
        CaptureError: a capture cannot be read (raised on the worker, re-raised here).
    """
    from sluice.cluster.rows import read_records

    shards = plan_shards(paths, _workers(client), shard_bytes)
    run, done = _run(client, shards, shard_dir, flows_task, dataclasses.asdict(config), early)
    out = []
    for path in paths:
        parts = [(s, f) for s, f in done if s.path == path]
        recs = [r for _s, f in parts for r in read_records(f)]
        if parts[0][0].count > 1:
            ids = _renumber([r.flow_id for r in recs], [r.early for r in recs])
            for r in recs:
                r.flow_id = ids[r.flow_id]
            recs.sort(key=lambda r: (r.early, r.flow_id))
        out.append((path, recs))
    return out, run


def analyze_on_cluster(
    client: Any,
    paths: Sequence[str],
    *,
    detector: tuple[str | None, bool, float | None],
    register: str | None,
    shard_dir: str,
    config: FlowConfig | None = None,
    shard_bytes: int = SHARD_BYTES,
) -> tuple[AnalysisResult, ClusterRun]:
    """``sluice analyze`` of ``paths`` on the cluster: the :class:`AnalysisResult` a serial run gives.

    Args:
        client: the Dask client.
        paths: captures.
        detector: ``(model_dir, no_model, fet_veto)``, loaded on each worker as the CLI does.
        register: the register (SQLite file or ``postgresql://`` URL) every worker can open.
        shard_dir: where the shards' Parquet files go (reachable by workers and client).
        config: flow timeouts and limits.
        shard_bytes: captures above this size are split by flow hash.

    Raises:
        CaptureError: a capture cannot be read.
    """
    from sluice.cluster.rows import read_verdicts
    from sluice.detect.service import AnalysisResult

    cfg = dataclasses.asdict(config or FlowConfig())
    shards = plan_shards(paths, _workers(client), shard_bytes)
    run, done = _run(client, shards, shard_dir, analyze_task, cfg, detector, register)
    result = AnalysisResult()
    for path in paths:
        parts = [(s, f) for s, f in done if s.path == path]
        rows: list[FlowVerdict] = [row for _s, f in parts for row in read_verdicts(f)]
        if parts[0][0].count > 1:
            ids = _renumber([r.record.flow_id for r in rows], [r.record.early for r in rows])
            for row in rows:
                row.record.flow_id = ids[row.record.flow_id]
            rows = [
                dataclasses.replace(r, verdict=dataclasses.replace(r.verdict, flow_id=r.record.flow_id))
                for r in rows
            ]
            rows.sort(key=lambda r: (r.record.early, r.record.flow_id))
        result.flows += rows
        secs = run.seconds[path]
        result.runs[path] = {
            **run.summaries[path].to_dict(),
            "flows_seconds": round(secs.get("flows", 0.0), 4),
            "verdict_seconds": round(secs.get("verdict", 0.0), 4),
            "register_seconds": round(secs.get("register", 0.0), 4),
        }
    return result, run
