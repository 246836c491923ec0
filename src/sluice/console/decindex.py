"""An index of a decision log for paged, filtered queries and dashboard counts.

Theory of operation
-------------------
The decision log (:mod:`sluice.decisions.log`) is append-only JSONL in rotated segments, read
front to back by :func:`sluice.decisions.read_decisions`; a console over a million decisions
needs a page of the latest blocks of one client in milliseconds.  :class:`DecisionIndex` keeps
a SQLite file (console state, derived data: deleting it only costs a re-read) with one row per
decision: the fields people filter on, and where its line is (segment, byte offset).  The full
decision is read back from the log itself when a row is opened.

:meth:`DecisionIndex.refresh` reads what was appended since the last call, segment by segment
(the same segments and ``worker-*`` directories ``read_decisions`` reads, the same parse: a line
without its final newline is left for later, a line that is not a decision is counted and
skipped).  A segment deleted by rotation takes its rows with it; a segment whose inode changed
or that shrank is read again.  A server calls ``refresh`` in the background and before a query
when the last one is older than :data:`REFRESH_S`.

Server names are also kept reversed (``moc.elpmaxe``), so "this name and everything below it" is
one index range.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sluice.console.regview import MAX_PAGE, decode_cursor, encode_cursor
from sluice.decisions import log_dirs, segments
from sluice.decisions.store import (
    is_postgres_url,
    is_store,
    pg_record_at,
    pg_rows_after,
    read_store_file,
    record_at,
    store_files,
)
from sluice.policy.model import Decision

__all__ = ["REFRESH_S", "DecisionIndex", "DecisionQuery", "client_of", "iso_time"]

REFRESH_S = 1.0
"""A query refreshes the index first when the last refresh is older than this (seconds)."""
VALUES_TTL_S = 60.0
"""Filter-menu values are recomputed at most this often while the log grows (seconds)."""
BATCH_ROWS = 20_000
"""Rows inserted per transaction while indexing."""

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS segs (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,"
    " ino INTEGER NOT NULL, done INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS d (id INTEGER PRIMARY KEY, ts REAL NOT NULL, seg INTEGER NOT NULL,
  off INTEGER NOT NULL, action TEXT NOT NULL, mode TEXT NOT NULL, enforced INTEGER NOT NULL,
  rule TEXT NOT NULL, class TEXT NOT NULL, family TEXT NOT NULL, service TEXT NOT NULL,
  server_name TEXT NOT NULL, rname TEXT NOT NULL, client TEXT NOT NULL, flow_key TEXT NOT NULL,
  writer TEXT NOT NULL, policy TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS d_ts ON d (ts, id)",
    "CREATE INDEX IF NOT EXISTS d_action ON d (action, ts, id)",
    "CREATE INDEX IF NOT EXISTS d_class ON d (class, ts, id)",
    "CREATE INDEX IF NOT EXISTS d_family ON d (family, ts, id)",
    "CREATE INDEX IF NOT EXISTS d_rname ON d (rname)",
    "CREATE INDEX IF NOT EXISTS d_client ON d (client, ts, id)",
    "CREATE INDEX IF NOT EXISTS d_seg ON d (seg)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
_VERSION = "1"
_COLS = (
    "id, ts, action, mode, enforced, rule, class, family, service, server_name, client, flow_key,"
    " writer, policy"
)


def client_of(flow_key: str) -> str:
    """The client address of a flow key (``tcp 10.0.0.1:5000 > 10.0.0.2:443`` -> ``10.0.0.1``)."""
    parts = flow_key.split()
    if len(parts) < 2:
        return ""
    a = parts[1]
    if a.startswith("["):
        return a[1 : a.find("]")] if "]" in a else a
    return a.rsplit(":", 1)[0] if ":" in a else a


def iso_time(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds (as decisions show their time)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rev(name: str) -> str:
    return ".".join(reversed(name.lower().rstrip(".").split("."))) if name else ""


def _service(d: Decision) -> str:
    """A service name from the decision's evidence (``service.name: ...``), else ""."""
    for e in d.evidence:
        if e.startswith("service."):
            _, _, rest = e.partition("=")
            return rest.strip()[:80]
    return ""


