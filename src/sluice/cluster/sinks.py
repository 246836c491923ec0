"""Where ``sluice collect`` stores what it consumes: a Parquet directory or PostgreSQL.

Both sinks take a batch of :class:`Incoming` records and store each key **at most once**, so the
collector may hand them the same batch again (after a crash between storing and acknowledging, or
after a retry) without counting anything twice:

* :class:`ParquetSink` keeps a key index (SQLite, ``.keys.sqlite`` at the store's root: every
  stored key, and every file whose keys it holds). A batch is written as: drop the keys the index
  already has, write one file per day under a temporary name, fsync, rename, fsync the directory,
  then record the keys and the file names in the index in one transaction. A crash after a rename
  and before that commit leaves a file the index does not list; the sink reconciles (reads such
  files' keys into the index) when it opens and after any failed write, before it writes again,
  and deletes leftover temporary files. So the files never hold a key twice, and a reader needs no
  de-duplication. One process writes a store at a time (``flock`` on ``.lock``).
* :class:`PostgresSink` copies the batch into a temporary table and inserts it into
  ``stream_decisions`` with ``ON CONFLICT (key) DO NOTHING`` in one transaction.

Flow summaries (``Incoming.kind == "flows"``) take the same path to their own place: the
``flows/`` dataset of a Parquet store (same key index: a flow's key names its file and line, so
it never equals a decision's), the ``flow_summaries`` table of PostgreSQL (same transaction).

A sink that cannot write (directory not writable, disk full, database down) raises
:class:`StoreUnavailable` and keeps nothing half-done that would count twice; the collector
retries the same batch with backoff and acknowledges nothing meanwhile.
"""

from __future__ import annotations

__all__ = ["Incoming", "ParquetSink", "PostgresSink", "Sink", "StoreUnavailable", "open_sink"]

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from sluice.decisions.store import (
    FLOWS_DIR,
    FLOWS_TABLE,
    FORMAT_VERSION,
    MARKER,
    TABLE,
    flow_pg_columns,
    flow_row,
    is_postgres_url,
    store_days,
    to_flow_table,
    to_table,
)
from sluice.errors import ConfigError

SQLITE_VARS = 500
"""Keys looked up per SQLite statement."""


class StoreUnavailable(Exception):
    """The store cannot take the batch now (retry later); the message says why."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One record taken from the stream."""

    key: str
    """Its idempotent key (the publisher's ``Nats-Msg-Id``)."""
    producer: str
    """The publishing box (the subject's last token)."""
    data: bytes
    """The decision line as published."""
    seq: int
    """Its JetStream stream sequence number (names files; not part of the identity)."""
    kind: str = "decisions"
    """``decisions`` or ``flows`` (flow summaries), from the subject ``sluice.<kind>.<producer>``."""


KINDS = ("decisions", "flows")
"""What the stream carries; each kind has its own place in a store."""
_TABLES: dict[str, Callable[[Sequence[tuple[str, str, bytes]]], tuple[Any, list[str]]]] = {
    "decisions": to_table,
    "flows": to_flow_table,
}
_SUBDIR = {"decisions": "", "flows": FLOWS_DIR}
"""Where a kind's day partitions are, under a Parquet store's root."""


class Sink(Protocol):
    """A decisions store the collector writes to."""

    def store(self, batch: Sequence[Incoming]) -> int:
        """Store the batch's keys not stored yet; how many were new.

        Raises:
            StoreUnavailable: nothing of the batch may be assumed stored; retry it.
        """

    def close(self) -> None:
        """Release files and connections."""


