"""What every importer shares: the parse result (entries, rejected lines) and its columns.

An importer turns the bytes of one file into a :class:`ParseResult`: the distinct entries the
file names (with every decision behind each), the number of data rows, the rejected lines with
why, and the dump's own time stamp.  Nothing is written anywhere: the sync service compares the
result with the register and applies the difference in one transaction.

Reading the input and refusing damage is :mod:`sluice.registry.importers._input`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sluice.registry.display import display_indicator
from sluice.registry.importers._csvscan import gather_keys, sort_keys
from sluice.registry.model import KIND_LETTER, LETTER_KIND, Kind, LegalBasis, RejectedLine
from sluice.registry.names import (
    BadIndicator,
    canon_host,
    canon_ip,
    canon_mask,
)

__all__ = [
    "DELIBERATE_REJECTS",
    "KIND_LETTER",
    "LETTER_KIND",
    "EntryColumns",
    "ParseResult",
    "Progress",
]

DELIBERATE_REJECTS = frozenset(
    {
        "adblock.exception_rule",
        "adblock.unsupported_options",
        "rpz.passthru_not_imported",
        "rpz.tcp_only_not_imported",
        "rpz.unsupported_trigger",
        "rpz.include_not_followed",
        "sdn.unsupported_chain",
    }
)
"""Reject reasons of well-formed rules a format deliberately leaves out (an Adblock ``@@``
exception, a rule with ``$`` options, an RPZ passthru): never an entry in any version, so they
hold back no removal (see :func:`~sluice.registry.sync.sync_result`)."""
Progress = Callable[[int], None]
"""Called with the number of bytes processed so far."""


_Entries = dict[tuple[str, str], tuple[str, dict[LegalBasis, None]]]


@dataclass(frozen=True, slots=True)
class EntryColumns:
    """The distinct entries of a parse in columns (what the sync works on)."""

    keys: list[str]
    """One key per entry: kind letter (:data:`KIND_LETTER`) + canonical indicator."""
    basis_set: npt.NDArray[np.int32]
    """Index into :attr:`sets` of each entry's decisions, shape (len(keys),)."""
    sets: list[tuple[LegalBasis, ...]]
    """Distinct decision tuples, each in the order the source gives them."""
    display: dict[int, str]
    """Unicode form of the entries whose display differs from the indicator (by key index)."""
    ordered: bool = False
    """True when :attr:`keys` are sorted (then they are also the store's key order)."""


