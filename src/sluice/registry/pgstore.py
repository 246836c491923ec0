"""The register in PostgreSQL, for several gateways sharing one register (psycopg 3).

Same tables and the same one-transaction sync as :class:`~sluice.registry.store.SqliteStore`;
new entries are written with ``COPY`` and the audit table refuses UPDATE and DELETE with a
trigger.  Concurrent imports of one source are serialised with a transaction-level advisory lock
on the source name, so two gateways syncing the same dump cannot interleave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluice.registry.model import RegistryError
from sluice.registry.store import SCHEMA_VERSION, EntryRow, ImportMeta, _SqlStore

__all__ = ["PostgresStore"]

_PG_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS imports (
  id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
  sha256 TEXT NOT NULL, at TEXT NOT NULL, rows BIGINT NOT NULL, entries BIGINT NOT NULL,
  added BIGINT NOT NULL, removed BIGINT NOT NULL, changed BIGINT NOT NULL,
  rejected BIGINT NOT NULL, dump_time TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS entries (
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, display TEXT NOT NULL,
  basis TEXT NOT NULL, added_at TEXT NOT NULL, import_id BIGINT NOT NULL,
  PRIMARY KEY (source, kind, indicator))""",
    """CREATE TABLE IF NOT EXISTS audit (
  id BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, import_id BIGINT NOT NULL, action TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis TEXT NOT NULL, new_basis TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_indicator ON audit (indicator)",
    """CREATE OR REPLACE FUNCTION sluice_audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit is append-only'; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_append_only ON audit",
    """CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only()""",
    "INSERT INTO meta (key, value) VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
]


class PostgresStore(_SqlStore):
    """The register in a PostgreSQL database.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (libpq syntax, so
            ``?host=/path/to/socket`` works for Unix sockets).

    Raises:
        RegistryError: ``registry.store_unavailable`` when psycopg is missing, the server is
            unreachable or the database holds another schema version.
    """

    P = "%s"

    def __init__(self, url: str) -> None:
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
                for stmt in _PG_SCHEMA:
                    cur.execute(stmt, (str(SCHEMA_VERSION),) if "%s" in stmt else None)
                cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise RegistryError("registry.store_unavailable", str(exc).strip(), url) from exc
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise RegistryError("registry.store_unavailable", f"unknown schema version {row}", url)

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
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (source,))
                return self._write_sync(cur, source, meta, added, removed, changed)
        except self._psycopg.Error as exc:
            raise RegistryError("registry.store_failed", str(exc).strip()) from exc

    def _insert_entries(
        self, cur: Any, source: str, at: str, import_id: int, added: Sequence[EntryRow]
    ) -> None:
        with cur.copy(
            "COPY entries (source, kind, indicator, display, basis, added_at, import_id) FROM STDIN"
        ) as copy:
            for k, i, d, b in added:
                copy.write_row((source, k, i, d, b, at, import_id))

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()
