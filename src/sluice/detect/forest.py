"""A LightGBM model's trees as flat arrays, evaluated by a compiled loop: the same raw scores as
LightGBM's own prediction, bit for bit, at a fraction of its cost.

Theory of operation: :meth:`Forest.from_text` reads LightGBM's text model format (the file a
model directory keeps, already checked by :func:`sluice.detect.modeldir.check_model_text`) into one
array per node field, every tree's nodes after the previous tree's: the split feature, the
threshold, the missing-value rule and the two children. A child ``c >= 0`` is a node of the same
tree (offset by the tree's first node), a child ``c < 0`` is the leaf ``~c`` (offset by the
tree's first leaf), as in LightGBM's own arrays. :func:`_raw_scores` walks every tree for every
row and adds the leaf's value to the row's score of the tree's class (tree ``t`` belongs to class
``t % n_classes``), in tree order, from 0.0 - LightGBM's order of addition, so the sums are the
same doubles.

A numerical split decides as LightGBM's ``Tree::NumericalDecision`` does: a NaN is taken as 0.0
unless the split's missing type is NaN; a value that is missing for the split (zero for missing
type Zero, NaN for missing type NaN) goes to the default child; otherwise ``value <= threshold``
goes left. Categorical splits and linear trees are not read (sluice's models use neither):
:class:`UnsupportedModel` says so, and the caller keeps LightGBM's prediction.

Why: LightGBM's prediction for one batch of 20,000 flows over 3,150 trees took 1.3 s of CPU, the
largest part of a verdict's cost; this loop takes about 0.5 s for the same scores (BENCHMARKS.md).
It also has no per-call set-up, which is what a gateway's one-flow predictions pay for most.
"""

from __future__ import annotations

__all__ = ["Forest", "UnsupportedModel"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from sluice.detect.modeldir import text_fields

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]

_DEFAULT_LEFT = 2
"""``decision_type`` bit: missing values go left."""
_CATEGORICAL = 1
"""``decision_type`` bit: a categorical split."""
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
"""Missing types, ``(decision_type >> 2) & 3``."""
_ZERO = 1e-35
"""LightGBM's ``kZeroThreshold``: a value within it of 0 is zero for missing type Zero."""


class UnsupportedModel(ValueError):
    """The model uses something :class:`Forest` does not evaluate (categorical or linear trees)."""


