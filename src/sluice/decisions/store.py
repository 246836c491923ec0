"""The decisions store: where ``sluice collect`` puts the decisions of many gateways, and how
``sluice decisions`` and the console read it back.

Theory of operation. A store is one of two things:

* a **Parquet directory** (the default): one subdirectory per UTC day of the decision
  (``day=2026-12-07/``, Hive-style, so pandas, polars and DuckDB read the whole directory as one
  table with a ``day`` column), holding files ``part-<first>-<last>.parquet`` named by the
  JetStream sequence numbers of their first and last records. A file is written under a
  temporary name starting with ``.`` (which Parquet readers skip), fsynced, then renamed: a reader
  sees whole files or nothing. A file is never changed after the rename. The root holds a marker
  (:data:`MARKER`) that tells a store from a decision log, the writer's lock and its key index
  (``.keys.sqlite``, see :mod:`sluice.cluster.sinks`);
* a **PostgreSQL database** by ``postgresql://`` URL: the table ``stream_decisions`` (key,
  producer, the record as JSONB, its decision time, when it was received, and ``seq``, a number
  given at insertion that a reader such as the console's index follows: with the one collector
  writing a store, batches commit in ``seq`` order).

Every record carries its **key**, the publisher's ``Nats-Msg-Id`` (``producer/dir/segment/offset``:
it names the record, not the attempt to send it). The writer stores a key at most once (the
Parquet writer looks every incoming key up in its key index before writing a file; PostgreSQL has
the key as primary key), so a reader counts each decision once without de-duplicating.

Columns of a Parquet file (:func:`schema`): the key, the producer, the decision's time as a UTC
timestamp, the fields people filter on, and ``record``, the decision line exactly as the gateway
wrote it (what :class:`~sluice.policy.model.Decision` is read back from).
"""

from __future__ import annotations

__all__ = [
    "MARKER",
    "day_of",
    "is_postgres_url",
    "is_store",
    "pg_connect",
    "pg_record_at",
    "pg_rows_after",
    "read_store_file",
    "record_at",
    "schema",
    "store_days",
    "store_files",
    "to_table",
]

import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

MARKER = ".sluice-store"
"""File at a Parquet store's root (JSON: format and version)."""
FORMAT_VERSION = 1
"""Version of the store's layout and :func:`schema`."""
TABLE = "stream_decisions"
"""The PostgreSQL table of a store by URL."""
_DAY = re.compile(r"day=(\d{4}-\d{2}-\d{2}|unknown)")
_FIELDS = ("action", "mode", "rule", "class", "family", "server_name", "flow_key", "policy")


@cache
def schema() -> pa.Schema:
    """Columns of every Parquet file of a store (pyarrow is imported when first needed)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("producer", pa.string(), nullable=False),
            pa.field("time", pa.timestamp("us", tz="UTC")),
            pa.field("action", pa.string()),
            pa.field("mode", pa.string()),
            pa.field("enforced", pa.bool_()),
            pa.field("rule", pa.string()),
            pa.field("class", pa.string()),
            pa.field("family", pa.string()),
            pa.field("server_name", pa.string()),
            pa.field("flow_key", pa.string()),
            pa.field("policy", pa.string()),
            pa.field("record", pa.string(), nullable=False),
        ]
    )


def is_postgres_url(location: str | Path) -> bool:
    """Whether a store location is a PostgreSQL URL."""
    return str(location).startswith(("postgresql://", "postgres://"))


def is_store(location: str | Path) -> bool:
    """Whether ``location`` is a Parquet decisions store (its root holds :data:`MARKER`)."""
    return not is_postgres_url(location) and (Path(location) / MARKER).is_file()


def _ts(obj: Any) -> float | None:
    """The decision time (Unix seconds) of a record, or None."""
    t = obj.get("ts") if isinstance(obj, dict) else None
    if isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) and 0 <= t < 253402300800:
        return float(t)
    return None


def day_of(ts: float | None) -> str:
    """The partition of a decision time: ``YYYY-MM-DD`` (UTC), or ``unknown``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d") if ts is not None else "unknown"


