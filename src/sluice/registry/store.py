"""Where the register lives: the :class:`RegistryStore` protocol and its SQLite implementation.

Theory of operation
-------------------
Three tables hold the register:

* ``entries``: the current state, one row per ``(source, kind, indicator)`` with the Unicode
  display form, the legal basis (JSON array of ``[authority, number, date]``), when it was added
  and by which import.
* ``imports``: one row per sync of a source (file, digest, counts, the dump's own time stamp).
* ``audit``: append-only (triggers refuse UPDATE and DELETE), one row per change: added, removed,
  changed (basis), with the old and new basis and the import that did it.

A sync (:meth:`RegistryStore.apply_sync`) writes the difference a caller computed against
:meth:`RegistryStore.source_state` in **one transaction**: the import row, the entry inserts,
updates and deletes, and their audit rows.  A failure anywhere rolls all of it back, so a crash
half-way leaves the previous register as it was.  :class:`SqliteStore` is the default (a file
path); :class:`~sluice.registry.pgstore.PostgresStore` serves several gateways from one
PostgreSQL database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sluice.registry.model import (
    AuditAction,
    AuditRecord,
    Entry,
    ImportRecord,
    Kind,
    RegistryError,
    basis_from_json,
)

__all__ = [
    "EntryRow",
    "ImportMeta",
    "RegistryStore",
    "SqliteStore",
    "open_store",
]

SCHEMA_VERSION = 1
"""Version of the table layout, stored in ``meta``."""

SQLITE_CACHE_KIB = 256 * 1024
"""SQLite page cache (KiB): a sync of a million entries touches a few hundred MB of B-tree."""

EntryRow = tuple[str, str, str, str]
"""``(kind, indicator, display, basis_json)`` as a sync writes it."""

ImportMeta = tuple[str, str, str, str, int, int, str]
"""``(fmt, path, sha256, at, rows, rejected, dump_time)`` of one sync."""

_IMPORT_COLS = (
    "id, source, fmt, path, sha256, at, rows, entries, added, removed, changed, rejected, dump_time"
)


@runtime_checkable
class RegistryStore(Protocol):
    """What the register services need from a database."""

    def source_state(self, source: str) -> dict[tuple[str, str], str]:
        """Current entries of one source: ``(kind, indicator) -> basis_json``."""
        ...

    def apply_sync(
        self,
        source: str,
        meta: ImportMeta,
        added: Sequence[EntryRow],
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        """Write one sync in one transaction; return the new import id.

        ``removed`` holds ``(kind, indicator, old_basis)``; ``changed`` holds
        ``(kind, indicator, old_basis, new_basis)``.
        """
        ...

    def rows(self, source: str | None = None) -> Iterator[tuple[str, str, str, str]]:
        """Every current entry as ``(source, kind, indicator, basis_json)``."""
        ...

    def entries(self, source: str | None = None) -> Iterator[Entry]:
        """Every current entry."""
        ...

    def lookup(self, indicator: str) -> list[Entry]:
        """Current entries with exactly this canonical indicator (any source, kind)."""
        ...

    def history(self, indicator: str) -> list[AuditRecord]:
        """Audit records of one canonical indicator, oldest first."""
        ...

    def imports(self, source: str | None = None, limit: int = 50) -> list[ImportRecord]:
        """Recent imports, newest first."""
        ...

    def stats(self) -> dict[str, dict[str, int]]:
        """Entry counts: ``{source: {kind: count}}``."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class _SqlStore:
    """The SQL shared by the SQLite and PostgreSQL stores (``P`` is the placeholder)."""

    P = "?"
    conn: Any

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.P) if self.P != "?" else sql

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(self._q(sql), params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        cur.close()
        return rows

    def source_state(self, source: str) -> dict[tuple[str, str], str]:
        """Current entries of one source: ``(kind, indicator) -> basis_json``."""
        rows = self._all("SELECT kind, indicator, basis FROM entries WHERE source = ?", (source,))
        return {(k, i): b for k, i, b in rows}

    def rows(self, source: str | None = None) -> Iterator[tuple[str, str, str, str]]:
        """Every current entry as ``(source, kind, indicator, basis_json)``."""
        sql = "SELECT source, kind, indicator, basis FROM entries"
        params: tuple[str, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            params = (source,)
        cur = self.conn.cursor()
        cur.execute(self._q(sql), params)
        while True:
            chunk = cur.fetchmany(10000)
            if not chunk:
                break
            yield from chunk
        cur.close()

    def entries(self, source: str | None = None) -> Iterator[Entry]:
        """Every current entry."""
        sql = "SELECT source, kind, indicator, display, basis, added_at FROM entries"
        params: tuple[str, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            params = (source,)
        cur = self.conn.cursor()
        cur.execute(self._q(sql), params)
        for s, k, i, d, b, a in cur:
            yield Entry(Kind(k), i, s, basis_from_json(b), d, a)
        cur.close()

    def lookup(self, indicator: str) -> list[Entry]:
        """Current entries with exactly this canonical indicator (any source, kind)."""
        rows = self._all(
            "SELECT e.source, e.kind, e.indicator, e.display, e.basis, e.added_at FROM"
            " (SELECT DISTINCT source, kind FROM audit WHERE indicator = ?) a JOIN entries e"
            " ON e.source = a.source AND e.kind = a.kind AND e.indicator = ?"
            " ORDER BY e.source, e.kind",
            (indicator, indicator),
        )
        return [Entry(Kind(k), i, s, basis_from_json(b), d, a) for s, k, i, d, b, a in rows]

    def history(self, indicator: str) -> list[AuditRecord]:
        """Audit records of one canonical indicator, oldest first."""
        rows = self._all(
            "SELECT at, action, source, kind, indicator, import_id, old_basis, new_basis"
            " FROM audit WHERE indicator = ? ORDER BY id",
            (indicator,),
        )
        return [
            AuditRecord(at, AuditAction(a), s, Kind(k), i, int(imp), basis_from_json(o), basis_from_json(n))
            for at, a, s, k, i, imp, o, n in rows
        ]

    def imports(self, source: str | None = None, limit: int = 50) -> list[ImportRecord]:
        """Recent imports, newest first."""
        sql = f"SELECT {_IMPORT_COLS} FROM imports"  # noqa: S608 - constant column list
        params: list[object] = []
        if source is not None:
            sql += " WHERE source = ?"
            params.append(source)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [ImportRecord(*r) for r in self._all(sql, params)]

    def stats(self) -> dict[str, dict[str, int]]:
        """Entry counts: ``{source: {kind: count}}``."""
        out: dict[str, dict[str, int]] = {}
        rows = self._all("SELECT source, kind, COUNT(*) FROM entries GROUP BY source, kind")
        for s, k, n in rows:
            out.setdefault(s, {})[k] = int(n)
        return out

    # -- writing (inside a transaction the subclass opened) --

    def _write_sync(
        self,
        cur: Any,
        source: str,
        meta: ImportMeta,
        added: Sequence[EntryRow],
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        fmt, path, sha, at, nrows, rejected, dump_time = meta
        cur.execute(
            self._q(
                "INSERT INTO imports (source, fmt, path, sha256, at, rows, entries, added,"
                " removed, changed, rejected, dump_time) VALUES (?,?,?,?,?,?,0,?,?,?,?,?)"
                " RETURNING id"
            ),
            (source, fmt, path, sha, at, nrows, len(added), len(removed), len(changed), rejected, dump_time),
        )
        import_id = int(cur.fetchone()[0])
        if removed:
            cur.executemany(
                self._q("DELETE FROM entries WHERE source = ? AND kind = ? AND indicator = ?"),
                [(source, k, i) for k, i, _ in removed],
            )
            cur.executemany(
                self._q(
                    "INSERT INTO audit (at, import_id, action, source, kind, indicator,"
                    " old_basis, new_basis) VALUES (?,?,'removed',?,?,?,?,'[]')"
                ),
                [(at, import_id, source, k, i, b) for k, i, b in removed],
            )
        if changed:
            cur.executemany(
                self._q("UPDATE entries SET basis = ? WHERE source = ? AND kind = ? AND indicator = ?"),
                [(new, source, k, i) for k, i, _, new in changed],
            )
            cur.executemany(
                self._q(
                    "INSERT INTO audit (at, import_id, action, source, kind, indicator,"
                    " old_basis, new_basis) VALUES (?,?,'changed',?,?,?,?,?)"
                ),
                [(at, import_id, source, k, i, old, new) for k, i, old, new in changed],
            )
        if added:
            self._insert_entries(cur, source, at, import_id, added)
            cur.execute(
                self._q(
                    "INSERT INTO audit (at, import_id, action, source, kind, indicator,"
                    " old_basis, new_basis) SELECT ?, import_id, 'added', source, kind,"
                    " indicator, '[]', basis FROM entries WHERE source = ? AND import_id = ?"
                ),
                (at, source, import_id),
            )
        cur.execute(self._q("SELECT COUNT(*) FROM entries WHERE source = ?"), (source,))
        total = int(cur.fetchone()[0])
        cur.execute(self._q("UPDATE imports SET entries = ? WHERE id = ?"), (total, import_id))
        return import_id

    def _insert_entries(
        self, cur: Any, source: str, at: str, import_id: int, added: Sequence[EntryRow]
    ) -> None:
        cur.executemany(
            self._q(
                "INSERT INTO entries (source, kind, indicator, display, basis, added_at,"
                " import_id) VALUES (?,?,?,?,?,?,?)"
            ),
            ((source, k, i, d, b, at, import_id) for k, i, d, b in added),
        )


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
  id INTEGER PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
  sha256 TEXT NOT NULL, at TEXT NOT NULL, rows INTEGER NOT NULL, entries INTEGER NOT NULL,
  added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL,
  rejected INTEGER NOT NULL, dump_time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, display TEXT NOT NULL,
  basis TEXT NOT NULL, added_at TEXT NOT NULL, import_id INTEGER NOT NULL,
  PRIMARY KEY (source, kind, indicator)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, import_id INTEGER NOT NULL, action TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis TEXT NOT NULL, new_basis TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_indicator ON audit (indicator);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""


class SqliteStore(_SqlStore):
    """The register in one SQLite file (WAL mode).

    Args:
        path: the database file (created with its tables when absent).

    Raises:
        RegistryError: ``registry.store_unavailable`` when the file cannot be opened or is not a
            register of a known schema version.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(_SQLITE_SCHEMA)
            self.conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise RegistryError("registry.store_unavailable", str(exc), self.path) from exc
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise RegistryError("registry.store_unavailable", f"unknown schema version {row}", self.path)

    def apply_sync(
        self,
        source: str,
        meta: ImportMeta,
        added: Sequence[EntryRow],
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        """Write one sync in one transaction; return the new import id."""
        try:
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                import_id = self._write_sync(cur, source, meta, added, removed, changed)
            except BaseException:
                self.conn.rollback()
                raise
            self.conn.commit()
        except sqlite3.Error as exc:
            raise RegistryError("registry.store_failed", str(exc), self.path) from exc
        return import_id

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()


def open_store(target: str | Path) -> RegistryStore:
    """Open the register named by a path (SQLite) or a ``postgresql://`` URL.

    Args:
        target: file path, or ``postgresql://user@host/db`` (``postgres://`` also accepted).

    Returns:
        The store.

    Raises:
        RegistryError: ``registry.store_unavailable``.
    """
    t = str(target)
    if t.startswith(("postgresql://", "postgres://")):
        from sluice.registry.pgstore import PostgresStore

        return PostgresStore(t)
    return SqliteStore(t)
