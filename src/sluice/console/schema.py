"""The console's own tables, beside the register's in the same database by default.

Tables (all prefixed ``console_`` so they never meet the register's):

* ``console_meta``: ``schema_version``;
* ``console_users``: name, role, password hash (:mod:`sluice.console.passwords`), disabled flag;
* ``console_sessions``: browser sessions (SHA-256 of the cookie value, CSRF token, expiry);
* ``console_tokens``: API tokens (SHA-256 of the token, role, expiry, revocation);
* ``console_login_failures``: failed logins per user name and per address (rate limit);
* ``console_audit``: append-only (triggers refuse UPDATE and DELETE): who, when, from where,
  what and with which outcome, for every change the console makes or requests.

:func:`migrate` creates them, or upgrades an older layout, in one transaction.
"""

from __future__ import annotations

from sluice.console.db import Database, DatabaseError

__all__ = ["CONSOLE_SCHEMA_VERSION", "migrate"]

CONSOLE_SCHEMA_VERSION = 1
"""Version of the console's table layout, stored in ``console_meta``."""


def _tables(db: Database) -> list[str]:
    serial = "BIGSERIAL PRIMARY KEY" if db.postgres else "INTEGER PRIMARY KEY"
    big = "BIGINT" if db.postgres else "INTEGER"
    return [
        "CREATE TABLE IF NOT EXISTS console_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS console_users (
  id {serial}, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, password TEXT NOT NULL,
  disabled {big} NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS console_sessions (
  id {serial}, digest TEXT NOT NULL UNIQUE, user_id {big} NOT NULL REFERENCES console_users(id),
  csrf TEXT NOT NULL, created_at TEXT NOT NULL, expires {big} NOT NULL, address TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS console_tokens (
  id {serial}, digest TEXT NOT NULL UNIQUE, user_id {big} NOT NULL REFERENCES console_users(id),
  name TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL, expires {big} NOT NULL,
  revoked_at TEXT NOT NULL DEFAULT '', last_used TEXT NOT NULL DEFAULT '')""",
        f"""CREATE TABLE IF NOT EXISTS console_login_failures (
  id {serial}, name TEXT NOT NULL, address TEXT NOT NULL, at {big} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS console_login_failures_name ON console_login_failures (name, at)",
        "CREATE INDEX IF NOT EXISTS console_login_failures_address ON console_login_failures (address, at)",
        f"""CREATE TABLE IF NOT EXISTS console_audit (
  id {serial}, at TEXT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL, via TEXT NOT NULL,
  address TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL,
  detail TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS console_audit_action ON console_audit (action, id)",
    ]


def _triggers(db: Database) -> list[str]:
    if db.postgres:
        return [
            """CREATE OR REPLACE FUNCTION console_audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'console audit is append-only'; END; $$ LANGUAGE plpgsql""",
            "DROP TRIGGER IF EXISTS console_audit_append_only ON console_audit",
            """CREATE TRIGGER console_audit_append_only BEFORE UPDATE OR DELETE ON console_audit
  FOR EACH ROW EXECUTE FUNCTION console_audit_append_only()""",
        ]
    return [
        """CREATE TRIGGER IF NOT EXISTS console_audit_no_update BEFORE UPDATE ON console_audit
  BEGIN SELECT RAISE(ABORT, 'console audit is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS console_audit_no_delete BEFORE DELETE ON console_audit
  BEGIN SELECT RAISE(ABORT, 'console audit is append-only'); END""",
    ]


def migrate(db: Database) -> None:
    """Create the console's tables (or check their version) in one transaction.

    Raises:
        DatabaseError: the database fails, or holds a console schema newer than this sluice knows.
    """
    with db.transaction():
        if db.postgres:
            db.run("SELECT pg_advisory_xact_lock(hashtext('sluice.console.schema'))")
        for stmt in [*_tables(db), *_triggers(db)]:
            db.run(stmt)
        row = db.one("SELECT value FROM console_meta WHERE key = 'schema_version'")
        if row is None:
            db.run(
                "INSERT INTO console_meta (key, value) VALUES ('schema_version', ?)",
                (str(CONSOLE_SCHEMA_VERSION),),
            )
        elif str(row[0]) != str(CONSOLE_SCHEMA_VERSION):
            raise DatabaseError(
                f"console schema version {row[0]} is not one this sluice knows ({CONSOLE_SCHEMA_VERSION})"
            )
