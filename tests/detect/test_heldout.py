"""Evaluation held out by client stack and implementation: intervals, frozen splits, real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.detect.dataset import LabeledFlows
from sluice.detect.heldout import (
    Unit,
    calibration,
    derive_inner_units,
    derive_units,
    freeze_split,
    held_out,
    heldout_markdown,
    read_split,
    wilson,
)
from sluice.errors import ConfigError

from .conftest import lab_index, lab_label, lab_records


def test_wilson_interval() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28  # rule of three is 0.3; Wilson is tighter
    lo, hi = wilson(5, 10)
    assert abs((lo + hi) / 2 - 0.5) < 1e-12 and 0.23 < lo < 0.24
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(1, 1000)
    assert lo < 0.001 < hi < 0.006


def test_calibration_bins_and_error() -> None:
    bins, ece = calibration([0.05, 0.05, 0.95, 0.95], [False, False, True, True])
    assert [(b[0], b[3]) for b in bins] == [(0.0, 2), (0.9, 2)]
    assert ece == pytest.approx(0.05)
    bins, ece = calibration([0.9, 0.9], [False, False])
    assert ece == pytest.approx(0.9)


def test_split_is_frozen_once(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    units = [Unit("stack", "firefox"), Unit("impl", "circumvention/trojan@v2ray"), Unit("inner", "chrome")]
    freeze_split(path, units, note="before tuning")
    assert read_split(path) == (units, "before tuning")
    with pytest.raises(ConfigError, match="frozen split exists"):
        freeze_split(path, units[:1])
    for bad in (
        "{",
        json.dumps({"format": "x"}),
        json.dumps(
            {"format": "sluice-heldout-split", "version": 1, "units": [{"kind": "other", "key": "a"}]}
        ),
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError):
            read_split(path)


def _lab_data() -> LabeledFlows:
    """The lab excerpts as labeled flows; stack = the session's program, impl = its scenario."""
    out = LabeledFlows()
    for s in sorted(lab_index()):
        scenario = s.split("-s1-")[0]
        for r in lab_records(s):
            lab = lab_label(s, r)
            if not lab:
                continue
            out.records.append(r)
            out.labels.append("/".join(lab))
            out.groups.append(s)
            out.configs.append(scenario)
            out.sources.append("lab")
            out.stacks.append("python" if "python" in s else "curl")
            out.impls.append(scenario.split("-")[0])
    return out


def test_held_out_on_lab_excerpts() -> None:
    data = _lab_data()
    units = derive_units(data, min_flows=2)
    assert Unit("stack", "curl") in units and Unit("stack", "python") in units
    assert all(u.kind == "impl" for u in units[2:]) and len(units) > 5
    picked = [Unit("stack", "python"), Unit("impl", "circumvention/trojan@trojan"), Unit("stack", "nobody")]
    rows, pooled = held_out(data, {"n_estimators": 20, "min_child_samples": 2}, picked)
    assert [r.unit for r in rows] == picked
    python, trojan, nobody = rows
    assert python.flows == sum(
        1
        for lab, st in zip(data.labels, data.stacks, strict=True)
        if st == "python" and lab.startswith("benign")
    )
    assert trojan.flows == data.labels.count("circumvention/trojan") and trojan.sessions == 1
    assert nobody.missing and nobody.flows == 0
    assert len(pooled.labels) == python.flows + trojan.flows
    assert 0 <= python.interval[0] <= python.interval[1] <= 1
    md = "\n".join(heldout_markdown(rows, pooled))
    assert "| python |" in md and "| circumvention/trojan | trojan |" in md and "not in this data" in md


def test_held_out_with_more_seeds_counts_each_training_run() -> None:
    """Each seed's count is a model of its own: the first is the row's, the others are what the
    same unit gives with another training seed; the report shows them in one more column."""
    data = _lab_data()
    picked = [Unit("stack", "python"), Unit("impl", "circumvention/trojan@trojan"), Unit("stack", "nobody")]
    params = {"n_estimators": 20, "min_child_samples": 2, "seed": 0}
    rows, pooled = held_out(data, params, picked, seeds=(1, 2))
    python, trojan, nobody = rows
    for r in (python, trojan):
        assert len(r.hits_by_seed) == 3 and r.hits_by_seed[0] == r.hits
        assert all(0 <= h <= r.flows for h in r.hits_by_seed)
    assert nobody.missing and nobody.hits_by_seed == ()
    one, _ = held_out(data, {**params, "seed": 1}, picked[1:2])
    assert one[0].hits == trojan.hits_by_seed[1]  # seed 1 in the spread is seed 1 on its own
    md = "\n".join(heldout_markdown(rows, pooled, seeds=(0, 1, 2)))
    assert "combiner, model seeds 0, 1, 2" in md
    assert f"| {', '.join(map(str, trojan.hits_by_seed))} |" in md


