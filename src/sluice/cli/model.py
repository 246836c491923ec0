"""``sluice model``: train, evaluate and describe the early-flow model (layer 3).

Thin shells over :mod:`sluice.detect.model`, :mod:`sluice.detect.dataset` and
:mod:`sluice.detect.evaluate`. Exit codes: 0 OK, 2 usage or configuration error (bad model
directory, bad dataset), 3 I/O error.
"""

from __future__ import annotations

__all__ = ["model"]

import json
from pathlib import Path
from typing import Any, NoReturn

import click

from sluice.cli._exit import failure_for
from sluice.cli._output import Col, render_plain
from sluice.cli._output import progress as progress_bar
from sluice.detect.combiner import DEFAULT_FET_VETO
from sluice.errors import ConfigError

EXIT_USAGE, EXIT_IO = 2, 3


def _fail(cmd: str, exc: Exception, code: int) -> NoReturn:
    raise failure_for(code, str(exc))


def _num(value: object, absent: str) -> str:
    """A metric for people: a rounded number, or what its absence means (never ``None``)."""
    if value is None:
        return absent
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


_ABSENT = {
    "recall": "n/a (no positives)",
    "fpr": "n/a (no benign flows)",
}


def _metric_text(key: str, value: object) -> str:
    return _num(value, _ABSENT["fpr"] if "fpr" in key else _ABSENT["recall"] if "recall" in key else "n/a")


def _load(cmd: str, datasets: tuple[str, ...]) -> Any:
    from sluice.detect.dataset import load_labeled

    try:
        data = load_labeled(list(datasets))
    except OSError as exc:
        _fail(cmd, exc, EXIT_IO)
    except (KeyError, ValueError) as exc:
        _fail(cmd, ConfigError("dataset", f"not a labeled flow table: {exc}"), EXIT_USAGE)
    if not data.records:
        _fail(cmd, ConfigError("dataset", "no labeled flows"), EXIT_USAGE)
    return data


@click.group("model")
def model() -> None:
    """Train, evaluate and describe the early-flow model."""


@model.command("train")
@click.argument(
    "datasets", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=str)
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=str),
    default="model",
    show_default=True,
    help="Model directory to write.",
)
@click.option(
    "--cv",
    "folds",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="Folds (by session/capture) for the metrics stored in the manifest; 0 for none.",
)
@click.option("--threshold", type=float, default=None, help="P(not benign) of a finding (default 0.7).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--progress/--no-progress", default=True, help="Progress on stderr (terminals only).")
def train(
    datasets: tuple[str, ...],
    out_dir: str,
    folds: int,
    threshold: float | None,
    seed: int,
    as_json: bool,
    progress: bool,
) -> None:
    """Train a model on labeled flow tables (``sluice lab dataset``, ``sluice model ndpi-benign``)."""
    from sluice.detect.dataset import trainable
    from sluice.detect.evaluate import cross_validate, summary
    from sluice.detect.model import FlowModel, save_model
    from sluice.features.extractor import FlowFeatures

    params: dict[str, Any] = {"seed": seed}
    if threshold is not None:
        params["threshold"] = threshold
    with progress_bar("model train: reading", 4, enabled=progress) as bar:
        data = _load("train", datasets)
        idx = trainable(data)
        try:
            bar.update(1, text=f"model train: features of {len(idx):,} flows")
            X = FlowFeatures().fit().transform([data.records[i] for i in idx])
            bar.update(2, text="model train: fitting")
            fitted = FlowModel(**params).fit(X, [data.labels[i] for i in idx])
            bar.update(3, text=f"model train: {folds}-fold cross-validation" if folds >= 2 else "model train")
            metrics = summary(cross_validate(data, fitted.get_params(), folds, seed)) if folds >= 2 else {}
            bar.update(4)
        except ConfigError as exc:
            _fail("train", exc, EXIT_USAGE)
    training = {
        "datasets": [Path(d).name for d in datasets],
        "flows": len(idx),
        "labels": data.subset(idx).counts(),
        "groups": len(set(data.groups)),
        "cv_folds": folds,
    }
    try:
        path = save_model(fitted, out_dir, data_digest=data.digest, metrics=metrics, training=training)
    except OSError as exc:
        _fail("train", exc, EXIT_IO)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(f"{out_dir}: {len(idx)} flows, {len(fitted.classes_)} classes, digest {fitted.digest[:16]}")
    rows = [[key, _metric_text(key, value)] for key, value in metrics.items()]
    if rows:
        click.echo(render_plain([Col("metric"), Col("value")], rows), nl=False)


