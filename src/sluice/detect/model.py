"""Layer 3: a trained model on early-flow features (LightGBM), stored without pickle.

Theory of operation: :class:`FlowModel` is a multiclass gradient-boosted tree model over
:data:`sluice.features.flow.FEATURE_NAMES`; its classes are ``benign`` and one ``class/family``
per kind of finding in the training data. Its score is ``P(not benign) = 1 - P(benign)``; a
flow at or above ``threshold_`` is a finding, named after its most likely non-benign class.
Evidence is a decomposition of the log-ratio ``log P(family) / P(benign)`` over the features: the
features that pushed most towards the finding, each with the benign training data's 5–95 % range
as reference. Verdicts take path attribution (Saabas,
:meth:`~sluice.detect.forest.Forest.path_contributions`: one path per tree, like the prediction;
exact in sum, not Shapley-consistent). :meth:`FlowModel.log_ratio_contributions` is the Shapley
decomposition (TreeSHAP, LightGBM's ``pred_contrib``), about 50 times the cost: for offline
explanation, and for the verdicts of a model the compiled forest does not evaluate.

Saved as a model directory (:mod:`sluice.detect.modeldir`: manifest, sha256 digests, the structure
check of ``model.txt``); :func:`load_model` checks all of it before it parses anything and only
builds classes from :data:`MODEL_CLASSES`. Every failure is one :class:`~sluice.errors.ConfigError`
naming the directory.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MODEL_DIR",
    "MODEL_CLASSES",
    "FlowModel",
    "ModelScorer",
    "load_model",
    "save_model",
]

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from sluice import __version__
from sluice.detect._base import NotFittedError, constructor_params
from sluice.detect.combiner import DEFAULT_UNCERTAIN_FROM, Opinion
from sluice.detect.modeldir import (
    BENIGN,
    MODEL_FILE,
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    REFERENCE_FILE,
    check_model_text,
    read_manifest,
    sha256_hex,
    verified_files,
    write_manifest,
)
from sluice.detect.verdict import Evidence, Verdict, flow_key_text
from sluice.errors import ConfigError
from sluice.features.extractor import FlowFeatures
from sluice.features.flow import EARLY_PACKETS, FEATURE_NAMES, FEATURE_SET_VERSION
from sluice.flows.record import FlowRecord

if TYPE_CHECKING:
    from sluice.detect.forest import Forest

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
"""The model shipped with sluice."""
_TOP_EVIDENCE = 5
_PARALLEL_ROWS = 256
"""Predictions of fewer rows than this run on one thread."""

Array = npt.NDArray[np.float64]


class FlowModel:
    """Multiclass LightGBM model of early-flow features (scikit-learn contract).

    Args:
        n_estimators: boosting rounds.
        learning_rate: shrinkage.
        num_leaves: leaves per tree.
        min_child_samples: minimum flows in a leaf.
        threshold: ``P(not benign)`` at or above which a flow is a finding.
        benign_weight: weight of benign flows relative to class-balanced weights (above 1 trades
            recall for fewer false positives).
        seed: random seed (bagging and feature sampling).
    """

    booster_: Any
    _digest: tuple[Any, str]
    classes_: tuple[str, ...]
    threshold_: float
    feature_names_: tuple[str, ...]
    reference_: Array

    def __init__(
        self,
        *,
        n_estimators: int = 150,
        learning_rate: float = 0.08,
        num_leaves: int = 15,
        min_child_samples: int = 5,
        threshold: float = 0.7,
        benign_weight: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.threshold = threshold
        self.benign_weight = benign_weight
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments."""
        return constructor_params(self)

    def _lgb_params(self, n_classes: int) -> dict[str, Any]:
        return {
            "objective": "multiclass",
            "num_class": n_classes,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,
            "verbosity": -1,
        }

    def fit(self, X: Array, y: Sequence[str]) -> Self:
        """Learn from a feature matrix and labels.

        Args:
            X: array of shape ``(n_flows, len(FEATURE_NAMES))``.
            y: ``"benign"`` or ``"class/family"`` per flow.

        Raises:
            ConfigError: bad hyperparameters, a matrix of the wrong width, or no benign flows.
        """
        import lightgbm as lgb

        if not 0.0 < self.threshold < 1.0:
            raise ConfigError("threshold", f"must be in (0, 1), got {self.threshold}")
        if self.n_estimators < 1 or self.num_leaves < 2:
            raise ConfigError("n_estimators", "at least 1 round and 2 leaves")
        if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES) or X.shape[0] != len(y):
            raise ConfigError("X", f"expected ({len(y)}, {len(FEATURE_NAMES)}), got {X.shape}")
        labels = [BENIGN if lab.split("/")[0] == BENIGN else lab for lab in y]
        classes = (BENIGN, *sorted(set(labels) - {BENIGN}))
        if BENIGN not in labels or len(classes) < 2:
            raise ConfigError("y", "training data needs benign flows and at least one finding class")
        index = {c: i for i, c in enumerate(classes)}
        target = np.asarray([index[lab] for lab in labels], dtype=np.int32)
        counts = np.bincount(target, minlength=len(classes)).astype(np.float64)
        weights = (len(target) / (len(classes) * counts))[target]
        weights[target == 0] *= self.benign_weight
        data = lgb.Dataset(
            X, label=target, weight=weights, feature_name=list(FEATURE_NAMES), free_raw_data=True
        )
        self.booster_ = lgb.train(self._lgb_params(len(classes)), data, num_boost_round=self.n_estimators)
        self.classes_ = classes
        self.threshold_ = float(self.threshold)
        self.feature_names_ = FEATURE_NAMES
        benign = X[target == 0]
        self.reference_ = np.quantile(benign, [0.05, 0.5, 0.95], axis=0).astype(np.float64)
        return self

    def _check(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedError("FlowModel is not fitted: call fit() or load_model()")

    def predict_proba(self, X: Array) -> Array:
        """Class probabilities, shape ``(n_flows, len(classes_))``."""
        self._check()
        if len(X) == 0:
            return np.zeros((0, len(self.classes_)))
        forest = self._forest()
        if forest is not None:
            return forest.predict_proba(X)
        raw = self.booster_.predict(X, num_threads=_threads(len(X)))
        return np.asarray(raw, dtype=np.float64).reshape(len(X), len(self.classes_))

    def _text(self) -> str:
        """The booster's text form (LightGBM writes it in ~0.5 s for 3,150 trees: once)."""
        cached: tuple[Any, str] | None = getattr(self, "_model_text", None)
        if cached is None or cached[0] is not self.booster_:
            cached = (self.booster_, self.booster_.model_to_string())
            self._model_text = cached
        return cached[1]

    def _forest(self) -> Forest | None:
        """The trees as a compiled :class:`~sluice.detect.forest.Forest` (cached), or None when the
        model uses what the forest does not evaluate - then LightGBM predicts."""
        from sluice.detect.forest import Forest, UnsupportedModel

        cached: tuple[Any, Forest | None] | None = getattr(self, "_forest_cache", None)
        if cached is None or cached[0] is not self.booster_:
            try:
                forest: Forest | None = Forest.from_text(self._text())
            except UnsupportedModel:
                forest = None
            cached = (self.booster_, forest)
            self._forest_cache = cached
        return cached[1]

    def score_samples(self, X: Array) -> Array:
        """``P(not benign)`` per flow, shape ``(n_flows,)``."""
        return 1.0 - self.predict_proba(X)[:, 0]

    def decision_function(self, X: Array) -> Array:
        """``score_samples(X) - threshold_``: non-negative for findings."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Array) -> list[str]:
        """``"benign"`` or the most likely ``"class/family"`` per flow."""
        proba = self.predict_proba(X)
        out = []
        for p in proba:
            if 1.0 - p[0] >= self.threshold_:
                out.append(self.classes_[1 + int(np.argmax(p[1:]))])
            else:
                out.append(BENIGN)
        return out

    def contributions(self, X: Array) -> Array:
        """TreeSHAP contributions, shape ``(n_flows, len(classes_), n_features + 1)`` (last: bias)."""
        self._check()
        raw = np.asarray(
            self.booster_.predict(X, pred_contrib=True, num_threads=_threads(len(X))), dtype=np.float64
        )
        return raw.reshape(len(X), len(self.classes_), len(FEATURE_NAMES) + 1)

    def log_ratio_contributions(self, X: Array, k: int) -> Array:
        """TreeSHAP contributions to ``log P(class k) / P(benign)`` (raw score k minus raw score 0),
        shape ``(n_flows, n_features)``: equal to ``contributions(X)[:, k] - contributions(X)[:, 0]``.

        A multiclass model's raw score of a class is the sum of that class's trees, and TreeSHAP is
        additive over trees, so only the two classes' trees are explained: a model of just those
        trees (:meth:`_pair_booster`) costs ``2 / len(classes_)`` of the full explanation.
        """
        self._check()
        if not 0 < k < len(self.classes_):
            raise ValueError(f"class index {k} is not a finding class")
        raw = np.asarray(
            self._pair_booster(k).predict(X, pred_contrib=True, num_threads=_threads(len(X))),
            dtype=np.float64,
        ).reshape(len(X), 2, len(FEATURE_NAMES) + 1)
        return raw[:, 1, :-1] - raw[:, 0, :-1]

    def _pair_booster(self, k: int) -> Any:
        """A LightGBM model of the trees of class 0 (benign) and class ``k`` only (cached)."""
        import lightgbm as lgb

        cache: tuple[Any, dict[int, Any]] | None = getattr(self, "_pairs", None)
        if cache is None or cache[0] is not self.booster_:
            cache = (self.booster_, {})
            self._pairs = cache
        pairs: dict[int, Any] = cache[1]
        if k not in pairs:
            pairs[k] = lgb.Booster(model_str=_two_class_text(self._text(), len(self.classes_), k))
        return pairs[k]

    @property
    def digest(self) -> str:
        """sha256 of the model's text form (computed once per fitted booster)."""
        self._check()
        cached = getattr(self, "_digest", None)
        if cached is None or cached[0] is not self.booster_:
            cached = (self.booster_, sha256_hex(self._text().encode()))
            self._digest = cached
        return cached[1]

    def opinions(
        self, X: Array, decided_at: Sequence[int], evidence_from: float | None = None
    ) -> list[Opinion]:
        """One :class:`Opinion` per row; rows scoring at least ``evidence_from`` (default: the
        threshold, i.e. findings) carry the top features by contribution as evidence."""
        proba = self.predict_proba(X)
        # evidence only where it is shown: even path attribution costs a share of the prediction
        floor = self.threshold_ if evidence_from is None else min(evidence_from, self.threshold_)
        forest = self._forest()
        # path attribution: TreeSHAP of the findings cost more than predicting every flow
        attribute = forest.path_contributions if forest is not None else self.log_ratio_contributions
        found = np.flatnonzero(1.0 - proba[:, 0] >= floor)
        best = 1 + np.argmax(proba[:, 1:], axis=1) if len(proba) else np.zeros(0, dtype=np.intp)
        ratios: dict[int, Array] = {}
        for k in np.unique(best[found]):
            rows = found[best[found] == k]
            for i, r in zip(rows.tolist(), attribute(X[rows], int(k)), strict=True):
                ratios[i] = r
        digest = self.digest
        out = []
        for i, p in enumerate(proba):
            k = int(best[i])
            label, _, family = self.classes_[k].partition("/")
            evidence: tuple[Evidence, ...] = ()
            if i in ratios:
                evidence = self._evidence(X[i], ratios[i], decided_at[i])
            out.append(
                Opinion(
                    float(1.0 - p[0]),
                    label,
                    family,
                    self.threshold_,
                    decided_at[i],
                    digest,
                    f"lightgbm:{digest[:12]}",
                    evidence,
                )
            )
        return out

    def _evidence(self, x: Array, ratio: Array, packet: int) -> tuple[Evidence, ...]:
        ev = []
        for j in np.argsort(-ratio)[:_TOP_EVIDENCE]:
            if ratio[j] <= 0:
                break
            lo, _mid, hi = self.reference_[:, j]
            ev.append(
                Evidence(
                    f"model.{FEATURE_NAMES[j]}",
                    FEATURE_NAMES[j],
                    f"{x[j]:g}",
                    f"benign 5-95%: {lo:g}..{hi:g}",
                    float(ratio[j]),
                    "pushed the model towards a finding (log-odds vs benign)",
                    packet,
                )
            )
        return tuple(ev)

    def explain(self, X: Array, records: Sequence[FlowRecord] | None = None) -> list[Verdict]:
        """Full verdicts (the model alone), with flow keys when ``records`` are given."""
        decided = [_decided_at(r) for r in records] if records is not None else [EARLY_PACKETS - 1] * len(X)
        out = []
        for i, op in enumerate(self.opinions(X, decided)):
            finding = op.p_finding >= op.threshold
            rec = records[i] if records is not None else None
            out.append(
                Verdict(
                    rec.flow_id if rec is not None else i,
                    flow_key_text(rec) if rec is not None else "",
                    op.label if finding else BENIGN,
                    op.family if finding else "",
                    op.p_finding if finding else 1 - op.p_finding,
                    op.decided_at,
                    "model",
                    op.version,
                    score=op.p_finding,
                    threshold=op.threshold,
                    model_digest=op.digest,
                    evidence=op.evidence,
                )
            )
        return out


def _two_class_text(text: str, n_classes: int, k: int) -> str:
    """LightGBM model text keeping the trees of classes 0 and ``k`` of a multiclass model (tree
    ``t`` belongs to class ``t % n_classes``), renumbered as a two-class model."""
    head, _, rest = text.partition("\nTree=0\n")
    trees_text, end, tail = ("Tree=0\n" + rest).partition("end of trees")
    blocks = ["Tree=" + b for b in trees_text.split("Tree=")[1:]]
    kept = [b for t, b in enumerate(blocks) if t % n_classes in (0, k)]
    renamed = [f"Tree={i}\n" + b.split("\n", 1)[1] for i, b in enumerate(kept)]
    lines = []
    for line in head.split("\n"):
        if line.startswith("num_class=") or line.startswith("num_tree_per_iteration="):
            line = line.split("=", 1)[0] + "=2"
        elif line.startswith("objective="):
            line = line.replace(f"num_class:{n_classes}", "num_class:2")
        elif line.startswith("tree_sizes="):
            line = "tree_sizes=" + " ".join(str(len(b.encode())) for b in renamed)
        lines.append(line)
    return "\n".join(lines) + "\n" + "".join(renamed) + end + tail


def _decided_at(rec: FlowRecord) -> int:
    """The last packet the features read: the burst columns read every packet the record keeps."""
    return max(0, len(rec.pkt_sizes) - 1)


class ModelScorer:
    """A fitted :class:`FlowModel` as the combiner's :class:`~sluice.detect.combiner.FlowScorer`.

    Args:
        model: the fitted model.
        features: the feature extractor (default: :class:`FlowFeatures`).
        evidence_from: ``P(not benign)`` from which an opinion carries the features behind it
            (default: where the combiner's ``unknown`` begins, so an uncertain flow says what
            leaned); None: findings only.
    """

    def __init__(
        self,
        model: FlowModel,
        features: FlowFeatures | None = None,
        evidence_from: float | None = DEFAULT_UNCERTAIN_FROM,
    ) -> None:
        self.model = model
        self.features = (features or FlowFeatures()).fit()
        self.evidence_from = evidence_from

    def opinions(self, records: Sequence[FlowRecord]) -> list[Opinion]:
        """One opinion per record."""
        if not records:
            return []
        X = self.features.transform(records)
        # uncertain flows get their features too: by TreeSHAP that tripled the verdict cost on
        # the bench capture (BENCHMARKS.md); path attribution costs ~1/50 of it
        return self.model.opinions(X, [_decided_at(r) for r in records], self.evidence_from)


def _threads(rows: int) -> int:
    """OpenMP threads for a prediction: one for a few rows (a gateway's single flow: a thread team
    waiting on a busy core costs milliseconds), LightGBM's default for batches."""
    return 1 if rows < _PARALLEL_ROWS else 0


MODEL_CLASSES: dict[str, type[FlowModel]] = {"FlowModel": FlowModel}
"""The only classes :func:`load_model` builds."""


def save_model(
    model: FlowModel,
    directory: str | Path,
    *,
    data_digest: str = "",
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write a fitted model as a directory (manifest, LightGBM text, numpy reference).

    Returns:
        The manifest's path.
    """
    model._check()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    text = model.booster_.model_to_string().encode()
    buf = io.BytesIO()
    np.savez(buf, reference=model.reference_)
    files = {MODEL_FILE: text, REFERENCE_FILE: buf.getvalue()}
    for name, data in files.items():
        (out / name).write_bytes(data)
    manifest = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "class": type(model).__name__,
        "params": model.get_params(),
        "classes": list(model.classes_),
        "threshold": model.threshold_,
        "feature_set_version": FEATURE_SET_VERSION,
        "feature_names": list(model.feature_names_),
        "data_digest": data_digest,
        "sluice_version": __version__,
        "model_digest": sha256_hex(text),
        "files": {name: sha256_hex(data) for name, data in files.items()},
        "metrics": metrics or {},
        "training": training or {},
    }
    return write_manifest(out, manifest)


def load_model(directory: str | Path = DEFAULT_MODEL_DIR) -> tuple[FlowModel, dict[str, Any]]:
    """A model directory, checked (format, class allow-list, features, sha256) before parsing.

    Returns:
        (fitted model, manifest).

    Raises:
        ConfigError: the directory is not a model this sluice loads, or a file does not match.
    """
    import lightgbm as lgb

    path = Path(directory)
    manifest = read_manifest(path, MODEL_CLASSES)
    data = verified_files(path, manifest)
    cls = MODEL_CLASSES[manifest["class"]]
    classes = tuple(manifest["classes"])
    try:
        model = cls(**manifest["params"])
    except TypeError as exc:
        raise ConfigError("model", f"{path}: bad params: {exc}") from None
    try:
        with np.load(io.BytesIO(data[REFERENCE_FILE]), allow_pickle=False) as npz:
            reference = np.asarray(npz["reference"], dtype=np.float64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError("model", f"{path}: {REFERENCE_FILE} is not a reference array ({exc})") from None
    if reference.shape != (3, len(FEATURE_NAMES)):
        raise ConfigError("model", f"{path}: reference has shape {reference.shape}")
    text = data[MODEL_FILE].decode("ascii", errors="replace")
    try:
        check_model_text(text, len(classes))
    except ValueError as exc:
        raise ConfigError("model", f"{path}: {MODEL_FILE} is damaged: {exc}") from None
    try:
        booster = lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as exc:
        raise ConfigError("model", f"{path}: LightGBM refused {MODEL_FILE}: {exc}") from None
    if booster.num_model_per_iteration() != len(classes) or booster.num_feature() != len(FEATURE_NAMES):
        raise ConfigError("model", f"{path}: model and manifest disagree on classes or features")
    model.booster_ = booster
    model.classes_ = classes
    model.threshold_ = float(manifest["threshold"])
    model.feature_names_ = FEATURE_NAMES
    model.reference_ = reference
    return model, manifest
