"""Register services: what the CLI (and an API) call; each opens the store, works, closes it.

Results are JSON-ready dicts, so that the CLI's ``--json`` output and an HTTP API share one
shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.registry.check import check
from sluice.registry.choices import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DROP,
    DEFAULT_MAX_REMOVED,
    DEFAULT_TIMEOUT_S,
    MAX_NAMES,
)
from sluice.registry.display import display_indicator
from sluice.registry.model import Entry, ImportSummary, Kind, ProposalState, RegistryError
from sluice.registry.names import (
    BadIndicator,
    canon_host,
    canon_ip,
    canon_mask,
    canon_url,
)
from sluice.registry.stores import (
    SCHEMA_VERSION,
    RegistryStore,
    SqliteStore,
    create_store,
    open_store,
    register_exists,
)
from sluice.registry.wallets import canon_wallet, looks_like_wallet

if TYPE_CHECKING:
    from sluice.registry.exports import ExportResult
    from sluice.registry.fetch import FetchOutcome
    from sluice.registry.impact import ImpactReport
    from sluice.registry.importers._common import Progress

__all__ = [
    "canonical_indicator",
    "check",
    "decide",
    "export",
    "fetch",
    "history",
    "impact",
    "import_paths",
    "import_preview",
    "init",
    "proposal_show",
    "proposals_list",
    "source_add",
    "sources_list",
    "sources_remove",
    "sources_rename",
    "stats",
]


def import_paths(
    db: str,
    paths: Sequence[str | Path],
    fmt: str = "auto",
    *,
    source: str = "",
    max_drop: float = DEFAULT_MAX_DROP,
    max_removed: float = DEFAULT_MAX_REMOVED,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import files into the register at ``db`` (see :func:`~sluice.registry.sync.import_files`).

    Raises:
        RegistryError: input refused or store failure; the register is unchanged.
    """
    store: RegistryStore
    if dry_run and not register_exists(db):
        store = SqliteStore(":memory:", create=True)  # what the first import would add
    else:
        store = open_store(db, create=not dry_run)
    from sluice.registry.sync import import_files  # the importers: loaded by commands that import

    try:
        return import_files(
            store,
            paths,
            fmt,
            source=source,
            max_drop=max_drop,
            max_removed=max_removed,
            force=force,
            dry_run=dry_run,
            progress=progress,
        )
    finally:
        store.close()


def init(db: str) -> dict[str, Any]:
    """Create an empty register at ``db`` (``registry init``), or report the one there.

    Returns:
        ``{"register", "created", "schema_version", "entries"}``.

    Raises:
        RegistryError: ``registry.store_unavailable`` (cannot be created or opened).
    """
    existed = register_exists(db)
    store = create_store(db)
    try:
        entries = sum(sum(k.values()) for k in store.stats().values())
    finally:
        store.close()
    return {"register": db, "created": not existed, "schema_version": SCHEMA_VERSION, "entries": entries}


def canonical_indicator(text: str) -> tuple[Kind, str]:
    """The canonical form of an indicator a person typed (mask, URL, address, wallet or name).

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
            pass
        if looks_like_wallet(t):
            try:
                return Kind.WALLET, canon_wallet(t, explicit=False).indicator
            except BadIndicator:
                if ":" in t and "." not in t:  # chain:address that does not validate
                    raise
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
        "shown": next((e.display for e in current if e.display), "")
        or display_indicator(kind, canon)
        or canon,
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
    from sluice.registry.exports import export_entries

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


# -- the review queue and the impact preview --


def proposals_list(db: str, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Proposals, newest first (all, or of one state).

    Raises:
        RegistryError: ``registry.bad_state`` or store failure.
    """
    from sluice.registry import proposals

    st = _state(state) if state else None
    store = open_store(db)
    try:
        return [p.as_dict() for p in proposals.list_proposals(store, st, limit)]
    finally:
        store.close()


def _state(text: str) -> ProposalState:
    try:
        return ProposalState(text)
    except ValueError:
        choices = ", ".join(s.value for s in ProposalState)
        raise RegistryError("registry.bad_state", f"state {text!r} is not one of {choices}") from None


def proposal_show(db: str, pid: int) -> dict[str, Any]:
    """One proposal with its audit trail.

    Raises:
        RegistryError: ``registry.no_proposal`` or store failure.
    """
    from sluice.registry import proposals

    store = open_store(db)
    try:
        p = proposals.get_proposal(store, pid)
        events = [
            ev for ev in store.history(p.indicator) if ev.proposal_id in (0, p.id) and ev.source == p.source
        ]
    finally:
        store.close()
    out = p.as_dict()
    out["events"] = [
        {
            "at": ev.at,
            "action": ev.action.value,
            "actor": ev.actor,
            "note": ev.note,
            "import_id": ev.import_id,
            "proposal_id": ev.proposal_id,
        }
        for ev in events
    ]
    return out


