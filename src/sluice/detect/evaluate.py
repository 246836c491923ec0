"""Evaluation of the model and the combiner on labeled flows, split by session or capture file.

Theory of operation: :func:`cross_validate` trains one :class:`FlowModel` per fold of whole groups
(lab sessions, nDPI capture files) and judges the held-out flows twice: by the model alone and by
the combiner (fingerprints first, the model for what they leave, then the FET). :func:`leave_out`
trains without some configurations (``scenario/variant`` prefixes) and tests on them, which shows
what generalises to a configuration the model never saw. :func:`write_report` turns the results
into Markdown and PNG plots.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_LEAVE_OUT",
    "EvalResult",
    "cross_validate",
    "leave_out",
    "score_with",
    "write_report",
]

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sluice.detect.combiner import DEFAULT_FET_VETO, Combiner
from sluice.detect.dataset import LabeledFlows, group_folds, trainable
from sluice.detect.model import FlowModel, ModelScorer
from sluice.detect.modeldir import BENIGN
from sluice.detect.verdict import DETECTABLE_CLASSES
from sluice.features.extractor import FlowFeatures

DEFAULT_LEAVE_OUT: tuple[tuple[str, ...], ...] = (
    ("shadowsocks-plugin/",),
    ("openvpn/tcp-",),
    ("v2ray/vmess-ws-tls",),
    ("v2ray/vless-tls",),
    ("trojan/",),
    ("stunnel/",),
    ("kcptun/",),
    ("obfs4/",),
    ("shadowsocks/aead",),
    ("v2ray/vmess-tcp",),
    ("obfs4/", "shadowsocks/aead", "v2ray/vmess-tcp"),
)
"""Configurations held out, one check each (prefixes of ``scenario/variant``); the last three
are the fully-encrypted families, where the FET (and the model's veto of it) matters."""

MIN_PACKETS = 8
"""Flows with at least this many packets are the issue's recall target."""


@dataclass
class EvalResult:
    """Per-flow outcomes of one evaluation (parallel lists)."""

    name: str
    """What was evaluated (``5-fold cross-validation``, ``held out: trojan/``)."""
    labels: list[str] = field(default_factory=list)
    """True ``class/family``."""
    sources: list[str] = field(default_factory=list)
    """``lab`` or ``ndpi``."""
    configs: list[str] = field(default_factory=list)
    """``scenario/variant``."""
    stacks: list[str] = field(default_factory=list)
    """Client stack of each flow."""
    impls: list[str] = field(default_factory=list)
    """Carrier implementation (or server) of each flow."""
    packets: list[int] = field(default_factory=list)
    """Packets in the flow."""
    scores: list[float] = field(default_factory=list)
    """The model's ``P(not benign)``."""
    threshold: float = 0.5
    """The model's threshold."""
    model_pred: list[str] = field(default_factory=list)
    """The model alone: ``benign`` or ``class/family``."""
    combined: list[str] = field(default_factory=list)
    """The combiner with the model: ``class/family``."""
    rules_only: list[str] = field(default_factory=list)
    """The combiner without the model (layers 1-2)."""
    decided_at: list[int] = field(default_factory=list)
    """The combiner's decision packet index."""
    detector: list[str] = field(default_factory=list)
    """Which layer decided."""
    shaped: list[bool] = field(default_factory=list)
    """A finding with the shape of HTTPS, not trained on (:data:`~sluice.detect.dataset.HTTPS_SHAPED`)."""
    vetoed: list[bool] = field(default_factory=list)
    """The FET alone found the flow fully encrypted and the model vetoed it."""
    fet_veto: float | None = DEFAULT_FET_VETO
    """The combiner's ``fet_veto``."""

    def extend(
        self,
        data: LabeledFlows,
        model: FlowModel,
        with_rules: bool = True,
        fet_veto: float | None = DEFAULT_FET_VETO,
    ) -> None:
        """Judge ``data`` with ``model`` (alone and in the combiner) and append the outcomes.

        ``fet_veto`` is the combiner's (default: what ``sluice analyze`` and the gateway use).
        """
        X = FlowFeatures().fit().transform(data.records)
        scores = model.score_samples(X) if len(X) else np.zeros(0)
        preds = model.predict(X) if len(X) else []
        scorer = ModelScorer(model)
        ops = scorer.opinions(data.records)
        with_model = Combiner(scorer, fet_veto=fet_veto)
        plain = Combiner() if with_rules else None
        self.threshold = model.threshold_
        self.fet_veto = fet_veto
        shaped = data.https_shaped()
        for i, rec in enumerate(data.records):
            v = with_model.judge(rec, None, {(rec.flow_id, rec.early): ops[i]})
            self.labels.append(data.labels[i])
            self.sources.append(data.sources[i])
            self.configs.append(data.configs[i])
            self.stacks.append(data.stacks[i])
            self.impls.append(data.impls[i])
            self.packets.append(rec.packets)
            self.scores.append(float(scores[i]))
            self.model_pred.append(preds[i])
            self.combined.append(f"{v.label}/{v.family}")
            self.decided_at.append(v.decided_at)
            self.detector.append(v.detector.split(":")[1] if ":" in v.detector else v.detector)
            self.shaped.append(bool(shaped[i]))
            self.vetoed.append(any(e.code == "fet.vetoed" for e in v.evidence))
            if plain is not None:
                r = plain.judge(rec)
                self.rules_only.append(f"{r.label}/{r.family}")


def _is_finding(label: str) -> bool:
    return label.split("/")[0] in DETECTABLE_CLASSES


def cross_validate(
    data: LabeledFlows,
    params: dict[str, Any],
    k: int = 5,
    seed: int = 0,
    fet_veto: float | None = DEFAULT_FET_VETO,
) -> EvalResult:
    """Out-of-fold outcomes of ``k`` folds of whole groups."""
    res = EvalResult(f"{k}-fold cross-validation by session/capture")
    X = FlowFeatures().fit().transform(data.records)
    for test in group_folds(data.groups, k, seed):
        train = np.setdiff1d(trainable(data), test)
        model = FlowModel(**params).fit(X[train], [data.labels[i] for i in train])
        res.extend(data.subset(test), model, fet_veto=fet_veto)
    return res


def leave_out(
    data: LabeledFlows,
    params: dict[str, Any],
    prefixes: Sequence[str],
    fet_veto: float | None = DEFAULT_FET_VETO,
) -> EvalResult:
    """Train without the configurations starting with ``prefixes``, test on them."""
    held = np.asarray([any(c.startswith(p) for p in prefixes) for c in data.configs])
    res = EvalResult("held out: " + ", ".join(prefixes))
    if not held.any() or held.all():
        return res
    X = FlowFeatures().fit().transform(data.records)
    train = np.intersect1d(np.flatnonzero(~held), trainable(data))
    model = FlowModel(**params).fit(X[train], [data.labels[i] for i in train])
    res.extend(data.subset(np.flatnonzero(held)), model, fet_veto=fet_veto)
    return res


def score_with(
    data: LabeledFlows, model: FlowModel, name: str, fet_veto: float | None = DEFAULT_FET_VETO
) -> EvalResult:
    """Outcomes of one fitted model on ``data``."""
    res = EvalResult(name)
    res.extend(data, model, fet_veto=fet_veto)
    return res


def _rate(hits: int, n: int) -> str:
    return f"{hits}/{n} ({100.0 * hits / n:.1f} %)" if n else "–"


SHAPED_ROW = " (plain HTTP in TLS: not trained)"
"""Suffix of a family's row of :data:`~sluice.detect.dataset.HTTPS_SHAPED` flows."""


def family_table(res: EvalResult) -> list[dict[str, Any]]:
    """Per non-benign family: flows, recall of the model, the combiner and the rules alone.

    HTTPS-shaped flows of a family are a row of their own (family + :data:`SHAPED_ROW`).
    """
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    shaped = res.shaped or [False] * len(res.labels)
    for i, lab in enumerate(res.labels):
        if not _is_finding(lab):
            continue
        c = rows[lab + SHAPED_ROW if shaped[i] else lab]
        c["n"] += 1
        c["model"] += res.model_pred[i] != BENIGN
        c["combined"] += _is_finding(res.combined[i])
        c["family_ok"] += res.combined[i] == lab
        if res.rules_only:
            c["rules"] += _is_finding(res.rules_only[i])
        if res.packets[i] >= MIN_PACKETS:
            c["n8"] += 1
            c["combined8"] += _is_finding(res.combined[i])
    return [{"family": lab, **dict(c)} for lab, c in sorted(rows.items())]


def benign_table(res: EvalResult) -> list[dict[str, Any]]:
    """Benign flows per source: false positives of the model, the combiner and the rules alone."""
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for i, lab in enumerate(res.labels):
        if _is_finding(lab):
            continue
        for key in (res.sources[i], "all"):
            c = rows[key]
            c["n"] += 1
            c["model"] += res.model_pred[i] != BENIGN
            c["combined"] += _is_finding(res.combined[i])
            if res.rules_only:
                c["rules"] += _is_finding(res.rules_only[i])
    return [{"source": s, **dict(c)} for s, c in sorted(rows.items())]


def summary(res: EvalResult) -> dict[str, Any]:
    """Headline numbers: recall of findings (all and ≥ 8 packets) and benign FPR, as fractions."""
    every = family_table(res)
    fam = [r for r in every if not r["family"].endswith(SHAPED_ROW)]
    shaped = [r for r in every if r["family"].endswith(SHAPED_ROW)]
    ben = {r["source"]: r for r in benign_table(res)}
    n = sum(r["n"] for r in fam)
    n8 = sum(r.get("n8", 0) for r in fam)
    allb = ben.get("all", Counter())
    return {
        "findings": n,
        "recall_combined": sum(r.get("combined", 0) for r in fam) / n if n else None,
        "recall_combined_8pkts": sum(r.get("combined8", 0) for r in fam) / n8 if n8 else None,
        "recall_model": sum(r.get("model", 0) for r in fam) / n if n else None,
        "benign": allb.get("n", 0),
        "benign_fpr_combined": allb.get("combined", 0) / allb["n"] if allb.get("n") else None,
        "benign_fpr_model": allb.get("model", 0) / allb["n"] if allb.get("n") else None,
        "https_shaped": sum(r["n"] for r in shaped),
        "https_shaped_found": sum(r.get("combined", 0) for r in shaped),
        "fet_vetoed": sum(res.vetoed),
        "fet_vetoed_findings": sum(
            v and _is_finding(lab) for v, lab in zip(res.vetoed, res.labels, strict=True)
        ),
    }


def _md_family(res: EvalResult) -> list[str]:
    rules = bool(res.rules_only)
    head = "| family | flows | model alone | combiner | right family | ≥ 8 pkts: combiner |"
    head += " rules only (layers 1-2) |" if rules else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in family_table(res):
        n = r["n"]
        cells = [
            r["family"],
            str(n),
            _rate(r.get("model", 0), n),
            _rate(r.get("combined", 0), n),
            _rate(r.get("family_ok", 0), n),
            _rate(r.get("combined8", 0), r.get("n8", 0)),
        ]
        if rules:
            cells.append(_rate(r.get("rules", 0), n))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _md_benign(res: EvalResult) -> list[str]:
    lines = [
        "| benign source | flows | model alone flags | combiner flags | rules only flag |",
        "|---|---|---|---|---|",
    ]
    for r in benign_table(res):
        n = r["n"]
        lines.append(
            f"| {r['source']} | {n} | {_rate(r.get('model', 0), n)} | {_rate(r.get('combined', 0), n)} | "
            f"{_rate(r.get('rules', 0), n) if res.rules_only else '–'} |"
        )
    return lines


def _false_positives(res: EvalResult, limit: int = 30) -> list[str]:
    out = []
    for i, lab in enumerate(res.labels):
        if not _is_finding(lab) and _is_finding(res.combined[i]):
            out.append(
                f"- `{res.configs[i]}` ({lab}, {res.packets[i]} pkts): {res.combined[i]} by "
                f"{res.detector[i]}, score {res.scores[i]:.3f}"
            )
    return out[:limit] or ["- none"]


def _plots(res: EvalResult, out: Path, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # confusion matrix (true family x combiner's family)
    true = sorted(set(res.labels))
    pred = sorted(set(res.combined) | {"benign/"})
    m = np.zeros((len(true), len(pred)))
    for t, p in zip(res.labels, res.combined, strict=True):
        m[true.index(t), pred.index(p)] += 1
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(pred) + 3), max(5, 0.35 * len(true) + 2)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(pred)), pred, rotation=90, fontsize=7)
    ax.set_yticks(range(len(true)), true, fontsize=7)
    for (r, c), v in np.ndenumerate(m):
        if v:
            ax.text(c, r, str(int(v)), ha="center", va="center", fontsize=6)
    ax.set_xlabel("combiner verdict")
    ax.set_ylabel("label")
    ax.set_title(f"confusion ({res.name})", fontsize=9)
    fig.tight_layout()
    names.append(f"{stem}-confusion.png")
    fig.savefig(out / names[-1], dpi=110)
    plt.close(fig)
    # score distributions
    fig, ax = plt.subplots(figsize=(7, 4))
    scores = np.asarray(res.scores)
    finding = np.asarray([_is_finding(lab) for lab in res.labels])
    bins = [i / 40 for i in range(41)]
    for sel, name in ((~finding, "benign"), (finding, "vpn/proxy/circumvention/tunnel")):
        if sel.any():
            ax.hist(scores[sel], bins=bins, alpha=0.6, label=f"{name} ({int(sel.sum())})", log=True)
    ax.axvline(res.threshold, color="k", linestyle="--", label=f"threshold {res.threshold:.2f}")
    ax.set_xlabel("model P(not benign)")
    ax.set_ylabel("flows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    names.append(f"{stem}-scores.png")
    fig.savefig(out / names[-1], dpi=110)
    plt.close(fig)
    # decision packet index of findings
    fig, ax = plt.subplots(figsize=(7, 4))
    by_det: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(res.combined):
        if _is_finding(lab) and _is_finding(res.labels[i]):
            by_det[res.detector[i]].append(min(res.decided_at[i], 33))
    if by_det:
        ax.hist(list(by_det.values()), bins=[i - 0.5 for i in range(35)], stacked=True, label=list(by_det))
        ax.legend(fontsize=8)
    ax.set_xlabel("packet index of the decision (33 = later)")
    ax.set_ylabel("true findings")
    fig.tight_layout()
    names.append(f"{stem}-decided-at.png")
    fig.savefig(out / names[-1], dpi=110)
    plt.close(fig)
    return names


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def write_report(
    out: str | Path,
    results: Sequence[EvalResult],
    header: Sequence[str] = (),
    plots: bool = True,
    sections: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` (and PNG plots of the first result) into ``out``.

    ``sections`` are Markdown lines placed after the header (the held-out tables).

    Returns:
        The Markdown file's path.
    """
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    lines = ["# sluice model evaluation", "", *header, "", *sections]
    for k, res in enumerate(results):
        s = summary(res)
        lines += [f"## {res.name}", ""]
        lines.append(
            f"Findings: {s['findings']}; recall (combiner) {_fmt(s['recall_combined'])}, "
            f"with ≥ 8 packets {_fmt(s['recall_combined_8pkts'])}, model alone {_fmt(s['recall_model'])}. "
            f"Benign: {s['benign']}; false positives (combiner) {_fmt(s['benign_fpr_combined'])}, "
            f"model alone {_fmt(s['benign_fpr_model'])}. "
            f"FET findings vetoed by the model (fet_veto {res.fet_veto}): {s['fet_vetoed']}, "
            f"of which labeled findings {s['fet_vetoed_findings']}."
        )
        lines += ["", *_md_family(res), ""]
        if s["benign"]:
            lines += [
                *_md_benign(res),
                "",
                "Benign flows the combiner flags:",
                "",
                *_false_positives(res),
                "",
            ]
        if plots and k == 0 and res.labels:
            for name in _plots(res, path, "eval"):
                lines.append(f"![{name}]({name})")
            lines.append("")
    md = path / "report.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md
