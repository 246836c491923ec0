"""Evaluation held out by client stack and by implementation, with intervals and calibration.

Theory of operation: a model that scores 99 % in cross-validation by session can still have
learned which *programs* the lab runs (their TLS library, their framing) rather than what the
protocols do. The check that says so trains without everything one client stack made (all of
Firefox's flows) and tests on it, or without one implementation of one protocol (v2ray's
Trojan) and tests on that, one unit at a time. A *split* is the list of those units; it is
written once (:func:`freeze_split`) before any rule, threshold or feature is tuned, and later
runs read it back, so the units cannot drift towards the ones that look good.

Rates come with 95 % Wilson score intervals (:func:`wilson`): 0 false positives in 40 flows is
"below 8.8 %", not "0 %". Calibration is the reliability of the model's ``P(not benign)`` on
held-out flows: per score bin, the mean score against the fraction that were findings.
"""

from __future__ import annotations

__all__ = [
    "SPLIT_FORMAT",
    "HeldOutRow",
    "Unit",
    "calibration",
    "derive_inner_units",
    "derive_units",
    "freeze_split",
    "held_out",
    "heldout_markdown",
    "plot_calibration",
    "read_split",
    "wilson",
]

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sluice.detect.combiner import DEFAULT_FET_VETO
from sluice.detect.dataset import LabeledFlows, trainable
from sluice.detect.evaluate import EvalResult
from sluice.detect.model import FlowModel
from sluice.detect.modeldir import BENIGN
from sluice.detect.verdict import DETECTABLE_CLASSES
from sluice.errors import ConfigError
from sluice.features.extractor import FlowFeatures
from sluice.stats import wilson

SPLIT_FORMAT = "sluice-heldout-split"
"""``format`` of a frozen split file."""
MIN_FLOWS = 3
"""Units with fewer labeled flows are not held out on their own (too few to say anything)."""
_INNER = re.compile(r"^curl-cffi-([a-z]+)(?: via |$)")
"""``params.stack`` of a flow made by curl-cffi impersonating a browser (through a carrier: ``… via …``)."""
_REAL_BROWSERS = {"chrome": ("chromium",), "firefox": ("firefox",)}
"""The real browsers' stacks held out with curl-cffi's impersonation of them."""


@dataclass(frozen=True, slots=True)
class Unit:
    """What one check holds out."""

    kind: str
    """``stack`` (a benign client stack: false positives), ``impl`` (one implementation of one
    finding family: recall) or ``inner`` (one browser whose handshake a carrier carries: recall).
    An implementation is held out wherever it takes part: a session whose client and server are
    different implementations (``v2ray+trojan-gfw``) is held out with either. An inner browser
    is held out with every flow it made: through carriers, direct, and the real browser's."""
    key: str
    """The stack's name, ``class/family@impl``, or the browser (``chrome``)."""

    def selects(self, data: LabeledFlows) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """The flows this unit holds out (trained without, tested on)."""
        if self.kind == "stack":
            return np.asarray([s == self.key for s in data.stacks], dtype=bool)
        if self.kind == "inner":
            real = _REAL_BROWSERS.get(self.key, ())
            return np.asarray([_inner_browser(s) == self.key or s in real for s in data.stacks], dtype=bool)
        label, _, impl = self.key.rpartition("@")
        return np.asarray(
            [lab == label and impl in im.split("+") for lab, im in zip(data.labels, data.impls, strict=True)],
            dtype=bool,
        )


def _finding(label: str) -> bool:
    return label.split("/")[0] in DETECTABLE_CLASSES


def derive_units(data: LabeledFlows, min_flows: int = MIN_FLOWS) -> list[Unit]:
    """Every lab benign client stack and every (finding family, implementation) with enough flows.

    nDPI's captures are not a stack (their clients are many and unnamed): they stay in every
    training set and are measured by cross-validation instead.
    """
    stacks: dict[str, int] = {}
    impls: dict[str, int] = {}
    for lab, src, st, im in zip(data.labels, data.sources, data.stacks, data.impls, strict=True):
        if src != "lab":
            continue
        if _finding(lab):
            for part in im.split("+"):  # a mixed session (v2ray client, trojan-gfw server) counts for both
                key = f"{lab}@{part}"
                impls[key] = impls.get(key, 0) + 1
        elif lab.split("/")[0] == BENIGN:
            stacks[st] = stacks.get(st, 0) + 1
    units = [Unit("stack", k) for k, n in sorted(stacks.items()) if n >= min_flows]
    units += [Unit("impl", k) for k, n in sorted(impls.items()) if n >= min_flows]
    return units