def open_sink(location: str) -> Sink:
    """A :class:`PostgresSink` for a ``postgresql://`` URL, else a :class:`ParquetSink`."""
    return PostgresSink(location) if is_postgres_url(location) else ParquetSink(location)


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (a rename), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ParquetSink:
    """A Parquet decisions store directory (created if missing; see the module docstring).

    Raises:
        ConfigError: another process writes this store, or the path is not a directory.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError("store", f"{self.root} is not a directory")
        self._lock = -1
        self._db: sqlite3.Connection | None = None
        self._dirty = True
        self.files_written = 0
        """Parquet files this sink wrote."""
        try:
            self._open()
        except (OSError, sqlite3.OperationalError):
            self._dirty = True  # retried by store()

    def _open(self) -> None:
        if self._lock < 0:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError("store", f"{self.root} is being written by another collector") from None
            self._lock = fd
        marker = self.root / MARKER
        if not marker.is_file():
            tmp = self.root / f"{MARKER}.tmp"
            tmp.write_text(json.dumps({"format": "sluice-decisions", "version": FORMAT_VERSION}) + "\n")
            os.replace(tmp, marker)
        if self._db is None:
            db = sqlite3.connect(self.root / ".keys.sqlite", isolation_level=None, check_same_thread=False)
            # a rollback journal, not WAL: WAL's shared memory is an mmap, and a store whose
            # files stop being writable would kill the collector with SIGBUS instead of an error
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute(  # a key's file by number: the name would double the index's size
                "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, file INTEGER NOT NULL) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
                " rows INTEGER NOT NULL)"
            )
            self._db = db

    def _reconcile(self) -> None:
        """Index the keys of files the index does not list; delete temporary leftovers."""
        import pyarrow.parquet as pq

        assert self._db is not None
        known = {r[0] for r in self._db.execute("SELECT name FROM files")}
        days = [d for sub in _SUBDIR.values() for _day, d in store_days(self.root / sub)]
        for d in days:
            for p in d.iterdir():
                if p.name.startswith(".tmp-"):
                    p.unlink(missing_ok=True)
                    continue
                name = str(p.relative_to(self.root))
                if p.suffix != ".parquet" or name in known:
                    continue
                keys = pq.read_table(p, columns=["key"]).column("key").to_pylist()
                self._db.execute("BEGIN")
                fid = self._db.execute(
                    "INSERT INTO files (name, rows) VALUES (?, ?)", (name, len(keys))
                ).lastrowid
                self._db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?)", [(k, fid) for k in keys])
                self._db.execute("COMMIT")
        self._dirty = False

    def _known(self, keys: list[str]) -> set[str]:
        assert self._db is not None
        found: set[str] = set()
        for i in range(0, len(keys), SQLITE_VARS):
            part = keys[i : i + SQLITE_VARS]
            marks = ",".join("?" * len(part))
            sql = f"SELECT key FROM keys WHERE key IN ({marks})"  # noqa: S608 - placeholders only
            found.update(r[0] for r in self._db.execute(sql, part))
        return found

    def store(self, batch: Sequence[Incoming]) -> int:
        """See :class:`Sink`."""
        try:
            return self._store(batch)
        except (OSError, sqlite3.OperationalError) as exc:  # not writable, full, locked: transient
            self._dirty = True
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise StoreUnavailable(f"{self.root}: {exc}") from exc

    def _store(self, batch: Sequence[Incoming]) -> int:
        self._open()
        if self._dirty:
            self._reconcile()
        assert self._db is not None
        first: dict[str, Incoming] = {}
        for m in batch:
            first.setdefault(m.key, m)
        known = self._known(sorted(first))
        new = [m for k, m in first.items() if k not in known]
        if not new:
            return 0
        written: list[tuple[str, list[str]]] = []
        for kind in KINDS:
            mine = [m for m in new if m.kind == kind]
            if mine:
                written += self._write_kind(kind, mine)
        self._db.execute("BEGIN")
        for name, ks in written:
            fid = self._db.execute("INSERT INTO files (name, rows) VALUES (?, ?)", (name, len(ks))).lastrowid
            self._db.executemany("INSERT INTO keys VALUES (?, ?)", [(k, fid) for k in ks])
        self._db.execute("COMMIT")
        self.files_written += len(written)
        return len(new)

    def _write_kind(self, kind: str, new: list[Incoming]) -> list[tuple[str, list[str]]]:
        """Write one kind's new records, a file per day; ``(file name, its keys)`` of each."""
        import pyarrow.parquet as pq

        table, days = _TABLES[kind]([(m.key, m.producer, m.data) for m in new])
        seqs = {m.key: m.seq for m in new}
        keys = table.column("key").to_pylist()
        base = self.root / _SUBDIR[kind]
        written: list[tuple[str, list[str]]] = []
        for day in sorted(set(days)):
            idx = [i for i, d in enumerate(days) if d == day]
            s = sorted(seqs[keys[i]] for i in idx)
            ddir = base / f"day={day}"
            ddir.mkdir(parents=True, exist_ok=True)
            name = f"part-{s[0]:012d}-{s[-1]:012d}.parquet"
            n = 1
            while (ddir / name).exists():
                n += 1
                name = f"part-{s[0]:012d}-{s[-1]:012d}-{n}.parquet"
            tmp = ddir / f".tmp-{name}"
            pq.write_table(table.take(idx), tmp, compression="zstd")
            _fsync(tmp)
            os.replace(tmp, ddir / name)
            _fsync(ddir)
            written.append((str((ddir / name).relative_to(self.root)), [keys[i] for i in idx]))
        return written

    def close(self) -> None:
        """See :class:`Sink`."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


_PG_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
  key TEXT PRIMARY KEY, producer TEXT NOT NULL, record JSONB NOT NULL,
  received TIMESTAMPTZ NOT NULL DEFAULT now())""",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS ts DOUBLE PRECISION",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE} (ts)",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS seq BIGSERIAL",
    f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_seq ON {TABLE} (seq)",
    f"""CREATE TABLE IF NOT EXISTS {FLOWS_TABLE} (
  key TEXT PRIMARY KEY, producer TEXT NOT NULL,
  {", ".join(f'"{n}" {t}' for n, t in flow_pg_columns())},
  record JSONB NOT NULL, received TIMESTAMPTZ NOT NULL DEFAULT now())""",
    f"CREATE INDEX IF NOT EXISTS {FLOWS_TABLE}_first_seen ON {FLOWS_TABLE} (first_seen)",
]
_FLOW_COLS = ["key", "producer", *(n for n, _t in flow_pg_columns()), "record"]
_FLOW_LIST = ", ".join(f'"{n}"' for n in _FLOW_COLS)


