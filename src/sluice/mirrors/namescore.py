"""The name trait's score: features of an index hit, and a logistic model fitted on register families.

Theory of operation
-------------------
:class:`~sluice.mirrors.index.NameIndex` says *how* an observed name resembles a blocked one
(same stem, stem inside it, abbreviation, typo).  :class:`NameModel` turns a hit into a
probability that the name is one of the blocked site's mirrors, from the features in
:data:`FEATURES`.  ``fit`` learns, from mirror families of the register's own dumps
(:mod:`sluice.mirrors.families`) and from names that must not come out (popular names):

* ``words_``: residues that mirror names add around the brand in at least
  ``min_word_families`` families (``bk``, ``2018``-less ``baltplay``'s ``access``...), added to
  the filler vocabulary;
* ``suffix_logodds_``: how much likelier a public suffix is among mirrors than among popular
  names (``win``, ``top``, ``xyz`` rotate; ``com`` does not say much);
* ``coef_``/``intercept_``: L2-regularised logistic regression (Newton steps) on the features.

A model is a JSON document (no pickle); :func:`default_model` loads the one shipped with sluice.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sluice.errors import ConfigError
from sluice.mirrors.brand import brand_stem, words_regex
from sluice.mirrors.index import HOW, HitTable, NameHit, NameIndex
from sluice.mirrors.stems import core, name_parts, segment, vocabulary

__all__ = ["FEATURES", "FORMAT_VERSION", "NameModel", "default_model"]

FORMAT_VERSION = 1
"""Version of the JSON model document."""
FEATURES = (
    "same_stem",
    "substring",
    "abbreviation",
    "typo",
    "coverage",
    "residue_explained",
    "residue_learned",
    "in_registrable",
    "stem_len",
    "suffix_logodds",
    "counter",
    "distance",
    "depth",
    "counter_shape",
)
"""Feature names, in column order."""
_DEFAULT_FILE = "name_model.json"


class NameModel:
    """Probability that an index hit is a mirror (scikit-learn style estimator).

    Args:
        l2: L2 penalty on the coefficients.
        max_iter: Newton steps at most.
        min_word_families: a residue becomes a filler word when this many training families use it.
    """

    def __init__(self, *, l2: float = 1.0, max_iter: int = 50, min_word_families: int = 2) -> None:
        self.l2 = l2
        self.max_iter = max_iter
        self.min_word_families = min_word_families

    def get_params(self) -> dict[str, object]:
        """The constructor arguments."""
        return {"l2": self.l2, "max_iter": self.max_iter, "min_word_families": self.min_word_families}

    # -- learning ---------------------------------------------------------------------------
    def fit(self, seeds: Sequence[str], members: Sequence[Sequence[str]], negatives: Sequence[str]) -> Self:
        """Learn filler words, suffix odds and weights.

        Args:
            seeds: one blocked name per family.
            members: each family's other names (same order as ``seeds``).
            negatives: names that must not come out (popular names, not the ones judged later).

        Returns:
            self.

        Raises:
            ConfigError: no families, or no negatives.
        """
        if not seeds or len(seeds) != len(members) or not negatives:
            raise ConfigError("mirrors.fit", "fit needs families (seeds with members) and negatives")
        self.words_ = self._learn_words(seeds, members)
        self.suffix_logodds_ = self._learn_suffixes(members, negatives)
        index = NameIndex(seeds, words=self.words_)
        fam_of = {brand_stem(s): i for i, s in enumerate(seeds)}
        observed = [m for ms in members for m in ms]
        fam = np.repeat(np.arange(len(members)), [len(ms) for ms in members])
        rows = index.query_table([*observed, *negatives])
        stem_fam = np.asarray([fam_of.get(s, -1) for s in rows.stems], np.int64)
        is_member = rows.obs < len(observed)
        hit_fam = np.where(is_member, fam[np.minimum(rows.obs, max(len(observed) - 1, 0))], -2)
        labels = (stem_fam[rows.stem] == hit_fam).astype(float)
        x = self.features(rows)
        y = labels
        self.coef_, self.intercept_ = _logistic(x, y, self.l2, self.max_iter)
        self.n_train_ = (int(y.sum()), int(len(y) - y.sum()))
        return self

    def _learn_words(self, seeds: Sequence[str], members: Sequence[Sequence[str]]) -> list[str]:
        base = vocabulary()
        used: Counter[str] = Counter()
        for seed, ms in zip(seeds, members, strict=True):
            stem = brand_stem(seed)
            if len(stem) < 4:
                continue
            fam: set[str] = set()
            for m in ms:
                c = core(name_parts(m).label)
                at = c.find(stem)
                if at < 0:
                    continue
                for part in (c[:at], c[at + len(stem) :]):
                    if part and segment(part, base) is None and 2 <= len(part) <= 12:
                        fam.add(part)
            used.update(fam)
        return sorted(w for w, n in used.items() if n >= self.min_word_families)

    @staticmethod
    def _learn_suffixes(members: Sequence[Sequence[str]], negatives: Sequence[str]) -> dict[str, float]:
        pos = Counter(name_parts(m).suffix for ms in members for m in ms)
        neg = Counter(name_parts(n).suffix for n in negatives)
        npos, nneg = sum(pos.values()) or 1, sum(neg.values()) or 1
        out = {}
        for s in set(pos) | set(neg):
            out[s] = math.log((pos[s] + 1) / (npos + 50)) - math.log((neg[s] + 1) / (nneg + 50))
        return out

    # -- scoring ----------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "coef_"):
            raise ConfigError("mirrors.not_fitted", "the name model is not fitted (fit or load it first)")

    def features(self, hits: Sequence[NameHit] | HitTable) -> npt.NDArray[np.float64]:
        """Feature matrix, shape (n_hits, len(FEATURES))."""
        t = hits if isinstance(hits, HitTable) else HitTable.from_hits(hits)
        if not len(t):
            return np.zeros((0, len(FEATURES)))
        return np.column_stack(self._columns(t))

    def _columns(self, t: HitTable) -> list[npt.NDArray[np.float64]]:
        """The features of every hit, one array per feature (computed column by column)."""
        learned = sorted(getattr(self, "words_", ()))
        odds = getattr(self, "suffix_logodds_", {})
        how = t.how
        lab_len = np.maximum(np.asarray(pc.utf8_length(t.label), dtype=np.float64), 1.0)
        res_len = np.asarray(pc.utf8_length(t.residue), dtype=np.float64)
        learned_use = np.zeros(len(t), bool)
        with_res = np.flatnonzero(res_len > 0)
        if learned and len(with_res):
            res = t.residue.take(pa.array(with_res))
            alt = "|".join(re.escape(w) for w in learned)
            got = np.asarray(pc.match_substring_regex(res, alt), dtype=bool)
            got &= np.asarray(
                pc.match_substring_regex(res, words_regex([*learned, *vocabulary()])), dtype=bool
            )
            learned_use[with_res] = got
        # per observed name, then per hit
        keys = sorted(odds)
        suffix_at = np.asarray(
            pc.fill_null(pc.index_in(t.names.suffix, value_set=pa.array(keys, pa.large_string())), -1),
            dtype=np.int64,
        )
        odds_arr = np.append(np.clip([odds[k] for k in keys], -4.0, 4.0), 0.0)[suffix_at]
        counter = np.asarray(pc.match_substring_regex(t.names.label, r"^[0-9]|[0-9]$"), dtype=bool)
        stem_len = np.asarray([min(len(s), 12) / 12.0 for s in t.stems])
        f = np.float64
        return [
            (how == HOW.index("stem")).astype(f),
            (how == HOW.index("substring")).astype(f),
            (how == HOW.index("abbreviation")).astype(f),
            (how == HOW.index("typo")).astype(f),
            1.0 - res_len / lab_len,
            t.residue_explained.astype(f),
            ((res_len > 0) & learned_use).astype(f),
            t.in_registrable.astype(f),
            stem_len[t.stem] if len(stem_len) else np.zeros(len(t)),
            odds_arr[t.obs],
            counter[t.obs].astype(f),
            t.distance.astype(f),
            np.minimum(t.names.n_sub[t.obs], 3) / 3.0,
            (how == HOW.index("counter")).astype(f),
        ]

    def score_hits(self, hits: Sequence[NameHit] | HitTable) -> npt.NDArray[np.float64]:
        """Probability per hit (shape (n_hits,))."""
        self._check()
        if not len(hits):
            return np.zeros(0)
        t = hits if isinstance(hits, HitTable) else HitTable.from_hits(hits)
        z = np.full(len(t), self.intercept_)
        for c, col in zip(self.coef_.tolist(), self._columns(t), strict=True):
            z += c * col
        p: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
        return p

    def index(self, names: Iterable[str]) -> NameIndex:
        """A :class:`NameIndex` over ``names`` with this model's filler words."""
        return NameIndex(names, words=getattr(self, "words_", ()))

    # -- files ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        """The fitted model as a JSON-ready document."""
        self._check()
        return {
            "format": FORMAT_VERSION,
            "class": "NameModel",
            "params": self.get_params(),
            "features": list(FEATURES),
            "coef": [round(float(c), 6) for c in self.coef_],
            "intercept": round(float(self.intercept_), 6),
            "words": list(self.words_),
            "suffix_logodds": {k: round(v, 4) for k, v in sorted(self.suffix_logodds_.items())},
            "n_train": list(self.n_train_),
        }

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        Path(path).write_text(
            json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> NameModel:
        """Load a model document; refuses another format version or feature list.

        Raises:
            ConfigError: ``mirrors.bad_model``.
        """
        try:
            if doc.get("format") != FORMAT_VERSION or doc.get("class") != "NameModel":
                raise ConfigError("mirrors.bad_model", "not a NameModel document of format 1")
            if list(doc["features"]) != list(FEATURES):  # type: ignore[call-overload]
                raise ConfigError("mirrors.bad_model", "feature list differs from this sluice version")
            params = dict(doc["params"])  # type: ignore[call-overload]
            m = cls(
                l2=float(params["l2"]),
                max_iter=int(params["max_iter"]),
                min_word_families=int(params["min_word_families"]),
            )
            m.coef_ = np.asarray([float(c) for c in doc["coef"]])  # type: ignore[attr-defined]
            m.intercept_ = float(doc["intercept"])  # type: ignore[arg-type]
            m.words_ = [str(w) for w in doc["words"]]  # type: ignore[attr-defined]
            m.suffix_logodds_ = {str(k): float(v) for k, v in dict(doc["suffix_logodds"]).items()}  # type: ignore[call-overload]
            n = list(doc["n_train"])  # type: ignore[call-overload]
            m.n_train_ = (int(n[0]), int(n[1]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError("mirrors.bad_model", f"bad model document: {exc}") from exc
        if m.coef_.shape != (len(FEATURES),):
            raise ConfigError("mirrors.bad_model", "coefficient count differs from the feature count")
        return m

    @classmethod
    def load(cls, path: str | Path) -> NameModel:
        """Read a model file written by :meth:`save`.

        Raises:
            ConfigError: ``mirrors.bad_model`` (unreadable or invalid).
        """
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError("mirrors.bad_model", f"{path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError("mirrors.bad_model", f"{path}: not a JSON object")
        return cls.from_json(doc)


def default_model() -> NameModel:
    """The model shipped with sluice (fitted on the register's families by ``bench/eval_mirrors.py``)."""
    text = resources.files("sluice.mirrors").joinpath(_DEFAULT_FILE).read_text(encoding="utf-8")
    return NameModel.from_json(json.loads(text))


def _logistic(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], l2: float, max_iter: int
) -> tuple[npt.NDArray[np.float64], float]:
    """L2-regularised logistic regression by Newton's method; returns (coef, intercept)."""
    n, d = x.shape
    xa = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    pen = np.full(d + 1, l2)
    pen[-1] = 1e-6
    # balance the classes: each has the same total weight
    npos = max(float(y.sum()), 1.0)
    nneg = max(float(n - y.sum()), 1.0)
    sw = np.where(y > 0.5, n / (2 * npos), n / (2 * nneg))
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(xa @ w)))
        g = xa.T @ (sw * (p - y)) + pen * w
        h = (xa * (sw * p * (1 - p))[:, None]).T @ xa + np.diag(pen)
        step = np.linalg.solve(h, g)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w[:-1], float(w[-1])