def decide(
    db: str, ids: Sequence[int], accept: bool, *, reviewer: str, reason: str
) -> list[dict[str, object]]:
    """Accept or reject proposals (see :func:`sluice.registry.proposals.accept`).

    Raises:
        RegistryError: ``registry.no_proposal``, ``registry.bad_proposal`` or store failure.
    """
    from sluice.registry import proposals

    store = open_store(db)
    try:
        fn = proposals.accept if accept else proposals.reject
        return [o.as_dict() for o in fn(store, ids, reviewer=reviewer, reason=reason)]
    finally:
        store.close()


def impact(
    entries: Sequence[str] | Sequence[tuple[Kind, str]],
    flows: Sequence[str | Path],
    *,
    own: Sequence[str] = (),
    max_names: int = MAX_NAMES,
) -> ImpactReport:
    """Collateral-impact preview of entries (as typed, or parsed) over flow logs or captures.

    Raises:
        RegistryError: ``registry.bad_indicator``, ``registry.bad_traffic``, ``registry.io_error``.
    """
    from sluice.registry.impact import parse_entry, preview_impact, read_traffic, shared_lookup

    parsed = [parse_entry(e) if isinstance(e, str) else e for e in entries]
    traffic = read_traffic(flows)
    return preview_impact(parsed, traffic, own=own, shared=shared_lookup(), max_names=max_names)


def import_preview(
    paths: Sequence[str | Path],
    fmt: str,
    flows: Sequence[str | Path],
    *,
    source: str = "",
    own: Sequence[str] = (),
    max_names: int = MAX_NAMES,
) -> ImpactReport:
    """The impact preview of every entry an import file gives (nothing is written).

    Raises:
        RegistryError: the file is refused (as an import would refuse it), or bad traffic.
    """
    from sluice.registry.importers import parse_files

    result = parse_files(paths, fmt, source=source)
    return impact([(Kind(k), i) for k, i in result.entries], flows, own=own, max_names=max_names)


# -- sources and lists fetched from URLs --

FETCH_MAX_BYTES = DEFAULT_MAX_BYTES
FETCH_TIMEOUT_S = DEFAULT_TIMEOUT_S


def sources_list(db: str) -> list[dict[str, Any]]:
    """Every source with its entries per kind, last import and origin (see
    :func:`sluice.registry.sources.list_sources`)."""
    from sluice.registry import sources

    store = open_store(db)
    try:
        return sources.list_sources(store)
    finally:
        store.close()


def sources_rename(db: str, old: str, new: str) -> dict[str, Any]:
    """Rename a source (audited; see :func:`sluice.registry.sources.rename_source`).

    Returns:
        ``{"old", "new", "moved", "added_import", "removed_import"}``.
    """
    from sluice.registry import sources

    store = open_store(db)
    try:
        gained, lost = sources.rename_source(store, old, new)
    finally:
        store.close()
    return {
        "old": old,
        "new": new,
        "moved": gained.added,
        "added_import": gained.import_id,
        "removed_import": lost.import_id,
    }


def sources_remove(db: str, name: str, *, dry_run: bool = False) -> ImportSummary:
    """Remove a source's entries and URL (audited; see :func:`sluice.registry.sources.remove_source`)."""
    from sluice.registry import sources

    store = open_store(db)
    try:
        return sources.remove_source(store, name, dry_run=dry_run)
    finally:
        store.close()


def source_add(db: str, name: str, url: str, fmt: str, every: str = "0") -> dict[str, Any]:
    """Fetch ``name`` from ``url`` (``registry source add``); ``every``: ``12h`` ...

    Returns:
        The source's settings.
    """
    from sluice.registry import fetch as fetching

    every_s = fetching.parse_every(every)
    store = open_store(db)
    try:
        f = fetching.add_source(store, name, url, fmt, every_s)
    finally:
        store.close()
    return {"name": name, "url": f.url, "format": f.fmt, "every_s": f.every_s}


def fetch(
    db: str,
    names: Sequence[str],
    cache_dir: str | Path | None = None,
    **limits: Any,
) -> list[FetchOutcome]:
    """Fetch sources and import what changed (see :func:`sluice.registry.fetch.fetch_sources`);
    ``cache_dir`` None: :func:`~sluice.registry.fetch.cache_dir_for` the register."""
    from sluice.registry import fetch as fetching

    store = open_store(db)
    try:
        return fetching.fetch_sources(store, names, cache_dir or fetching.cache_dir_for(db), **limits)
    finally:
        store.close()
