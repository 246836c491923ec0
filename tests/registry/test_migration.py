"""Older schemas are migrated in place: version 1 (decisions as JSON on every row) through 2 to 3,
and version 2 (no review queue) to 3, keeping every entry, import and audit row; other versions are
refused, naming the version.  SQLite and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sluice.registry.model import AuditAction, Kind, LegalBasis, RegistryError, basis_to_json
from sluice.registry.stores import SCHEMA_VERSION, RegistryStore, SqliteStore
from sluice.registry.stores.migrations import SQLITE_SCHEMA_V1
from sluice.registry.sync import import_files

from .conftest import PgServer

B1 = basis_to_json((LegalBasis("суд", "2-1/2020", "2020-01-01"),))
B2 = basis_to_json((LegalBasis("ФНС", "2-6/1", "2021-02-03"), LegalBasis("суд", "2-1/2020", "2020-01-01")))
T1, T2 = "2024-01-01T00:00:00+00:00", "2024-02-01T00:00:00+00:00"

# what the version-1 code wrote for two imports: 1 adds a, b, c; 2 removes a, changes b
V1_IMPORTS = [
    (1, "rkn", "rkn-csv", "dump.csv", "0" * 64, T1, 3, 3, 3, 0, 0, 0, "2024-01-01 00:00:00 +0000"),
    (2, "rkn", "rkn-csv", "dump.csv", "1" * 64, T2, 2, 2, 0, 1, 1, 0, "2024-02-01 00:00:00 +0000"),
]
V1_ENTRIES = [
    ("rkn", "domain", "xn--e1afmkfd.xn--p1ai", "пример.рф", B2, T1, 1),
    ("rkn", "url", "http://x.org/a;b", "", B1, T1, 1),
]
V1_AUDIT = [
    (1, T1, 1, "added", "rkn", "ip", "1.2.3.4", "[]", B1),
    (2, T1, 1, "added", "rkn", "domain", "xn--e1afmkfd.xn--p1ai", "[]", B1),
    (3, T1, 1, "added", "rkn", "url", "http://x.org/a;b", "[]", B1),
    (4, T2, 2, "removed", "rkn", "ip", "1.2.3.4", B1, "[]"),
    (5, T2, 2, "changed", "rkn", "domain", "xn--e1afmkfd.xn--p1ai", B1, B2),
]

PG_SCHEMA_V1 = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE imports (id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL,
  path TEXT NOT NULL, sha256 TEXT NOT NULL, at TEXT NOT NULL, rows BIGINT NOT NULL,
  entries BIGINT NOT NULL, added BIGINT NOT NULL, removed BIGINT NOT NULL, changed BIGINT NOT NULL,
  rejected BIGINT NOT NULL, dump_time TEXT NOT NULL)""",
    """CREATE TABLE entries (source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  display TEXT NOT NULL, basis TEXT NOT NULL, added_at TEXT NOT NULL, import_id BIGINT NOT NULL,
  PRIMARY KEY (source, kind, indicator))""",
    """CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, import_id BIGINT NOT NULL,
  action TEXT NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis TEXT NOT NULL, new_basis TEXT NOT NULL)""",
    "CREATE INDEX audit_indicator ON audit (indicator)",
    """CREATE OR REPLACE FUNCTION sluice_audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit is append-only'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only()""",
    "INSERT INTO meta (key, value) VALUES ('schema_version', '1')",
]


def _fill_v1(execute: Any, p: str) -> None:
    for table, rows in (("imports", V1_IMPORTS), ("entries", V1_ENTRIES), ("audit", V1_AUDIT)):
        for row in rows:
            execute(f"INSERT INTO {table} VALUES ({', '.join([p] * len(row))})", row)