@dataclass(frozen=True, slots=True)
class DecisionQuery:
    """Which decisions a page wants (every condition must hold; None means any)."""

    since: float | None = None
    """At or after this time (Unix seconds)."""
    until: float | None = None
    """Before this time."""
    action: str | None = None
    """Only this action."""
    verdict_class: str | None = None
    """Only this verdict class."""
    family: str | None = None
    """Only this family."""
    name: str | None = None
    """Only this server name and names below it."""
    client: str | None = None
    """Only this client address."""
    rule: str | None = None
    """Only this rule."""
    mode: str | None = None
    """Only ``enforce`` or ``shadow``."""

    def where(self) -> tuple[list[str], list[object]]:
        """SQL conditions and their parameters."""
        w: list[str] = []
        p: list[object] = []
        for col, val in (
            ("action", self.action),
            ("class", self.verdict_class),
            ("family", self.family),
            ("client", self.client),
            ("rule", self.rule),
            ("mode", self.mode),
        ):
            if val is not None:
                w.append(f"{col} = ?")
                p.append(val)
        if self.since is not None:
            w.append("ts >= ?")
            p.append(self.since)
        if self.until is not None:
            w.append("ts < ?")
            p.append(self.until)
        if self.name:
            r = _rev(self.name)
            w.append("(rname = ? OR (rname >= ? AND rname < ?))")
            p += [r, r + ".", r + "/"]
        return w, p


