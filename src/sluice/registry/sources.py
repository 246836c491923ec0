"""The register's sources: list them, rename one, remove one, and the URL a source is fetched from.

A *source* is a list the register syncs (``rkn``, ``hagezis-fake-dns-blocklist``): its entries,
its imports and, for a list fetched from a URL, its settings (``source:NAME`` in ``meta``:
URL, format, interval and the HTTP validators of the last good copy, see
:mod:`sluice.registry.fetch`).

Renaming and removing go through the sync path (:func:`~sluice.registry.sync.sync_result`), so
each is audited as imports are: an import row (format ``rename`` or ``remove``) and one audit
row per entry.  A rename moves every entry of OLD to NEW in one transaction (NEW: ``added``
with OLD's last import's format, row count and dump time, so the guards of the next import of
NEW compare with it; OLD: ``removed``), and a decision whose authority was OLD's name (a list's
own name, see :mod:`~sluice.registry.importers.lists`) names NEW, so the next import of NEW
finds its entries unchanged.  Both sources' write locks are held throughout.
"""

from __future__ import annotations

__all__ = [
    "SOURCE_KEY",
    "SourceFeed",
    "feed",
    "feeds",
    "list_sources",
    "remove_source",
    "rename_source",
    "save_feed",
]

import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sluice.registry.importers import ParseResult
from sluice.registry.model import ImportSummary, LegalBasis, RegistryError
from sluice.registry.stores import RegistryStore
from sluice.registry.sync import sync_result

SOURCE_KEY = "source:"
"""Prefix of a fetched source's settings key in ``meta``."""
_NAME = re.compile(r"[^\s/\\;]{1,120}")
"""A source name: no white space, slash, backslash or ``;``, at most 120 characters."""


@dataclass(slots=True)
class SourceFeed:
    """Where a source is fetched from, and what its last fetch gave."""

    url: str
    """``http://`` or ``https://`` URL of the list."""
    fmt: str
    """Its format (one of :data:`~sluice.registry.importers.FORMATS`)."""
    every_s: float = 0.0
    """Seconds between fetches of ``registry fetch`` without names (0: every time)."""
    etag: str = ""
    """``ETag`` of the last good copy (sent as ``If-None-Match``)."""
    last_modified: str = ""
    """``Last-Modified`` of the last good copy (sent as ``If-Modified-Since``)."""
    sha256: str = ""
    """Digest of the last good copy."""
    checked_at: str = ""
    """When the URL was last asked (ISO 8601 UTC)."""
    good_at: str = ""
    """When the last good copy was fetched."""
    status: str = ""
    """What the last fetch did: ``imported``, ``not-modified``, ``unchanged``, ``refused``, ``failed``."""
    detail: str = ""
    """Why, when refused or failed (reason code and message)."""

    def to_json(self) -> str:
        """The settings value."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SourceFeed:
        """Read a settings value (unknown keys ignored)."""
        d = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def check_name(name: str) -> str:
    """A valid source name, or ``registry.bad_source``."""
    if not _NAME.fullmatch(name):
        raise RegistryError(
            "registry.bad_source",
            f"{name!r} is not a source name (1-120 characters, no white space, '/', '\\\\' or ';')",
        )
    return name


def feeds(store: RegistryStore) -> dict[str, SourceFeed]:
    """Every source fetched from a URL: name -> its settings."""
    return {k[len(SOURCE_KEY) :]: SourceFeed.from_json(v) for k, v in store.settings(SOURCE_KEY).items()}


def feed(store: RegistryStore, name: str) -> SourceFeed | None:
    """The URL settings of one source (None: not fetched from a URL)."""
    got = store.settings(SOURCE_KEY + name).get(SOURCE_KEY + name)
    return SourceFeed.from_json(got) if got is not None else None


def save_feed(store: RegistryStore, name: str, f: SourceFeed) -> None:
    """Store a source's URL settings."""
    store.put_setting(SOURCE_KEY + check_name(name), f.to_json())


