"""The compiled forest gives LightGBM's own raw scores, bit for bit, on models trained here, and
path attributions that add up to them and agree with TreeSHAP where they should."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from sluice.detect.forest import Forest, UnsupportedModel
from sluice.detect.model import load_model
from sluice.features.flow import FEATURE_NAMES


def _data(seed: int, n: int = 600, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 1] = np.round(X[:, 1])  # many exact zeros: LightGBM's "zero" missing type
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    X[rng.random((n, d)) < 0.1] = np.nan  # NaNs: the "nan" missing type, default directions
    return X, y


def _train(X: np.ndarray, y: np.ndarray, **params: object) -> lgb.Booster:
    base = {"verbose": -1, "num_leaves": 15, "min_data_in_leaf": 5, "seed": 3, "deterministic": True}
    return lgb.train({**base, **params}, lgb.Dataset(X, label=y), num_boost_round=25)


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "multiclass", "num_class": 3},
        {"objective": "multiclass", "num_class": 3, "zero_as_missing": True},
        {"objective": "multiclass", "num_class": 3, "use_missing": False},
        {"objective": "binary"},
    ],
    ids=["multiclass-nan", "multiclass-zero-missing", "no-missing", "binary"],
)
def test_raw_scores_equal_lightgbm(params: dict[str, object]) -> None:
    X, y = _data(1)
    if params["objective"] == "binary":
        y = (y > 0).astype(int)
    booster = _train(X, y, **params)
    forest = Forest.from_text(booster.model_to_string())
    Xt, _ = _data(2, n=400)
    Xt[:5] = 0.0  # exact zeros in every column
    Xt[5:10] = np.nan
    want = np.asarray(booster.predict(Xt, raw_score=True)).reshape(len(Xt), -1)
    got = forest.raw_scores(Xt)
    assert np.array_equal(got, want)  # the same doubles, added in the same order
    proba = np.asarray(booster.predict(Xt)).reshape(len(Xt), -1)
    mine = forest.predict_proba(Xt)
    assert np.allclose(mine, proba, rtol=0, atol=1e-12)


def test_missing_types_are_exercised() -> None:
    """The parametrised models above do use the NaN and Zero rules (else the test proves little)."""
    X, y = _data(1)
    nan_forest = Forest.from_text(_train(X, y, objective="multiclass", num_class=3).model_to_string())
    zero_forest = Forest.from_text(
        _train(X, y, objective="multiclass", num_class=3, zero_as_missing=True).model_to_string()
    )
    assert set(np.unique(nan_forest.missing)) >= {2}
    assert set(np.unique(zero_forest.missing)) >= {1}
    assert nan_forest.default_left.any() and not nan_forest.default_left.all()


def test_one_leaf_trees() -> None:
    """A class whose trees never split (one leaf each) scores its leaf values."""
    X = np.zeros((50, 3))
    y = np.array([0, 1] * 25)
    booster = _train(X, y, objective="binary")
    forest = Forest.from_text(booster.model_to_string())
    assert (forest.root < 0).all()
    assert np.array_equal(
        forest.raw_scores(X[:4]), np.asarray(booster.predict(X[:4], raw_score=True)).reshape(4, 1)
    )
    assert not forest.path_contributions(X[:4], 1).any()  # all bias, nothing to attribute
    assert np.allclose(forest.expected_values(), forest.raw_scores(X[:1])[0], rtol=0, atol=1e-12)


def test_categorical_splits_refused() -> None:
    rng = np.random.default_rng(5)
    X = rng.integers(0, 6, size=(400, 2)).astype(float)
    y = (X[:, 0] % 2 == 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 5, "min_data_per_group": 5},
        lgb.Dataset(X, label=y, categorical_feature=[0]),
        num_boost_round=5,
    )
    with pytest.raises(UnsupportedModel, match="categorical"):
        Forest.from_text(booster.model_to_string())


def test_not_a_model() -> None:
    with pytest.raises(ValueError, match="not a LightGBM"):
        Forest.from_text("hello\n")


def test_shipped_model_predicts_as_lightgbm() -> None:
    """The default model's probabilities through the forest equal LightGBM's on varied rows."""
    model, _manifest = load_model()
    rng = np.random.default_rng(11)
    ref = model.reference_
    lo, hi = ref[0], ref[2]
    X = lo + (hi - lo + 1.0) * rng.random((300, len(FEATURE_NAMES)))
    X[::7] = 0.0
    got = model.predict_proba(X)
    want = np.asarray(model.booster_.predict(X)).reshape(got.shape)
    assert np.allclose(got, want, rtol=0, atol=1e-12)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    forest = model._forest()
    assert forest is not None
    bias = forest.expected_values()
    np.testing.assert_allclose(bias, model.contributions(X[:2])[0, :, -1], rtol=0, atol=1e-9)
    raw = forest.raw_scores(X)
    k = len(model.classes_) - 1
    np.testing.assert_allclose(
        forest.path_contributions(X, k).sum(axis=1),
        raw[:, k] - raw[:, 0] - (bias[k] - bias[0]),
        rtol=0,
        atol=1e-9,
    )


def _treeshap_ratio(booster: lgb.Booster, X: np.ndarray, k: int) -> np.ndarray:
    """LightGBM's TreeSHAP of raw score k minus raw score 0 (a binary model's one score for k=1)."""
    contrib = np.asarray(booster.predict(X, pred_contrib=True)).reshape(len(X), -1, X.shape[1] + 1)
    if contrib.shape[1] == 1:
        return np.asarray(contrib[:, 0, :-1])
    return np.asarray(contrib[:, k, :-1] - contrib[:, 0, :-1])


@pytest.mark.parametrize("objective", ["multiclass", "binary"])
def test_path_contributions_add_up_to_the_log_ratio(objective: str) -> None:
    """Per row, attributions plus the bias difference are raw score k minus raw score 0."""
    X, y = _data(1)
    params: dict[str, object] = {"objective": objective}
    if objective == "binary":
        y = (y > 0).astype(int)
    else:
        params["num_class"] = 3
    forest = Forest.from_text(_train(X, y, **params).model_to_string())
    Xt, _ = _data(2, n=400)
    Xt[:5] = 0.0
    raw = forest.raw_scores(Xt)
    bias = forest.expected_values()
    for k in (1, 2) if objective == "multiclass" else (1,):
        got = forest.path_contributions(Xt, k)
        assert got.shape == Xt.shape
        if objective == "binary":  # one score, log P(1) / P(0)
            want = raw[:, 0] - bias[0]
        else:
            want = raw[:, k] - raw[:, 0] - (bias[k] - bias[0])
        np.testing.assert_allclose(got.sum(axis=1), want, rtol=0, atol=1e-9)
    for bad in (0, 3) if objective == "multiclass" else (0, 2):
        with pytest.raises(ValueError, match="not a finding class"):
            forest.path_contributions(Xt, bad)


def test_root_expectations_are_treeshap_bias() -> None:
    """A class's summed root expectations are TreeSHAP's expected value (``pred_contrib``'s last
    column), bagged trees included (their counts are of the bagged rows)."""
    X, y = _data(1)
    booster = _train(
        X, y, objective="multiclass", num_class=3, bagging_fraction=0.7, bagging_freq=1, min_data_in_leaf=2
    )
    forest = Forest.from_text(booster.model_to_string())
    contrib = np.asarray(booster.predict(X[:3], pred_contrib=True)).reshape(3, 3, X.shape[1] + 1)
    np.testing.assert_allclose(forest.expected_values(), contrib[0, :, -1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("objective", ["multiclass", "binary"])
def test_stumps_attribute_as_treeshap(objective: str) -> None:
    """With one split per tree, the split's change of expectation is its feature's Shapley value."""
    X, y = _data(3)
    params: dict[str, object] = {"objective": objective, "num_leaves": 2}
    if objective == "binary":
        y = (y > 0).astype(int)
    else:
        params["num_class"] = 3
    booster = _train(X, y, **params)
    forest = Forest.from_text(booster.model_to_string())
    Xt, _ = _data(4, n=300)
    for k in (1, 2) if objective == "multiclass" else (1,):
        np.testing.assert_allclose(
            forest.path_contributions(Xt, k), _treeshap_ratio(booster, Xt, k), rtol=0, atol=1e-9
        )


def test_dominant_feature_ranks_first_in_both() -> None:
    """Where one feature mostly decides the class, path attribution and TreeSHAP rank it first
    alike on most rows (not all: the second feature's share is credited differently)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(900, 5))
    y = np.digitize(X[:, 0] + 0.2 * X[:, 1], [-0.5, 0.5])  # class 0, 1, 2 by feature 0 mostly
    booster = _train(X, y, objective="multiclass", num_class=3)
    forest = Forest.from_text(booster.model_to_string())
    Xt = rng.normal(size=(400, 5))
    for k in (1, 2):
        rows = Xt[forest.raw_scores(Xt).argmax(axis=1) == k]
        mine = forest.path_contributions(rows, k).argmax(axis=1)
        shap = _treeshap_ratio(booster, rows, k).argmax(axis=1)
        assert len(rows) > 50
        assert (mine == shap).mean() >= 0.85  # 0.94 and 0.99 when written
        assert (mine == 0).mean() >= 0.8


def test_node_values_in_any_node_order() -> None:
    """Expectations need no parent-before-child order; zero counts take the plain mean; a cycle
    is refused instead of looping."""
    from sluice.detect.forest import _node_values

    # node 1 is the root, its left child node 0; leaves 0 and 1 under node 0, leaf 2 under node 1
    left, right = np.array([-1, 0], dtype=np.int32), np.array([-2, -3], dtype=np.int32)
    leaf_value = np.array([1.0, 2.0, 3.0])
    got = _node_values(left, right, leaf_value, np.array([3.0, 4.0]), np.array([1.0, 2.0, 1.0]))
    assert got[0] == pytest.approx(5.0 / 3.0) and got[1] == pytest.approx((5.0 + 3.0) / 4.0)
    got = _node_values(left, right, leaf_value, np.zeros(2), np.zeros(3))
    assert got[0] == pytest.approx(1.5) and got[1] == pytest.approx(2.25)
    with pytest.raises(ValueError, match="cycle"):
        _node_values(np.array([1, 0], dtype=np.int32), right, leaf_value, np.ones(2), np.ones(3))
