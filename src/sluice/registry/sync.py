"""Import as a sync: compare a parsed input with its source's current state, apply the difference.

Order of work, so that nothing changes unless everything is right:

1. read every file once, hashing it as it is read (pipes and standard input as files), and
   parse it (:func:`~sluice.registry.importers.parse_files`), which refuses binary, badly or
   mixed encoded, truncated and damaged input;
2. refuse entries that block everything (``registry.too_broad``, :func:`check_breadth`): a
   domain mask of a public suffix, an IPv4 network shorter than /:data:`BROADEST_V4_PREFIX`,
   an IPv6 network shorter than /:data:`BROADEST_V6_PREFIX` (``force`` accepts them);
3. open the source's write transaction (:meth:`RegistryStore.sync_tx`: SQLite ``BEGIN
   IMMEDIATE``, PostgreSQL an advisory lock on the source): two imports of one source never
   interleave, and everything below sees the state the write will change;
4. refuse what says the dump is cut or old (``force`` accepts each): fewer rows than
   ``(1 - max_drop)`` times the previous import (``registry.row_drop``); the same dump time
   stamp as the previous import (RKN ``Updated:``, XML ``updateTime``) with fewer rows
   (``registry.truncated``: the same dump, cut); an older time stamp (``registry.stale_dump``);
5. diff against :meth:`RegistryStore.source_keys` (added, removed, changed basis, unchanged),
   on columns of keys and decision-set ids rather than row by row;
6. hold back every removal when any row was rejected (see :func:`sync_result`), and refuse
   removing more than ``max_removed`` of the source's entries (``registry.mass_removal``: the
   signature of a dump cut at a line end when no header tells);
7. write it in the same transaction (:meth:`RegistryStore.apply_sync`), audit rows included.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sluice.registry.choices import DEFAULT_MAX_DROP, DEFAULT_MAX_REMOVED
from sluice.registry.importers import ParseResult, parse_files
from sluice.registry.importers._common import DELIBERATE_REJECTS, EntryColumns, Progress
from sluice.registry.importers._csvscan import match_sorted
from sluice.registry.importers._input import MAX_INPUT_BYTES
from sluice.registry.model import (
    LETTER_KIND,
    ImportRecord,
    ImportSummary,
    Kind,
    RegistryError,
    basis_from_json,
    basis_to_json,
)
from sluice.registry.names import public_suffixes
from sluice.registry.stores import BULK_CHANGES, Added, RegistryStore

__all__ = [
    "BROADEST_V4_PREFIX",
    "BROADEST_V6_PREFIX",
    "DEFAULT_MAX_DROP",
    "DEFAULT_MAX_REMOVED",
    "MAX_REMOVED_FREE",
    "check_breadth",
    "default_source",
    "import_files",
    "sync_result",
]

MAX_REMOVED_FREE = 10
"""Removals an import may always make (a list of 12 entries losing 2 is an update)."""
BROADEST_V4_PREFIX = 8
"""Shortest IPv4 prefix accepted without ``force``: a /8 is 1/256 of the address space (the
2018 RKN dump's broadest networks, the Telegram ban's cloud ranges, are /10 to /15); a /7 or
shorter, and ``0.0.0.0/0``, block a large part of the Internet."""
BROADEST_V6_PREFIX = 16
"""Shortest IPv6 prefix accepted without ``force``: a /16 already spans many registries'
allocations (RIRs receive /12s, large ISPs /19-/32); ``::/0`` or a /15 blocks everything."""


def default_source(result: ParseResult, paths: Sequence[str | Path]) -> str:
    """The source name of an import given none: the one its input declares, else an error.

    Both RKN formats are the one register ``rkn``; other lists name themselves in their header
    where their format has one (:func:`~sluice.registry.importers.declared_source`).  The file's
    name is never used: ``hagezi_fake_hosts_2022-07-24.txt`` would make each day's copy a new
    source, and the import-as-sync would never remove anything.

    Raises:
        RegistryError: ``registry.no_source`` saying how to give one.
    """
    if result.source:
        return result.source
    what = ";".join(str(p) for p in paths) or "the input"
    raise RegistryError(
        "registry.no_source",
        f"no source name: this {result.fmt} input declares none in its header. Give one that stays"
        " the same from copy to copy: --source NAME (sluice registry import), a '# Title: NAME'"
        " header line in the list, or sluice registry source add NAME URL for a list fetched"
        " from a URL. `sluice registry sources list` shows the names in use",
        what,
    )


def check_breadth(result: ParseResult, force: bool = False) -> None:
    """Refuse entries that block everything unless ``force``.

    A ``domain-mask`` whose name is a public suffix (``*.com``, ``*.co.uk``, ``*.рф``, also the
    private section of the Public Suffix List: ``*.blogspot.com`` blocks every blog there; an
    unknown single label counts as a suffix) and a ``subnet`` shorter than
    :data:`BROADEST_V4_PREFIX` / :data:`BROADEST_V6_PREFIX`.

    Raises:
        RegistryError: ``registry.too_broad`` naming them.
    """
    if force:
        return
    psl = public_suffixes()
    broad: list[str] = []
    for k in result.columns().keys:
        if k[0] == "b" and psl.is_public(k[3:]):
            broad.append(k[1:])
        elif k[0] == "d":
            net, _, plen = k[1:].partition("/")
            if int(plen) < (BROADEST_V6_PREFIX if ":" in net else BROADEST_V4_PREFIX):
                broad.append(k[1:])
    if broad:
        raise RegistryError(
            "registry.too_broad",
            f"{len(broad)} entries would block a whole public suffix or more than a"
            f" /{BROADEST_V4_PREFIX} (IPv6 /{BROADEST_V6_PREFIX}): {', '.join(broad[:10])}"
            " - use --force to accept",
            result.path,
        )


def _dump_datetime(text: str) -> datetime | None:
    """A dump's own time stamp as an aware time (RKN CSV ``Updated:``, XML ``updateTime``)."""
    t = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(t, fmt)
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        return None
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def _check_previous(
    prev: ImportRecord, result: ParseResult, sha256: str, max_drop: float, source: str, path: str
) -> None:
    """Refuse an input that its source's previous import says is cut or older (no ``force``)."""
    if result.rows < (1.0 - max_drop) * prev.rows:
        raise RegistryError(
            "registry.row_drop",
            f"{result.rows} rows against {prev.rows} in the previous import of {source!r}"
            f" (more than {max_drop:.0%} fewer; a truncated dump?) - use --force to accept",
            path,
        )
    new_t, old_t = _dump_datetime(result.dump_time), _dump_datetime(prev.dump_time)
    if new_t is None or old_t is None or prev.fmt != result.fmt:
        return
    if new_t == old_t and result.rows < prev.rows and sha256 != prev.sha256:
        raise RegistryError(
            "registry.truncated",
            f"the same dump ({result.dump_time}) as import #{prev.import_id}, which had"
            f" {prev.rows} rows; this copy has {result.rows}: cut at a line end?"
            " - use --force to accept",
            path,
        )
    if new_t < old_t:
        raise RegistryError(
            "registry.stale_dump",
            f"dump of {result.dump_time} is older than the one import #{prev.import_id} read"
            f" ({prev.dump_time}): it would undo the register's newer changes - use --force to accept",
            path,
        )


