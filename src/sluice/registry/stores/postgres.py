"""The register in PostgreSQL, for several gateways sharing one register (psycopg 3).

Same tables (schema version 3; versions 1 and 2 are migrated in place) and the same
one-transaction sync as :class:`~sluice.registry.stores.sqlite.SqliteStore`;
new entries are written with ``COPY`` and the audit table refuses UPDATE and DELETE with a
trigger.  Concurrent imports of one source are serialised with a transaction-level advisory lock
on the source name, taken before the source's state is read and held until the sync commits
(:meth:`PostgresStore.sync_tx`), so two gateways syncing the same source cannot interleave.  Review changes
(:meth:`PostgresStore.review`) hold a transaction-level advisory lock of their own, so two
reviewers deciding the same proposal are serialised and the second sees the first's decision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from sluice.registry import notify
from sluice.registry.model import LETTER_KIND, RegisterNotFound, RegistryError
from sluice.registry.stores.base import (
    KEY_SQL,
    KNOWN_VERSIONS,
    NOT_A_REGISTER,
    SCHEMA_VERSION,
    Added,
    ImportMeta,
)
from sluice.registry.stores.migrations import migrate_v1_statements, migrate_v2_statements
from sluice.registry.stores.sql import SqlStore

__all__ = ["PG_SCHEMA", "PostgresStore"]

_SOURCE_LOCK = "sluice.registry.source:"
"""Prefix of the advisory lock key of one source's syncs."""

