"""The name index: which register names an observed name looks like, without pairwise comparison.

Theory of operation
-------------------
Every register name gives a *brand stem* (:func:`~sluice.mirrors.brand.brand_stem`): the core of
its registrable label (folded, counters and hyphens gone) with filler words stripped from both
ends (``10-fonbet-zerkalo.ru`` -> ``fonbet``).  Stems shorter than ``min_stem`` letters are not
indexed (``bet`` would match half the Internet).  The index holds

* an Aho-Corasick automaton of the stems: one pass finds every stem inside an observed label's
  core (``1xstavka-fonbet11`` contains ``fonbet``) -- the *substring* hits;
* an automaton of the stems' abbreviations of three or more letters (``mbet`` for
  ``marathonbet``) and a table of the two-letter ones (``bb`` for ``baltbet``, matched only as a
  prefix followed by filler words: ``bbsport``) -- the *abbreviation* hits;
* a sorted array of 64-bit hashes of each stem and of each of its one-letter deletions
  (symmetric-deletion search): an observed stem whose hash, or one of whose deletions' hashes,
  is there is within edit distance 2 of a register stem, checked exactly afterwards -- the
  *typo* hits (``fonbte``, ``fnbet``, ``fonbbet``);
* a table of *counter shapes*: a register label with a counter in it (``1x-1``, ``bet1-7``,
  ``pm-001``) stands for the series its operator rotates through (``1x-2``, ``bet1-8``...); its
  shape is the label with every digit run written ``#`` (``1x-#``,
  :func:`~sluice.mirrors.brand.counter_shape`).  An observed registrable
  label of the same shape is a *counter* hit.  Only shapes with at least three characters
  besides digits and hyphens are kept (``#-#`` or ``#x#`` would match every numbered name).

Queries are columnar (:meth:`NameIndex.query_table`): the observed names are split and cored in
bulk (:func:`~sluice.mirrors.columns.split_names`), every label core is written into one text
which each automaton scans once, and what follows (best hits per label, residues, whether filler
words explain them, typo verification) is array work -- numpy, Arrow's RE2 regular expressions
and compiled kernels -- with no Python step per name or per hit.  :meth:`NameIndex.query`
returns the same hits as :class:`NameHit` records, for small inputs.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick  # type: ignore[import-not-found]
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sluice.mirrors._kernels import count_variants, deletion_hashes, osa_pairs
from sluice.mirrors.brand import shape_column, strip_fillers_column, words_regex
from sluice.mirrors.columns import NameColumns, arrow_strings, slices, split_names, string_buffers
from sluice.mirrors.stems import abbreviations, vocabulary

__all__ = [
    "HOW",
    "MIN_STEM",
    "HitTable",
    "NameHit",
    "NameIndex",
]

MIN_STEM = 4
"""Shortest stem indexed (letters)."""
MAX_HITS_PER_LABEL = 4
"""Substring hits kept per observed label (the longest stems)."""
TYPO_MIN_LEN = 5
"""Shortest stem searched for with one deletion (shorter ones only by exact equality)."""
HOW = ("stem", "substring", "abbreviation", "typo", "counter")
"""Hit kinds, by code (:attr:`HitTable.how`)."""
_SUB, _ABBR, _TYPO, _COUNTER = 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class NameHit:
    """An observed name that resembles a register stem."""

    observed: str
    """The observed name."""
    stem: str
    """The register stem it resembles."""
    how: str
    """``stem`` (same stem), ``substring``, ``abbreviation``, ``typo`` or ``counter``."""
    label: str
    """The core of the observed label that matched (the counter shape for ``counter``)."""
    residue: str
    """Letters of that core outside the match ("" for ``stem``, ``typo`` and ``counter``)."""
    distance: int = 0
    """Edit distance of a ``typo`` hit (0 otherwise)."""
    in_registrable: bool = True
    """True when the match is in the registrable label (not in a subdomain)."""
    residue_explained: bool = True
    """True when the residue is made of filler words only."""


@dataclass(frozen=True, slots=True)
class HitTable:
    """Hits as columns (one row per hit), for scoring without a Python object per hit."""

    names: NameColumns
    """The observed names, split."""
    stems: Sequence[str]
    """The index's stems (``stem`` codes index it)."""
    obs: npt.NDArray[np.int64]
    """Observed name per hit (index into ``names.names``)."""
    stem: npt.NDArray[np.int64]
    """Stem code per hit."""
    how: npt.NDArray[np.int8]
    """Hit kind code per hit (:data:`HOW`)."""
    label: pa.Array
    """Matched core per hit."""
    residue: pa.Array
    """Residue per hit."""
    distance: npt.NDArray[np.int64]
    """Edit distance per hit."""
    in_registrable: npt.NDArray[np.bool_]
    """Match in the registrable label."""
    residue_explained: npt.NDArray[np.bool_]
    """Residue made of filler words."""
    order: npt.NDArray[np.int64] | None = None
    """Row order of :meth:`hits`: by observed name, label, kind (None: as stored)."""

    def __len__(self) -> int:
        return len(self.obs)

    @property
    def observed(self) -> list[str]:
        """Observed name per hit."""
        names = self.names.names
        return [names[i] for i in self.obs.tolist()]

    @property
    def stem_names(self) -> list[str]:
        """Stem per hit."""
        return [self.stems[i] for i in self.stem.tolist()]

    def hits(self) -> list[NameHit]:
        """The hits as records, in the order of the observed names."""
        o = np.arange(len(self.obs)) if self.order is None else self.order
        names, stems, take = self.names.names, self.stems, pa.array(o)
        return [
            NameHit(names[ob], stems[s], HOW[h], lab, res, d, r, e)
            for ob, s, h, lab, res, d, r, e in zip(
                self.obs[o].tolist(),
                self.stem[o].tolist(),
                self.how[o].tolist(),
                self.label.take(take).to_pylist(),
                self.residue.take(take).to_pylist(),
                self.distance[o].tolist(),
                self.in_registrable[o].tolist(),
                self.residue_explained[o].tolist(),
                strict=True,
            )
        ]

    @classmethod
    def from_hits(cls, hits: Sequence[NameHit]) -> HitTable:
        """Columns of hit records (the observed names are split again)."""
        names = list(dict.fromkeys(h.observed for h in hits))
        at = {n: i for i, n in enumerate(names)}
        stems = list(dict.fromkeys(h.stem for h in hits))
        sid = {s: i for i, s in enumerate(stems)}
        return cls(
            split_names(names),
            stems,
            np.asarray([at[h.observed] for h in hits], np.int64),
            np.asarray([sid[h.stem] for h in hits], np.int64),
            np.asarray([HOW.index(h.how) for h in hits], np.int8),
            arrow_strings([h.label for h in hits]),
            arrow_strings([h.residue for h in hits]),
            np.asarray([h.distance for h in hits], np.int64),
            np.asarray([h.in_registrable for h in hits], bool),
            np.asarray([h.residue_explained for h in hits], bool),
        )