def to_table(rows: Sequence[tuple[str, str, bytes]]) -> tuple[pa.Table, list[str]]:
    """A Parquet table of ``(key, producer, record line)`` rows, sorted by time then key, and
    each row's day.

    A record that is not a JSON object is kept as it came (``record``) with the typed columns
    null: nothing is dropped; readers count it as not a decision.
    """
    import pyarrow as pa

    schema_ = schema()
    parsed = []
    for key, producer, raw in rows:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        parsed.append((_ts(obj), key, producer, raw, obj if isinstance(obj, dict) else {}))
    parsed.sort(key=lambda r: (r[0] if r[0] is not None else math.inf, r[1]))
    cols: dict[str, list[Any]] = {f.name: [] for f in schema_}
    days = []
    for ts, key, producer, raw, obj in parsed:
        cols["key"].append(key)
        cols["producer"].append(producer)
        cols["time"].append(None if ts is None else round(ts * 1_000_000))
        for name in _FIELDS:
            v = obj.get(name)
            cols[name].append(v if isinstance(v, str) else None)
        e = obj.get("enforced")
        cols["enforced"].append(e if isinstance(e, bool) else None)
        cols["record"].append(raw.decode("utf-8", "replace"))
        days.append(day_of(ts))
    arrays = [pa.array(cols[f.name], type=f.type) for f in schema_]
    return pa.Table.from_arrays(arrays, schema=schema_), days


def store_days(root: str | Path) -> list[tuple[str, Path]]:
    """The store's day partitions, oldest first (``unknown`` last)."""
    found = []
    try:
        for p in Path(root).iterdir():
            m = _DAY.fullmatch(p.name)
            if m and p.is_dir():
                found.append((m.group(1), p))
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda x: (x[0] == "unknown", x[0]))


def store_files(root: str | Path, since: float | None = None, until: float | None = None) -> list[Path]:
    """The store's Parquet files, oldest day first, in write order within a day; days wholly
    before ``since`` or at/after ``until`` (Unix seconds) are left out."""
    lo = day_of(since) if since is not None else None
    hi = day_of(until) if until is not None else None
    out: list[Path] = []
    for day, d in store_days(root):
        if day != "unknown" and ((lo is not None and day < lo) or (hi is not None and day > hi)):
            continue
        out += sorted(p for p in d.glob("part-*.parquet") if p.is_file())
    return out


def read_store_file(path: str | Path) -> Iterator[tuple[int, str, bytes]]:
    """``(row, producer, record line)`` of every row of one store file, in file order."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["producer", "record"])
    for i, (producer, record) in enumerate(
        zip(t.column("producer").to_pylist(), t.column("record").to_pylist(), strict=True)
    ):
        yield i, str(producer), str(record).encode()


def record_at(path: str | Path, row: int) -> bytes:
    """The record line of one row of a store file.

    Raises:
        OSError: the file cannot be read; IndexError: no such row.
    """
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["record"])
    return str(t.column("record")[row].as_py()).encode()


def pg_connect(url: str) -> Any:
    """A psycopg connection to a PostgreSQL store.

    Raises:
        OSError: it cannot be reached.
    """
    import errno

    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise OSError(errno.ECONNREFUSED, f"cannot connect to the decisions store: {exc}".strip()) from None


def pg_rows_after(url: str, after: int, limit: int) -> list[tuple[int, str, bytes]]:
    """``(seq, producer, record line)`` of up to ``limit`` rows of a PostgreSQL store with ``seq``
    above ``after``, in ``seq`` order ([] when the table does not exist yet).

    Raises:
        OSError: the database cannot be reached.
    """
    import psycopg

    sql = f"SELECT seq, producer, record::text FROM {TABLE} WHERE seq > %s ORDER BY seq LIMIT %s"  # noqa: S608
    with pg_connect(url) as conn:
        try:
            rows = conn.execute(sql, (after, limit)).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
            return []
        except psycopg.Error as exc:
            raise OSError(f"decisions store: {exc}".strip()) from None
    return [(int(q), str(p), str(r).encode()) for q, p, r in rows]


def pg_record_at(url: str, seq: int) -> bytes:
    """The record line of one row of a PostgreSQL store.

    Raises:
        OSError: the database cannot be reached; KeyError: no such row.
    """
    with pg_connect(url) as conn:
        row = conn.execute(f"SELECT record::text FROM {TABLE} WHERE seq = %s", (seq,)).fetchone()  # noqa: S608
    if row is None:
        raise KeyError(seq)
    return str(row[0]).encode()