PG_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS imports (
  id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
  sha256 TEXT NOT NULL, at TEXT NOT NULL, rows BIGINT NOT NULL, entries BIGINT NOT NULL,
  added BIGINT NOT NULL, removed BIGINT NOT NULL, changed BIGINT NOT NULL,
  rejected BIGINT NOT NULL, dump_time TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS bases (id BIGSERIAL PRIMARY KEY, basis TEXT NOT NULL)",
    # a B-tree entry must fit a third of a page: long decision lists are unique by digest
    "CREATE UNIQUE INDEX IF NOT EXISTS bases_basis ON bases (md5(basis))",
    """CREATE TABLE IF NOT EXISTS entries (
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, display TEXT NOT NULL,
  basis_id BIGINT NOT NULL, import_id BIGINT NOT NULL,
  PRIMARY KEY (source, kind, indicator))""",
    """CREATE TABLE IF NOT EXISTS audit (
  id BIGSERIAL PRIMARY KEY, import_id BIGINT NOT NULL, action TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis BIGINT, new_basis BIGINT)""",
    "CREATE INDEX IF NOT EXISTS audit_indicator ON audit (indicator)",
    """CREATE OR REPLACE FUNCTION sluice_audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit is append-only'; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_append_only ON audit",
    """CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only()""",
]

_PG_MIGRATE_V1 = [
    *migrate_v1_statements(["DROP TRIGGER IF EXISTS audit_append_only ON audit"], PG_SCHEMA),
    "SELECT setval(pg_get_serial_sequence('audit', 'id'),"
    " (SELECT COALESCE(MAX(id), 0) + 1 FROM audit), false)",
]


_PG_MIGRATE_V2 = migrate_v2_statements(
    "BIGSERIAL PRIMARY KEY",
    "BIGINT",
    [
        """CREATE OR REPLACE FUNCTION sluice_proposal_final() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'proposals are kept'; END IF;
  IF OLD.state <> 'proposed' THEN RAISE EXCEPTION 'a decided proposal is final'; END IF;
  RETURN NEW;
END; $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER proposals_final BEFORE UPDATE OR DELETE ON proposals
  FOR EACH ROW EXECUTE FUNCTION sluice_proposal_final()""",
    ],
)


class PostgresStore(SqlStore):
    """The register in a PostgreSQL database.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (libpq syntax, so
            ``?host=/path/to/socket`` works for Unix sockets).

        create: create the register's tables when the database has none (``registry init``,
            ``registry import``); otherwise such a database is refused.

    Raises:
        RegisterNotFound: ``registry.no_register`` (no tables, and not ``create``).
        RegistryError: ``registry.store_unavailable`` when psycopg is missing, the server is
            unreachable or the database holds another schema version.
    """

    P = "%s"
    _KEY_ORDER = 'kind COLLATE "C", indicator COLLATE "C"'
    _KEY_ORDER_SOURCE = 'e.source COLLATE "C", e.kind COLLATE "C", e.indicator COLLATE "C"'
    _SOURCE_KEYS_SQL = (
        f"SELECT string_agg(k, chr(1) ORDER BY {_KEY_ORDER}), string_agg(b, chr(1) ORDER BY {_KEY_ORDER}),"  # noqa: S608
        f" COUNT(*) FROM (SELECT {KEY_SQL} AS k, CAST(basis_id AS TEXT) AS b, kind, indicator"
        " FROM entries WHERE source = %s) t"
    )

    def __init__(self, url: str, *, create: bool = False) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RegistryError(
                "registry.store_unavailable",
                "PostgreSQL needs psycopg: pip install 'sluice[postgres]'",
                url,
            ) from exc
        self._psycopg: Any = psycopg
        try:
            self.conn = psycopg.connect(url, autocommit=True)
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('sluice.registry.schema'))")
                version = self._version(cur)
                if version is None and not create:
                    raise RegisterNotFound(url, NOT_A_REGISTER.format(path=url))
                if version is None:  # made as version 2, then migrated as any version 2
                    for stmt in PG_SCHEMA:
                        cur.execute(stmt)
                    cur.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', '2') ON CONFLICT DO NOTHING"
                    )
                    version = "2"
                if version == "1":
                    for stmt in _PG_MIGRATE_V1:
                        cur.execute(stmt)
                    version = "2"
                if version == "2":
                    for stmt in _PG_MIGRATE_V2:
                        cur.execute(stmt)
                version = self._version(cur)
                notify.install(cur)  # every import row notifies listening gateways
        except psycopg.Error as exc:
            raise RegistryError("registry.store_unavailable", str(exc).strip(), url) from exc
        except RegisterNotFound:
            self.conn.close()
            raise
        if version != str(SCHEMA_VERSION):
            self.conn.close()
            raise RegistryError(
                "registry.store_unavailable",
                f"register schema version {version} is not one this sluice knows"
                f" (it reads versions {KNOWN_VERSIONS})",
                url,
            )

    @staticmethod
    def _version(cur: Any) -> str | None:
        cur.execute("SELECT to_regclass('meta') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
        row = cur.fetchone()
        return None if row is None else str(row[0])

    @contextlib.contextmanager
    def sync_tx(self, source: str, bulk: bool = False) -> Iterator[None]:
        """A transaction holding the source's advisory lock (re-entrant: a savepoint inside).

        Taken first, so that every read after it (READ COMMITTED: a new snapshot per statement)
        sees what the previous holder committed.
        """
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_SOURCE_LOCK + source,))
                yield
        except self._psycopg.Error as exc:
            raise RegistryError("registry.store_failed", str(exc).strip()) from exc

    def apply_sync(
        self,
        source: str,
        meta: ImportMeta,
        added: Added,
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        """Write one sync in one transaction (joining :meth:`sync_tx`); return the new import id."""
        with self.sync_tx(source):
            try:
                with self.conn.cursor() as cur:
                    return self._write_sync(cur, source, meta, added, removed, changed)
            except self._psycopg.Error as exc:
                raise RegistryError("registry.store_failed", str(exc).strip()) from exc

    @contextlib.contextmanager
    def review(self) -> Iterator[None]:
        """One transaction holding the review lock; re-entrant (an inner one is a savepoint)."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('sluice.registry.review'))")
                yield
        except self._psycopg.Error as exc:
            raise RegistryError("registry.store_failed", str(exc).strip()) from exc

    def _insert_entries(self, cur: Any, source: str, import_id: int, added: Added, bids: list[int]) -> None:
        with cur.copy(
            "COPY entries (source, kind, indicator, display, basis_id, import_id) FROM STDIN"
        ) as copy:
            for k, d, b in zip(added.keys, added.display, bids, strict=True):
                copy.write_row((source, LETTER_KIND[k[0]], k[1:], d, b, import_id))

    def _lock_bases(self, cur: Any) -> None:
        # syncs of different sources may add the same decision set: one at a time
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('sluice.registry.bases'))")

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()
