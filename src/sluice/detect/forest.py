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

Evidence by path attribution (Saabas): every node also has an expected value, the mean of its
leaves' values weighted by the training rows that reached them (``leaf_count``,
``internal_count``) - the "cover" expectation TreeSHAP uses, so a class's bias (the sum of its
trees' root expectations, :meth:`Forest.expected_values`) is TreeSHAP's bias. Walking a row down
a tree, each split changes the expected value from the node's to the child's; that change is
credited to the split's feature. Over a tree the changes add up to ``leaf - E(root)``, so a row's
attributions plus the bias are its raw score exactly. :meth:`Forest.path_contributions` does this
for ``log P(class k) / P(benign)``: class ``k``'s trees add, benign's subtract.

Why: it walks one path per tree, as the prediction does (the same decision, :func:`_goes_left`),
where TreeSHAP carries every subset of the path's features down the tree. For the bench capture's
3,000 findings LightGBM's TreeSHAP (of the two classes' trees only) took 1.44 s of CPU (0.72 s wall
on two threads), more than predicting all 20,000 flows; path attribution takes 0.025 s. What it
gives up: it is not Shapley-consistent - a feature split near the root takes credit that TreeSHAP
shares with the features split below it, so two features of nearly equal weight can swap ranks (the
bench's top feature was TreeSHAP's for 83 % of findings: 98-100 % of stunnel and socks flows, 31 %
of trojan flows, whose two leading features carry similar shares). The sum is exact, and a feature
that dominates ranks first in both.
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
        node_value: expected value of each node (its leaves' values weighted by training rows).
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
    node_value: F64
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
        leaf_counts: list[F64] = []
        node_counts: list[F64] = []
        root: list[int] = []
        nodes = n_leaf = 0
        for block in text[first + 1 : end + 1].split("\nTree="):
            f = text_fields(block.partition("\n")[2])
            if f.get("is_linear", "0") != "0":
                raise UnsupportedModel("linear trees are not evaluated by sluice's forest")
            if int(f.get("num_cat", "0")):
                raise UnsupportedModel("categorical splits are not evaluated by sluice's forest")
            n_leaves = int(f["num_leaves"])
            values = np.array(f["leaf_value"].split(" "), dtype=np.float64)
            if n_leaves == 1:
                root.append(~n_leaf)
            else:
                kind = np.array(f["decision_type"].split(" "), dtype=np.int64)
                if np.any(kind & _CATEGORICAL):
                    raise UnsupportedModel("categorical splits are not evaluated by sluice's forest")
                lc = np.array(f["left_child"].split(" "), dtype=np.int64)
                rc = np.array(f["right_child"].split(" "), dtype=np.int64)
                left.append(_offset(lc, nodes, n_leaf))
                right.append(_offset(rc, nodes, n_leaf))
                feature.append(np.array(f["split_feature"].split(" "), dtype=np.int64))
                threshold.append(np.array(f["threshold"].split(" "), dtype=np.float64))
                kinds.append(kind)
                node_counts.append(_counts(f, "internal_count", n_leaves - 1))
                root.append(nodes)
                nodes += n_leaves - 1
            leaves.append(values)
            leaf_counts.append(_counts(f, "leaf_count", n_leaves))
            n_leaf += n_leaves
        kind_all = _ints(kinds)
        lefts, rights = _ints(left).astype(np.int32), _ints(right).astype(np.int32)
        leaf_value = _floats(leaves)
        return cls(
            feature=_ints(feature).astype(np.int32),
            threshold=_floats(threshold),
            missing=((kind_all >> 2) & 3).astype(np.int8),
            default_left=((kind_all & _DEFAULT_LEFT) != 0).astype(np.int8),
            left=lefts,
            right=rights,
            leaf_value=leaf_value,
            node_value=_node_values(lefts, rights, leaf_value, _floats(node_counts), _floats(leaf_counts)),
            root=np.array(root, dtype=np.int32),
            n_classes=n_classes,
        )

    @property
    def n_trees(self) -> int:
        """Trees in the model."""
        return len(self.root)

    def _walk(self) -> tuple[I32, F64, I8, I8, I32, I32, F64]:
        """What a compiled loop needs to walk the trees, in its arguments' order."""
        return (
            self.feature,
            self.threshold,
            self.missing,
            self.default_left,
            self.left,
            self.right,
            self.leaf_value,
        )

    def _rows(self, X: F64) -> F64:
        """``X`` as C-ordered doubles, checked to hold every feature the trees split on."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or (len(X) and X.shape[1] <= int(self.feature.max(initial=-1))):
            raise ValueError(f"X has shape {X.shape}; the forest reads feature {int(self.feature.max())}")
        return X

    def raw_scores(self, X: F64) -> F64:
        """Each row's raw score per class, shape ``(n_rows, n_classes)`` (LightGBM's ``raw_score``)."""
        return _raw_scores(self._rows(X), *self._walk(), self.root, self.n_classes)

    def expected_values(self) -> F64:
        """Each class's bias, shape ``(n_classes,)``: the sum of its trees' root expectations
        (TreeSHAP's expected value, the last column of LightGBM's ``pred_contrib``)."""
        split = self.root >= 0
        value = np.empty(self.n_trees)
        value[split] = self.node_value[self.root[split]]
        value[~split] = self.leaf_value[~self.root[~split]]  # a one-leaf tree's root is its leaf
        bias = np.bincount(np.arange(self.n_trees) % self.n_classes, weights=value, minlength=self.n_classes)
        return np.asarray(bias, dtype=np.float64)

    def path_contributions(self, X: F64, k: int) -> F64:
        """Path attributions (Saabas) of ``log P(class k) / P(benign)``, shape ``(n_rows, n_features)``.

        Each row's sum plus ``expected_values()[k] - expected_values()[0]`` is its raw score of
        class ``k`` minus that of class 0. A binary model (one score: LightGBM's log-odds of class
        1 over class 0) takes ``k = 1`` and explains its one score, bias ``expected_values()[0]``.

        Raises:
            ValueError: ``k`` is not a finding class (0 is benign), or ``X`` lacks features.
        """
        n_pair = max(self.n_classes, 2)
        if not 0 < k < n_pair:
            raise ValueError(f"class index {k} is not a finding class")
        tree_class = np.arange(self.n_trees) % self.n_classes
        if self.n_classes == 1:
            sign = np.ones(self.n_trees)
        else:
            sign = np.where(tree_class == k, 1.0, np.where(tree_class == 0, -1.0, 0.0))
        trees = np.flatnonzero(sign)
        return _path_contributions(
            self._rows(X), *self._walk(), self.node_value, self.root[trees], sign[trees]
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


def _counts(fields: dict[str, str], key: str, n: int) -> F64:
    """A tree's ``leaf_count`` or ``internal_count``; zeros when the text lacks it (then
    :func:`_node_values` takes plain means)."""
    text = fields.get(key)
    counts = np.array(text.split(" "), dtype=np.float64) if text else np.zeros(n)
    if len(counts) != n:
        raise ValueError(f"{key} has {len(counts)} values for {n}")
    return counts


def _ints(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _floats(parts: list[F64]) -> F64:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


@njit(cache=True, nogil=True, inline="always")
def _goes_left(
    v: float, threshold: float, missing: int, default_left: int
) -> bool:  # pragma: no cover - compiled; checked against LightGBM by the tests
    """Whether value ``v`` goes left at a split: LightGBM's ``Tree::NumericalDecision``. On scalars,
    inlined into each loop: a helper taking the node arrays made the prediction twice as slow."""
    if np.isnan(v) and missing != MISSING_NAN:
        v = 0.0
    if (missing == MISSING_ZERO and -_ZERO <= v <= _ZERO) or (missing == MISSING_NAN and np.isnan(v)):
        return default_left != 0
    return v <= threshold


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
                i = (
                    left[i]
                    if _goes_left(x[feature[i]], threshold[i], missing[i], default_left[i])
                    else right[i]
                )
            out[r, t % n_classes] += leaf_value[~i]
    return out


@njit(cache=True, nogil=True)
def _path_contributions(
    X: F64,
    feature: I32,
    threshold: F64,
    missing: I8,
    default_left: I8,
    left: I32,
    right: I32,
    leaf_value: F64,
    node_value: F64,
    root: I32,
    sign: F64,
) -> F64:  # pragma: no cover - compiled; checked against TreeSHAP by the tests
    """Per row and feature, the sum over the trees ``root`` of ``sign * (E(child) - E(node))``
    along the row's path: the change of expected value each split makes, credited to its feature."""
    n = X.shape[0]
    out = np.zeros((n, X.shape[1]))
    for r in range(n):
        x = X[r]
        for t in range(root.shape[0]):
            i = root[t]
            if i < 0:
                continue  # a one-leaf tree: all bias, no split to credit
            e = node_value[i]
            while i >= 0:
                c = (
                    left[i]
                    if _goes_left(x[feature[i]], threshold[i], missing[i], default_left[i])
                    else right[i]
                )
                ec = node_value[c] if c >= 0 else leaf_value[~c]
                out[r, feature[i]] += sign[t] * (ec - e)
                i, e = c, ec
    return out