def sync_result(
    store: RegistryStore,
    result: ParseResult,
    source: str,
    *,
    path: str = "",
    sha256: str = "",
    max_drop: float = DEFAULT_MAX_DROP,
    max_removed: float = DEFAULT_MAX_REMOVED,
    force: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ImportSummary:
    """Apply one parsed input to the register as a sync of ``source``.

    Everything from reading the source's state to writing the difference happens in one write
    transaction that holds the source's lock (:meth:`RegistryStore.sync_tx`), so concurrent
    imports of one source are serialised and each diffs against what it replaces.

    A rejected row never removes anything: when any row was rejected (other than rules a format
    deliberately leaves out, see :data:`~sluice.registry.importers._common.DELIBERATE_REJECTS`),
    the import adds entries and decisions but takes none away: the removals, and the basis
    changes that drop a decision, it would have made are counted in
    :attr:`ImportSummary.held`.  Matching rejected rows against the entries (keeping only
    entries whose text appears in one) was not chosen: a garbled row names nothing it was, so
    it could hide any entry.  Real dumps reject no row (the 2016 and 2018 RKN dumps, the
    hagezi, Re-filter, Spamhaus and z-i lists), so a clean file removes as before.

    Args:
        store: the register.
        result: the parse of the whole input.
        source: the list being synced.
        path: input file(s), recorded with the import.
        sha256: digest of the input, recorded with the import.
        max_drop: largest share of rows the source may lose against its previous import.
        max_removed: largest share of the source's entries the import may remove.
        force: accept a larger drop or removal, an older or same-but-shorter dump, and entries
            that block everything.
        dry_run: compute the summary but write nothing.
        now: time of the import (default: the clock, UTC).

    Returns:
        What the import did (or would do).

    Raises:
        RegistryError: ``registry.too_broad``, ``registry.row_drop``, ``registry.truncated``,
            ``registry.stale_dump``, ``registry.mass_removal``, or a store failure (the
            register is unchanged).
    """
    check_breadth(result, force)
    cols = result.columns()
    tx = contextlib.nullcontext() if dry_run else store.sync_tx(source, len(cols.keys) > BULK_CHANGES)
    with tx:
        prev = store.imports(source, limit=1)
        if prev and not force:
            _check_previous(prev[0], result, sha256, max_drop, source, path)
        diff = _diff(store, cols, source)
        added, removed, changed, unchanged = diff
        held = 0
        n_before = unchanged + len(changed) + len(removed)
        if any(r.reason not in DELIBERATE_REJECTS for r in result.rejected):
            kept = [c for c in changed if set(basis_from_json(c[2])) <= set(basis_from_json(c[3]))]
            held = len(removed) + len(changed) - len(kept)
            removed, changed = [], kept
        if not force and len(removed) > max(MAX_REMOVED_FREE, max_removed * n_before):
            raise RegistryError(
                "registry.mass_removal",
                f"would remove {len(removed)} of the {n_before} entries of {source!r}"
                f" (more than {max_removed:.0%}; a dump cut at a line end?) - use --force to accept",
                path,
            )
        ts = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        import_id = 0
        if not dry_run:
            meta = (result.fmt, path, sha256, ts, result.rows, len(result.rejected), result.dump_time)
            import_id = store.apply_sync(source, meta, added, removed, changed)
    return ImportSummary(
        source=source,
        fmt=result.fmt,
        rows=result.rows,
        entries=len(cols.keys),
        added=len(added.keys),
        removed=len(removed),
        changed=len(changed),
        unchanged=unchanged,
        rejected=tuple(result.rejected),
        import_id=import_id,
        dump_time=result.dump_time,
        dry_run=dry_run,
        held=held,
    )


_Diff = tuple[Added, list[tuple[str, str, str]], list[tuple[str, str, str, str]], int]


def _diff(store: RegistryStore, cols: EntryColumns, source: str) -> _Diff:
    """Added (columns), removed, changed and the unchanged count, against the store's state."""
    keys = cols.keys
    known = store.basis_ids()
    set_json = [basis_to_json(t) for t in cols.sets]
    set_id = np.asarray([known.get(j, -1) for j in set_json], np.int64)  # -1: not stored yet
    cur_keys, cur_ids = store.source_keys(source)
    n = len(keys)
    at = _positions(cur_keys, keys)  # index of each new key in the current state, -1: absent
    is_new = at < 0
    cur_id = np.asarray(cur_ids, np.int64)[np.where(is_new, 0, at)] if cur_ids else np.zeros(n, np.int64)
    new_id = set_id[cols.basis_set] if n else np.zeros(0, np.int64)
    add_idx = np.flatnonzero(is_new)
    chg_idx = np.flatnonzero(~is_new & (cur_id != new_id)).tolist()
    n_removed = len(cur_keys) - (n - add_idx.shape[0])
    id_json = {i: j for j, i in known.items()}
    removed: list[tuple[str, str, str]] = []
    if n_removed:
        kept = np.zeros(len(cur_keys), np.bool_)
        kept[at[~is_new]] = True
        removed = [
            (LETTER_KIND[cur_keys[i][0]], cur_keys[i][1:], id_json[cur_ids[i]])
            for i in np.flatnonzero(~kept).tolist()
        ]
    basis_set = cols.basis_set
    changed = [
        (LETTER_KIND[keys[i][0]], keys[i][1:], id_json[int(cur_id[i])], set_json[basis_set[i]])
        for i in chg_idx
    ]
    unchanged = n - add_idx.shape[0] - len(changed)
    return _added_columns(cols, add_idx, set_json), removed, changed, unchanged


def _positions(current: list[str], keys: list[str]) -> npt.NDArray[np.int64]:
    """Index in ``current`` of each of ``keys`` (-1 when absent); both lists of unique keys."""
    n = len(keys)
    if current == keys:  # the common re-import: nothing added or removed
        return np.arange(n, dtype=np.int64)
    if current and keys:
        a = ("\x00".join(current) + "\x00").encode("utf-8", "surrogatepass")
        b = ("\x00".join(keys) + "\x00").encode("utf-8", "surrogatepass")
        abuf, bbuf = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
        az, bz = np.flatnonzero(abuf == 0), np.flatnonzero(bbuf == 0)
        if az.shape[0] == len(current) and bz.shape[0] == n:  # no key holds a NUL
            aoff = np.concatenate([[0], az + 1]).astype(np.int64)
            boff = np.concatenate([[0], bz + 1]).astype(np.int64)
            pos, ok = match_sorted(abuf, aoff, bbuf, boff)
            if ok:
                return pos
    index = dict(zip(current, range(len(current)), strict=True))
    return np.fromiter(map(index.get, keys, repeat(-1)), np.int64, n)


def _added_columns(cols: EntryColumns, idx: npt.NDArray[np.int64], set_json: list[str]) -> Added:
    """The entries at ``idx`` as columns, in key order (B-tree appends beat random inserts)."""
    keys = cols.keys
    n = len(keys)
    if cols.ordered:
        order = idx.tolist()
    else:
        order = sorted(range(n) if idx.shape[0] == n else idx.tolist(), key=keys.__getitem__)
    sel = keys if len(order) == n and cols.ordered else list(map(keys.__getitem__, order))
    at = np.asarray(order, np.int64)
    display = [""] * len(order)
    if cols.display:
        pos = np.full(n, -1, np.int64)
        pos[at] = np.arange(len(order))
        for j, d in cols.display.items():
            p = int(pos[j])
            if p >= 0:
                display[p] = d
    return Added(sel, display, cols.basis_set[at].tolist(), set_json)


def import_files(
    store: RegistryStore,
    paths: Sequence[str | Path],
    fmt: str = "auto",
    *,
    source: str = "",
    max_drop: float = DEFAULT_MAX_DROP,
    max_removed: float = DEFAULT_MAX_REMOVED,
    force: bool = False,
    dry_run: bool = False,
    max_bytes: int = MAX_INPUT_BYTES,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ImportSummary:
    """Parse files of one format and sync them into the register as one source.

    Args:
        store: the register.
        paths: the input file(s) (several for the parts of a split RKN CSV dump); ``-`` or
            ``/dev/stdin`` read standard input, pipes are read like files (once).
        fmt: a format of :data:`~sluice.registry.importers.FORMATS` or ``auto``.
        source: the list name (default: the one the input declares, see :func:`default_source`).
        max_drop: see :func:`sync_result`.
        max_removed: see :func:`sync_result`.
        force: see :func:`sync_result`.
        dry_run: compute the summary, write nothing.
        max_bytes: size limit per file.
        progress: called with bytes parsed so far.
        now: time of the import (default: the clock).

    Returns:
        The summary.

    Raises:
        RegistryError: input refused (damaged, truncated, binary, row drop ...) or store
            failure; the register is unchanged in every case.
    """
    digest = hashlib.sha256()  # fed by the one read of each file, as parse_files reads it
    result = parse_files(paths, fmt, source=source, max_bytes=max_bytes, progress=progress, digest=digest)
    src = source or default_source(result, paths)
    return sync_result(
        store,
        result,
        src,
        path=";".join(str(p) for p in paths),
        sha256=digest.hexdigest(),
        max_drop=max_drop,
        max_removed=max_removed,
        force=force,
        dry_run=dry_run,
        now=now,
    )


KINDS = tuple(k.value for k in Kind)
"""Entry kinds as text, in display order."""
