"""Writing flow records for programs: JSONL, CSV, Parquet and Suricata EVE (the table is the CLI's).

Output conventions (the columns are :data:`EXPORT_COLUMNS`):

* every row carries ``community_id`` (Community ID v1, :mod:`sluice.io.community_id`; null for
  ICMP, whose type and code are not recorded) and, beside the numbers, ``tls_version_name``
  (``"TLS 1.3"``) and ``tls_cipher_name`` (IANA's name, ``"TLS_AES_128_GCM_SHA256"``);
* absent values are null in JSONL and Parquet (an empty cell in CSV), never ``-1``, ``0`` or
  ``""``: see :data:`NULL_WHEN`; the in-memory :class:`FlowRecord` keeps its sentinels;
* time: ``first_ts``/``last_ts`` are Unix seconds (floats) in JSONL and CSV, and
  ``timestamp[us, UTC]`` in Parquet;
* lists (``alpn``, ``dns_answers``, ``cert_san``, ``pkt_sizes`` …) are JSON arrays in CSV cells
  (``["h2","http/1.1"]``), so ``json.loads(cell)`` splits them back whatever they contain;
* ``eve`` writes Suricata EVE JSON lines (:mod:`sluice.io.eve`).
"""

from __future__ import annotations

__all__ = [
    "EXPORT_COLUMNS",
    "FORMATS",
    "NULL_WHEN",
    "FlowWriter",
    "export_row",
    "open_flow_writer",
    "split_csv_list",
]

import csv
import dataclasses
import json
from collections.abc import Iterable
from typing import IO, Any, Protocol

import orjson

from sluice.flows.record import RECORD_COLUMNS, AppMeta, FlowRecord
from sluice.io.eve import flow_events, record_community_id
from sluice.io.rows import NULL_WHEN
from sluice.io.tls_names import tls_cipher_name, tls_version_name

FORMATS = ("table", "jsonl", "csv", "parquet", "eve")

_STRING_COLUMNS = frozenset(
    {"server_name"}
    | {f.name for cls in (FlowRecord, AppMeta) for f in dataclasses.fields(cls) if f.type == "str"}
)
_TS_COLUMNS = ("first_ts", "last_ts")
EXPORT_COLUMNS: tuple[str, ...] = (*RECORD_COLUMNS, "community_id", "tls_version_name", "tls_cipher_name")
"""Column order of exported flow rows (JSONL, CSV, Parquet)."""


