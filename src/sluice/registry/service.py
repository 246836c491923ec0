"""Register services: what the CLI (and an API) call; each opens the store, works, closes it.

Results are JSON-ready dicts, so that the CLI's ``--json`` output and an HTTP API share one
shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sluice.registry.exports import ExportResult, export_entries
from sluice.registry.importers._common import Progress
from sluice.registry.matcher import Match, Matcher
from sluice.registry.model import Entry, ImportSummary, Kind, RegistryError
from sluice.registry.names import (
    BadIndicator,
    canon_host,
    canon_ip,
    canon_mask,
    canon_url,
    display_indicator,
)
from sluice.registry.store import open_store
from sluice.registry.sync import DEFAULT_MAX_DROP, import_files

__all__ = ["canonical_indicator", "check", "export", "history", "import_paths", "stats"]


def import_paths(
    db: str,
    paths: Sequence[str | Path],
    fmt: str = "auto",
    *,
    source: str = "",
    max_drop: float = DEFAULT_MAX_DROP,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import files into the register at ``db`` (see :func:`~sluice.registry.sync.import_files`).

    Raises:
        RegistryError: input refused or store failure; the register is unchanged.
    """
    store = open_store(db)
    try:
        return import_files(
            store,
            paths,
            fmt,
            source=source,
            max_drop=max_drop,
            force=force,
            dry_run=dry_run,
            progress=progress,
        )
    finally:
        store.close()


def _match_dict(m: Match) -> dict[str, Any]:
    e = m.entry
    return {
        "reason": m.reason.code,
        "kind": e.kind.value,
        "indicator": e.indicator,
        "shown": e.shown,
        "source": e.source,
        "basis": [{"authority": b.authority, "number": b.number, "date": b.date} for b in e.basis],
        "basis_text": [str(b) for b in e.basis],
    }


def check(db: str, items: Sequence[str], *, source: str | None = None) -> list[dict[str, Any]]:
    """Entries that apply to each host, URL or address.

    Returns:
        One dict per item: ``{"query", "matches": [{reason, kind, indicator, shown, source,
        basis, basis_text}]}``.

    Raises:
        RegistryError: store failure.
    """
    store = open_store(db)
    try:
        matcher = Matcher.from_store(store, source)
    finally:
        store.close()
    return [{"query": it, "matches": [_match_dict(m) for m in matcher.match(it)]} for it in items]


def canonical_indicator(text: str) -> tuple[Kind, str]:
    """The canonical form of an indicator a person typed (mask, URL, address or name).

    Raises:
        RegistryError: ``registry.bad_indicator``.
    """
    t = text.strip()
    try:
        if t.startswith("*."):
            return Kind.DOMAIN_MASK, canon_mask(t)
        if "://" in t:
            return Kind.URL, canon_url(t)
        try:
            return canon_ip(t)
        except BadIndicator:
            return Kind.DOMAIN, canon_host(t)
    except BadIndicator as exc:
        raise RegistryError("registry.bad_indicator", str(exc)) from exc


def _entry_dict(e: Entry) -> dict[str, Any]:
    return {
        "source": e.source,
        "kind": e.kind.value,
        "indicator": e.indicator,
        "shown": e.shown,
        "added_at": e.added_at,
        "basis_text": [str(b) for b in e.basis],
    }


def history(db: str, indicator: str) -> dict[str, Any]:
    """Audit trail and current entries of one indicator (masks: ``*.d``; names also as mask).

    Returns:
        ``{"indicator", "shown", "events": [...], "current": [...]}``.

    Raises:
        RegistryError: ``registry.bad_indicator`` or store failure.
    """
    kind, canon = canonical_indicator(indicator)
    keys = [canon]
    if kind is Kind.DOMAIN:
        keys.append("*." + canon)
    store = open_store(db)
    try:
        events = [ev for k in keys for ev in store.history(k)]
        current = [e for k in keys for e in store.lookup(k)]
    finally:
        store.close()
    events.sort(key=lambda ev: (ev.at, ev.import_id))
    return {
        "indicator": canon,
        "shown": display_indicator(kind, canon) or canon,
        "events": [
            {
                "at": ev.at,
                "action": ev.action.value,
                "source": ev.source,
                "kind": ev.kind.value,
                "indicator": ev.indicator,
                "import_id": ev.import_id,
                "old_basis_text": [str(b) for b in ev.old_basis],
                "new_basis_text": [str(b) for b in ev.new_basis],
            }
            for ev in events
        ],
        "current": [_entry_dict(e) for e in current],
    }


def export(
    db: str,
    target: str,
    *,
    source: str | None = None,
    origin: str = "rpz.sluice",
    table: str = "sluice_registry",
) -> ExportResult:
    """Export the register (or one source) for an enforcing tool.

    Raises:
        RegistryError: bad target or store failure.
    """
    store = open_store(db)
    try:
        return export_entries(store.entries(source), target, origin=origin, table=table)
    finally:
        store.close()


def stats(db: str) -> dict[str, Any]:
    """Entry counts per source and kind, and the 20 latest imports.

    Raises:
        RegistryError: store failure.
    """
    store = open_store(db)
    try:
        counts = store.stats()
        imports = store.imports(limit=20)
    finally:
        store.close()
    return {
        "entries": counts,
        "imports": [
            {
                "id": i.import_id,
                "at": i.at,
                "source": i.source,
                "format": i.fmt,
                "rows": i.rows,
                "entries": i.entries,
                "added": i.added,
                "removed": i.removed,
                "changed": i.changed,
                "rejected": i.rejected,
                "dump_time": i.dump_time,
                "path": i.path,
            }
            for i in imports
        ],
    }