def _inner_browser(stack: str) -> str:
    m = _INNER.match(stack)
    return m.group(1) if m else ""


def derive_inner_units(data: LabeledFlows, min_flows: int = MIN_FLOWS) -> list[Unit]:
    """Every browser curl-cffi impersonated inside a carrier, with enough carrier flows.

    Not part of a frozen split (which predates these sessions): derived from the data at each
    run, every such browser, so nothing can be picked towards a good number.
    """
    counts: dict[str, int] = {}
    for lab, src, st in zip(data.labels, data.sources, data.stacks, strict=True):
        browser = _inner_browser(st)
        if src == "lab" and browser and _finding(lab):
            counts[browser] = counts.get(browser, 0) + 1
    return [Unit("inner", k) for k, n in sorted(counts.items()) if n >= min_flows]


def freeze_split(path: str | Path, units: Sequence[Unit], note: str = "") -> None:
    """Write the units to ``path`` (refusing to overwrite: a frozen split stays frozen)."""
    p = Path(path)
    if p.exists():
        raise ConfigError(str(p), "a frozen split exists already; delete it deliberately to re-freeze")
    doc = {
        "format": SPLIT_FORMAT,
        "version": 1,
        "note": note,
        "units": [{"kind": u.kind, "key": u.key} for u in units],
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def read_split(path: str | Path) -> tuple[list[Unit], str]:
    """The units (and note) of a frozen split file.

    Raises:
        ConfigError: not a split file this version reads.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(str(p), f"cannot read the split: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != SPLIT_FORMAT or doc.get("version") != 1:
        raise ConfigError(str(p), f"not a {SPLIT_FORMAT} v1 file")
    units = []
    for u in doc.get("units", []):
        if not isinstance(u, dict) or u.get("kind") not in ("stack", "impl", "inner") or not u.get("key"):
            raise ConfigError(str(p), f"bad unit {u!r}")
        units.append(Unit(str(u["kind"]), str(u["key"])))
    return units, str(doc.get("note", ""))


@dataclass(frozen=True, slots=True)
class HeldOutRow:
    """The outcome of one held-out unit."""

    unit: Unit
    flows: int
    """Flows held out (labeled flows of the unit; for a stack, its benign flows)."""
    sessions: int
    """Sessions they came from."""
    hits: int
    """Findings among them: false positives for a stack, detections for an implementation."""
    model_hits: int
    """The same, by the model alone."""
    right_family: int
    """For an implementation: findings of the right class and family."""
    decided_median: float
    """Median packet index of the decision, over the hits (-1 when none)."""
    unknown: int = 0
    """Flows the combiner called ``unknown`` (the model uncertain)."""
    missing: bool = False
    """The unit is in the split but has no flows in this data."""
    shaped: int = 0
    """Held-out flows with the shape of HTTPS (plain HTTP in a TLS carrier), not in ``flows``."""
    shaped_hits: int = 0
    """Findings among those."""
    hits_by_seed: tuple[int, ...] = ()
    """``hits`` of a model trained with each seed (the first is the row's own ``hits``); empty
    when one seed was run. The lab's units are small: one more or one fewer flow of a held-out
    stack is often the training seed, not the data."""

    @property
    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of ``hits / flows``."""
        return wilson(self.hits, self.flows)


def held_out(
    data: LabeledFlows,
    params: dict[str, Any],
    units: Sequence[Unit],
    fet_veto: float | None = DEFAULT_FET_VETO,
    seeds: Sequence[int] = (),
) -> tuple[list[HeldOutRow], EvalResult]:
    """Train without each unit, judge its flows; rows per unit and all held-out outcomes pooled.

    The pooled :class:`EvalResult` (every flow judged by a model that never saw its unit) is
    what the calibration curve and the per-family tables of the report read. With ``seeds``,
    each unit is judged again by a model trained with each of those seeds as well
    (:attr:`HeldOutRow.hits_by_seed`); the row and the pooled outcomes stay those of ``params``.
    """
    X = FlowFeatures().fit().transform(data.records)
    ok = trainable(data)
    pooled = EvalResult("held out one client stack / one implementation at a time")
    rows = []
    for unit in units:
        held = unit.selects(data)
        test_idx = np.flatnonzero(held)
        if unit.kind == "stack":
            test_idx = np.asarray([i for i in test_idx if not _finding(data.labels[i])], dtype=np.intp)
        elif unit.kind == "inner":  # recall on what carriers carried; the benign flows only leave training
            test_idx = np.asarray([i for i in test_idx if _finding(data.labels[i])], dtype=np.intp)
        if not len(test_idx) or held.all():
            rows.append(HeldOutRow(unit, 0, 0, 0, 0, 0, -1.0, missing=True))
            continue
        train = np.intersect1d(np.flatnonzero(~held), ok)
        test = data.subset(test_idx)
        res = _judged(unit.key, X, data, train, test, params, fet_veto)
        if unit.kind != "inner":  # its flows are in their implementation's unit already
            _append(pooled, res)
        kept = [j for j, sh in enumerate(res.shaped) if not sh]
        hits = [j for j in kept if _finding(res.combined[j])]
        decided = [res.decided_at[j] for j in hits]
        again = [_judged(unit.key, X, data, train, test, {**params, "seed": s}, fet_veto) for s in seeds]
        rows.append(
            HeldOutRow(
                unit,
                len(kept),
                len({data.groups[test_idx[j]] for j in kept}),
                len(hits),
                sum(res.model_pred[j] != BENIGN for j in kept),
                sum(res.combined[j] == res.labels[j] for j in hits),
                float(np.median(decided)) if decided else -1.0,
                sum(res.combined[j].split("/")[0] == "unknown" for j in kept),
                shaped=len(res.shaped) - len(kept),
                shaped_hits=sum(sh and _finding(c) for sh, c in zip(res.shaped, res.combined, strict=True)),
                hits_by_seed=(len(hits), *(sum(_finding(r.combined[j]) for j in kept) for r in again))
                if seeds
                else (),
            )
        )
    return rows, pooled


def _judged(
    name: str,
    X: npt.NDArray[np.float64],
    data: LabeledFlows,
    train: npt.NDArray[np.intp],
    test: LabeledFlows,
    params: dict[str, Any],
    fet_veto: float | None,
) -> EvalResult:
    """``test`` judged by a model of ``params`` trained on the rows ``train`` of ``X``."""
    model = FlowModel(**params).fit(X[train], [data.labels[i] for i in train])
    res = EvalResult(name)
    res.extend(test, model, with_rules=False, fet_veto=fet_veto)
    return res


def _append(into: EvalResult, res: EvalResult) -> None:
    for f in fields(EvalResult):
        value = getattr(into, f.name)
        if isinstance(value, list):
            value.extend(getattr(res, f.name))
    into.threshold = res.threshold
    into.fet_veto = res.fet_veto


def calibration(
    scores: Sequence[float], findings: Sequence[bool], bins: int = 10
) -> tuple[list[tuple[float, float, float, int]], float]:
    """Reliability of ``P(not benign)``: per bin (low edge, mean score, fraction found, flows),
    and the expected calibration error (flow-weighted mean of |mean score - fraction|)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(findings, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    out = []
    ece = 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        if not n:
            continue
        mean, frac = float(s[sel].mean()), float(y[sel].mean())
        out.append((float(edges[b]), mean, frac, n))
        ece += n * abs(mean - frac)
    return out, ece / len(s) if len(s) else 0.0


def _trained_calibration(pooled: EvalResult) -> tuple[list[tuple[float, float, float, int]], float, int]:
    """:func:`calibration` of the held-out flows of kinds the model is trained on; their count."""
    kept = [j for j, sh in enumerate(pooled.shaped) if not sh]
    bins, ece = calibration([pooled.scores[j] for j in kept], [_finding(pooled.labels[j]) for j in kept])
    return bins, ece, len(kept)


def _pct(k: int, n: int) -> str:
    if not n:
        return "–"
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def _by_seed(r: HeldOutRow) -> str:
    """`` | 1, 2, 1`` (a cell: the row's hits per training seed), or nothing with one seed."""
    return f" | {', '.join(map(str, r.hits_by_seed))}" if r.hits_by_seed else ""


def heldout_markdown(rows: Sequence[HeldOutRow], pooled: EvalResult, seeds: Sequence[int] = ()) -> list[str]:
    """The report's section: benign stacks, implementations, calibration (Markdown lines).

    With ``seeds`` (the training seeds of :attr:`HeldOutRow.hits_by_seed`, in order), each table
    has one more column: the combiner's count by a model trained with each seed."""
    col = f" | combiner, model seeds {', '.join(map(str, seeds))}" if seeds else ""
    sep = "---|" if seeds else ""
    lines = [
        "## Held out one client stack or one implementation at a time",
        "",
        "Each row: a model trained without every flow of that stack (or of that implementation of "
        "that family), judging those flows. Brackets: 95 % Wilson interval.",
        "",
        "### Benign client stacks: false positives",
        "",
        f"| held-out stack | flows | sessions | combiner flags | model alone flags | unknown{col} |",
        f"|---|---|---|---|---|---|{sep}",
    ]
    for r in rows:
        if r.unit.kind != "stack":
            continue
        if r.missing:
            lines.append(f"| {r.unit.key} | 0 (not in this data) | | | | |{' |' if seeds else ''}")
            continue
        lines.append(
            f"| {r.unit.key} | {r.flows} | {r.sessions} | {_pct(r.hits, r.flows)} | "
            f"{_pct(r.model_hits, r.flows)} | {r.unknown}{_by_seed(r)} |"
        )
    lines += [
        "",
        "### Implementations: recall",
        "",
        "| family | held-out implementation | flows | sessions | found (combiner) | right family "
        f"| model alone | unknown | median decision packet | plain HTTP in TLS (not trained): found{col} |",
        f"|---|---|---|---|---|---|---|---|---|---|{sep}",
    ]
    for r in rows:
        if r.unit.kind != "impl":
            continue
        fam, _, impl = r.unit.key.rpartition("@")
        if r.missing:
            lines.append(f"| {fam} | {impl} | 0 (not in this data) | | | | | | | |{' |' if seeds else ''}")
            continue
        lines.append(
            f"| {fam} | {impl} | {r.flows} | {r.sessions} | {_pct(r.hits, r.flows)} | "
            f"{r.right_family} | {_pct(r.model_hits, r.flows)} | {r.unknown} | "
            f"{r.decided_median:g} | {_pct(r.shaped_hits, r.shaped)}{_by_seed(r)} |"
        )
    inner = [r for r in rows if r.unit.kind == "inner"]
    if inner:
        lines += [
            "",
            "### Inner clients: recall through carriers",
            "",
            "A model trained without every flow of one browser's handshake (curl-cffi impersonating "
            "it through carriers and directly, and the real browser), judging that browser's carrier "
            "flows. Units derived from the data at each run (every such browser), not from the split.",
            "",
            "| inner browser | flows | sessions | found (combiner) | right family | model alone "
            f"| unknown{col} |",
            f"|---|---|---|---|---|---|---|{sep}",
        ]
        for r in inner:
            lines.append(
                f"| {r.unit.key} | {r.flows} | {r.sessions} | {_pct(r.hits, r.flows)} | {r.right_family} | "
                f"{_pct(r.model_hits, r.flows)} | {r.unknown}{_by_seed(r)} |"
            )
    bins, ece, n = _trained_calibration(pooled)
    lines += [
        "",
        "### Calibration of P(not benign) on held-out flows",
        "",
        f"Expected calibration error {ece:.3f} over {n} held-out flows (plain HTTP in TLS "
        "carriers left out: not trained on).",
        "",
        "| score bin | mean score | fraction findings | flows |",
        "|---|---|---|---|",
    ]
    for lo, mean, frac, n in bins:
        lines.append(f"| {lo:.1f}–{lo + 0.1:.1f} | {mean:.3f} | {frac:.3f} | {n} |")
    lines.append("")
    return lines


def plot_calibration(pooled: EvalResult, out: Path, name: str = "heldout-calibration.png") -> str:
    """A reliability diagram of the pooled held-out scores; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins, ece, _ = _trained_calibration(pooled)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect")
    if bins:
        ax.plot([b[1] for b in bins], [b[2] for b in bins], "o-", label=f"held out (ECE {ece:.3f})")
        for _lo, mean, frac, n in bins:
            ax.annotate(str(n), (mean, frac), fontsize=7, xytext=(3, -8), textcoords="offset points")
    ax.axvline(pooled.threshold, color="grey", linestyle=":", label=f"threshold {pooled.threshold:.2f}")
    ax.set_xlabel("model P(not benign)")
    ax.set_ylabel("fraction of flows that were findings")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name