def _check_migrated(st: RegistryStore, tmp_path: Path) -> None:
    assert st.source_state("rkn") == {
        ("domain", "xn--e1afmkfd.xn--p1ai"): B2,
        ("url", "http://x.org/a;b"): B1,
    }
    [e] = st.lookup("xn--e1afmkfd.xn--p1ai")
    assert (e.kind, e.display, e.added_at) == (Kind.DOMAIN, "пример.рф", T1)
    assert [b.authority for b in e.basis] == ["ФНС", "суд"]
    hist = st.history("1.2.3.4")
    assert [(h.at, h.action, h.import_id) for h in hist] == [
        (T1, AuditAction.ADDED, 1),
        (T2, AuditAction.REMOVED, 2),
    ]
    assert hist[0].old_basis == () and hist[1].new_basis == () and hist[1].old_basis[0].number == "2-1/2020"
    [_, changed] = st.history("xn--e1afmkfd.xn--p1ai")
    assert changed.action is AuditAction.CHANGED and len(changed.new_basis) == 2
    assert [i.import_id for i in st.imports()] == [2, 1]
    assert {e.indicator: e.added_at for e in st.entries()} == {
        "xn--e1afmkfd.xn--p1ai": T1,
        "http://x.org/a;b": T1,
    }
    # the migrated register takes the next sync as any other: the url stays, the rest is new
    dump = tmp_path / "dump.csv"
    dump.write_bytes(
        'Updated: 2024-03-01 00:00:00 +0000\n9.9.9.10;x.org;"http://x.org/a;b";суд;2-1/2020;2020-01-01\n'
        "5.5.5.5;;;МВД;3/1;2018-04-25\n".encode("cp1251")
    )
    s = import_files(st, [dump], max_drop=1.0)
    assert (s.added, s.removed, s.changed, s.unchanged) == (1, 1, 0, 1)
    assert [h.action for h in st.history("xn--e1afmkfd.xn--p1ai")][-1] is AuditAction.REMOVED
    assert st.imports()[0].import_id == 3  # ids continue after the migrated ones
    assert len(st.history("5.5.5.5")) == 1


def test_sqlite_v1_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    conn.executescript(SQLITE_SCHEMA_V1)
    _fill_v1(conn.execute, "?")
    conn.commit()
    conn.close()
    st = SqliteStore(db)
    try:
        version = st.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == str(SCHEMA_VERSION) == "3"
        _check_migrated(st, tmp_path)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            st.conn.execute("UPDATE audit SET action = 'x'")
        tables = {r[0] for r in st.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"meta", "imports", "bases", "entries", "audit", "proposals"}
    finally:
        st.close()


def test_sqlite_unknown_version_refused(tmp_path: Path) -> None:
    db = tmp_path / "v9.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '9')")
    conn.commit()
    conn.close()
    with pytest.raises(RegistryError) as err:
        SqliteStore(db)
    assert err.value.reason == "registry.store_unavailable"
    assert "schema version 9" in err.value.detail


def test_postgres_v1_is_migrated(pg_server: PgServer, tmp_path: Path) -> None:
    import psycopg

    from sluice.registry.stores.postgres import PostgresStore

    url = pg_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in PG_SCHEMA_V1:
            conn.execute(stmt)
        _fill_v1(conn.execute, "%s")
        conn.execute("SELECT setval(pg_get_serial_sequence('imports', 'id'), 2)")
        conn.execute("SELECT setval(pg_get_serial_sequence('audit', 'id'), 5)")
    st = PostgresStore(url)
    try:
        _check_migrated(st, tmp_path)
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            st.conn.execute("DELETE FROM audit")
    finally:
        st.close()