def list_sources(store: RegistryStore) -> list[dict[str, Any]]:
    """Every source: entries per kind, its last import and where it comes from.

    Returns:
        One dict per source, by name: ``name``, ``entries`` (kind -> count), ``total``,
        ``last_import`` (id, at, format, rows, added, removed, changed, dump_time; None when
        never imported), ``origin`` (the URL it is fetched from, else the file of its last
        import), ``fetch`` (the URL settings and last fetch's outcome; None when none).
    """
    counts = store.stats()
    fed = feeds(store)
    out = []
    for name in sorted({*counts, *fed, *_imported(store)}):
        last = store.imports(name, limit=1)
        imp = last[0] if last else None
        f = fed.get(name)
        out.append(
            {
                "name": name,
                "entries": dict(sorted(counts.get(name, {}).items())),
                "total": sum(counts.get(name, {}).values()),
                "last_import": None
                if imp is None
                else {
                    "id": imp.import_id,
                    "at": imp.at,
                    "format": imp.fmt,
                    "rows": imp.rows,
                    "added": imp.added,
                    "removed": imp.removed,
                    "changed": imp.changed,
                    "dump_time": imp.dump_time,
                },
                "origin": f.url if f is not None else (imp.path if imp is not None else ""),
                "fetch": None if f is None else asdict(f),
            }
        )
    return out


def _imported(store: RegistryStore) -> set[str]:
    """Sources with an import row but no entry (emptied; removed and renamed ones left out)."""
    last: dict[str, str] = {}
    for i in store.imports(limit=1000):
        last.setdefault(i.source, i.fmt)
    return {s for s, fmt in last.items() if fmt not in ("remove", "rename")}


def _exists(store: RegistryStore, name: str) -> bool:
    return bool(store.imports(name, limit=1)) or name in store.stats() or feed(store, name) is not None


def remove_source(
    store: RegistryStore, name: str, *, dry_run: bool = False, now: datetime | None = None
) -> ImportSummary:
    """Remove every entry of ``name`` (a sync to nothing, audited) and its URL settings.

    Raises:
        RegistryError: ``registry.unknown_source``; a store failure (nothing changed then).
    """
    if not _exists(store, name):
        raise RegistryError("registry.unknown_source", f"no source {name!r} (sluice registry sources list)")
    empty = ParseResult("remove", path="sluice registry sources remove")
    with store.sync_tx(name):
        summary = sync_result(store, empty, name, path=empty.path, force=True, dry_run=dry_run, now=now)
        if not dry_run:
            store.delete_setting(SOURCE_KEY + name)
    return summary


def rename_source(
    store: RegistryStore, old: str, new: str, *, now: datetime | None = None
) -> tuple[ImportSummary, ImportSummary]:
    """Move every entry of ``old`` to ``new`` (audited as two syncs, one transaction).

    Returns:
        ``(what new gained, what old lost)``.

    Raises:
        RegistryError: ``registry.unknown_source``, ``registry.source_exists``,
            ``registry.bad_source``; a store failure (nothing changed then).
    """
    check_name(new)
    if old == new:
        raise RegistryError("registry.bad_source", f"{old!r} is already its name")
    if not _exists(store, old):
        raise RegistryError("registry.unknown_source", f"no source {old!r} (sluice registry sources list)")
    ts = now or datetime.now(UTC)
    with store.sync_tx(old), store.sync_tx(new):
        if _exists(store, new):
            raise RegistryError(
                "registry.source_exists", f"a source {new!r} exists: remove it first, or choose another name"
            )
        last = store.imports(old, limit=1)
        moved = ParseResult(last[0].fmt if last else "rename", path=f"renamed from {old}")
        if last:
            moved.rows, moved.dump_time = last[0].rows, last[0].dump_time
        for e in store.entries(old):
            for b in e.basis or (LegalBasis(),):
                nb = LegalBasis(new, b.number, b.date) if b.authority == old else b
                moved.add(e.kind, e.indicator, e.display, nb)
        sha = last[0].sha256 if last else ""
        gained = sync_result(store, moved, new, path=moved.path, sha256=sha, force=True, now=ts)
        gone = ParseResult("rename", path=f"renamed to {new}")
        lost = sync_result(store, gone, old, path=gone.path, force=True, now=ts)
        f = feed(store, old)
        if f is not None:
            save_feed(store, new, f)
            store.delete_setting(SOURCE_KEY + old)
    return gained, lost