def _json_object(data: bytes) -> tuple[str, float | None]:
    """The record as JSON text PostgreSQL's JSONB takes, and its decision time.

    A line that is not a JSON object, or holds what JSONB refuses (``\\u0000``), is kept as
    ``{"unparsed": text}``: stored, never lost, and read back as not a decision.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or b"\\u0000" in data:
        text = data.decode("utf-8", "replace").replace("\x00", "")
        return orjson.dumps({"unparsed": text}).decode(), None
    ts = obj.get("ts")
    ok = isinstance(ts, int | float) and not isinstance(ts, bool) and ts == ts and abs(ts) < 1e12
    return data.decode("utf-8", "replace"), float(ts) if ok and ts is not None else None


class PostgresSink:
    """The ``stream_decisions`` table of a PostgreSQL database (created if missing)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, connect_timeout=10)
            for stmt in _PG_SCHEMA:
                conn.execute(stmt)
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming (key TEXT, producer TEXT, record JSONB,"
                " ts DOUBLE PRECISION) ON COMMIT DELETE ROWS"
            )
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming_flows"
                f" (LIKE {FLOWS_TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            conn.commit()
            self._conn = conn
        return self._conn

    def store(self, batch: Sequence[Incoming]) -> int:
        """See :class:`Sink`."""
        import psycopg

        try:
            conn = self._connect()
            with conn.cursor() as cur:
                with cur.copy("COPY incoming (key, producer, record, ts) FROM STDIN") as cp:
                    for m in batch:
                        if m.kind == "decisions":
                            text, ts = _json_object(m.data)
                            cp.write_row((m.key, m.producer, text, ts))
                cur.execute(
                    f"INSERT INTO {TABLE} (key, producer, record, ts)"  # noqa: S608 - a constant
                    " SELECT DISTINCT ON (key) key, producer, record, ts FROM incoming"
                    " ON CONFLICT (key) DO NOTHING"
                )
                n = cur.rowcount
                if any(m.kind == "flows" for m in batch):
                    n += self._flows(cur, [m for m in batch if m.kind == "flows"])
            conn.commit()  # stored first; the collector acknowledges after this returns
            return int(n)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # down, restarting, gone
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None
            raise StoreUnavailable(f"PostgreSQL: {str(exc).strip() or type(exc).__name__}") from exc

    @staticmethod
    def _flows(cur: Any, batch: list[Incoming]) -> int:
        """Copy flow summaries into ``flow_summaries`` (in the caller's transaction); how many
        were new."""
        with cur.copy(f"COPY incoming_flows ({_FLOW_LIST}) FROM STDIN") as cp:
            for m in batch:
                typed, _first = flow_row(m.data)
                text, _ts = _json_object(m.data)
                cp.write_row((m.key, m.producer, *typed.values(), text))
        cur.execute(
            f"INSERT INTO {FLOWS_TABLE} ({_FLOW_LIST})"  # noqa: S608 - constants
            f" SELECT DISTINCT ON (key) {_FLOW_LIST} FROM incoming_flows ON CONFLICT (key) DO NOTHING"
        )
        return int(cur.rowcount)

    def close(self) -> None:
        """See :class:`Sink`."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