class ParseResult:
    """The entries one input gives, before any comparison with the register.

    Importers add entries one by one (:meth:`add`); the RKN CSV fast path adds whole columns of
    rows (:meth:`add_rows`) and the decisions of repeated indicators are merged, in row order,
    when :attr:`entries` or :meth:`columns` is first asked for.

    Attributes:
        fmt: format parsed (``rkn-csv`` ...).
        rows: data rows (records) read.
        rejected: lines that gave no entry.
        dump_time: the dump's own time stamp (``Updated:`` header ...).
        declared: entry count a list header declares (``# Domains: 14043``), when it does.
        path: file being parsed (for rejected lines).
        source: the source name it was parsed as (set by ``parse_files``; "" when none).
    """

    __slots__ = (
        "_bases",
        "_basis_ids",
        "_cols",
        "_entries",
        "_occ_basis",
        "_occ_keys",
        "_occ_seq",
        "declared",
        "dump_time",
        "fmt",
        "path",
        "rejected",
        "rows",
        "seq_base",
        "source",
    )

    def __init__(
        self,
        fmt: str,
        rows: int = 0,
        entries: _Entries | None = None,
        rejected: list[RejectedLine] | None = None,
        dump_time: str = "",
        declared: int | None = None,
        path: str = "",
    ) -> None:
        self.fmt = fmt
        self.rows = rows
        self._entries: _Entries | None = entries if entries is not None else {}
        self.rejected: list[RejectedLine] = rejected if rejected is not None else []
        self.dump_time = dump_time
        self.declared = declared
        self.path = path
        self._occ_keys: list[npt.NDArray[np.uint8]] = []
        self._occ_seq: list[npt.NDArray[np.int64]] = []
        self._occ_basis: list[npt.NDArray[np.int32]] = []
        self._bases: list[LegalBasis] = []
        self._basis_ids: dict[LegalBasis, int] = {}
        self._cols: EntryColumns | None = None
        self.source = ""
        """The source name the input was parsed as (given, or declared in its header)."""
        self.seq_base = 0
        """Row-order offset of the next part of a split dump (see :meth:`add_rows`)."""

    def __repr__(self) -> str:
        return f"ParseResult({self.fmt!r}, rows={self.rows}, entries={self.n_entries})"

    @property
    def entries(self) -> _Entries:
        """``(kind, indicator) -> (display, decisions)``."""
        if self._entries is None:
            cols = self.columns()
            out: _Entries = {}
            disp = cols.display
            sets = cols.sets
            for j, (k, sid) in enumerate(zip(cols.keys, cols.basis_set.tolist(), strict=True)):
                out[(LETTER_KIND[k[0]], k[1:])] = (disp.get(j, ""), dict.fromkeys(sets[sid]))
            self._entries = out
        self._cols = None  # the caller may change the dict
        return self._entries

    @property
    def n_entries(self) -> int:
        """Number of distinct entries."""
        if self._entries is not None:
            return len(self._entries)
        return len(self.columns().keys)

    def basis_index(self, basis: LegalBasis) -> int:
        """Index of a decision in this result's table of decisions (for :meth:`add_rows`)."""
        got = self._basis_ids.get(basis)
        if got is None:
            got = self._basis_ids[basis] = len(self._bases)
            self._bases.append(basis)
        return got

    def add_rows(
        self, keys: npt.NDArray[np.uint8], seq: npt.NDArray[np.int64], basis: npt.NDArray[np.int32]
    ) -> None:
        """Record entries in bulk: keys, row order, decisions.

        ``keys`` holds one entry key (kind letter + canonical indicator, UTF-8) followed by
        ``\\n`` per row; ``seq`` orders the rows (line numbers made increasing over the parts
        of a split dump); ``basis`` holds indices from :meth:`basis_index`.  An importer uses
        either this or :meth:`add`, not both.
        """
        if self._entries:
            raise ValueError("add_rows after add")
        self._entries = None
        self._cols = None
        self._occ_keys.append(keys)
        self._occ_seq.append(seq)
        self._occ_basis.append(basis)

    def columns(self) -> EntryColumns:
        """The distinct entries in columns (computed once)."""
        if self._cols is None:
            self._cols = self._dict_columns() if self._entries is not None else self._merge_rows()
        return self._cols

    def _dict_columns(self) -> EntryColumns:
        assert self._entries is not None
        keys: list[str] = []
        ids: list[int] = []
        set_ids: dict[tuple[LegalBasis, ...], int] = {}
        display: dict[int, str] = {}
        for j, ((kind, ind), (disp, bases)) in enumerate(self._entries.items()):
            keys.append(KIND_LETTER[kind] + ind)
            t = tuple(bases)
            ids.append(set_ids.setdefault(t, len(set_ids)))
            if disp:
                display[j] = disp
        return EntryColumns(keys, np.asarray(ids, np.int32), list(set_ids), display)

    def _merge_rows(self) -> EntryColumns:
        buf = np.concatenate(self._occ_keys) if self._occ_keys else np.zeros(0, np.uint8)
        basis = np.concatenate(self._occ_basis) if self._occ_basis else np.zeros(0, np.int32)
        sets: list[tuple[LegalBasis, ...]] = [(b,) for b in self._bases]
        ends = np.flatnonzero(buf == 10)
        n = ends.shape[0]
        off = np.zeros(n + 1, np.int64)
        off[1:] = ends + 1
        # sort the keys (compiled radix passes): equal keys become neighbours
        order, first = sort_keys(buf, off)
        head = order[first]
        ubuf = gather_keys(buf, off, head)
        keys = ubuf.tobytes().decode("utf-8").split("\n")
        keys.pop()
        basis_set = basis[head].astype(np.int32)
        grp = np.cumsum(first) - 1
        size = np.bincount(grp, minlength=1)
        multi = np.flatnonzero(size[grp] > 1)
        if multi.shape[0]:  # repeated indicators: their decisions, in row order
            rows = order[multi]
            g = grp[multi]
            o2 = np.lexsort((np.concatenate(self._occ_seq)[rows], g))
            set_ids = {s: i for i, s in enumerate(sets)}
            bases = self._bases
            cur = -1
            acc: dict[LegalBasis, None] = {}
            for gi, b in zip(g[o2].tolist(), basis[rows][o2].tolist(), strict=True):
                if gi != cur:
                    if cur >= 0:
                        basis_set[cur] = set_ids.setdefault(tuple(acc), len(set_ids))
                    cur, acc = gi, {}
                acc[bases[b]] = None
            basis_set[cur] = set_ids.setdefault(tuple(acc), len(set_ids))
            sets = list(set_ids)
        display: dict[int, str] = {}
        if keys:  # the keys that hold an IDNA label, found in the bytes
            raw = ubuf.tobytes()
            uoff = np.zeros(len(keys) + 1, np.int64)
            uoff[1:] = np.flatnonzero(ubuf == 10) + 1
            hits: list[int] = []
            at = raw.find(b"xn--")
            while at >= 0:
                hits.append(at)
                at = raw.find(b"xn--", at + 4)
            for j in np.unique(np.searchsorted(uoff, np.asarray(hits, np.int64), side="right") - 1).tolist():
                k = keys[j]
                d = display_indicator(Kind(LETTER_KIND[k[0]]), k[1:])
                if d:
                    display[j] = d
        return EntryColumns(keys, basis_set, sets, display, ordered=True)

    def add(self, kind: Kind, indicator: str, display: str, basis: LegalBasis) -> None:
        """Record one entry (merging the decisions of repeated indicators)."""
        key = (kind.value, indicator)
        self._cols = None
        got = self.entries.get(key)
        if got is None:
            if not display and "xn--" in indicator:
                display = display_indicator(kind, indicator)
            self.entries[key] = (display, {basis: None})
        else:
            got[1][basis] = None

    def reject(self, line: int, reason: str, text: str) -> None:
        """Record a line that gave no entry."""
        self.rejected.append(RejectedLine(line, reason, text[:200], self.path))

    def add_name(self, text: str, basis: LegalBasis, *, mask_ok: bool = True) -> None:
        """Add a domain (``*.d`` gives a mask) or, when ``text`` is an address, an IP entry.

        Raises:
            BadIndicator: when ``text`` is neither.
        """
        t = text.strip()
        if mask_ok and t.startswith("*."):
            self.add(Kind.DOMAIN_MASK, canon_mask(t), "", basis)
            return
        if t[-1:].isdigit() or ":" in t:
            try:
                kind, ind = canon_ip(t)
            except BadIndicator:
                pass
            else:
                self.add(kind, ind, "", basis)
                return
        self.add(Kind.DOMAIN, canon_host(t), "", basis)
