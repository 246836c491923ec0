"""The name index: which register names an observed name looks like, without pairwise comparison.

Theory of operation
-------------------
Every register name gives a *brand stem*: the core of its registrable label (:func:`core`:
folded, counters and hyphens gone) with filler words stripped from both ends
(``10-fonbet-zerkalo.ru`` -> ``fonbet``).  Stems shorter than ``min_stem`` letters are not
indexed (``bet`` would match half the Internet).  The index holds

* an Aho-Corasick automaton of the stems: one pass over an observed label's core finds every
  stem inside it (``1xstavka-fonbet11`` contains ``fonbet``) -- the *substring* hits;
* an automaton of the stems' abbreviations of three or more letters (``mbet`` for
  ``marathonbet``) and a table of the two-letter ones (``bb`` for ``baltbet``, matched only as a
  prefix followed by filler words: ``bbsport``) -- the *abbreviation* hits;
* a sorted array of 64-bit hashes of each stem and of each of its one-letter deletions
  (symmetric-deletion search): an observed stem whose hash, or one of whose deletions' hashes,
  is there is within edit distance 2 of a register stem, checked exactly afterwards -- the
  *typo* hits (``fonbte``, ``fnbet``, ``fonbbet``).

A query costs a constant number of automaton passes and array searches per observed name,
whatever the register's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick  # type: ignore[import-not-found]
import numpy as np
import numpy.typing as npt

from sluice.mirrors._kernels import count_variants, deletion_hashes
from sluice.mirrors.stems import (
    MIRROR_WORDS,
    abbreviations,
    core,
    explained,
    name_parts,
    osa_distance,
    vocabulary,
)

__all__ = ["MIN_STEM", "NameHit", "NameIndex", "brand_stem", "strip_fillers"]

MIN_STEM = 4
"""Shortest stem indexed (letters)."""
MAX_HITS_PER_LABEL = 4
"""Substring hits kept per observed label (the longest stems)."""
TYPO_MIN_LEN = 5
"""Shortest stem searched for with one deletion (shorter ones only by exact equality)."""


def _edge_re(words: Iterable[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    alt = "|".join(sorted({re.escape(w) for w in words if len(w) >= 2}, key=len, reverse=True))
    return re.compile(f"^(?:{alt})+"), re.compile(f"(?:{alt})+$")


_DEFAULT_EDGES = _edge_re(MIRROR_WORDS)


def strip_fillers(text: str, edges: tuple[re.Pattern[str], re.Pattern[str]] = _DEFAULT_EDGES) -> str:
    """Mirror words removed from both ends of a core, keeping at least 4 letters."""
    head, tail = edges
    m = head.match(text)
    if m and len(text) - m.end() >= 4:
        text = text[m.end() :]
    m = tail.search(text)
    if m and m.start() >= 4:
        text = text[: m.start()]
    return text


def brand_stem(name: str, edges: tuple[re.Pattern[str], re.Pattern[str]] = _DEFAULT_EDGES) -> str:
    """The brand stem of a host name (see the module docstring)."""
    return strip_fillers(core(name_parts(name).label), edges)


@dataclass(frozen=True, slots=True)
class NameHit:
    """An observed name that resembles a register stem."""

    observed: str
    """The observed name."""
    stem: str
    """The register stem it resembles."""
    how: str
    """``stem`` (same stem), ``substring``, ``abbreviation`` or ``typo``."""
    label: str
    """The core of the observed label that matched."""
    residue: str
    """Letters of that core outside the match ("" for ``stem`` and ``typo``)."""
    distance: int = 0
    """Edit distance of a ``typo`` hit (0 otherwise)."""
    in_registrable: bool = True
    """True when the match is in the registrable label (not in a subdomain)."""
    residue_explained: bool = True
    """True when the residue is made of filler words only."""


class NameIndex:
    """Register names by brand stem, searchable by substring, abbreviation and typo.

    Args:
        names: the register's host names (or the seeds').
        words: extra filler words (learned by :class:`~sluice.mirrors.namescore.NameModel`).
        min_stem: shortest stem indexed.
    """

    def __init__(self, names: Iterable[str], *, words: Iterable[str] = (), min_stem: int = MIN_STEM) -> None:
        self.words = vocabulary(words)
        self.edges = _DEFAULT_EDGES
        self.min_stem = min_stem
        by_stem: dict[str, list[str]] = {}
        seen_labels: dict[str, str] = {}
        for name in names:
            label = name_parts(name).label
            if not label:
                continue
            s = seen_labels.get(label)
            if s is None:
                s = seen_labels[label] = strip_fillers(core(label), self.edges)
            if len(s) >= min_stem:
                by_stem.setdefault(s, []).append(name)
        self.stems: list[str] = sorted(by_stem)
        self.names: dict[str, list[str]] = by_stem
        self._id = {s: i for i, s in enumerate(self.stems)}
        self._auto = ahocorasick.Automaton()
        for i, s in enumerate(self.stems):
            self._auto.add_word(s, i)
        self._abbr = ahocorasick.Automaton()
        self._abbr2: dict[str, list[int]] = {}
        abbr3: dict[str, list[int]] = {}
        for i, s in enumerate(self.stems):
            for a in abbreviations(s, self.words):
                (abbr3 if len(a) >= 3 else self._abbr2).setdefault(a, []).append(i)
        for a, ids in abbr3.items():
            self._abbr.add_word(a, (a, ids))
        if self.stems:
            self._auto.make_automaton()
        if abbr3:
            self._abbr.make_automaton()
        self._hashes, self._owners = _deletion_table(self.stems)
        self._explained: dict[str, bool] = {}

    def _ok(self, text: str) -> bool:
        """``explained(text, self.words)``, remembered (residues repeat; bounded)."""
        got = self._explained.get(text)
        if got is None:
            if len(self._explained) > 1_000_000:
                self._explained.clear()
            got = self._explained[text] = explained(text, self.words)
        return got

    def __len__(self) -> int:
        return len(self.stems)

    def query(self, observed: Sequence[str]) -> list[NameHit]:
        """Every resemblance of the observed names to indexed stems.

        Args:
            observed: host names (canonical or Unicode).

        Returns:
            Hits, in the order of ``observed``; a name may have several (one per stem).
        """
        hits: list[NameHit] = []
        typo_wanted: list[tuple[str, str]] = []
        for name in observed:
            parts = name_parts(name)
            if not parts.label:
                continue
            found = False
            for pos, label in enumerate((*parts.subdomains, parts.label)):
                c = core(label)
                if len(c) < 2:
                    continue
                in_reg = pos == len(parts.subdomains)
                got = self._substring_hits(name, c, in_reg) + self._abbrev_hits(name, c, in_reg)
                hits.extend(got)
                found = found or bool(got)
                if in_reg and not any(h.how in ("stem", "substring") for h in got):
                    typo_wanted.append((name, strip_fillers(c, self.edges)))
        hits.extend(self._typo_hits(typo_wanted))
        return hits

    def _substring_hits(self, name: str, c: str, in_reg: bool) -> list[NameHit]:
        if not self.stems:
            return []
        found: dict[int, int] = {}
        for end, sid in self._auto.iter(c):
            found.setdefault(sid, end)
        if not found:
            return []
        best = sorted(found.items(), key=lambda kv: -len(self.stems[kv[0]]))[:MAX_HITS_PER_LABEL]
        out = []
        for sid, end in best:
            s = self.stems[sid]
            start = end - len(s) + 1
            residue = c[:start] + c[end + 1 :]
            ok = self._ok(c[:start]) and self._ok(c[end + 1 :])
            out.append(NameHit(name, s, "stem" if not residue else "substring", c, residue, 0, in_reg, ok))
        return out

    def _abbrev_hits(self, name: str, c: str, in_reg: bool) -> list[NameHit]:
        out: list[NameHit] = []
        if len(self._abbr) and self.stems:
            for end, (a, ids) in self._abbr.iter(c):
                start = end - len(a) + 1
                left, right = c[:start], c[end + 1 :]
                ok = self._ok(left) and self._ok(right)
                if len(a) == 3 and not ok:
                    continue
                out.extend(
                    NameHit(name, self.stems[i], "abbreviation", c, left + right, 0, in_reg, ok) for i in ids
                )
        ids2 = self._abbr2.get(c[:2], ()) if len(c) > 2 else ()
        if ids2 and self._ok(c[2:]):
            out.extend(NameHit(name, self.stems[i], "abbreviation", c, c[2:], 0, in_reg, True) for i in ids2)
        return out[:MAX_HITS_PER_LABEL]

    def _typo_hits(self, wanted: list[tuple[str, str]]) -> list[NameHit]:
        if not wanted or not len(self._hashes):
            return []
        texts = [w for _, w in wanted]
        h, owner, _ = _variant_hashes(texts, TYPO_MIN_LEN)
        pos = np.searchsorted(self._hashes, h)
        pos[pos >= len(self._hashes)] = len(self._hashes) - 1
        match = self._hashes[pos] == h
        out: list[NameHit] = []
        seen: set[tuple[int, int]] = set()
        for k in np.flatnonzero(match).tolist():
            q = int(owner[k])
            p = int(pos[k])
            while p < len(self._hashes) and self._hashes[p] == h[k]:
                sid = int(self._owners[p])
                p += 1
                if (q, sid) in seen:
                    continue
                seen.add((q, sid))
                s, t = self.stems[sid], texts[q]
                if s == t or len(t) < self.min_stem:
                    continue
                d = osa_distance(s, t)
                if d <= (1 if len(s) < 8 else 2):
                    out.append(NameHit(wanted[q][0], s, "typo", t, "", d, True, True))
        return out


def _encode(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    raw = [t.encode("utf-8", "replace") for t in texts]
    offsets = np.zeros(len(raw) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in raw], out=offsets[1:])
    buf = np.frombuffer(b"".join(raw), dtype=np.uint8) if raw else np.zeros(0, np.uint8)
    return buf, offsets


def _variant_hashes(
    texts: Sequence[str], min_len: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    buf, offsets = _encode(texts)
    n = count_variants(offsets, min_len)
    hh = np.empty(n, np.uint64)
    ow = np.empty(n, np.int64)
    dl = np.empty(n, np.int8)
    m = deletion_hashes(buf if len(buf) else np.zeros(1, np.uint8), offsets, min_len, hh, ow, dl)
    return hh[:m], ow[:m], dl[:m]


def _deletion_table(stems: Sequence[str]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    if not stems:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    h, owner, _ = _variant_hashes(stems, TYPO_MIN_LEN)
    order = np.argsort(h, kind="stable")
    return h[order], owner[order]
