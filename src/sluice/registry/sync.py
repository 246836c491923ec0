"""Import as a sync: compare a parsed input with its source's current state, apply the difference.

Order of work, so that nothing changes unless everything is right:

1. read and parse every file (:func:`~sluice.registry.importers.parse_files`), which refuses
   binary, badly encoded, truncated and damaged input;
2. refuse a sudden drop: fewer rows than ``(1 - max_drop)`` times the source's previous import
   (``registry.row_drop``, overridable with ``force``) - the signature of a dump cut at a block
   boundary exactly at a line end;
3. diff against :meth:`RegistryStore.source_state` (added, removed, changed basis, unchanged);
4. write it in one transaction (:meth:`RegistryStore.apply_sync`), audit rows included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sluice.registry.importers import ParseResult, parse_files
from sluice.registry.importers._common import MAX_INPUT_BYTES, Progress
from sluice.registry.model import ImportSummary, Kind, LegalBasis, RegistryError, basis_to_json
from sluice.registry.store import EntryRow, RegistryStore

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
    current = store.source_state(source)
    added: list[EntryRow] = []
    changed: list[tuple[str, str, str, str]] = []
    unchanged = 0
    new_keys = result.entries
    memo: dict[tuple[LegalBasis, ...], str] = {}
    for (kind, ind), (display, bases) in new_keys.items():
        bt = tuple(bases)
        bj = memo.get(bt)
        if bj is None:
            bj = memo[bt] = basis_to_json(bt)
        old = current.get((kind, ind))
        if old is None:
            added.append((kind, ind, display, bj))
        elif old != bj:
            changed.append((kind, ind, old, bj))
        else:
            unchanged += 1
    removed = [(k, i, b) for (k, i), b in current.items() if (k, i) not in new_keys]
    added.sort()  # B-tree appends in key order: several times faster than random inserts
    ts = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    import_id = 0
    if not dry_run:
        meta = (result.fmt, path, sha256, ts, result.rows, len(result.rejected), result.dump_time)
        import_id = store.apply_sync(source, meta, added, removed, changed)
    return ImportSummary(
        source=source,
        fmt=result.fmt,
        rows=result.rows,
        entries=len(new_keys),
        added=len(added),
        removed=len(removed),
        changed=len(changed),
        unchanged=unchanged,
        rejected=tuple(result.rejected),
        import_id=import_id,
        dump_time=result.dump_time,
        dry_run=dry_run,
    )


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
    result = parse_files(paths, fmt, source=list_name, max_bytes=max_bytes, progress=progress)
    src = source or default_source(result.fmt, paths)
    return sync_result(
        store,
        result,
        src,
        path=";".join(str(p) for p in paths),
        sha256=_digest(paths),
        max_drop=max_drop,
        force=force,
        dry_run=dry_run,
        now=now,
    )


KINDS = tuple(k.value for k in Kind)
"""Entry kinds as text, in display order."""
