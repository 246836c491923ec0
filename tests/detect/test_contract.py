"""One contract, every detector (as scikit-learn's ``check_estimator``): the checks below run over
the fingerprint layer, the fully-encrypted test, the model and the feature extractor, and the
parts that apply to the combiner (it takes fitted detectors, it is not itself fitted).

The contract (``docs/ARCHITECTURE.md``, ``detect/_base.py``): keyword-only hyperparameters stored
as given; ``get_params()`` returns them and rebuilds an equal estimator; ``fit`` returns the
estimator itself; every method that uses learned state raises ``NotFittedError`` before ``fit``;
``score_samples``/``decision_function`` give one float per flow, ``predict`` one label per flow,
``explain`` one verdict per flow; and the same input gives the same output.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from sluice.detect._base import NotFittedError
from sluice.detect.combiner import Combiner
from sluice.detect.fet import FetDetector
from sluice.detect.fingerprints import FingerprintDetector
from sluice.detect.model import FlowModel, ModelScorer
from sluice.features.extractor import FlowFeatures
from sluice.flows.record import FlowRecord

from .test_model import TINY_PARAMS, tiny


@dataclass(frozen=True)
class Case:
    """One detector under the contract: how to build it, and what it reads."""

    name: str
    make: Callable[..., Any]
    params: dict[str, Any]
    """Non-default hyperparameters for the round trip."""
    inputs: Callable[[], tuple[Any, Any]]
    """``(X for fit, y)``; the same ``X`` is scored."""


def _records() -> tuple[Sequence[FlowRecord], list[str]]:
    data = tiny()
    return data.records, data.labels


def _matrix() -> tuple[np.ndarray[Any, Any], list[str]]:
    data = tiny()
    return FlowFeatures().fit_transform(data.records), data.labels


CASES = [
    Case(
        "fingerprints", FingerprintDetector, {"rules": ("openvpn", "wireguard"), "threshold": 0.7}, _records
    ),
    Case("fet", FetDetector, {"popcount_low": 3.0, "prefix_len": 4, "transports": (6, 17)}, _records),
    Case("model", FlowModel, {**TINY_PARAMS, "threshold": 0.6}, _matrix),
]
IDS = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hyperparameters_are_keyword_only_and_round_trip(case: Case) -> None:
    sig = inspect.signature(case.make)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    est = case.make(**case.params)
    params = est.get_params()
    assert set(params) == set(sig.parameters), "get_params names every constructor argument"
    assert {k: params[k] for k in case.params} == case.params, "stored as given"
    assert case.make(**params).get_params() == params, "the constructor rebuilds an equal estimator"
    assert not [k for k in vars(est) if k.endswith("_")], "__init__ learns nothing"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_learned_state_needs_fit(case: Case) -> None:
    X, _ = case.inputs()
    est = case.make(**case.params)
    for method in ("score_samples", "decision_function", "predict", "explain"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(X[:3])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fit_returns_self_and_shapes(case: Case) -> None:
    X, y = case.inputs()
    est = case.make(**case.params)
    assert est.fit(X, y) is est
    n = len(X)
    scores = est.score_samples(X)
    assert isinstance(scores, np.ndarray) and scores.shape == (n,) and scores.dtype == np.float64
    np.testing.assert_allclose(est.decision_function(X), scores - est.threshold_)
    labels = est.predict(X)
    assert len(labels) == n and all(isinstance(lab, str) for lab in labels)
    verdicts = est.explain(X)
    assert len(verdicts) == n
    # the model's labels are its training classes ("class/family"); a verdict splits them
    assert [v.label for v in verdicts] == [lab.split("/")[0] for lab in labels], "predict agrees with explain"
    assert est.predict(X[:0]).shape == (0,) if isinstance(labels, np.ndarray) else est.predict(X[:0]) == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_deterministic(case: Case) -> None:
    X, y = case.inputs()
    a = case.make(**case.params).fit(X, y)
    b = case.make(**case.params).fit(X, y)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(a.score_samples(X), a.score_samples(X))
    assert list(a.predict(X)) == list(b.predict(X))


def test_feature_extractor_contract() -> None:
    records, _ = _records()
    f = FlowFeatures()
    assert f.get_params() == {} and FlowFeatures(**f.get_params()).get_params() == {}
    assert f.fit(records) is f
    X = f.transform(records)
    assert X.shape == (len(records), len(f.feature_names_)) and X.dtype == np.float64
    np.testing.assert_array_equal(X, FlowFeatures().fit().transform(records))


def test_combiner_takes_fitted_detectors_and_is_deterministic() -> None:
    records, labels = _records()
    X, _ = _matrix()
    model = FlowModel(**TINY_PARAMS).fit(X, labels)
    fp = FingerprintDetector(threshold=0.7)
    fet = FetDetector(prefix_len=4)
    c = Combiner(ModelScorer(model), fingerprints=fp, fet=fet)
    assert c.fingerprints is fp and c.fet is fet, "the combiner uses the detectors it is given"
    assert fp.rules_ is not None and fet.threshold_ is not None, "and fits them"
    finals = [r for r in records if not r.early]
    first = c.judge_all(finals)
    assert [r.flow_id for r, _ in first] == [r.flow_id for r in finals]
    again = Combiner(ModelScorer(model), fingerprints=FingerprintDetector(threshold=0.7), fet=fet).judge_all(
        finals
    )
    assert [(v.label, v.family, v.score, v.decided_at) for _, v in first] == [
        (v.label, v.family, v.score, v.decided_at) for _, v in again
    ]