def export_row(r: FlowRecord, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The exported form of a record: :meth:`FlowRecord.to_dict` with nulls, Community ID and names.

    Args:
        r: the record.
        extra: columns put first (``capture`` with several captures).

    Returns:
        A flat dict in :data:`EXPORT_COLUMNS` order (after ``extra``).
    """
    row = {**(extra or {}), **r.to_dict()}
    for name, sentinel in NULL_WHEN.items():
        if row[name] == sentinel:
            row[name] = None
    for name in _STRING_COLUMNS:
        if row.get(name) == "":
            row[name] = None
    row["community_id"] = record_community_id(r)
    row["tls_version_name"] = tls_version_name(r.meta.tls_version)
    row["tls_cipher_name"] = tls_cipher_name(r.meta.tls_cipher)
    return row


def split_csv_list(cell: str) -> list[Any]:
    """A list column of sluice's CSV back as a list (the inverse of how it is written).

    Args:
        cell: the CSV cell (a JSON array, or empty).

    Returns:
        The list.
    """
    return list(json.loads(cell)) if cell else []


class FlowWriter(Protocol):
    """Something flow records can be written to."""

    def write(self, records: Iterable[FlowRecord], extra: dict[str, Any] | None = None) -> None: ...

    def close(self) -> None: ...


class _JsonlWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, records: Iterable[FlowRecord], extra: dict[str, Any] | None = None) -> None:
        for r in records:
            self.out.write(orjson.dumps(export_row(r, extra)).decode() + "\n")

    def close(self) -> None:
        self.out.flush()


def _flat(value: Any) -> Any:
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


class _CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.writer: Any = None

    def write(self, records: Iterable[FlowRecord], extra: dict[str, Any] | None = None) -> None:
        for r in records:
            row = export_row(r, extra)
            if self.writer is None:
                self.writer = csv.DictWriter(self.out, fieldnames=[*(extra or {}), *EXPORT_COLUMNS])
                self.writer.writeheader()
            self.writer.writerow({k: _flat(v) for k, v in row.items()})

    def close(self) -> None:
        self.out.flush()


class _EveWriter:
    """Suricata EVE JSON lines (final records only; ``extra["capture"]`` names the capture)."""

    names_capture = True
    """The caller passes ``capture`` even for one capture: it is part of the EVE ``flow_id``."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, records: Iterable[FlowRecord], extra: dict[str, Any] | None = None) -> None:
        capture = str((extra or {}).get("capture", ""))
        for r in records:
            for ev in flow_events(r, capture):
                self.out.write(orjson.dumps(ev).decode() + "\n")

    def close(self) -> None:
        self.out.flush()


class _ParquetWriter:
    """Rows are buffered and written in row groups (bounded memory)."""

    ROW_GROUP = 65536

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.writer: Any = None

    def write(self, records: Iterable[FlowRecord], extra: dict[str, Any] | None = None) -> None:
        for r in records:
            row = export_row(r, extra)
            for name in _TS_COLUMNS:  # Arrow takes timestamp[us] as integer microseconds
                row[name] = round(row[name] * 1_000_000)
            self.rows.append(row)
            if len(self.rows) >= self.ROW_GROUP:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        schema = self.writer.schema if self.writer else _schema(self.rows[0])
        table = pa.Table.from_pylist(self.rows, schema=schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)
        self.rows = []

    def close(self) -> None:
        self._flush()
        if self.writer is None:  # no flows: still write a valid, empty file with the full schema
            import pyarrow.parquet as pq

            pq.write_table(_schema(dict.fromkeys(EXPORT_COLUMNS)).empty_table(), self.path)
        else:
            self.writer.close()


_ARROW_TYPES = {
    "int": "int64",
    "float": "float64",
    "str": "string",
    "bool": "bool",
    "tuple[int, ...]": "list<int64>",
    "tuple[float, ...]": "list<float64>",
    "tuple[str, ...]": "list<string>",
}


def _schema(first_row: dict[str, Any]) -> Any:
    """Arrow schema of flat flow rows, from the record's type annotations."""
    import pyarrow as pa

    types = {f.name: str(f.type) for cls in (FlowRecord, AppMeta) for f in dataclasses.fields(cls)}
    types.update(
        duration="float", server_name="str", community_id="str", tls_version_name="str", tls_cipher_name="str"
    )
    arrow = {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "list<int64>": pa.list_(pa.int64()),
        "list<float64>": pa.list_(pa.float64()),
        "list<string>": pa.list_(pa.string()),
    }
    fields = []
    for name, value in first_row.items():
        if name in _TS_COLUMNS:
            fields.append(pa.field(name, pa.timestamp("us", tz="UTC")))
            continue
        kind = _ARROW_TYPES.get(types.get(name, ""), "")
        if not kind:
            kind = "int64" if isinstance(value, int) else "string"
        fields.append(pa.field(name, arrow[kind]))
    return pa.schema(fields)


def open_flow_writer(fmt: str, out: IO[str] | None, path: str | None) -> FlowWriter:
    """A writer for ``fmt``; Parquet needs a ``path``, the others write to ``out``.

    ``table`` is for people and drawn by the command line (``sluice.cli.flows``, with the other
    tables of :mod:`sluice.cli._output`), so it is not one of these writers.

    Raises:
        ValueError: unknown format, or Parquet without a path.
    """
    if fmt == "parquet":
        if path is None:
            raise ValueError("parquet output needs --out FILE")
        return _ParquetWriter(path)
    if out is None:
        raise ValueError(f"{fmt} output needs a stream")
    if fmt == "jsonl":
        return _JsonlWriter(out)
    if fmt == "csv":
        return _CsvWriter(out)
    if fmt == "eve":
        return _EveWriter(out)
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
