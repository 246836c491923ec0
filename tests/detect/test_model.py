"""Layer 3: the early-flow model, its directory format (no pickle), the CLI and the shipped model."""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sluice.cli.model import model as model_cli
from sluice.detect._base import NotFittedError
from sluice.detect.combiner import Combiner
from sluice.detect.dataset import LabeledFlows, group_folds, load_labeled
from sluice.detect.model import (
    DEFAULT_MODEL_DIR,
    FlowModel,
    ModelScorer,
    load_model,
    save_model,
)
from sluice.errors import ConfigError
from sluice.features.extractor import FlowFeatures
from sluice.features.flow import FEATURE_NAMES
from sluice.io.flowlog import open_flow_writer

from .conftest import lab_index, lab_label, lab_records

TINY_PARAMS = {"n_estimators": 15, "num_leaves": 4, "min_child_samples": 2}


@cache
def tiny() -> LabeledFlows:
    """Labeled flows of every lab excerpt (one group per excerpt)."""
    out = LabeledFlows()
    for session in sorted(lab_index()):
        for rec in lab_records(session):
            label = lab_label(session, rec)
            if label is None:
                continue
            out.records.append(rec)
            out.labels.append("/".join(label))
            out.groups.append(session)
            out.configs.append(session.rsplit("-s1-", 1)[0])
            out.sources.append("lab")
    return out


@cache
def tiny_model() -> FlowModel:
    data = tiny()
    return FlowModel(**TINY_PARAMS).fit(FlowFeatures().fit_transform(data.records), data.labels)


def test_contract_on_real_flows() -> None:
    data = tiny()
    X = FlowFeatures().fit_transform(data.records)
    m = tiny_model()
    assert m.get_params() == {**FlowModel().get_params(), **TINY_PARAMS}
    assert m.classes_[0] == "benign" and "circumvention/trojan" in m.classes_
    scores = m.score_samples(X)
    assert scores.shape == (len(X),) and ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_allclose(m.decision_function(X), scores - m.threshold_)
    preds = m.predict(X)
    assert all(p == "benign" or p in m.classes_ for p in preds)
    benign = [p for p, lab in zip(preds, data.labels, strict=True) if lab.startswith("benign")]
    assert benign.count("benign") >= 0.9 * len(benign), "in-sample, benign stays benign"
    verdicts = m.explain(X[:5], data.records[:5])
    assert [v.flow_id for v in verdicts] == [r.flow_id for r in data.records[:5]]
    finding = next(v for v in m.explain(X, data.records) if v.is_finding)
    assert finding.evidence and all(
        e.code.startswith("model.") and e.contribution > 0 for e in finding.evidence
    )
    assert finding.model_digest == m.digest


def test_unfitted_and_bad_input_refused() -> None:
    with pytest.raises(NotFittedError):
        FlowModel().score_samples(np.zeros((1, len(FEATURE_NAMES))))
    X = FlowFeatures().fit_transform(tiny().records)
    with pytest.raises(ConfigError, match="threshold"):
        FlowModel(threshold=1.5).fit(X, tiny().labels)
    with pytest.raises(ConfigError, match="benign"):
        FlowModel().fit(X[:3], ["vpn/openvpn"] * 3)
    with pytest.raises(ConfigError):
        FlowModel().fit(X[:, :5], tiny().labels)


def test_round_trip(tmp_path: Path) -> None:
    m = tiny_model()
    save_model(m, tmp_path / "m", data_digest="abc", metrics={"recall": 1.0})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "manifest.json",
        "model.txt",
        "reference.npz",
    ]
    got, manifest = load_model(tmp_path / "m")
    X = FlowFeatures().fit_transform(tiny().records)
    np.testing.assert_allclose(got.score_samples(X), m.score_samples(X))
    assert got.predict(X) == m.predict(X)
    assert got.get_params() == m.get_params() and got.digest == m.digest == manifest["model_digest"]
    assert manifest["data_digest"] == "abc" and manifest["feature_names"] == list(FEATURE_NAMES)
    # the arrays are plain numpy: they load with pickle forbidden
    with np.load(tmp_path / "m" / "reference.npz", allow_pickle=False) as npz:
        assert npz["reference"].dtype == np.float64
    assert (tmp_path / "m" / "model.txt").read_text().startswith("tree")


def _tampered(tmp_path: Path, edit: str) -> Path:
    d = tmp_path / edit
    save_model(tiny_model(), d)
    manifest = json.loads((d / "manifest.json").read_text())
    if edit == "digest":
        (d / "model.txt").write_text(
            (d / "model.txt").read_text().replace("learning_rate", "learning_rat", 1)
        )
    elif edit == "class":
        manifest["class"] = "Pipeline"
    elif edit == "format":
        manifest["format_version"] = 2
    elif edit == "features":
        manifest["feature_names"] = manifest["feature_names"][::-1]
    elif edit == "files":
        del manifest["files"]["reference.npz"]
    elif edit == "reference":
        (d / "reference.npz").write_bytes(b"\x80\x04not numpy")
    if edit not in ("digest", "reference"):
        (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.mark.parametrize("edit", ["digest", "class", "format", "features", "files", "reference"])
def test_refused_when_not_as_the_manifest_says(tmp_path: Path, edit: str) -> None:
    with pytest.raises(ConfigError, match="model"):
        load_model(_tampered(tmp_path, edit))


def test_refused_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="manifest"):
        load_model(tmp_path)