@dataclass(slots=True)
class _Part:
    """Hits of one kind, before they are put together."""

    obs_label: npt.NDArray[np.int64]
    stem: npt.NDArray[np.int64]
    how: npt.NDArray[np.int8]
    key: npt.NDArray[np.int64]
    label: pa.Array
    residue: pa.Array
    distance: npt.NDArray[np.int64]
    explained: npt.NDArray[np.bool_]


class NameIndex:
    """Register names by brand stem, searchable by substring, abbreviation, typo and counter shape.

    Args:
        names: the register's host names (or the seeds').
        words: extra filler words (learned by :class:`~sluice.mirrors.namescore.NameModel`).
        min_stem: shortest stem indexed.
    """

    def __init__(self, names: Iterable[str], *, words: Iterable[str] = (), min_stem: int = MIN_STEM) -> None:
        self.words = vocabulary(words)
        self.min_stem = min_stem
        self._words_re = words_regex(self.words)
        names = list(names)
        cols = split_names(names)
        reg = np.flatnonzero(cols.registrable)
        buf = np.frombuffer(cols.text.encode("ascii"), np.uint8) if cols.text else np.zeros(1, np.uint8)
        stem_col = strip_fillers_column(slices(buf, cols.start[reg], cols.start[reg] + cols.length[reg]))
        keep = np.asarray(pc.greater_equal(pc.utf8_length(stem_col), min_stem), dtype=bool)
        enc = pc.dictionary_encode(stem_col.filter(pa.array(keep)))
        uniq = enc.dictionary.to_pylist()
        order = sorted(range(len(uniq)), key=uniq.__getitem__)
        self.stems: list[str] = [uniq[i] for i in order]
        remap = np.empty(len(uniq), np.int64)
        remap[np.asarray(order, np.int64)] = np.arange(len(uniq))
        self._stem_of = remap[np.asarray(enc.indices, np.int64)] if len(uniq) else np.zeros(0, np.int64)
        self._stem_owner = cols.owner[reg][keep]
        self._names = names
        self._build_shapes(cols, cols.owner[reg], stem_col, keep)
        self._stem_len = np.asarray([len(s) for s in self.all_stems], np.int64)
        self._auto = ahocorasick.Automaton()
        for i, s in enumerate(self.stems):
            self._auto.add_word(s, i)
        if self.stems:
            self._auto.make_automaton()
        self._build_abbreviations()
        self._hashes, self._owners = _deletion_table(self.stems)

    def _build_abbreviations(self) -> None:
        # only stems with a tail made of words can have abbreviations: find them with one regex pass
        sbuf, soffs = self._stem_buf
        n_tail = np.maximum(self._stem_len[: len(self.stems)] - 4, 0)  # k = 3 .. len - 2
        owner = np.repeat(np.arange(len(self.stems)), n_tail)
        start = soffs[owner] + 3 + _within(owner)
        ok = self._explained(slices(sbuf, start, soffs[owner + 1]))
        heads: dict[int, list[int]] = {}
        for i, k in zip(owner[ok].tolist(), (start - soffs[owner])[ok].tolist(), strict=True):
            heads.setdefault(i, []).append(k)
        abbr3: dict[str, list[int]] = {}
        abbr2: dict[str, list[int]] = {}
        for i, ks in heads.items():
            for a in abbreviations(self.stems[i], self.words, ks):
                (abbr3 if len(a) >= 3 else abbr2).setdefault(a, []).append(i)
        self._abbr = ahocorasick.Automaton()
        self._abbr_len = np.asarray([len(a) for a in abbr3], np.int64)
        self._abbr_ptr, self._abbr_ids = _csr(list(abbr3.values()))
        for k, a in enumerate(abbr3):
            self._abbr.add_word(a, k)
        if abbr3:
            self._abbr.make_automaton()
        self._abbr2_code = np.full(1 << 16, -1, np.int64)
        for k, a in enumerate(abbr2):
            self._abbr2_code[(ord(a[0]) << 8) | ord(a[1])] = k
        self._abbr2_ptr, self._abbr2_ids = _csr(list(abbr2.values()))

    def _build_shapes(
        self,
        cols: NameColumns,
        owners: npt.NDArray[np.int64],
        stems: pa.Array,
        indexed: npt.NDArray[np.bool_],
    ) -> None:
        """Counter shapes of the registrable labels; each stands for its name's brand stem (a
        stem too short to index gets a code after the indexed ones: ``all_stems``)."""
        shape = shape_column(cols.label.take(pa.array(owners)))
        ok = np.asarray(pc.is_valid(shape), dtype=bool) & np.asarray(
            pc.greater(pc.utf8_length(stems), 0), dtype=bool
        )
        rows = pa.array(np.flatnonzero(ok))
        enc = pc.dictionary_encode(shape.take(rows))
        shape_code = np.asarray(enc.indices, np.int64)
        st = stems.take(rows)
        sid = np.asarray(pc.fill_null(pc.index_in(st, value_set=arrow_strings(self.stems)), -1), np.int64)
        short_enc = pc.dictionary_encode(st.filter(pa.array(sid < 0)))
        sid[sid < 0] = len(self.stems) + np.asarray(short_enc.indices, np.int64)
        self.all_stems: list[str] = [*self.stems, *short_enc.dictionary.to_pylist()]
        """Indexed stems, then the short stems only counter shapes stand for."""
        m = len(self.all_stems) + 1
        pair = np.unique(shape_code * m + sid)
        code, sid = pair // m, pair % m
        self._shape_keys = arrow_strings(enc.dictionary)
        self._shape_ptr = np.zeros(len(self._shape_keys) + 1, np.int64)
        np.cumsum(np.bincount(code, minlength=len(self._shape_keys)), out=self._shape_ptr[1:])
        self._shape_ids = sid

    def __len__(self) -> int:
        return len(self.stems)

    def names_of(self, stem: str) -> list[str]:
        """The indexed names whose brand stem is ``stem``."""
        try:
            sid = self.stems.index(stem) if len(self.stems) < 64 else _bisect(self.stems, stem)
        except ValueError:
            return []
        return [self._names[i] for i in self._stem_owner[self._stem_of == sid].tolist()]

    def query(self, observed: Sequence[str]) -> list[NameHit]:
        """Every resemblance of the observed names to indexed stems.

        Args:
            observed: host names (canonical or Unicode).

        Returns:
            Hits, in the order of ``observed``; a name may have several (one per stem).
        """
        return self.query_table(observed).hits()

    def query_table(self, observed: Sequence[str]) -> HitTable:
        """:meth:`query` as columns (see the module docstring)."""
        cols = split_names(observed)
        text = cols.text
        buf = np.frombuffer(text.encode("ascii"), np.uint8) if text else np.zeros(1, np.uint8)
        parts = [self._substring_hits(cols, text, buf), self._abbrev_hits(cols, text, buf)]
        matched = np.zeros(len(cols.owner), bool)
        matched[parts[0].obs_label] = True
        parts.append(self._typo_hits(cols, buf, matched))
        parts.append(self._counter_hits(cols))
        obs_label = np.concatenate([p.obs_label for p in parts])
        return HitTable(
            cols,
            self.all_stems,
            cols.owner[obs_label],
            np.concatenate([p.stem for p in parts]),
            np.concatenate([p.how for p in parts]),
            pa.concat_arrays([arrow_strings(p.label) for p in parts]),
            pa.concat_arrays([arrow_strings(p.residue) for p in parts]),
            np.concatenate([p.distance for p in parts]),
            cols.registrable[obs_label],
            np.concatenate([p.explained for p in parts]),
            np.lexsort((np.concatenate([p.key for p in parts]), obs_label, cols.owner[obs_label])),
        )

    def _explained(self, texts: pa.Array) -> npt.NDArray[np.bool_]:
        if not len(texts):
            return np.zeros(0, bool)
        return np.asarray(pc.match_substring_regex(texts, self._words_re), dtype=bool)

    def _substring_hits(self, cols: NameColumns, text: str, buf: npt.NDArray[np.uint8]) -> _Part:
        m = _scan(self._auto, text) if self.stems else np.zeros((0, 2), np.int64)
        end, sid = m[:, 0], m[:, 1]
        lab = np.searchsorted(cols.start, end, side="right") - 1
        # first occurrence of each stem in a label (matches come in text order: a stable sort
        # by label and stem keeps the first), then the longest stems first
        o = np.argsort(lab * (len(self.stems) + 1) + sid, kind="stable")
        end, sid, lab = end[o], sid[o], lab[o]
        first = np.ones(len(o), bool)
        first[1:] = (lab[1:] != lab[:-1]) | (sid[1:] != sid[:-1])
        end, sid, lab = end[first], sid[first], lab[first]
        slen = self._stem_len[sid]
        span = int(cols.length.max()) + 2 if len(cols.length) else 2
        rel = end - cols.start[lab]
        o = np.argsort((lab * 64 + (63 - np.minimum(slen, 63))) * span + rel)
        end, sid, lab, slen = end[o], sid[o], lab[o], slen[o]
        keep = _rank_in_group(lab) < MAX_HITS_PER_LABEL
        end, sid, lab, slen = end[keep], sid[keep], lab[keep], slen[keep]
        s0, e0 = cols.start[lab], cols.start[lab] + cols.length[lab]
        a, b = end - slen + 1, end + 1
        left, right = slices(buf, s0, a), slices(buf, b, e0)
        ok = self._explained(left) & self._explained(right)
        residue = slices(buf, s0, a, b, e0)
        has_res = (a > s0) | (e0 > b)
        return _Part(
            lab, sid, np.where(has_res, _SUB, 0).astype(np.int8), _key(0, np.arange(len(lab))),
            slices(buf, s0, e0), residue, np.zeros(len(lab), np.int64), ok,
        )  # fmt: skip

    def _abbrev_hits(self, cols: NameColumns, text: str, buf: npt.NDArray[np.uint8]) -> _Part:
        # three letters and more: automaton over the whole text
        m = _scan(self._abbr, text) if len(self._abbr_len) else np.zeros((0, 2), np.int64)
        end, aid = m[:, 0], m[:, 1]
        seq = np.arange(len(end))
        lab = np.searchsorted(cols.start, end, side="right") - 1
        alen = self._abbr_len[aid]
        s0, e0 = cols.start[lab], cols.start[lab] + cols.length[lab]
        a, b = end - alen + 1, end + 1
        ok = self._explained(slices(buf, s0, a)) & self._explained(slices(buf, b, e0))
        keep = (alen > 3) | ok
        lab, aid, a, b, s0, e0, ok, seq = (
            lab[keep],
            aid[keep],
            a[keep],
            b[keep],
            s0[keep],
            e0[keep],
            ok[keep],
            seq[keep],
        )
        # at most MAX_HITS_PER_LABEL per label: cut each match's stem list before expanding it
        cnt = self._abbr_ptr[aid + 1] - self._abbr_ptr[aid]
        before = _group_cumsum(lab, cnt) - cnt
        rep, sid = _expand(self._abbr_ptr, self._abbr_ids, aid, np.clip(MAX_HITS_PER_LABEL - before, 0, cnt))
        lab3, ok3, seq3 = lab[rep], ok[rep], seq[rep]
        s3, e3, a3, b3 = s0[rep], e0[rep], a[rep], b[rep]
        # two letters: a prefix followed by filler words only
        long = np.flatnonzero(cols.length > 2)
        st = cols.start[long]
        code = (buf[st].astype(np.int64) << 8) | buf[st + 1].astype(np.int64) if len(long) else st
        a2 = self._abbr2_code[code] if len(long) else np.zeros(0, np.int64)
        has = a2 >= 0
        long, a2 = long[has], a2[has]
        s2, e2 = cols.start[long], cols.start[long] + cols.length[long]
        ok2 = self._explained(slices(buf, s2 + 2, e2))
        long, a2, s2, e2 = long[ok2], a2[ok2], s2[ok2], e2[ok2]
        cnt2 = self._abbr2_ptr[a2 + 1] - self._abbr2_ptr[a2]
        rep2, sid2 = _expand(self._abbr2_ptr, self._abbr2_ids, a2, np.minimum(cnt2, MAX_HITS_PER_LABEL))
        lab2 = long[rep2]
        s2, e2 = s2[rep2], e2[rep2]
        allab = np.concatenate([lab3, lab2])
        order_key = np.concatenate([seq3 * 4096 + _within(rep), (1 << 50) + np.arange(len(lab2))])
        o = np.lexsort((order_key, allab))
        keep = _rank_in_group(allab[o]) < MAX_HITS_PER_LABEL
        o = o[keep]
        lo = np.concatenate([s3, s2])[o]
        ro = np.concatenate([e3, e2])[o]
        ra = np.concatenate([a3, s2])[o]
        rb = np.concatenate([b3, s2 + 2])[o]
        return _Part(
            allab[o], np.concatenate([sid, sid2])[o], np.full(len(o), _ABBR, np.int8),
            _key(1, np.arange(len(o))), slices(buf, lo, ro), slices(buf, lo, ra, rb, ro),
            np.zeros(len(o), np.int64), np.concatenate([ok3, np.ones(len(lab2), bool)])[o],
        )  # fmt: skip

    def _typo_hits(
        self, cols: NameColumns, buf: npt.NDArray[np.uint8], matched: npt.NDArray[np.bool_]
    ) -> _Part:
        want = np.flatnonzero(cols.registrable & ~matched & (cols.length >= 2))
        if not len(want) or not len(self._hashes):
            return _empty_part()
        texts = strip_fillers_column(slices(buf, cols.start[want], cols.start[want] + cols.length[want]))
        tbuf, toffs = string_buffers(texts)
        h, owner = _variant_hashes_buf(tbuf, toffs, TYPO_MIN_LEN)
        o = np.argsort(h)  # sorted needles: the searches walk the table in order
        h, owner = h[o], owner[o]
        lo = np.searchsorted(self._hashes, h, side="left")
        hi = np.searchsorted(self._hashes, h, side="right")
        cnt = hi - lo
        q = np.repeat(owner, cnt)
        p = np.repeat(lo, cnt) + _within(np.repeat(np.arange(len(cnt)), cnt))
        sid = self._owners[p]
        pair = np.unique(q * (len(self.stems) + 1) + sid)
        q, sid = pair // (len(self.stems) + 1), pair % (len(self.stems) + 1)
        tlen = toffs[q + 1] - toffs[q]
        keep = tlen >= self.min_stem
        q, sid, tlen = q[keep], sid[keep], tlen[keep]
        sbuf, soffs = self._stem_buffers()
        d = osa_pairs(tbuf, toffs[q], toffs[q + 1], sbuf, soffs[sid], soffs[sid + 1], 64)
        slen = self._stem_len[sid]
        keep = (d > 0) & (d <= np.where(slen < 8, 1, 2))
        q, sid, d = q[keep], sid[keep], d[keep]
        lab = texts.take(pa.array(q)) if len(q) else pa.array([], pa.large_string())
        return _Part(
            want[q], sid, np.full(len(q), _TYPO, np.int8), _key(2, np.arange(len(q))), lab,
            arrow_strings([""] * len(q)), d.astype(np.int64), np.ones(len(q), bool),
        )  # fmt: skip

    def _counter_hits(self, cols: NameColumns) -> _Part:
        if not len(self._shape_keys) or not len(cols.names):
            return _empty_part()
        shapes = shape_column(cols.label)
        at = np.asarray(pc.fill_null(pc.index_in(shapes, value_set=self._shape_keys), -1), dtype=np.int64)
        rows = np.flatnonzero(at >= 0)
        if not len(rows):
            return _empty_part()
        rep, sid = _expand(self._shape_ptr, self._shape_ids, at[rows])
        obs = rows[rep]
        reg = np.flatnonzero(cols.registrable)
        reg_of = np.full(len(cols.names), -1, np.int64)
        reg_of[cols.owner[reg]] = reg
        lab = reg_of[obs]
        shape_col = shapes.take(pa.array(obs))
        return _Part(
            lab, sid, np.full(len(obs), _COUNTER, np.int8), _key(3, np.arange(len(obs))),
            shape_col, arrow_strings([""] * len(obs)), np.zeros(len(obs), np.int64), np.ones(len(obs), bool),
        )  # fmt: skip

    @functools.cached_property
    def _stem_buf(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        return string_buffers(arrow_strings(self.stems))

    def _stem_buffers(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        return self._stem_buf


def _bisect(stems: list[str], stem: str) -> int:
    import bisect

    i = bisect.bisect_left(stems, stem)
    if i < len(stems) and stems[i] == stem:
        return i
    raise ValueError(stem)


def _empty_part() -> _Part:
    e = np.zeros(0, np.int64)
    s = pa.array([], pa.large_string())
    return _Part(e, e, np.zeros(0, np.int8), e, s, s, e, np.zeros(0, bool))


def _key(kind: int, seq: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (np.int64(kind) << 48) + seq.astype(np.int64)


def _scan(auto: ahocorasick.Automaton, text: str) -> npt.NDArray[np.int64]:
    """(end, value) of every match in ``text``, as an (n, 2) array."""
    flat = np.fromiter(itertools.chain.from_iterable(auto.iter(text)), dtype=np.int64)
    return flat.reshape(-1, 2)


def _rank_in_group(group: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Position of each element within its run of equal ``group`` values (input sorted by group)."""
    if not len(group):
        return np.zeros(0, np.int64)
    start = np.ones(len(group), bool)
    start[1:] = group[1:] != group[:-1]
    first = np.flatnonzero(start)
    return np.arange(len(group)) - np.repeat(first, np.diff(np.append(first, len(group))))


def _within(group: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Like :func:`_rank_in_group` for an already grouped (non-decreasing) array."""
    return _rank_in_group(group)


def _csr(lists: list[list[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    ptr = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=ptr[1:])
    flat = np.asarray([i for x in lists for i in x], np.int64)
    return ptr, flat


def _group_cumsum(group: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Running sum of ``values`` within runs of equal ``group`` (input grouped)."""
    if not len(group):
        return np.zeros(0, np.int64)
    total = np.cumsum(values)
    start = np.ones(len(group), bool)
    start[1:] = group[1:] != group[:-1]
    base = (total - values)[start]
    return total - np.repeat(base, np.diff(np.append(np.flatnonzero(start), len(group))))


def _expand(
    ptr: npt.NDArray[np.int64],
    flat: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    limit: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each row id, the values of its CSR list (the first ``limit`` ones): (index into
    ``rows``, value)."""
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cnt = ptr[rows + 1] - ptr[rows] if limit is None else limit
    rep = np.repeat(np.arange(len(rows)), cnt)
    return rep, flat[np.repeat(ptr[rows], cnt) + _within(rep)]


def _variant_hashes_buf(
    buf: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], min_len: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    n = count_variants(offsets, min_len)
    hh = np.empty(n, np.uint64)
    ow = np.empty(n, np.int64)
    dl = np.empty(n, np.int8)
    m = deletion_hashes(buf, offsets, min_len, hh, ow, dl)
    return hh[:m], ow[:m]


def _deletion_table(stems: Sequence[str]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    if not stems:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    buf, offs = string_buffers(arrow_strings(stems))
    h, owner = _variant_hashes_buf(buf, offs, TYPO_MIN_LEN)
    order = np.argsort(h, kind="stable")
    return h[order], owner[order]
