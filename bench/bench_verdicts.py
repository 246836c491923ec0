"""Benchmark: what verdicts add to the cost of the flows, on the same capture, in one process.

    python bench/bench_verdicts.py [--capture bench/data/bench.pcap] [--rounds 1] [--verdict-repeat 3]

Does what ``sluice analyze`` does (``sluice.detect.service.analyze_captures``): ``batch_flows`` on
the capture, then ``Combiner.judge_all`` on its records, once without a model (layers 1-2) and
once with the shipped model (layers 1-3; the model is loaded before the clock starts, as the
command does). Prints wall time (``time.perf_counter``) and CPU time (user + system of this
process and of its reaped children: ``batch_flows`` forks workers) of each stage and the ratio
verdicts / flows. The issue's target: verdicts with the model <= 30 % of the flows. Machines here
are shared and noisy: read the ratios of one round, not absolute numbers across runs.

Makes the capture with the project's own writer when it is missing (``bench/make_capture.py``).
Numba's on-disk cache is warmed on a small slice before anything is timed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from sluice.batch.flows import batch_flows
from sluice.detect.combiner import Combiner
from sluice.detect.forest import F64, Forest
from sluice.detect.model import FlowModel, ModelScorer, load_model
from sluice.features.extractor import FlowFeatures
from sluice.flows.record import FlowRecord

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of every child it has reaped."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        u = resource.getrusage(who)
        total += u.ru_utime + u.ru_stime
    return total


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """``fn()``, its wall seconds and its CPU seconds."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, default=ROOT / "bench/data/bench.pcap")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=1, help="batch_flows runs (each with its verdicts)")
    ap.add_argument("--verdict-repeat", type=int, default=3, help="judge_all runs per round and mode")
    args = ap.parse_args()
    cap: Path = args.capture
    if not cap.exists():
        cap.parent.mkdir(parents=True, exist_ok=True)
        subprocess.check_call(
            [
                sys.executable,
                str(ROOT / "bench/make_capture.py"),
                "--packets",
                str(args.packets),
                "--flows",
                str(args.flows),
                "--out",
                str(cap),
            ]
        )
    model, _manifest = load_model()
    layers12 = Combiner()
    layers123 = Combiner(ModelScorer(model))
    print(f"capture {cap.name}, {cap.stat().st_size / 1e6:.0f} MB; model lightgbm:{model.digest[:12]}")
    print(
        "| round | flows | flows wall s | flows CPU s | mode | verdicts wall s | verdicts CPU s "
        "| wall ratio | CPU ratio |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    ratios: dict[str, list[tuple[float, float]]] = {"layers 1-2": [], "with model": []}
    for rnd in range(args.rounds):
        run, fw, fc = timed(partial(batch_flows, str(cap)))
        records = run.records
        if rnd == 0:  # warm lazily built state and numba's cache before timing verdicts
            layers12.judge_all(records[:200])
            layers123.judge_all(records[:200])
        for mode, comb in (("layers 1-2", layers12), ("with model", layers123)):
            for _ in range(args.verdict_repeat):
                _judged, vw, vc = timed(partial(comb.judge_all, records))
                ratios[mode].append((vw / fw, vc / fc))
                print(
                    f"| {rnd} | {len(records)} | {fw:.2f} | {fc:.2f} | {mode} | {vw:.3f} | {vc:.3f} "
                    f"| {vw / fw:.1%} | {vc / fc:.1%} |"
                )
    print()
    for mode, got in ratios.items():
        walls = [w for w, _ in got]
        cpus = [c for _, c in got]
        print(
            f"{mode}: verdicts / flows, median of {len(got)}: wall {statistics.median(walls):.1%} "
            f"(min {min(walls):.1%}, max {max(walls):.1%}), CPU {statistics.median(cpus):.1%} "
            f"(min {min(cpus):.1%}, max {max(cpus):.1%})"
        )
    print("target (issue 5): verdicts with the model <= 30 % of the flows")
    _prediction_peers(model, records)


def _prediction_peers(model: FlowModel, records: list[FlowRecord]) -> None:
    """The model's probabilities by LightGBM's own predictor and by sluice's compiled forest, on
    the same feature matrix, CPU seconds (one thread each), best of three."""
    import numpy as np

    X = FlowFeatures().fit().transform([r for r in records if not r.early])
    forest = model._forest()
    if forest is None:
        print("the model uses what the forest does not evaluate: LightGBM predicts")
        return
    forest.predict_proba(X[:10])  # compiled (or loaded from numba's cache) before the clock

    def best(fn: Callable[[], object]) -> float:
        return min(timed(fn)[2] for _ in range(3))

    lgb_s = best(lambda: model.booster_.predict(X, num_threads=1))
    forest_s = best(lambda: forest.predict_proba(X))
    same = np.allclose(
        forest.predict_proba(X), np.asarray(model.booster_.predict(X)).reshape(len(X), -1), rtol=0, atol=1e-12
    )
    print(
        f"prediction, {len(X)} flows x {forest.n_trees} trees: LightGBM {lgb_s:.3f} s CPU, "
        f"forest {forest_s:.3f} s CPU, LightGBM / forest {lgb_s / forest_s:.2f}x"
    )
    print(f"same probabilities (within 1e-12): {same}")
    _evidence_peers(model, forest, X, best)


def _evidence_peers(
    model: FlowModel, forest: Forest, X: F64, best: Callable[[Callable[[], object]], float]
) -> None:
    """Each finding's evidence by exact TreeSHAP (LightGBM's ``pred_contrib``, one thread) and by
    the forest's path attribution (what verdicts use), CPU seconds, best of three."""
    import numpy as np

    proba = forest.predict_proba(X)
    found = np.flatnonzero(1.0 - proba[:, 0] >= model.threshold_)
    k_of = 1 + np.argmax(proba[found, 1:], axis=1)
    groups = [(int(k), X[found[k_of == k]]) for k in np.unique(k_of)]

    def shap() -> None:
        for k, rows in groups:
            model._pair_booster(k).predict(rows, pred_contrib=True, num_threads=1)

    def path() -> None:
        for k, rows in groups:
            forest.path_contributions(rows, k)

    path()  # compiled (or loaded from numba's cache) before the clock
    shap_s, path_s = best(shap), best(path)
    print(
        f"evidence for {len(found)} findings: TreeSHAP {shap_s:.3f} s CPU, "
        f"path attribution {path_s:.3f} s CPU, TreeSHAP / path {shap_s / path_s:.1f}x"
    )


if __name__ == "__main__":
    main()