def test_group_folds_keep_sessions_whole() -> None:
    groups = tiny().groups
    folds = group_folds(groups, 4)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(groups)))
    for a in range(4):
        for b in range(a + 1, 4):
            assert not {groups[i] for i in folds[a]} & {groups[i] for i in folds[b]}


def _fold_of(groups: list[str], k: int, seed: int = 0) -> dict[str, int]:
    return {groups[i]: f for f, test in enumerate(group_folds(groups, k, seed)) for i in test}


def test_a_new_dataset_leaves_every_other_group_in_its_fold() -> None:
    old = [f"lab-s1:session-{i}" for i in range(300)] + [f"ndpi-benign:capture-{i}" for i in range(100)]
    new = old + [f"lab-s101-ws:session-{i}" for i in range(24)]
    before, after = _fold_of(old, 5), _fold_of(new, 5)
    assert all(after[g] == f for g, f in before.items())
    sizes = np.bincount(list(after.values()), minlength=5)
    assert sizes.min() >= 0.6 * len(new) / 5  # hashing keeps the folds roughly even
    assert _fold_of(old, 5, seed=1) != before  # the seed draws another assignment


def _write_dataset(path: Path) -> None:
    data = tiny()
    writer = open_flow_writer("parquet", None, str(path))
    for rec, lab, grp, cfg in zip(data.records, data.labels, data.groups, data.configs, strict=True):
        cls, _, fam = lab.partition("/")
        scenario, _, variant = cfg.partition("-")
        extra = {
            "capture": grp + ".pcap",
            "session_id": grp,
            "scenario": scenario,
            "variant": variant,
            "label_class": cls,
            "label_family": fam,
        }
        writer.write([rec], extra)
    writer.close()


def test_cli_train_and_evaluate(tmp_path: Path) -> None:
    ds = tmp_path / "tiny.parquet"
    _write_dataset(ds)
    assert len(load_labeled([ds]).records) == len(tiny().records)
    assert pq.read_table(ds).num_rows == len(tiny().records)
    runner = CliRunner()
    got = runner.invoke(model_cli, ["train", str(ds), "--out", str(tmp_path / "m"), "--cv", "0", "--json"])
    assert got.exit_code == 0, got.output
    manifest = json.loads(got.output)
    assert manifest["class"] == "FlowModel" and manifest["training"]["flows"] > 0
    got = runner.invoke(
        model_cli,
        [
            "evaluate",
            str(ds),
            "--model",
            str(tmp_path / "m"),
            "--report",
            str(tmp_path / "r"),
            "--cv",
            "3",
            "--leave-out",
            "trojan",
            "--json",
        ],
    )
    assert got.exit_code == 0, got.output
    doc = json.loads(got.output)
    assert len(doc["results"]) == 3
    report = (tmp_path / "r" / "report.md").read_text()
    assert "3-fold cross-validation" in report and "IN-SAMPLE" in report and "held out: trojan" in report
    for png in ("eval-confusion.png", "eval-scores.png", "eval-decided-at.png"):
        assert (tmp_path / "r" / png).read_bytes()[:4] == b"\x89PNG"
    bad = _tampered(tmp_path, "digest")
    got = runner.invoke(
        model_cli, ["evaluate", str(ds), "--model", str(bad), "--report", str(tmp_path / "r2")]
    )
    assert got.exit_code == 2


def test_shipped_model_loads_and_judges_lab_excerpts() -> None:
    fitted, manifest = load_model()
    assert manifest["metrics"]["benign"] > 1000 and "circumvention/trojan" in fitted.classes_
    combiner = Combiner(ModelScorer(fitted))
    # in the shipped model's training data (lab run seed 1): a known-flow check, not a held-out one
    for session, expected in (
        ("shadowsocks-aead-s1-000", ("circumvention", "shadowsocks")),
        ("v2ray-vmess-tcp-s1-000", ("circumvention", "vmess")),
        ("kcptun-default-s1-000", ("tunnel", "kcp")),
        ("https-nginx-h2-tls13-s1-000", ("benign", "tls")),
        ("dns-udp-s1-000", ("benign", "dns")),
    ):
        judged = [(r, v) for r, v in combiner.judge_all(lab_records(session)) if lab_label(session, r)]
        assert judged
        for _rec, v in judged:
            assert (v.label, v.family) == expected, (session, v)
            if v.label != "benign":
                assert v.detector == "combiner:model" and v.evidence[0].code.startswith("model.")
                assert v.model_digest == manifest["model_digest"] and 0 <= v.decided_at < 32


