"""The compiled forest gives LightGBM's own raw scores, bit for bit, on models trained here."""

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