class DecisionIndex:
    """The index of one decision log directory, kept in one SQLite file.

    Args:
        log_dir: the decision log (it may not exist yet).
        path: the index file.
    """

    def __init__(self, log_dir: str | Path, path: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.url = str(log_dir) if is_postgres_url(log_dir) else ""
        """A PostgreSQL decisions store's URL ("" for a log or Parquet store directory)."""
        self.path = str(path)
        self._write = threading.Lock()
        self._local = threading.local()
        self.last_refresh = 0.0
        self.skipped = 0
        self._values: dict[str, tuple[int, float, list[str]]] = {}
        c = self._conn()
        for stmt in _SCHEMA:
            c.execute(stmt)
        source = self.url or str(self.log_dir.resolve())
        row = c.execute("SELECT value FROM meta WHERE key = 'log_dir'").fetchone()
        if row is not None and row[0] != source:
            c.execute("DELETE FROM d")
            c.execute("DELETE FROM segs")
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('log_dir', ?)", (source,))
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)", (_VERSION,))

    def _conn(self) -> sqlite3.Connection:
        c: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=OFF")
            c.execute("PRAGMA busy_timeout=10000")
            c.execute("PRAGMA cache_size=-65536")
            self._local.conn = c
        return c

    # -- indexing --

    def refresh(self) -> int:
        """Index what was appended since the last call; return the number of new decisions."""
        with self._write:
            n = self._refresh()
            self.last_refresh = time.monotonic()
            return n

    def refresh_if_stale(self) -> None:
        """Refresh unless another thread is refreshing or the last refresh is recent."""
        if time.monotonic() - self.last_refresh < REFRESH_S:
            return
        if self._write.acquire(blocking=False):
            try:
                self._refresh()
                self.last_refresh = time.monotonic()
            finally:
                self._write.release()

    def _refresh(self) -> int:
        if self.url:
            return self._refresh_postgres()
        c = self._conn()
        known = {
            p: (sid, ino, done) for sid, p, ino, done in c.execute("SELECT id, path, ino, done FROM segs")
        }
        present: dict[str, tuple[Path, str]] = {}
        if is_store(self.log_dir):  # a decisions store (sluice collect): its Parquet files
            present = {str(p): (p, "") for p in store_files(self.log_dir)}
        elif self.log_dir.is_dir():
            for d in log_dirs(self.log_dir):
                writer = "" if d == self.log_dir else d.name
                for seg in segments(d):
                    present[str(seg)] = (seg, writer)
        for gone in set(known) - set(present):
            self._drop(known[gone][0])
        added = 0
        for key, (seg, writer) in present.items():
            try:
                st = seg.stat()
            except FileNotFoundError:
                continue
            sid, ino, done = known.get(key, (0, 0, 0))
            if sid and (ino != st.st_ino or st.st_size < done):
                self._drop(sid)
                sid, done = 0, 0
            if not sid:
                c.execute("INSERT INTO segs (path, ino, done) VALUES (?, ?, 0)", (key, st.st_ino))
                sid = int(c.execute("SELECT id FROM segs WHERE path = ?", (key,)).fetchone()[0])
            if st.st_size > done:
                added += self._read(sid, seg, done, writer)
        return added

    def _drop(self, sid: int) -> None:
        c = self._conn()
        c.execute("BEGIN")
        c.execute("DELETE FROM d WHERE seg = ?", (sid,))
        c.execute("DELETE FROM segs WHERE id = ?", (sid,))
        c.execute("COMMIT")

    def _read(self, sid: int, seg: Path, done: int, writer: str) -> int:
        if seg.suffix == ".parquet":
            return self._read_parquet(sid, seg)
        try:
            fh = open(seg, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return 0
        added = 0
        with fh:
            fh.seek(done)
            off = done
            batch: list[tuple[Any, ...]] = []
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # a line still being written (or torn): read again next time
                start, off = off, off + len(raw)
                if raw == b"\n":
                    continue
                try:
                    d = Decision.from_dict(orjson.loads(raw))
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
                    self.skipped += 1
                    continue
                batch.append(self._row(d, sid, start, writer))
                if len(batch) >= BATCH_ROWS:
                    added += self._flush(batch, sid, off)
                    batch = []
            added += self._flush(batch, sid, off)
        return added

    def _refresh_postgres(self) -> int:
        """Index a PostgreSQL store's rows past the last ``seq`` indexed (off is the seq, writer
        the producer); a store that cannot be reached keeps what is indexed."""
        c = self._conn()
        row = c.execute("SELECT id, done FROM segs WHERE path = ?", (self.url,)).fetchone()
        if row is None:
            c.execute("INSERT INTO segs (path, ino, done) VALUES (?, 0, 0)", (self.url,))
            row = c.execute("SELECT id, done FROM segs WHERE path = ?", (self.url,)).fetchone()
        sid, done = int(row[0]), int(row[1])
        added = 0
        while True:
            try:
                rows = pg_rows_after(self.url, done, BATCH_ROWS)
            except OSError:
                return added
            if not rows:
                return added
            batch = []
            for seq, producer, raw in rows:
                try:
                    batch.append(self._row(Decision.from_dict(orjson.loads(raw)), sid, seq, producer))
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
                    self.skipped += 1
            done = rows[-1][0]
            added += self._flush(batch, sid, done)

    def _read_parquet(self, sid: int, path: Path) -> int:
        """Index a store file (written once, renamed into place): off is the row, writer the producer."""
        batch: list[tuple[Any, ...]] = []
        try:
            size = path.stat().st_size
            for row, producer, raw in read_store_file(path):
                try:
                    d = Decision.from_dict(orjson.loads(raw))
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
                    self.skipped += 1
                    continue
                batch.append(self._row(d, sid, row, producer))
        except (OSError, ValueError):  # gone, or not a readable Parquet file (ArrowInvalid)
            self.skipped += 1
            return 0
        return self._flush(batch, sid, size)

    @staticmethod
    def _row(d: Decision, sid: int, start: int, writer: str) -> tuple[Any, ...]:
        return (
            d.time,
            sid,
            start,
            d.action.value,
            d.mode.value,
            int(d.enforced),
            d.rule,
            d.verdict_class,
            d.family,
            _service(d),
            d.server_name,
            _rev(d.server_name),
            client_of(d.flow_key),
            d.flow_key,
            writer,
            d.policy,
        )

    def _flush(self, batch: Sequence[tuple[Any, ...]], sid: int, off: int) -> int:
        c = self._conn()
        c.execute("BEGIN")
        c.executemany(
            "INSERT INTO d (ts, seg, off, action, mode, enforced, rule, class, family, service,"
            " server_name, rname, client, flow_key, writer, policy) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
        c.execute("UPDATE segs SET done = ? WHERE id = ?", (off, sid))
        c.execute("COMMIT")
        return len(batch)

    # -- queries --

    def page(
        self, q: DecisionQuery, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The latest decisions that pass ``q``, newest first.

        Returns:
            Rows (summary fields and ``id``) and the cursor of the next page (None at the end).
        """
        limit = max(1, min(limit, MAX_PAGE))
        where, params = q.where()
        key = decode_cursor(cursor, 2) if cursor else None
        if key is not None:
            where.append("(ts < ? OR (ts = ? AND id < ?))")
            params += [key[0], key[0], key[1]]
        sql = f"SELECT {_COLS} FROM d"  # noqa: S608 - constant columns
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        rows = [self._summary(r) for r in self._conn().execute(sql, [*params, limit + 1])]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor([rows[-1]["ts"], rows[-1]["id"]])
        return rows, nxt

    @staticmethod
    def _summary(r: Sequence[Any]) -> dict[str, Any]:
        cols = [c.strip() for c in _COLS.split(",")]
        d = dict(zip(cols, r, strict=True))
        d["enforced"] = bool(d["enforced"])
        d["time"] = iso_time(float(d["ts"]))
        return d

    def get(self, did: int) -> dict[str, Any] | None:
        """The full decision of one row, read back from its log line (None: unknown or rotated away)."""
        row = (
            self._conn()
            .execute(
                "SELECT s.path, d.off, d.writer FROM d JOIN segs s ON s.id = d.seg WHERE d.id = ?", (did,)
            )
            .fetchone()
        )
        if row is None:
            return None
        try:
            if is_postgres_url(row[0]):
                line = pg_record_at(row[0], int(row[1]))
            elif row[0].endswith(".parquet"):
                line = record_at(row[0], int(row[1]))
            else:
                with open(row[0], "rb") as fh:
                    fh.seek(int(row[1]))
                    line = fh.readline()
            out = Decision.from_dict(orjson.loads(line)).to_dict()
        except (OSError, orjson.JSONDecodeError, KeyError, ValueError, TypeError, IndexError):
            return None
        out["id"] = did
        out["writer"] = row[2]
        out["client"] = client_of(str(out["flow_key"]))
        return out

    def count(self, q: DecisionQuery | None = None) -> int:
        """Decisions that pass ``q`` (all when None)."""
        where, params = (q or DecisionQuery()).where()
        sql = "SELECT COUNT(*) FROM d" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608
        return int(self._conn().execute(sql, params).fetchone()[0])

    def timeline(self, q: DecisionQuery, by: str, buckets: int = 48) -> dict[str, Any]:
        """Counts per time bucket and per value of ``by`` (``action``, ``class`` or ``family``).

        Returns:
            ``{"start", "step", "buckets", "series": {value: [count per bucket]}}``.
        """
        if by not in ("action", "class", "family"):
            raise ValueError(by)
        where, params = q.where()
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        c = self._conn()
        lo, hi = c.execute(f"SELECT MIN(ts), MAX(ts) FROM d{cond}", params).fetchone()  # noqa: S608
        if lo is None:
            return {"start": 0.0, "step": 0.0, "buckets": buckets, "series": {}}
        lo = q.since if q.since is not None else float(lo)
        hi = q.until if q.until is not None else float(hi)
        step = max((hi - lo) / buckets, 1e-3)
        series: dict[str, list[int]] = {}
        sql = (
            f"SELECT MIN(CAST((ts - ?) / ? AS INTEGER), ?), {by}, COUNT(*) FROM d{cond}"  # noqa: S608
            " GROUP BY 1, 2"
        )
        for b, val, n in c.execute(sql, [lo, step, buckets - 1, *params]):
            series.setdefault(val or "-", [0] * buckets)[max(0, int(b))] += int(n)
        return {"start": lo, "step": step, "buckets": buckets, "series": series}

    def top(self, q: DecisionQuery, col: str, n: int = 10) -> list[tuple[str, int]]:
        """The ``n`` most frequent non-empty values of ``server_name`` or ``service``."""
        if col not in ("server_name", "service", "client", "rule"):
            raise ValueError(col)
        where, params = q.where()
        where.append(f"{col} <> ''")
        sql = (
            f"SELECT {col}, COUNT(*) AS n FROM d WHERE {' AND '.join(where)}"  # noqa: S608
            " GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?"
        )
        return [(str(v), int(k)) for v, k in self._conn().execute(sql, [*params, n])]

    def writers(self) -> list[dict[str, Any]]:
        """Each writer of the log (the log itself, ``worker-*``): decisions, last time, policy."""
        rows = (
            self._conn()
            .execute("SELECT writer, COUNT(*), MAX(ts) FROM d GROUP BY writer ORDER BY writer")
            .fetchall()
        )
        out = []
        for w, n, last in rows:
            pol = (
                self._conn()
                .execute("SELECT policy FROM d WHERE writer = ? ORDER BY ts DESC LIMIT 1", (w,))
                .fetchone()
            )
            out.append({"writer": w or "(log)", "decisions": int(n), "last": float(last), "policy": pol[0]})
        return out

    def values(self, col: str) -> list[str]:
        """Distinct values of ``action``, ``class`` or ``family`` (for filter menus); a scan of
        the index, so remembered for :data:`VALUES_TTL_S` once the log has grown."""
        if col not in ("action", "class", "family", "rule"):
            raise ValueError(col)
        c = self._conn()
        top = c.execute("SELECT MAX(id) FROM d").fetchone()[0] or 0
        now = time.monotonic()
        hit = self._values.get(col)
        if hit is not None and (hit[0] == top or now - hit[1] < VALUES_TTL_S):
            return hit[2]
        vals = [str(r[0]) for r in c.execute(f"SELECT DISTINCT {col} FROM d ORDER BY 1") if r[0]]  # noqa: S608
        self._values[col] = (top, now, vals)
        return vals

    def close(self) -> None:
        """Close this thread's connection."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None