@njit(cache=True, nogil=True)
def _node_values(
    left: I32, right: I32, leaf_value: F64, node_count: F64, leaf_count: F64
) -> F64:  # pragma: no cover - compiled; checked against TreeSHAP's bias by the tests
    """Each node's expected value: its children's, weighted by their training rows (their plain
    mean when both counts are 0). Passes from the last node to the first until every node's
    children are done - one pass when children follow their parent, as LightGBM writes them; a
    pass that finishes nothing means the children form a cycle."""
    n = left.shape[0]
    value = np.zeros(n)
    done = np.zeros(n, dtype=np.bool_)
    todo = n
    while todo:
        before = todo
        for i in range(n - 1, -1, -1):
            a, b = left[i], right[i]
            if done[i] or (a >= 0 and not done[a]) or (b >= 0 and not done[b]):
                continue
            ea, ca = (value[a], node_count[a]) if a >= 0 else (leaf_value[~a], leaf_count[~a])
            eb, cb = (value[b], node_count[b]) if b >= 0 else (leaf_value[~b], leaf_count[~b])
            value[i] = (ca * ea + cb * eb) / (ca + cb) if ca + cb > 0 else 0.5 * (ea + eb)
            done[i] = True
            todo -= 1
        if todo == before:
            raise ValueError("the trees' children form a cycle")
    return value
