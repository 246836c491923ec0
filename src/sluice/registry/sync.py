"""Import as a sync: compare a parsed input with its source's current state, apply the difference.

Order of work, so that nothing changes unless everything is right:

1. read and parse every file (:func:`~sluice.registry.importers.parse_files`), which refuses
   binary, badly encoded, truncated and damaged input;
2. refuse a sudden drop: fewer rows than ``(1 - max_drop)`` times the source's previous import
   (``registry.row_drop``, overridable with ``force``) - the signature of a dump cut at a block
   boundary exactly at a line end;
3. diff against :meth:`RegistryStore.source_keys` (added, removed, changed basis, unchanged),
   on columns of keys and decision-set ids rather than row by row;
4. write it in one transaction (:meth:`RegistryStore.apply_sync`), audit rows included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sluice.registry.importers import ParseResult, parse_files
from sluice.registry.importers._common import MAX_INPUT_BYTES, EntryColumns, Progress
from sluice.registry.importers._csvscan import match_sorted
from sluice.registry.model import LETTER_KIND, ImportSummary, Kind, RegistryError, basis_to_json
from sluice.registry.store import Added, RegistryStore

__all__ = ["DEFAULT_MAX_DROP", "default_source", "import_files", "sync_result"]

DEFAULT_MAX_DROP = 0.25
"""Largest share of rows a source may lose in one import without ``force``."""


def default_source(fmt: str, paths: Sequence[str | Path]) -> str:
    """The source name an import uses when none is given.

    Both RKN formats are the one register ``rkn``; any other list is named after its first
    file (``hagezi_fake_hosts_2022-07-24.txt`` gives ``hagezi_fake_hosts_2022-07-24``).
    """
    if fmt in ("rkn-csv", "rkn-xml"):
        return "rkn"
    return Path(str(paths[0])).stem if paths else fmt


def _digest(paths: Sequence[str | Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def sync_result(
    store: RegistryStore,
    result: ParseResult,
    source: str,
    *,
    path: str = "",
    sha256: str = "",
    max_drop: float = DEFAULT_MAX_DROP,
    force: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ImportSummary:
    """Apply one parsed input to the register as a sync of ``source``.

    Args:
        store: the register.
        result: the parse of the whole input.
        source: the list being synced.
        path: input file(s), recorded with the import.
        sha256: digest of the input, recorded with the import.
        max_drop: largest share of rows the source may lose against its previous import.
        force: accept a larger drop.
        dry_run: compute the summary but write nothing.
        now: time of the import (default: the clock, UTC).

    Returns:
        What the import did (or would do).

    Raises:
        RegistryError: ``registry.row_drop``, or a store failure (the register is unchanged).
    """
    prev = store.imports(source, limit=1)
    if prev and not force and result.rows < (1.0 - max_drop) * prev[0].rows:
        raise RegistryError(
            "registry.row_drop",
            f"{result.rows} rows against {prev[0].rows} in the previous import of {source!r}"
            f" (more than {max_drop:.0%} fewer; a truncated dump?) - use --force to accept",
            path,
        )
    cols = result.columns()
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
    added = _added_columns(cols, add_idx, set_json)
    ts = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    import_id = 0
    if not dry_run:
        meta = (result.fmt, path, sha256, ts, result.rows, len(result.rejected), result.dump_time)
        import_id = store.apply_sync(source, meta, added, removed, changed)
    return ImportSummary(
        source=source,
        fmt=result.fmt,
        rows=result.rows,
        entries=n,
        added=len(added.keys),
        removed=len(removed),
        changed=len(changed),
        unchanged=unchanged,
        rejected=tuple(result.rejected),
        import_id=import_id,
        dump_time=result.dump_time,
        dry_run=dry_run,
    )


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
    force: bool = False,
    dry_run: bool = False,
    max_bytes: int = MAX_INPUT_BYTES,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ImportSummary:
    """Parse files of one format and sync them into the register as one source.

    Args:
        store: the register.
        paths: the input file(s) (several for the parts of a split RKN CSV dump).
        fmt: a format of :data:`~sluice.registry.importers.FORMATS` or ``auto``.
        source: the list name (default: :func:`default_source`).
        max_drop: see :func:`sync_result`.
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
    list_name = source or (Path(str(paths[0])).stem if paths else "")
    with ThreadPoolExecutor(1) as pool:  # hashlib lets go of the GIL: digest while parsing
        digest = pool.submit(_digest, paths)
        try:
            result = parse_files(paths, fmt, source=list_name, max_bytes=max_bytes, progress=progress)
        except BaseException:
            digest.cancel()
            raise
        sha256 = digest.result()
    src = source or default_source(result.fmt, paths)
    return sync_result(
        store,
        result,
        src,
        path=";".join(str(p) for p in paths),
        sha256=sha256,
        max_drop=max_drop,
        force=force,
        dry_run=dry_run,
        now=now,
    )


KINDS = tuple(k.value for k in Kind)
"""Entry kinds as text, in display order."""
