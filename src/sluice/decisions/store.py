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

**Flow summaries** (``sluice publish --flows``: the lines of ``sluice flows``/``sluice analyze
--format jsonl``) are stored beside the decisions, never mixed with them: in a Parquet store the
dataset ``flows/day=YYYY-MM-DD/part-*.parquet`` (day of the flow's first packet; the same
atomic writes and the same key index), in PostgreSQL the table ``flow_summaries`` (key as primary
key). Their columns (:func:`flow_schema`): key, producer, the Community ID (computed from the
5-tuple for analyze lines, which carry none), the flow key, first/last seen as UTC timestamps,
packets and bytes each way, app and names, the verdict of an analysis, and the line itself.
:func:`read_flow_summaries` reads either store back as an Arrow table.
"""

from __future__ import annotations

__all__ = [
    "FLOWS_DIR",
    "FLOWS_TABLE",
    "MARKER",
    "day_of",
    "flow_pg_columns",
    "flow_row",
    "flow_schema",
    "is_postgres_url",
    "is_store",
    "pg_connect",
    "pg_record_at",
    "pg_rows_after",
    "read_flow_summaries",
    "read_store_file",
    "record_at",
    "schema",
    "store_days",
    "store_files",
    "to_flow_table",
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


# -- flow summaries (``sluice publish --flows``): beside the decisions, in ``flows/`` --

FLOWS_DIR = "flows"
"""A Parquet store's flow-summary dataset: ``flows/day=YYYY-MM-DD/part-*.parquet``."""
FLOWS_TABLE = "flow_summaries"
"""The PostgreSQL table of flow summaries (key as primary key)."""
_FLOW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (column, type, field of a ``sluice flows``/``sluice analyze --format jsonl`` line)
    ("community_id", "str", "community_id"),
    ("capture", "str", "capture"),
    ("flow_id", "int", "flow_id"),
    ("first_seen", "ts", "first_ts"),
    ("last_seen", "ts", "last_ts"),
    ("duration_s", "float", "duration"),
    ("ip_version", "int", "ip_version"),
    ("proto", "int", "proto"),
    ("client", "str", "client"),
    ("client_port", "int", "client_port"),
    ("server", "str", "server"),
    ("server_port", "int", "server_port"),
    ("c2s_packets", "int", "c2s_packets"),
    ("s2c_packets", "int", "s2c_packets"),
    ("c2s_bytes", "int", "c2s_bytes"),
    ("s2c_bytes", "int", "s2c_bytes"),
    ("end_reason", "str", "end_reason"),
    ("app", "str", "app"),
    ("server_name", "str", "server_name"),
    ("sni", "str", "sni"),
    ("dns_query", "str", "dns_query"),
    ("http_host", "str", "http_host"),
    ("ja4", "str", "ja4"),
    ("class", "str", "class"),
    ("family", "str", "family"),
    ("service", "str", "service"),
    ("confidence", "float", "confidence"),
    ("detector", "str", "detector"),
)
"""The typed columns of a flow summary, after ``key``, ``producer`` and before ``record``."""
_PG_TYPES = {"str": "TEXT", "int": "BIGINT", "float": "DOUBLE PRECISION", "ts": "TIMESTAMPTZ"}


@cache
def flow_schema() -> pa.Schema:
    """Columns of a flow-summary Parquet file: ``key``, ``producer``, the typed fields (times as
    UTC timestamps; a value the line did not have - null, ``""`` or a negative sentinel such as
    analyze's ``-1`` - is null) and ``record``, the line as published."""
    import pyarrow as pa

    arrow = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "ts": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("producer", pa.string(), nullable=False),
            *(pa.field(name, arrow[kind]) for name, kind, _src in _FLOW_COLUMNS),
            pa.field("record", pa.string(), nullable=False),
        ]
    )


def flow_pg_columns() -> list[tuple[str, str]]:
    """``(column, PostgreSQL type)`` of the typed flow columns (``key``, ``producer``, ``record``
    are the table's own)."""
    return [(name, _PG_TYPES[kind]) for name, kind, _src in _FLOW_COLUMNS]


