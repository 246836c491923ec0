"""Schema migrations shared by the databases: version 1 -> 2 -> 3, and version 1's layout.

Each database supplies what differs (trigger statements, id column types, its version-2
schema); the statements run inside the one transaction its store opens for the upgrade.  A new
register is made as version 2 and migrated like any version-2 register, so there is one way to
each layout.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SQLITE_SCHEMA_V1", "migrate_v1_statements", "migrate_v2_statements"]

SQLITE_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE imports (
  id INTEGER PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
  sha256 TEXT NOT NULL, at TEXT NOT NULL, rows INTEGER NOT NULL, entries INTEGER NOT NULL,
  added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL,
  rejected INTEGER NOT NULL, dump_time TEXT NOT NULL);
CREATE TABLE entries (
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, display TEXT NOT NULL,
  basis TEXT NOT NULL, added_at TEXT NOT NULL, import_id INTEGER NOT NULL,
  PRIMARY KEY (source, kind, indicator)) WITHOUT ROWID;
CREATE TABLE audit (
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, import_id INTEGER NOT NULL, action TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis TEXT NOT NULL, new_basis TEXT NOT NULL);
CREATE INDEX audit_indicator ON audit (indicator);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"""
"""The layout of schema version 1 (what :func:`migrate_v1_statements` starts from)."""


def migrate_v1_statements(drop_triggers: Sequence[str], schema: Sequence[str]) -> list[str]:
    """SQL that turns a version-1 register into version 2 (to run inside one transaction).

    Version 1 kept the decisions as JSON on every entry and audit row and the import's time on
    each; version 2 keeps each decision set once (``bases``) and takes the times from
    ``imports`` (they always were the import's time).  ``'[]'`` (no basis) in the audit becomes
    NULL.  Nothing is lost: every method of the store returns what it returned before.

    Args:
        drop_triggers: statements dropping the audit table's append-only triggers (they
            differ between SQLite and PostgreSQL).
        schema: the version-2 schema statements (they put the triggers back).
    """
    return [
        *drop_triggers,
        "DROP INDEX audit_indicator",
        "ALTER TABLE entries RENAME TO entries_v1",
        "ALTER TABLE audit RENAME TO audit_v1",
        *schema,
        "INSERT INTO bases (basis) SELECT basis FROM entries_v1 UNION"
        " SELECT old_basis FROM audit_v1 WHERE old_basis <> '[]' UNION"
        " SELECT new_basis FROM audit_v1 WHERE new_basis <> '[]' ORDER BY 1",
        "INSERT INTO entries (source, kind, indicator, display, basis_id, import_id)"
        " SELECT e.source, e.kind, e.indicator, e.display, b.id, e.import_id FROM entries_v1 e"
        " JOIN bases b ON b.basis = e.basis",
        "INSERT INTO audit (id, import_id, action, source, kind, indicator, old_basis, new_basis)"
        " SELECT a.id, a.import_id, a.action, a.source, a.kind, a.indicator, o.id, n.id"
        " FROM audit_v1 a LEFT JOIN bases o ON o.basis = a.old_basis"
        " LEFT JOIN bases n ON n.basis = a.new_basis ORDER BY a.id",
        "DROP TABLE entries_v1",
        "DROP TABLE audit_v1",
        "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
    ]


def migrate_v2_statements(serial: str, bigint: str, triggers: Sequence[str]) -> list[str]:
    """SQL that turns a version-2 register into version 3 (to run inside one transaction).

    Version 3 adds the review queue: the ``proposals`` table and, on ``audit``, the columns of
    review events (own time, actor, note, proposal).  Existing rows keep NULL there (their time
    is still their import's).  A new store is made as version 2 and then migrated, so there is
    one way to each layout.

    Args:
        serial: the id column's type (``INTEGER PRIMARY KEY``, ``BIGSERIAL PRIMARY KEY``).
        bigint: the type of ``audit.proposal_id``.
        triggers: statements that make a decided proposal final.
    """
    return [
        "ALTER TABLE audit ADD COLUMN at TEXT",
        "ALTER TABLE audit ADD COLUMN actor TEXT",
        "ALTER TABLE audit ADD COLUMN note TEXT",
        f"ALTER TABLE audit ADD COLUMN proposal_id {bigint}",
        f"""CREATE TABLE proposals (
  id {serial}, kind TEXT NOT NULL, indicator TEXT NOT NULL, detector TEXT NOT NULL,
  reason TEXT NOT NULL, evidence TEXT NOT NULL, impact TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('proposed', 'accepted', 'rejected')),
  reviewer TEXT NOT NULL, decided_at TEXT NOT NULL, decision_reason TEXT NOT NULL,
  created_at TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX proposals_open ON proposals (detector, kind, indicator)"
        " WHERE state = 'proposed'",
        "CREATE INDEX proposals_key ON proposals (indicator, kind, detector)",
        "CREATE INDEX proposals_state ON proposals (state, id)",
        *triggers,
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
    ]
