"""What ``sluice analyze`` calls: captures in, one verdict per flow (with register matches) out."""

from __future__ import annotations

__all__ = [
    "AnalysisResult",
    "FlowVerdict",
    "RegisterHit",
    "analyze_captures",
    "summarize",
]

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.batch.flows import batch_flows
from sluice.detect.combiner import Combiner
from sluice.detect.verdict import DETECTABLE_CLASSES, Verdict
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig

if TYPE_CHECKING:
    import pandas as pd

    from sluice.registry.matcher import Match


@dataclass(frozen=True, slots=True)
class RegisterHit:
    """A register entry that applies to a flow's server name or address."""

    query: str
    """The name or address looked up."""
    reason: str
    """Which rule applied (``domain``, ``mask``, ``ip`` …)."""
    source: str
    """The list the entry comes from."""
    indicator: str
    """The entry's indicator."""
    kind: str
    """The entry's kind."""

    @classmethod
    def from_match(cls, m: Match) -> RegisterHit:
        """The hit of one matcher result."""
        e = m.entry
        return cls(m.query, m.reason.name.lower(), e.source, e.indicator, str(e.kind.value))

    def to_dict(self) -> dict[str, str]:
        """JSON-friendly form."""
        return {
            "query": self.query,
            "reason": self.reason,
            "source": self.source,
            "indicator": self.indicator,
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class FlowVerdict:
    """One flow with its verdict and register matches."""

    capture: str
    """Capture file the flow comes from."""
    record: FlowRecord
    """The flow's final record."""
    verdict: Verdict
    """The combiner's verdict."""
    register: tuple[RegisterHit, ...] = ()
    """Register entries matching the flow's server name or address."""

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-friendly form: the record's columns, the verdict, the register matches."""
        v = self.verdict
        return {
            "capture": self.capture,
            **self.record.to_dict(),
            "class": v.label,
            "family": v.family,
            "service": v.service,
            "confidence": round(v.confidence, 4),
            "decided_at": v.decided_at,
            "detector": v.detector,
            "model_digest": v.model_digest,
            "evidence": [e.to_dict() for e in v.evidence],
            "register": [h.to_dict() for h in self.register],
        }


@dataclass
class AnalysisResult:
    """Verdicts of every flow of some captures, and what each run saw."""

    flows: list[FlowVerdict] = field(default_factory=list)
    """One row per flow."""
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per capture: packets, flows, anomalies, and seconds spent on flows and on verdicts."""

    def to_pandas(self) -> pd.DataFrame:
        """The flows and their verdicts as a pandas DataFrame (needs the ``pandas`` extra).

        Returns:
            One row per flow: see :func:`sluice.io.frames.verdicts_frame`.

        Raises:
            ImportError: pandas is not installed.
        """
        from sluice.io.frames import verdicts_frame

        return verdicts_frame(self.flows)


def analyze_captures(
    paths: Sequence[str],
    combiner: Combiner,
    *,
    register: Callable[[FlowRecord], Sequence[Match]] | None = None,
    config: FlowConfig | None = None,
    workers: int | None = None,
    early: bool = False,
) -> AnalysisResult:
    """Flows of each capture (batch path) judged by ``combiner``.

    The final records are judged: they hold the first packets' sizes, directions, timing and
    payload heads, so every rule and the model read exactly what the early record would give
    them, and ``decided_at`` says at which packet that was. Pass ``early=True`` to judge the
    spine's early records first (their application metadata is cut at ``early_packets``).

    ``register`` gives a flow's register matches (the decision path's one lookup,
    :meth:`sluice.decide.register.RegisterLookup.for_flow`); entries under review are left out.

    Raises:
        CaptureError: a capture cannot be read.
    """
    result = AnalysisResult()
    for path in paths:
        t0 = time.perf_counter()
        run = batch_flows(path, config, early=early, workers=workers)
        t1 = time.perf_counter()
        judged = combiner.judge_all(run.records)
        t2 = time.perf_counter()
        recs = [rec for rec, _ in judged]
        hits = [_hits(register, r) for r in recs] if register is not None else [() for _ in recs]
        name = os.path.basename(path)
        for (rec, verdict), h in zip(judged, hits, strict=True):
            result.flows.append(FlowVerdict(name, rec, verdict, h))
        result.runs[path] = {
            **run.summary.to_dict(),
            "flows_seconds": round(t1 - t0, 4),
            "verdict_seconds": round(t2 - t1, 4),
            "register_seconds": round(time.perf_counter() - t2, 4),
        }
    return result


def _hits(register: Callable[[FlowRecord], Sequence[Match]], rec: FlowRecord) -> tuple[RegisterHit, ...]:
    return tuple(RegisterHit.from_match(m) for m in register(rec) if not m.entry.proposed)


def summarize(flows: Sequence[FlowVerdict]) -> dict[str, Any]:
    """Counts by class and by class/family, findings, register matches and decision points."""
    by_class = Counter(f.verdict.label for f in flows)
    by_family = Counter(f"{f.verdict.label}/{f.verdict.family or '-'}" for f in flows)
    findings = [f for f in flows if f.verdict.label in DETECTABLE_CLASSES]
    decided = sorted(f.verdict.decided_at for f in findings if f.verdict.decided_at >= 0)
    return {
        "flows": len(flows),
        "by_class": dict(sorted(by_class.items())),
        "by_family": dict(sorted(by_family.items())),
        "findings": len(findings),
        "register_matches": sum(1 for f in flows if f.register),
        "decided_at_median": decided[len(decided) // 2] if decided else None,
        "decided_within_8_packets": sum(1 for d in decided if d < 8),
    }