def _flow_value(kind: str, v: Any) -> Any:
    if isinstance(v, bool):
        return None
    if kind == "str":
        return v if isinstance(v, str) and v else None
    if kind == "int":
        return v if isinstance(v, int) and v >= 0 else None
    if isinstance(v, int | float) and math.isfinite(v) and v >= 0:
        return _ts({"ts": v}) if kind == "ts" else float(v)
    return None


def _community_id(obj: dict[str, Any]) -> str | None:
    """The line's Community ID, or one computed from its 5-tuple (``sluice analyze`` lines have
    none)."""
    from sluice.io.community_id import community_id

    cid = obj.get("community_id")
    if isinstance(cid, str) and cid:
        return cid
    try:
        return community_id(
            int(obj["proto"]), obj["client"], obj["server"], obj.get("client_port"), obj.get("server_port")
        )
    except (KeyError, TypeError, ValueError):
        return None


def flow_row(raw: bytes) -> tuple[dict[str, Any], float | None]:
    """The typed columns of one flow line (all null for a line that is not a JSON object: it is
    still stored, in ``record``) and its first-seen time (Unix seconds) or None."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        return {name: None for name, _k, _s in _FLOW_COLUMNS}, None
    row = {name: _flow_value(kind, obj.get(src)) for name, kind, src in _FLOW_COLUMNS}
    row["community_id"] = _community_id(obj)
    first = row["first_seen"]
    for name, kind, _src in _FLOW_COLUMNS:
        if kind == "ts" and row[name] is not None:
            row[name] = datetime.fromtimestamp(row[name], UTC)
    return row, first


def to_flow_table(rows: Sequence[tuple[str, str, bytes]]) -> tuple[pa.Table, list[str]]:
    """A flow-summary Parquet table of ``(key, producer, flow line)`` rows, sorted by first-seen
    time then key, and each row's day (of its first packet)."""
    import pyarrow as pa

    schema_ = flow_schema()
    parsed = sorted(
        ((*flow_row(raw), key, producer, raw) for key, producer, raw in rows),
        key=lambda r: (r[1] if r[1] is not None else math.inf, r[2]),
    )
    cols: dict[str, list[Any]] = {f.name: [] for f in schema_}
    days = []
    for typed, first, key, producer, raw in parsed:
        cols["key"].append(key)
        cols["producer"].append(producer)
        for name, value in typed.items():
            cols[name].append(value)
        cols["record"].append(raw.decode("utf-8", "replace"))
        days.append(day_of(first))
    arrays = [pa.array(cols[f.name], type=f.type) for f in schema_]
    return pa.Table.from_arrays(arrays, schema=schema_), days


def read_flow_summaries(location: str | Path) -> pa.Table:
    """Every flow summary of a store (Parquet directory or PostgreSQL URL) as one Arrow table of
    :func:`flow_schema`'s columns (``.to_pandas()`` for a DataFrame); empty when none is stored.

    A Parquet store's ``flows/`` directory is also a Hive-partitioned dataset that pandas,
    polars and DuckDB read directly (tested with ``pandas.read_parquet("STORE/flows")``).

    Raises:
        OSError: the store cannot be read (database unreachable, a broken file).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if is_postgres_url(location):
        return _pg_flow_table(str(location))
    files = store_files(Path(location) / FLOWS_DIR)
    if not files:
        return flow_schema().empty_table()
    try:
        return pa.concat_tables(pq.read_table(p, schema=flow_schema()) for p in files)
    except pa.ArrowInvalid as exc:
        raise OSError(f"flow summaries: {exc}") from None


def _pg_flow_table(url: str) -> pa.Table:
    import psycopg
    import pyarrow as pa

    names = ["key", "producer", *(n for n, _k, _s in _FLOW_COLUMNS), "record"]
    cols = ", ".join(f'"{n}"' for n in names[:-1]) + ", record::text"
    with pg_connect(url) as conn:
        try:
            rows = conn.execute(f"SELECT {cols} FROM {FLOWS_TABLE} ORDER BY first_seen, key").fetchall()  # noqa: S608
        except psycopg.errors.UndefinedTable:
            rows = []
        except psycopg.Error as exc:
            raise OSError(f"flow summaries: {exc}".strip()) from None
    schema_ = flow_schema()
    arrays = [pa.array([r[i] for r in rows], type=schema_.field(n).type) for i, n in enumerate(names)]
    return pa.Table.from_arrays(arrays, schema=schema_)