@dataclass(frozen=True, slots=True)
class Forest:
    """Every tree of a model, flattened.

    Attributes:
        feature: split feature of each node.
        threshold: split threshold of each node.
        missing: missing type of each node (:data:`MISSING_NONE`, ``_ZERO`` or ``_NAN``).
        default_left: 1 when a node's missing values go left.
        left: left child of each node (a global node index, or ``~leaf``).
        right: right child of each node, same encoding.
        leaf_value: value of each leaf.
        root: each tree's root (a node index, or ``~leaf`` for a one-leaf tree).
        n_classes: scores per row (trees per boosting iteration).
    """

    feature: I32
    threshold: F64
    missing: I8
    default_left: I8
    left: I32
    right: I32
    leaf_value: F64
    root: I32
    n_classes: int

    @classmethod
    def from_text(cls, text: str) -> Forest:
        """The forest of a LightGBM text model.

        Raises:
            UnsupportedModel: categorical splits or linear trees.
            ValueError: the text is not a LightGBM model.
        """
        first = text.find("\nTree=")
        end = text.find("\nend of trees")
        if not text.startswith("tree\n") or first < 0 or end < first:
            raise ValueError("not a LightGBM text model")
        header = text_fields(text[5:first])
        n_classes = int(header.get("num_tree_per_iteration", "1"))
        feature: list[npt.NDArray[np.int64]] = []
        threshold: list[F64] = []
        kinds: list[npt.NDArray[np.int64]] = []
        left: list[npt.NDArray[np.int64]] = []
        right: list[npt.NDArray[np.int64]] = []
        leaves: list[F64] = []
        root: list[int] = []
        nodes = leaf_count = 0
        for block in text[first + 1 : end + 1].split("\nTree="):
            f = text_fields(block.partition("\n")[2])
            if f.get("is_linear", "0") != "0":
                raise UnsupportedModel("linear trees are not evaluated by sluice's forest")
            if int(f.get("num_cat", "0")):
                raise UnsupportedModel("categorical splits are not evaluated by sluice's forest")
            n_leaves = int(f["num_leaves"])
            values = np.array(f["leaf_value"].split(" "), dtype=np.float64)
            if n_leaves == 1:
                root.append(~leaf_count)
            else:
                kind = np.array(f["decision_type"].split(" "), dtype=np.int64)
                if np.any(kind & _CATEGORICAL):
                    raise UnsupportedModel("categorical splits are not evaluated by sluice's forest")
                lc = np.array(f["left_child"].split(" "), dtype=np.int64)
                rc = np.array(f["right_child"].split(" "), dtype=np.int64)
                left.append(_offset(lc, nodes, leaf_count))
                right.append(_offset(rc, nodes, leaf_count))
                feature.append(np.array(f["split_feature"].split(" "), dtype=np.int64))
                threshold.append(np.array(f["threshold"].split(" "), dtype=np.float64))
                kinds.append(kind)
                root.append(nodes)
                nodes += n_leaves - 1
            leaves.append(values)
            leaf_count += n_leaves
        kind_all = _ints(kinds)
        return cls(
            feature=_ints(feature).astype(np.int32),
            threshold=_floats(threshold),
            missing=((kind_all >> 2) & 3).astype(np.int8),
            default_left=((kind_all & _DEFAULT_LEFT) != 0).astype(np.int8),
            left=_ints(left).astype(np.int32),
            right=_ints(right).astype(np.int32),
            leaf_value=_floats(leaves),
            root=np.array(root, dtype=np.int32),
            n_classes=n_classes,
        )

    @property
    def n_trees(self) -> int:
        """Trees in the model."""
        return len(self.root)

    def raw_scores(self, X: F64) -> F64:
        """Each row's raw score per class, shape ``(n_rows, n_classes)`` (LightGBM's ``raw_score``)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or (len(X) and X.shape[1] <= int(self.feature.max(initial=-1))):
            raise ValueError(f"X has shape {X.shape}; the forest reads feature {int(self.feature.max())}")
        return _raw_scores(
            X,
            self.feature,
            self.threshold,
            self.missing,
            self.default_left,
            self.left,
            self.right,
            self.leaf_value,
            self.root,
            self.n_classes,
        )

    def predict_proba(self, X: F64) -> F64:
        """Class probabilities (softmax of the raw scores, as LightGBM's multiclass objective)."""
        raw = self.raw_scores(X)
        if self.n_classes == 1:
            return np.asarray(1.0 / (1.0 + np.exp(-raw)), dtype=np.float64)
        top = raw.max(axis=1, keepdims=True)
        e = np.exp(raw - top)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def _offset(children: npt.NDArray[np.int64], nodes: int, leaves: int) -> npt.NDArray[np.int64]:
    """A tree's children as global indices: nodes shifted by ``nodes``, leaves ``~l`` by ``leaves``."""
    return np.where(children >= 0, children + nodes, ~(~children + leaves))


def _ints(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _floats(parts: list[F64]) -> F64:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


@njit(cache=True, nogil=True)
def _raw_scores(
    X: F64,
    feature: I32,
    threshold: F64,
    missing: I8,
    default_left: I8,
    left: I32,
    right: I32,
    leaf_value: F64,
    root: I32,
    n_classes: int,
) -> F64:  # pragma: no cover - compiled; checked against LightGBM by the tests
    n = X.shape[0]
    out = np.zeros((n, n_classes))
    for r in range(n):
        x = X[r]
        for t in range(root.shape[0]):
            i = root[t]
            while i >= 0:
                v = x[feature[i]]
                m = missing[i]
                if np.isnan(v) and m != MISSING_NAN:
                    v = 0.0
                if (m == MISSING_ZERO and -_ZERO <= v <= _ZERO) or (m == MISSING_NAN and np.isnan(v)):
                    i = left[i] if default_left[i] else right[i]
                elif v <= threshold[i]:
                    i = left[i]
                else:
                    i = right[i]
            out[r, t % n_classes] += leaf_value[~i]
    return out
