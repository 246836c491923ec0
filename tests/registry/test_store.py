"""Store and sync: diff semantics, one transaction, append-only audit; SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluice.registry.model import AuditAction, Kind, LegalBasis, RegistryError
from sluice.registry.stores import RegistryStore, SqliteStore
from sluice.registry.sync import import_files

from .conftest import shared_file

HEADER = "Updated: 2024-01-01 00:00:00 +0000\n"


def _dump(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_bytes((header + "".join(r + "\n" for r in rows)).encode("cp1251"))
    return path


ROWS = [
    "1.2.3.4;;;суд;2-1/2020;2020-01-01",
    "5.6.7.8 | 5.6.7.9;пример.рф;;Генпрокуратура;27-31/1;2021-02-03",
    "9.9.9.9;example.com;http://example.com/page;ФНС;2-6-27/1;2022-03-04",
    '9.9.9.10;x.org;"http://x.org/a;b";суд;2-2/2020;2020-05-06',
]


def test_sync_add_unchanged_change_remove(store: RegistryStore, tmp_path: Path) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    s1 = import_files(store, [_dump(tmp_path / "dump.csv", ROWS)], now=t0)
    assert (s1.rows, s1.entries, s1.added, s1.removed, s1.changed) == (4, 4, 4, 0, 0)
    assert s1.source == "rkn" and s1.fmt == "rkn-csv"
    assert s1.dump_time == "2024-01-01 00:00:00 +0000"
    state = store.source_state("rkn")
    assert set(state) == {
        ("ip", "1.2.3.4"),
        ("domain", "xn--e1afmkfd.xn--p1ai"),
        ("url", "http://example.com/page"),
        ("url", "http://x.org/a;b"),
    }
    # the same file again changes nothing
    s2 = import_files(store, [tmp_path / "dump.csv"])
    assert (s2.added, s2.removed, s2.changed, s2.unchanged) == (0, 0, 0, 4)
    # a new dump: one row gone, one decision changed, one row new
    rows = [*ROWS[1:3], '9.9.9.10;x.org;"http://x.org/a;b";суд;2-3/2020;2020-05-07']
    rows.append("10.0.0.0/8;;;Роскомнадзор;9-R;2018-04-16")
    s3 = import_files(store, [_dump(tmp_path / "dump.csv", rows)])
    assert (s3.added, s3.removed, s3.changed, s3.unchanged) == (1, 1, 1, 2)
    hist = store.history("1.2.3.4")
    assert [h.action for h in hist] == [AuditAction.ADDED, AuditAction.REMOVED]
    assert hist[1].old_basis == (LegalBasis("суд", "2-1/2020", "2020-01-01"),)
    changed = store.history("http://x.org/a;b")
    assert [h.action for h in changed] == [AuditAction.ADDED, AuditAction.CHANGED]
    assert changed[1].new_basis[0].number == "2-3/2020"
    assert changed[1].import_id == s3.import_id
    got = store.lookup("xn--e1afmkfd.xn--p1ai")
    assert len(got) == 1 and got[0].display == "пример.рф" and got[0].kind is Kind.DOMAIN
    assert store.stats() == {"rkn": {"domain": 1, "url": 2, "subnet": 1}}
    imports = store.imports("rkn")
    assert [i.added for i in imports] == [1, 0, 4]
    assert imports[0].rows == 4 and len(imports[0].sha256) == 64


def test_dry_run_writes_nothing(store: RegistryStore, tmp_path: Path) -> None:
    s = import_files(store, [_dump(tmp_path / "dump.csv", ROWS)], dry_run=True)
    assert s.dry_run and s.added == 4 and s.import_id == 0
    assert store.source_state("rkn") == {} and store.imports() == []


def test_row_drop_refused_before_any_change(store: RegistryStore, tmp_path: Path) -> None:
    rows = [f"10.0.{i // 256}.{i % 256};;;суд;1;2020-01-01" for i in range(1000)]
    import_files(store, [_dump(tmp_path / "dump.csv", rows)])
    # a dump cut exactly at a line end: complete lines, but 60 % of the rows missing
    cut = _dump(tmp_path / "dump.csv", rows[:400])
    with pytest.raises(RegistryError) as err:
        import_files(store, [cut])
    assert err.value.reason == "registry.row_drop"
    assert len(store.source_state("rkn")) == 1000
    assert len(store.imports()) == 1
    forced = import_files(store, [cut], force=True)
    assert forced.removed == 600


def test_audit_is_append_only(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    import_files(sqlite_store, [_dump(tmp_path / "dump.csv", ROWS)])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sqlite_store.conn.execute("UPDATE audit SET action = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sqlite_store.conn.execute("DELETE FROM audit")


def test_audit_is_append_only_postgres(pg_server: object, tmp_path: Path) -> None:
    import psycopg

    from sluice.registry.stores.postgres import PostgresStore

    assert hasattr(pg_server, "new_database")
    st = PostgresStore(pg_server.new_database(), create=True)
    try:
        import_files(st, [_dump(tmp_path / "dump.csv", ROWS)])
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            st.conn.execute("DELETE FROM audit")
        assert len(st.history("1.2.3.4")) == 1
    finally:
        st.close()


def test_failure_half_way_leaves_register_intact(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    """A real database failure in the middle of a sync rolls the whole sync back."""
    first = import_files(sqlite_store, [_dump(tmp_path / "dump.csv", ROWS)])
    before = sqlite_store.source_state("rkn")
    # a trigger that fails on one specific audit row, after the deletes and updates ran
    sqlite_store.conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON audit WHEN NEW.indicator = '10.0.0.0/8'"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    rows = [ROWS[1], "10.0.0.0/8;;;Роскомнадзор;9-R;2018-04-16"]
    with pytest.raises(RegistryError, match="disk on fire") as err:
        import_files(sqlite_store, [_dump(tmp_path / "dump.csv", rows)], force=True)
    assert err.value.reason == "registry.store_failed"
    assert sqlite_store.source_state("rkn") == before
    assert [i.import_id for i in sqlite_store.imports()] == [first.import_id]
    assert len(sqlite_store.history("1.2.3.4")) == 1


def test_real_dump_on_both_stores(store: RegistryStore) -> None:
    dump = shared_file("zi_dump_2016-06-13.csv")
    s = import_files(store, [dump])
    assert s.rows == 30663 and not s.rejected
    again = import_files(store, [dump])
    assert again.added == again.removed == again.changed == 0
    assert again.unchanged == s.entries
    assert sum(store.stats()["rkn"].values()) == s.entries


def test_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as err:
        SqliteStore(tmp_path / "missing-dir" / "reg.db", create=True)
    assert err.value.reason == "registry.store_unavailable"
    (tmp_path / "not-a-db").write_bytes(b"hello, this is not sqlite" * 100)
    with pytest.raises(RegistryError):
        SqliteStore(tmp_path / "not-a-db")