@model.command("evaluate")
@click.argument(
    "datasets", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=str)
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Model directory (default: the shipped model).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=str),
    required=True,
    help="Directory for report.md and the PNG plots.",
)
@click.option(
    "--cv",
    "folds",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="Cross-validation folds (by session/capture) with the model's parameters; 0 for none.",
)
@click.option(
    "--leave-out",
    "leave",
    multiple=True,
    help="scenario/variant prefix to hold out in one more check (repeatable; default: a set).",
)
@click.option("--no-leave-out", is_flag=True, help="Skip the leave-one-config-out checks.")
@click.option(
    "--split",
    "split_path",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Frozen held-out split (JSON): hold out each client stack and each implementation it "
    "lists. Written from the data when the file does not exist yet, read back otherwise.",
)
@click.option(
    "--fet-veto",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_FET_VETO,
    show_default=True,
    help="The combiner's fet_veto (as `sluice analyze --fet-veto`); 1: never.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="With --split: train each held-out model with this many seeds (the model's, then the "
    "next ones) and show each seed's count: the spread a single training run hides.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the headline numbers as JSON.")
def evaluate(
    datasets: tuple[str, ...],
    model_dir: str | None,
    report_dir: str,
    folds: int,
    leave: tuple[str, ...],
    no_leave_out: bool,
    split_path: str | None,
    fet_veto: float | None,
    seeds: int,
    as_json: bool,
) -> None:
    """Report recall per family, benign false positives, confusion, scores and decision points.

    With ``--split``, also the tables held out by client stack and by implementation, with 95 %
    intervals, and the calibration of the model's score on those held-out flows.
    """
    from sluice.detect.evaluate import (
        DEFAULT_LEAVE_OUT,
        cross_validate,
        leave_out,
        score_with,
        summary,
        write_report,
    )
    from sluice.detect.model import DEFAULT_MODEL_DIR, load_model

    try:
        fitted, manifest = load_model(model_dir or DEFAULT_MODEL_DIR)
    except ConfigError as exc:
        _fail("evaluate", exc, EXIT_USAGE)
    data = _load("evaluate", datasets)
    params = fitted.get_params()
    results = []
    if folds >= 2:
        results.append(cross_validate(data, params, folds, params["seed"], fet_veto))
    in_sample = manifest.get("data_digest") == data.digest
    results.append(
        score_with(
            data,
            fitted,
            "the model as given" + (" (IN-SAMPLE: trained on this data)" if in_sample else ""),
            fet_veto,
        )
    )
    if not no_leave_out:
        for prefixes in [(p,) for p in leave] or DEFAULT_LEAVE_OUT:
            res = leave_out(data, params, prefixes, fet_veto)
            if res.labels:
                results.append(res)
    sections: list[str] = []
    heads_extra: dict[str, Any] = {}
    if split_path:
        sections, heads_extra = _held_out_section(data, params, split_path, fet_veto, report_dir, seeds)
    seen = sorted({lab for lab in manifest.get("classes", [])})
    veto = f"vetoed where the model's P(benign) >= {fet_veto}" if fet_veto and fet_veto < 1 else "no veto"
    header = [
        f"Model: {f'`{model_dir}`' if model_dir else 'the shipped model'} digest "
        f"`{manifest.get('model_digest', '')[:16]}`, "
        f"threshold {fitted.threshold_}, classes: {', '.join(seen)}.",
        f"Data: {', '.join(Path(d).name for d in datasets)} — {len(data.records)} labeled flows in "
        f"{len(set(data.groups))} sessions/captures (digest `{data.digest[:16]}`).",
        "Splits are by session (lab) or capture file (nDPI), never by flow. "
        f"'combiner' is fingerprints first, the model for what they leave, then the FET ({veto}); "
        "'rules only' is layers 1-2 without the model.",
    ]
    try:
        md = write_report(report_dir, results, header, sections=sections)
    except OSError as exc:
        _fail("evaluate", exc, EXIT_IO)
    heads: dict[str, Any] = {r.name: summary(r) for r in results} | heads_extra
    if as_json:
        click.echo(json.dumps({"report": str(md), "results": heads}, indent=2))
        return
    click.echo(f"report: {md}")
    for name, s in heads.items():
        if "recall_combined" in s:
            recall = _metric_text("recall", s["recall_combined"])
            fpr = _metric_text("fpr", s["benign_fpr_combined"])
            click.echo(f"  {name}: recall {recall}, benign FPR {fpr}")


def _held_out_section(
    data: Any, params: dict[str, Any], split_path: str, fet_veto: float | None, report_dir: str, seeds: int
) -> tuple[list[str], dict[str, Any]]:
    """Freeze (first time) or read the split, run it, and render its report section."""
    from sluice.detect.heldout import (
        derive_inner_units,
        derive_units,
        freeze_split,
        held_out,
        heldout_markdown,
        plot_calibration,
        read_split,
    )

    try:
        if not Path(split_path).exists():
            freeze_split(split_path, derive_units(data), note=f"derived from {len(data.records)} flows")
            click.echo(f"froze a new split in {split_path}", err=True)
        units, note = read_split(split_path)
    except ConfigError as exc:
        _fail("evaluate", exc, EXIT_USAGE)
    inner = derive_inner_units(data)
    more = [params["seed"] + i for i in range(1, seeds)]
    rows, pooled = held_out(data, params, [*units, *inner], fet_veto, more)
    lines = heldout_markdown(rows, pooled, [params["seed"], *more] if more else ())
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    if pooled.scores:
        name = plot_calibration(pooled, Path(report_dir))
        lines += [f"![{name}]({name})", ""]
    lines.insert(
        2, f"Split: `{Path(split_path).name}` ({len(units)} units; {note}); {len(inner)} inner clients."
    )
    lines.insert(3, "")
    table = {
        r.unit.key: {
            "kind": r.unit.kind,
            "flows": r.flows,
            "hits": r.hits,
            "interval": r.interval,
            "hits_by_seed": list(r.hits_by_seed),
        }
        for r in rows
    }
    return lines, {"held_out": table}


@model.command("ndpi-benign")
@click.argument("corpus", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=str), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON document.")
def ndpi_benign(corpus: str, out_path: str, as_json: bool) -> None:
    """Write the flows nDPI calls benign in its test captures (CORPUS) as a labeled dataset."""
    from sluice.detect.dataset import build_ndpi_benign

    try:
        counts = build_ndpi_benign(corpus, out_path)
    except OSError as exc:
        _fail("ndpi-benign", exc, EXIT_IO)
    if as_json:
        click.echo(json.dumps(counts))
        return
    click.echo(
        f"{out_path}: {counts.get('flows', 0):,} benign flows from {counts.get('captures', 0)} captures"
    )
    if counts.get("capture_error"):
        click.echo(f"  {counts['capture_error']} captures could not be read")
    dropped = sorted((k.removeprefix("dropped."), n) for k, n in counts.items() if k.startswith("dropped."))
    if dropped:
        click.echo("  dropped: " + ", ".join(f"{k} {n:,}" for k, n in dropped))


@model.command("show")
@click.argument("model_dir", required=False, type=click.Path(file_okay=False, path_type=str))
def show(model_dir: str | None) -> None:
    """Print a model's manifest after checking it (default: the shipped model)."""
    from sluice.detect.model import DEFAULT_MODEL_DIR, load_model

    try:
        _fitted, manifest = load_model(model_dir or DEFAULT_MODEL_DIR)
    except ConfigError as exc:
        _fail("show", exc, EXIT_USAGE)
    manifest.pop("feature_names", None)
    click.echo(json.dumps(manifest, indent=2))