def test_bulk_sync_is_one_transaction_and_back_to_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large SQLite syncs run with a rollback journal: a failure still leaves the register intact."""
    import sluice.registry.stores.sqlite as store_mod

    monkeypatch.setattr(store_mod, "BULK_CHANGES", 0)  # every sync counts as large
    st = SqliteStore(tmp_path / "reg.db", create=True)
    try:
        dump = tmp_path / "dump.csv"
        rows = [f"10.0.{i // 256}.{i % 256};;;суд;1;2020-01-01" for i in range(300)]
        dump.write_bytes(("Updated: x\n" + "".join(r + "\n" for r in rows)).encode("cp1251"))
        first = import_files(st, [dump])
        assert first.added == 300
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        before = st.source_state("rkn")
        st.conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON audit WHEN NEW.indicator = '10.9.9.9'"
            " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        dump.write_bytes(
            ("Updated: y\n" + "".join(r + "\n" for r in [*rows[1:], "10.9.9.9;;;МВД;2;2021-01-01"])).encode(
                "cp1251"
            )
        )
        with pytest.raises(RegistryError, match="disk on fire"):
            import_files(st, [dump])
        assert st.source_state("rkn") == before
        assert [i.import_id for i in st.imports()] == [first.import_id]
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        st.close()


# -- version 2 (before the review queue) -> 3 --

V2_IMPORTS = [V1_IMPORTS[0]]
V2_BASES = [(1, B1)]
V2_ENTRIES = [
    ("rkn", "domain", "xn--e1afmkfd.xn--p1ai", "пример.рф", 1, 1),
    ("rkn", "ip", "1.2.3.4", "", 1, 1),
]
V2_AUDIT = [
    (1, 1, "added", "rkn", "domain", "xn--e1afmkfd.xn--p1ai", None, 1),
    (2, 1, "added", "rkn", "ip", "1.2.3.4", None, 1),
]


def _fill_v2(execute: Any, p: str) -> None:
    for table, rows in (
        ("imports", V2_IMPORTS),
        ("bases", V2_BASES),
        ("entries", V2_ENTRIES),
        ("audit", V2_AUDIT),
    ):
        for row in rows:
            execute(f"INSERT INTO {table} VALUES ({', '.join([p] * len(row))})", row)


def _check_v2_migrated(st: RegistryStore) -> None:
    from sluice.registry.model import Proposal
    from sluice.registry.proposals import accept, propose

    assert st.source_state("rkn") == {("domain", "xn--e1afmkfd.xn--p1ai"): B1, ("ip", "1.2.3.4"): B1}
    [e] = st.lookup("xn--e1afmkfd.xn--p1ai")
    assert (e.display, e.added_at, e.basis[0].number) == ("пример.рф", T1, "2-1/2020")
    [h] = st.history("1.2.3.4")
    assert (h.at, h.action, h.import_id, h.actor, h.proposal_id) == (T1, AuditAction.ADDED, 1, "", 0)
    # the review queue works on the migrated register, and imports go on as before
    pid = propose(st, Proposal(Kind.IP, "1.2.3.4", "vpn-services", "endpoint"))
    accept(st, [pid], reviewer="alice", reason="ok")
    assert st.stats() == {"rkn": {"domain": 1, "ip": 1}, "proposals:vpn-services": {"ip": 1}}
    assert [h.action for h in st.history("1.2.3.4")] == [
        AuditAction.ADDED,
        AuditAction.PROPOSED,
        AuditAction.ADDED,
        AuditAction.ACCEPTED,
    ]
    assert [i.import_id for i in st.imports()] == [2, 1]


def test_sqlite_v2_is_migrated(tmp_path: Path) -> None:
    from sluice.registry.stores.sqlite import SQLITE_SCHEMA

    db = tmp_path / "v2.db"
    conn = sqlite3.connect(db)
    for stmt in SQLITE_SCHEMA:
        conn.execute(stmt)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    _fill_v2(conn.execute, "?")
    conn.commit()
    conn.close()
    st = SqliteStore(db)
    try:
        assert st.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
        _check_v2_migrated(st)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            st.conn.execute("DELETE FROM audit")
    finally:
        st.close()
    again = SqliteStore(db)  # a version-3 store opens as it is
    try:
        assert again.stats()["proposals:vpn-services"] == {"ip": 1}
    finally:
        again.close()


def test_postgres_v2_is_migrated(pg_server: PgServer) -> None:
    import psycopg

    from sluice.registry.stores.postgres import PG_SCHEMA, PostgresStore

    url = pg_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in PG_SCHEMA:
            conn.execute(stmt)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        _fill_v2(conn.execute, "%s")
        for table, n in (("imports", 1), ("bases", 1), ("audit", 2)):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})")
    st = PostgresStore(url)
    try:
        _check_v2_migrated(st)
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            st.conn.execute("DELETE FROM audit")
    finally:
        st.close()
