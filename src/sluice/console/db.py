"""One small database layer for the console's own tables and its read-only register queries.

A :class:`Database` is a SQLite file or a ``postgresql://`` URL.  Each thread gets its own
connection (the web server runs handlers on a thread pool); SQL is written with ``?``
placeholders and rewritten to ``%s`` for PostgreSQL.  Statements run in autocommit mode unless
inside :meth:`Database.transaction`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from sluice.errors import SluiceError

__all__ = ["Database", "DatabaseError", "is_postgres"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another's lock (ms)."""


class DatabaseError(SluiceError):
    """The console's database cannot be reached or refused a statement (``console.db_error``)."""

    reason = "console.db_error"


def is_postgres(target: str) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return target.startswith(("postgresql://", "postgres://"))


class Database:
    """Per-thread connections to one SQLite file or PostgreSQL database.

    Args:
        target: file path or ``postgresql://`` URL.

    Raises:
        DatabaseError: the first connection fails.
    """

    def __init__(self, target: str) -> None:
        self.target = str(target)
        self.postgres = is_postgres(self.target)
        self.P = "%s" if self.postgres else "?"
        self._local = threading.local()
        self._all_conns: list[Any] = []
        self._lock = threading.Lock()
        self._conn()

    # -- connections --

    def _connect(self) -> Any:
        if self.postgres:
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise DatabaseError("PostgreSQL needs psycopg: pip install 'sluice[postgres]'") from exc
            try:
                return psycopg.connect(self.target, autocommit=True)
            except psycopg.Error as exc:
                raise DatabaseError(f"cannot connect to {self.target}: {exc}".strip()) from exc
        try:
            conn = sqlite3.connect(self.target, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open {self.target}: {exc}") from exc
        return conn

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all_conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection of every thread."""
        with self._lock:
            conns, self._all_conns = self._all_conns, []
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()
        self._local = threading.local()

    # -- statements --

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.postgres:
            import psycopg

            return (psycopg.Error,)
        return (sqlite3.Error,)

    def all(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query."""
        try:
            cur = self._conn().cursor()
            cur.execute(self._q(sql), tuple(params))
            rows: list[tuple[Any, ...]] = [tuple(r) for r in cur.fetchall()]
            cur.close()
        except self._errors() as exc:
            raise DatabaseError(str(exc).strip()) from exc
        return rows

    def one(self, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        try:
            cur = self._conn().cursor()
            cur.execute(self._q(sql), tuple(params))
            n = int(cur.rowcount)
            cur.close()
        except self._errors() as exc:
            raise DatabaseError(str(exc).strip()) from exc
        return n

    def insert(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run an ``INSERT ... RETURNING id``; return the id."""
        row = self.all(sql, params)
        return int(row[0][0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction (SQLite: ``BEGIN IMMEDIATE``, so writers queue on the file lock)."""
        conn = self._conn()
        if self.postgres:
            try:
                with conn.transaction():
                    yield
            except self._errors() as exc:
                raise DatabaseError(str(exc).strip()) from exc
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise DatabaseError(str(exc)) from exc
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
