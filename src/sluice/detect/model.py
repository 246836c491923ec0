"""Layer 3: a trained model on early-flow features (LightGBM), stored without pickle.

Theory of operation: :class:`FlowModel` is a multiclass gradient-boosted tree model over
:data:`sluice.features.flow.FEATURE_NAMES`; its classes are ``benign`` and one ``class/family``
per kind of finding in the training data. Its score is ``P(not benign) = 1 - P(benign)``; a
flow at or above ``threshold_`` is a finding, named after its most likely non-benign class.
Evidence is the exact decomposition (TreeSHAP, LightGBM's ``pred_contrib``) of the log-ratio
``log P(family) / P(benign)`` over the features: the features that pushed most towards the
finding, each with the benign training data's 5–95 % range as reference.

A model directory holds ``manifest.json``, ``model.txt`` (LightGBM's own text format) and
``reference.npz`` (numpy, loaded with ``allow_pickle=False``). The manifest records the format
version, class name, parameters, feature names, training-data digest, sluice version, metrics
and the sha256 of every file, and ``manifest_digest`` covers the manifest itself (the sha256 of
its canonical JSON without that field: :func:`manifest_digest`), so an edited threshold or class
list is refused like an edited model file. :func:`load_model` checks all of them before it parses
anything, reads no file larger than ``SLUICE_MAX_MODEL_BYTES`` (:data:`~sluice.io.limits.MAX_MODEL_BYTES`),
checks the structure of ``model.txt`` (:func:`check_model_text`: header, feature count, every
tree's arrays and indices, ``end of trees``) before LightGBM sees it - LightGBM aborts the process
on some damage - and only builds classes from :data:`MODEL_CLASSES`. Every failure is one
:class:`~sluice.errors.ConfigError` naming the directory. The digests catch accidents and edits by
hand; they are not a signature: whoever can write the directory can reseal it.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MODEL_DIR",
    "MODEL_CLASSES",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "FlowModel",
    "ModelScorer",
    "check_model_text",
    "load_model",
    "manifest_digest",
    "save_model",
    "seal_manifest",
]

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from sluice import __version__
from sluice.detect._base import NotFittedError, constructor_params
from sluice.detect.combiner import Opinion
from sluice.detect.verdict import Evidence, Verdict, flow_key_text
from sluice.errors import ConfigError
from sluice.features.extractor import FlowFeatures
from sluice.features.flow import EARLY_PACKETS, FEATURE_NAMES, FEATURE_SET_VERSION
from sluice.flows.record import FlowRecord

if TYPE_CHECKING:
    from sluice.detect.forest import Forest
from sluice.io.limits import MAX_MODEL_BYTES, LimitExceeded, env_limit, read_bounded

MODEL_FORMAT = "sluice-model"
"""``format`` of a model manifest."""
MODEL_FORMAT_VERSION = 1
"""Manifest format version this code reads and writes."""
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
"""The model shipped with sluice."""
BENIGN = "benign"
_MODEL_FILE = "model.txt"
_REFERENCE_FILE = "reference.npz"
_TOP_EVIDENCE = 5
_PARALLEL_ROWS = 256
"""Predictions of fewer rows than this run on one thread."""

Array = npt.NDArray[np.float64]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
            pairs[k] = lgb.Booster(
                model_str=_two_class_text(self._text(), len(self.classes_), k)
            )
        return pairs[k]

    @property
    def digest(self) -> str:
        """sha256 of the model's text form (computed once per fitted booster)."""
        self._check()
        cached = getattr(self, "_digest", None)
        if cached is None or cached[0] is not self.booster_:
            cached = (self.booster_, _sha256(self._text().encode()))
            self._digest = cached
        return cached[1]

    def opinions(
        self, X: Array, decided_at: Sequence[int], evidence_from: float | None = None
    ) -> list[Opinion]:
        """One :class:`Opinion` per row; rows scoring at least ``evidence_from`` (default: the
        threshold, i.e. findings) carry the top features by contribution as evidence."""
        proba = self.predict_proba(X)
        # evidence only where it is shown: TreeSHAP costs more than the prediction
        floor = self.threshold_ if evidence_from is None else min(evidence_from, self.threshold_)
        found = np.flatnonzero(1.0 - proba[:, 0] >= floor)
        best = 1 + np.argmax(proba[:, 1:], axis=1) if len(proba) else np.zeros(0, dtype=np.intp)
        ratios: dict[int, Array] = {}
        for k in np.unique(best[found]):
            rows = found[best[found] == k]
            for i, r in zip(rows.tolist(), self.log_ratio_contributions(X[rows], int(k)), strict=True):
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
    """

    def __init__(self, model: FlowModel, features: FlowFeatures | None = None) -> None:
        self.model = model
        self.features = (features or FlowFeatures()).fit()

    def opinions(self, records: Sequence[FlowRecord]) -> list[Opinion]:
        """One opinion per record."""
        if not records:
            return []
        X = self.features.transform(records)
        # TreeSHAP for findings only: explaining every uncertain flow too tripled the verdict
        # cost on the bench capture (BENCHMARKS.md); an unknown verdict names its most likely
        # family and score, and `FlowModel.opinions(..., evidence_from=)` gives its features
        return self.model.opinions(X, [_decided_at(r) for r in records])


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
    files = {_MODEL_FILE: text, _REFERENCE_FILE: buf.getvalue()}
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
        "model_digest": _sha256(text),
        "files": {name: _sha256(data) for name, data in files.items()},
        "metrics": metrics or {},
        "training": training or {},
    }
    return _write_manifest(out, manifest)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces), ``manifest_digest`` left out.

    Raises:
        ValueError: the manifest holds what JSON cannot (NaN, infinities).
    """
    rest = {k: v for k, v in manifest.items() if k != "manifest_digest"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return _sha256(text.encode())


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    manifest = {**manifest, "manifest_digest": manifest_digest(manifest)}
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def seal_manifest(directory: str | Path) -> Path:
    """Add (or renew) ``manifest_digest`` in a model directory's manifest, changing nothing else.

    For manifests written before the digest existed; the files must still match the manifest's
    sha256s (a model is never resealed over a file that changed). ``python -m sluice.detect.model
    DIR`` does the same.

    Returns:
        The manifest's path.

    Raises:
        ConfigError: the manifest is unreadable or a file does not match it.
    """
    path = Path(directory)
    manifest = _parse_manifest(path)
    _verified(path, manifest)
    return _write_manifest(path, manifest)


def _read(directory: Path, name: str) -> bytes:
    limit = env_limit("SLUICE_MAX_MODEL_BYTES", MAX_MODEL_BYTES)
    try:
        with (directory / name).open("rb") as f:
            return read_bounded(f, limit, f"{name} size", "SLUICE_MAX_MODEL_BYTES")
    except LimitExceeded as exc:
        raise ConfigError("model", f"{directory}: {exc}") from None
    except OSError as exc:
        raise ConfigError("model", f"{directory}: cannot read {name}: {exc.strerror or exc}") from None


def _parse_manifest(directory: Path) -> dict[str, Any]:
    raw = _read(directory, "manifest.json")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise ConfigError("model", f"{directory}: manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ConfigError("model", f"{directory}: manifest is not an object")
    return manifest


def _read_manifest(directory: Path) -> dict[str, Any]:
    manifest = _parse_manifest(directory)
    recorded = manifest.get("manifest_digest")
    try:
        actual = manifest_digest(manifest)
    except ValueError:
        actual = ""
    if not isinstance(recorded, str) or recorded != actual:
        raise ConfigError(
            "model",
            f"{directory}: manifest.json does not match its manifest_digest "
            + (
                "(none recorded: reseal it with sluice.detect.model.seal_manifest)"
                if recorded is None
                else "(edited?)"
            ),
        )
    if manifest.get("format") != MODEL_FORMAT or manifest.get("format_version") != MODEL_FORMAT_VERSION:
        raise ConfigError(
            "model",
            f"{directory}: format {manifest.get('format')!r} v{manifest.get('format_version')!r}, "
            f"this sluice reads {MODEL_FORMAT!r} v{MODEL_FORMAT_VERSION}",
        )
    if manifest.get("class") not in MODEL_CLASSES:
        raise ConfigError("model", f"{directory}: class {manifest.get('class')!r} is not allowed")
    if manifest.get("feature_names") != list(FEATURE_NAMES):
        raise ConfigError("model", f"{directory}: feature names differ from this sluice's feature set")
    classes = manifest.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or classes[0] != BENIGN
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ConfigError("model", f"{directory}: classes must be a list starting with {BENIGN!r}")
    threshold = manifest.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
        raise ConfigError("model", f"{directory}: threshold must be a number in (0, 1), not {threshold!r}")
    if not isinstance(manifest.get("params"), dict):
        raise ConfigError("model", f"{directory}: params must be an object")
    return manifest


def _verified(directory: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != {_MODEL_FILE, _REFERENCE_FILE}:
        raise ConfigError("model", f"{directory}: manifest must list {_MODEL_FILE} and {_REFERENCE_FILE}")
    out = {}
    for name, digest in files.items():
        data = _read(directory, name)
        if _sha256(data) != digest:
            raise ConfigError("model", f"{directory}: sha256 of {name} does not match the manifest")
        out[name] = data
    if manifest.get("model_digest") != files[_MODEL_FILE]:
        raise ConfigError("model", f"{directory}: model_digest is not the sha256 of {_MODEL_FILE}")
    return out


_TREE_ARRAYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")


def check_model_text(text: str, n_classes: int) -> None:
    """Check LightGBM's text model format before LightGBM parses it (it aborts on some damage).

    Checks the header (``tree``, version, class and tree-per-iteration counts, feature count and
    names equal to :data:`FEATURE_NAMES`), that the trees are ``Tree=0..n-1`` in order, a whole
    number of iterations, each where ``tree_sizes`` says, each with arrays of the lengths its
    ``num_leaves`` implies, features and children in range and no categorical splits, and that
    ``end of trees`` follows them.

    Raises:
        ValueError: the first problem found.
    """
    if not text.isascii():
        raise ValueError("not ASCII")
    end = text.find("\nend of trees")
    if not text.startswith("tree\n") or end < 0:
        raise ValueError("no 'tree' header or no 'end of trees'")
    first = text.find("\nTree=")
    if first < 0 or first > end:
        raise ValueError("no trees")
    header = _fields(text[5:first])
    n_feat = len(FEATURE_NAMES)
    if header.get("num_class") != str(n_classes) or header.get("num_tree_per_iteration") != str(n_classes):
        raise ValueError(f"num_class/num_tree_per_iteration are not {n_classes}")
    if header.get("max_feature_idx") != str(n_feat - 1):
        raise ValueError(f"max_feature_idx is not {n_feat - 1}")
    if header.get("feature_names", "").split(" ") != list(FEATURE_NAMES):
        raise ValueError("feature_names differ from this sluice's")
    blocks = text[first + 1 : end + 1].split("\nTree=")
    blocks[0] = blocks[0].removeprefix("Tree=")
    if len(blocks) % n_classes:
        raise ValueError(f"{len(blocks)} trees is not a whole number of iterations")
    sizes = header.get("tree_sizes")
    if sizes is not None:
        try:
            lengths = [int(x) for x in sizes.split(" ")]
        except ValueError:
            raise ValueError("tree_sizes are not integers") from None
        if len(lengths) != len(blocks):
            raise ValueError(f"tree_sizes lists {len(lengths)} trees, the file has {len(blocks)}")
        pos = first + 1
        for i, n in enumerate(lengths):
            if n <= 0 or not text.startswith(f"Tree={i}\n", pos):
                raise ValueError(f"tree {i} is not where tree_sizes puts it")
            pos += n
        if not text.startswith("end of trees", pos):
            raise ValueError("tree_sizes do not end at 'end of trees'")
    for i, block in enumerate(blocks):
        head, _, body = block.partition("\n")
        if head != str(i):
            raise ValueError(f"tree {i} is numbered {head!r}")
        _check_tree(i, _fields(body), n_feat)


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.split("\n"):
        key, eq, value = line.partition("=")
        if eq:
            out[key] = value
    return out


def _check_tree(i: int, f: dict[str, str], n_feat: int) -> None:
    try:
        leaves = int(f["num_leaves"])
        if int(f.get("num_cat", "0")) != 0:
            raise ValueError(f"tree {i}: categorical splits are not used by sluice models")
        values = [float(x) for x in f["leaf_value"].split(" ")]
        arrays = {k: f[k].split(" ") for k in _TREE_ARRAYS} if leaves > 1 else {}
        feats = [int(x) for x in arrays.get("split_feature", [])]
        children = [int(x) for k in ("left_child", "right_child") for x in arrays.get(k, [])]
        thresholds = [float(x) for x in arrays.get("threshold", [])]
        kinds = [int(x) for x in arrays.get("decision_type", [])]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"tree {i}: missing or malformed field ({exc})") from None
    if leaves < 1 or len(values) != leaves or not all(math.isfinite(v) for v in values):
        raise ValueError(f"tree {i}: {len(values)} leaf values for {leaves} leaves")
    if any(len(a) != leaves - 1 for a in arrays.values()):
        raise ValueError(f"tree {i}: split arrays are not {leaves - 1} long")
    if any(not 0 <= x < n_feat for x in feats) or any(not -leaves <= c < leaves - 1 for c in children):
        raise ValueError(f"tree {i}: a split feature or child index is out of range")
    if any(math.isnan(t) for t in thresholds) or any(not 0 <= k < 256 for k in kinds):
        raise ValueError(f"tree {i}: a threshold or decision type is invalid")


def load_model(directory: str | Path = DEFAULT_MODEL_DIR) -> tuple[FlowModel, dict[str, Any]]:
    """A model directory, checked (format, class allow-list, features, sha256) before parsing.

    Returns:
        (fitted model, manifest).

    Raises:
        ConfigError: the directory is not a model this sluice loads, or a file does not match.
    """
    import lightgbm as lgb

    path = Path(directory)
    manifest = _read_manifest(path)
    data = _verified(path, manifest)
    cls = MODEL_CLASSES[manifest["class"]]
    classes = tuple(manifest["classes"])
    try:
        model = cls(**manifest["params"])
    except TypeError as exc:
        raise ConfigError("model", f"{path}: bad params: {exc}") from None
    try:
        with np.load(io.BytesIO(data[_REFERENCE_FILE]), allow_pickle=False) as npz:
            reference = np.asarray(npz["reference"], dtype=np.float64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError("model", f"{path}: {_REFERENCE_FILE} is not a reference array ({exc})") from None
    if reference.shape != (3, len(FEATURE_NAMES)):
        raise ConfigError("model", f"{path}: reference has shape {reference.shape}")
    text = data[_MODEL_FILE].decode("ascii", errors="replace")
    try:
        check_model_text(text, len(classes))
    except ValueError as exc:
        raise ConfigError("model", f"{path}: {_MODEL_FILE} is damaged: {exc}") from None
    try:
        booster = lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as exc:
        raise ConfigError("model", f"{path}: LightGBM refused {_MODEL_FILE}: {exc}") from None
    if booster.num_model_per_iteration() != len(classes) or booster.num_feature() != len(FEATURE_NAMES):
        raise ConfigError("model", f"{path}: model and manifest disagree on classes or features")
    model.booster_ = booster
    model.classes_ = classes
    model.threshold_ = float(manifest["threshold"])
    model.feature_names_ = FEATURE_NAMES
    model.reference_ = reference
    return model, manifest


if __name__ == "__main__":  # python -m sluice.detect.model DIR...: reseal manifests
    import sys

    for arg in sys.argv[1:]:
        print(seal_manifest(arg))