def test_inner_browser_units_hold_out_every_flow_of_that_browser() -> None:
    """Held out by the browser a carrier carried: its carrier flows are judged, and its direct
    flows (curl-cffi's and the real browser's) leave training too."""
    data = _lab_data()
    n = len(data.records)
    findings = [i for i, lab in enumerate(data.labels) if not lab.startswith("benign")]
    benign = [i for i, lab in enumerate(data.labels) if lab.startswith("benign")]
    # relabel the excerpts' clients: some carrier flows by "chrome", some benign ones by Chrome itself
    for k, i in enumerate(findings):
        data.stacks[i] = [
            "curl-cffi-chrome via ss-local",
            "curl-cffi-safari via stunnel client",
            "curl-openssl",
        ][k % 3]
    for k, i in enumerate(benign):
        data.stacks[i] = ["curl-cffi-chrome", "chromium", "curl-openssl"][k % 3]
    units = derive_inner_units(data, min_flows=2)
    assert units == [Unit("inner", "chrome"), Unit("inner", "safari")]
    chrome = units[0].selects(data)
    assert {data.stacks[i] for i in range(n) if chrome[i]} == {
        "curl-cffi-chrome via ss-local",
        "curl-cffi-chrome",
        "chromium",
    }
    rows, pooled = held_out(data, {"n_estimators": 20, "min_child_samples": 2}, units[:1])
    (row,) = rows
    carried = [i for i in findings if data.stacks[i].startswith("curl-cffi-chrome via")]
    assert row.flows + row.shaped == len(carried) and row.hits <= row.flows
    assert not pooled.labels  # judged flows of an inner unit are pooled with their implementation's
    md = "\n".join(heldout_markdown(rows, pooled))
    assert "### Inner clients: recall through carriers" in md and "| chrome |" in md


def test_plain_http_in_tls_carriers_are_not_trained_and_reported_apart() -> None:
    """A TLS carrier fetching plain HTTP is HTTPS-shaped: out of training, its own report row."""
    from sluice.detect.dataset import trainable
    from sluice.detect.evaluate import SHAPED_ROW, family_table, summary

    data = _lab_data()
    data.inners = ["http" if lab.split("/")[0] != "benign" else "" for lab in data.labels]
    shaped = data.https_shaped()
    trojan = [i for i, lab in enumerate(data.labels) if lab == "circumvention/trojan"]
    assert trojan and all(shaped[i] for i in trojan)  # Trojan opens with a TLS handshake
    assert not any(shaped[i] for i, lab in enumerate(data.labels) if lab.startswith("benign"))
    own = [i for i, lab in enumerate(data.labels) if lab in ("circumvention/obfs4", "vpn/openvpn")]
    assert own and not any(shaped[i] for i in own)  # not opened by TLS: their shape is their own
    assert set(trainable(data)).isdisjoint(trojan)
    data.inners = ["https" if i in trojan else x for i, x in enumerate(data.inners)]
    assert not data.https_shaped()[trojan].any()  # a nested handshake to find: trained on
    data.inners = ["http" if i in trojan else x for i, x in enumerate(data.inners)]

    unit = Unit("impl", "circumvention/trojan@trojan")
    rows, pooled = held_out(data, {"n_estimators": 20, "min_child_samples": 2}, [unit])
    (row,) = rows
    assert row.flows == 0 and row.shaped == len(trojan) and 0 <= row.shaped_hits <= row.shaped
    fams = {r["family"]: r for r in family_table(pooled)}
    assert fams["circumvention/trojan" + SHAPED_ROW]["n"] == len(trojan)
    assert summary(pooled)["https_shaped"] == len(trojan) and summary(pooled)["findings"] == 0
    md = "\n".join(heldout_markdown(rows, pooled))
    assert "plain HTTP in TLS" in md and f"/{len(trojan)} = " in md