def test_shipped_model_does_not_call_https_shaped_carriers_findings() -> None:
    """Trojan and stunnel fetching plain HTTP look like HTTPS: the model was not trained on them
    (HTTPS_SHAPED) and must not call them findings, or it would call HTTPS one."""
    combiner = Combiner(ModelScorer(load_model()[0]))
    for session in ("trojan-default-s1-000", "stunnel-default-s1-000", "v2ray-vless-tls-s1-001"):
        judged = [v for r, v in combiner.judge_all(lab_records(session)) if lab_label(session, r)]
        assert judged and not any(v.detector == "combiner:model" and v.is_finding for v in judged), session


def test_shipped_model_is_small_and_complete(tmp_path: Path) -> None:
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size < 4_000_000
    copy = tmp_path / "copy"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    (copy / "reference.npz").write_bytes((copy / "reference.npz").read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="sha256"):
        load_model(copy)


def test_log_ratio_contributions_equal_the_full_treeshap() -> None:
    """The two-class explanation (benign's and the finding's trees only) is exactly the full one."""
    import numpy as np

    fitted, _ = load_model()
    recs = [
        r
        for s in ("shadowsocks-aead-s1-000", "v2ray-vmess-tcp-s1-000", "dns-udp-s1-000")
        for r in lab_records(s)
    ]
    X = FlowFeatures().fit().transform(recs)
    full = fitted.contributions(X)
    for k in (1, len(fitted.classes_) // 2, len(fitted.classes_) - 1):
        got = fitted.log_ratio_contributions(X, k)
        np.testing.assert_allclose(got, full[:, k, :-1] - full[:, 0, :-1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        fitted.log_ratio_contributions(X, 0)


def _finding_rows(m: FlowModel, X: np.ndarray) -> list[tuple[int, int]]:
    """(row, class index) of each finding, the class being the opinion's."""
    proba = m.predict_proba(X)
    return [(i, 1 + int(np.argmax(p[1:]))) for i, p in enumerate(proba) if 1.0 - p[0] >= m.threshold_]


def test_opinions_evidence_is_path_attribution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Findings carry the top positive path attributions (the compiled forest's) as evidence, and
    TreeSHAP's when the forest does not evaluate the model."""
    m = tiny_model()
    X = FlowFeatures().fit_transform(tiny().records)
    forest = m._forest()
    assert forest is not None
    findings = _finding_rows(m, X)
    assert findings
    for fallback in (False, True):
        if fallback:  # a model the forest does not evaluate
            monkeypatch.setattr(m, "_forest", lambda: None)
        explain = m.log_ratio_contributions if fallback else forest.path_contributions
        ops = m.opinions(X, [0] * len(X))
        for i, k in findings:
            ratio = explain(X[i : i + 1], k)[0]
            evidence = ops[i].evidence
            assert evidence and (ops[i].label, ops[i].family) == tuple(m.classes_[k].split("/"))
            top = [j for j in np.argsort(-ratio)[: len(evidence)] if ratio[j] > 0]
            assert [e.feature for e in evidence] == [FEATURE_NAMES[j] for j in top]
            np.testing.assert_allclose([e.contribution for e in evidence], ratio[top], rtol=0, atol=1e-12)
            assert sum(e.contribution for e in evidence) <= ratio[ratio > 0].sum() + 1e-12
            assert evidence[0].reason == "pushed the model towards a finding (log-odds vs benign)"
        assert all(not ops[i].evidence for i in set(range(len(X))) - {i for i, _ in findings})


def test_scorer_explains_uncertain_flows_too() -> None:
    """The combiner's ``unknown`` says which features leaned: the scorer's opinions carry evidence
    from ``evidence_from`` (default: where ``unknown`` begins), not only at the threshold."""
    from sluice.detect.combiner import DEFAULT_UNCERTAIN_FROM
    from sluice.detect.model import ModelScorer

    m = tiny_model()
    records = tiny().records
    p = m.score_samples(FlowFeatures().fit_transform(records))
    assert DEFAULT_UNCERTAIN_FROM is not None
    assert ModelScorer(m).evidence_from == DEFAULT_UNCERTAIN_FROM
    explained = {}
    for evidence_from in (0.01, None):
        ops = ModelScorer(m, evidence_from=evidence_from).opinions(records)
        floor = m.threshold_ if evidence_from is None else evidence_from
        assert all(not op.evidence for op, s in zip(ops, p, strict=True) if s < floor)
        explained[evidence_from] = {i for i, op in enumerate(ops) if op.evidence}
    # the findings are explained either way; flows under the threshold only from evidence_from
    assert explained[None] and explained[None] < explained[0.01]
    assert all(p[i] < m.threshold_ for i in explained[0.01] - explained[None])
