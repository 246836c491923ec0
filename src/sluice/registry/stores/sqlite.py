"""The register in one SQLite file (WAL mode): the default store, named by a file path."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from sluice.registry.model import RegisterNotFound, RegistryError
from sluice.registry.stores.base import (
    BULK_CHANGES,
    KNOWN_VERSIONS,
    NOT_A_REGISTER,
    SCHEMA_VERSION,
    Added,
    ImportMeta,
)
from sluice.registry.stores.migrations import migrate_v1_statements, migrate_v2_statements
from sluice.registry.stores.sql import SqlStore

__all__ = ["SQLITE_SCHEMA", "SqliteStore"]

SQLITE_BUSY_TIMEOUT_S = 600.0
"""How long a SQLite writer waits for another's transaction (an import of a million entries
holds it for a minute on a slow disk); then ``registry.store_failed``."""
SQLITE_CACHE_KIB = 256 * 1024
"""SQLite page cache (KiB): a sync of a million entries touches a hundred MB of B-tree."""

SQLITE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS imports (
  id INTEGER PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
  sha256 TEXT NOT NULL, at TEXT NOT NULL, rows INTEGER NOT NULL, entries INTEGER NOT NULL,
  added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL,
  rejected INTEGER NOT NULL, dump_time TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS bases (id INTEGER PRIMARY KEY, basis TEXT NOT NULL UNIQUE)",
    """CREATE TABLE IF NOT EXISTS entries (
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, display TEXT NOT NULL,
  basis_id INTEGER NOT NULL, import_id INTEGER NOT NULL,
  PRIMARY KEY (source, kind, indicator)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY, import_id INTEGER NOT NULL, action TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis INTEGER, new_basis INTEGER)""",
    "CREATE INDEX IF NOT EXISTS audit_indicator ON audit (indicator)",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
]
"""The version-2 layout (then migrated to 3 by :data:`_SQLITE_MIGRATE_V2`)."""


_SQLITE_MIGRATE_V2 = migrate_v2_statements(
    "INTEGER PRIMARY KEY",
    "INTEGER",
    [
        """CREATE TRIGGER proposals_final BEFORE UPDATE ON proposals WHEN OLD.state <> 'proposed'
  BEGIN SELECT RAISE(ABORT, 'a decided proposal is final'); END""",
        """CREATE TRIGGER proposals_kept BEFORE DELETE ON proposals
  BEGIN SELECT RAISE(ABORT, 'proposals are kept'); END""",
    ],
)


class SqliteStore(SqlStore):
    """The register in one SQLite file (WAL mode).

    Args:
        path: the database file.
        create: make the file and its tables when absent (``registry init``, ``registry
            import``); otherwise a missing file, or a database without the register's tables,
            is refused and nothing is created.

    Raises:
        RegisterNotFound: ``registry.no_register`` (no ``create``, and no register there).
        RegistryError: ``registry.store_unavailable`` when the file cannot be opened or is not a
            register of a known schema version.
    """

    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        self.path = str(path)
        if not create and (self.path == ":memory:" or not os.path.exists(self.path)):
            raise RegisterNotFound(self.path)
        # without create, open read-write but never create the file (SQLite's URI mode=rw)
        target = self.path if create else Path(self.path).absolute().as_uri() + "?mode=rw"
        try:
            self.conn = sqlite3.connect(
                target,
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
                uri=not create,
            )
            self._tx = False
            version = self._version()  # before any PRAGMA: journal_mode=WAL writes to the file
            if version is None and not create:
                self.conn.close()
                raise RegisterNotFound(self.path, NOT_A_REGISTER.format(path=self.path))
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            self.conn.execute("PRAGMA foreign_keys=ON")
            if version != str(SCHEMA_VERSION):
                self._upgrade()
            version = self._version()
        except sqlite3.Error as exc:
            if not create and not os.path.exists(self.path):
                raise RegisterNotFound(self.path) from exc
            raise RegistryError("registry.store_unavailable", str(exc), self.path) from exc
        if version != str(SCHEMA_VERSION):
            self.conn.close()
            raise RegistryError(
                "registry.store_unavailable",
                f"register schema version {version} is not one this sluice knows"
                f" (it reads versions {KNOWN_VERSIONS})",
                self.path,
            )

    def _version(self) -> str | None:
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if has_meta is None:
            return None
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _upgrade(self) -> None:
        """Create the tables, or migrate an older schema, in one transaction.

        A new file is made as version 2 and migrated like any version-2 register; version 1 goes
        through 2 (see :func:`migrate_v1_statements`, :func:`migrate_v2_statements`).  Another
        version is left alone (the caller refuses it).
        """
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()  # again: another process may have done it meanwhile
            if version is None:
                for stmt in SQLITE_SCHEMA:
                    c.execute(stmt)
                c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '2')")
                version = "2"
            if version == "1":
                drops = ["DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"]
                for stmt in migrate_v1_statements(drops, SQLITE_SCHEMA):
                    c.execute(stmt)
                version = "2"
            if version == "2":
                for stmt in _SQLITE_MIGRATE_V2:
                    c.execute(stmt)
        except BaseException:
            c.rollback()
            raise
        c.commit()

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception; SQLite's errors as
        :class:`RegistryError`."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise RegistryError("registry.store_failed", str(exc), self.path) from exc
        self._tx = True
        try:
            yield
        except sqlite3.Error as exc:
            self.conn.rollback()
            raise RegistryError("registry.store_failed", str(exc), self.path) from exc
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            self._tx = False
        try:
            self.conn.commit()
        except sqlite3.Error as exc:
            raise RegistryError("registry.store_failed", str(exc), self.path) from exc

    @contextlib.contextmanager
    def review(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction (writers queue on SQLite's lock); re-entrant."""
        if self._tx:
            yield
            return
        with self._immediate():
            yield

    @contextlib.contextmanager
    def sync_tx(self, source: str, bulk: bool = False) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: SQLite's one writer lock serialises syncs (of every source).

        A ``bulk`` sync runs with a rollback journal when the store has no other connection:
        WAL mode would write every new page twice (log, then checkpoint).  Both modes make the
        transaction atomic; WAL is restored afterwards.  Inside :meth:`review` the sync joins
        that transaction.
        """
        if self._tx:
            yield
            return
        bulk_mode = bulk and self._enter_bulk()
        try:
            with self._immediate():
                yield
            if bulk and not bulk_mode:
                # the WAL is as large as what the sync wrote: fold it in, give the space back
                try:
                    self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    raise RegistryError("registry.store_failed", str(exc), self.path) from exc
        finally:
            if bulk_mode:
                self._leave_bulk()

    def apply_sync(
        self,
        source: str,
        meta: ImportMeta,
        added: Added,
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        """Write one sync in one transaction (joining :meth:`sync_tx`); return the new import id."""
        big = len(added.keys) + len(removed) + len(changed) > BULK_CHANGES
        with self.sync_tx(source, big):
            try:
                return self._write_sync(self.conn.cursor(), source, meta, added, removed, changed)
            except sqlite3.Error as exc:
                raise RegistryError("registry.store_failed", str(exc), self.path) from exc

    def _enter_bulk(self) -> bool:
        """Switch to a rollback journal (synchronous=FULL) if no other connection prevents it."""
        try:
            mode = self.conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        except sqlite3.Error:
            return False
        if mode is None or str(mode[0]).lower() != "delete":
            return False
        self.conn.execute("PRAGMA synchronous=FULL")
        return True

    def _leave_bulk(self) -> None:
        self.conn.execute("PRAGMA synchronous=NORMAL")
        with contextlib.suppress(sqlite3.Error):  # a reader came meanwhile: next open sets WAL
            self.conn.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()
