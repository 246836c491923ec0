"""Flow records and verdicts to and from Parquet without loss (the shards' files).

The export formats of :mod:`sluice.io.flowlog` are for people and tools (nulls for "not seen",
rounded durations, Community ID); a shard's file must instead give back *the same objects* the
serial run holds, so that the merged result is identical. Every field of
:class:`~sluice.flows.record.FlowRecord` and :class:`~sluice.flows.record.AppMeta` is a typed
column (metadata as ``meta_<name>``); a verdict's scalar fields are columns (``v_<name>``), its
evidence and a flow's register hits are JSON text (Python's ``json`` writes floats by ``repr``,
which reads back to the same float). The columns are typed, so DuckDB or pandas can summarise the
shard files directly (:mod:`sluice.cluster.summary`).
"""

from __future__ import annotations

__all__ = [
    "read_records",
    "read_verdicts",
    "record_schema",
    "write_records",
    "write_verdicts",
]

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sluice.flows.record import AppMeta, FlowRecord

if TYPE_CHECKING:
    from sluice.detect.service import FlowVerdict

_REC = [f for f in dataclasses.fields(FlowRecord) if f.name != "meta"]
_META = list(dataclasses.fields(AppMeta))
_VERDICT_SCALARS: tuple[str, ...] = ("label", "family", "confidence", "decided_at", "detector", "version")
_VERDICT_SCALARS += ("score", "threshold", "model_digest", "service", "flow_key")


def _arrow_type(annotation: str) -> Any:
    import pyarrow as pa

    return {
        "int": pa.int64(),
        "float": pa.float64(),
        "str": pa.string(),
        "bool": pa.bool_(),
        "tuple[int, ...]": pa.list_(pa.int64()),
        "tuple[float, ...]": pa.list_(pa.float64()),
        "tuple[str, ...]": pa.list_(pa.string()),
    }[annotation]


def record_schema(verdicts: bool = False) -> Any:
    """The Arrow schema of a shard file (flow records, plus verdict columns when ``verdicts``)."""
    import pyarrow as pa

    cols = [pa.field(f.name, _arrow_type(str(f.type))) for f in _REC]
    cols += [pa.field("meta_" + f.name, _arrow_type(str(f.type))) for f in _META]
    if verdicts:
        cols.append(pa.field("capture", pa.string()))
        vf = {f.name: str(f.type) for f in dataclasses.fields(_verdict_cls())}
        cols += [pa.field("v_" + n, _arrow_type(vf[n])) for n in _VERDICT_SCALARS]
        cols += [pa.field("v_evidence", pa.string()), pa.field("register", pa.string())]
    return pa.schema(cols)


def _verdict_cls() -> type:
    from sluice.detect.verdict import Verdict

    return Verdict


def _record_row(r: FlowRecord) -> dict[str, Any]:
    row: dict[str, Any] = {f.name: getattr(r, f.name) for f in _REC}
    meta = r.meta
    for f in _META:
        row["meta_" + f.name] = getattr(meta, f.name)
    return row


def _value(annotation: object, value: Any) -> Any:
    return tuple(value) if str(annotation).startswith("tuple") else value


def _record_of(row: dict[str, Any]) -> FlowRecord:
    meta = AppMeta(**{f.name: _value(f.type, row["meta_" + f.name]) for f in _META})
    return FlowRecord(**{f.name: _value(f.type, row[f.name]) for f in _REC}, meta=meta)


def write_records(path: str, records: Sequence[FlowRecord]) -> None:
    """Write flow records to one Parquet file (the exact values, see the module's notes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([_record_row(r) for r in records], schema=record_schema())
    pq.write_table(table, path)


def read_records(path: str) -> list[FlowRecord]:
    """The flow records of a file :func:`write_records` wrote, as they were."""
    import pyarrow.parquet as pq

    return [_record_of(row) for row in pq.read_table(path).to_pylist()]


def write_verdicts(path: str, flows: Sequence[FlowVerdict]) -> None:
    """Write ``analyze``'s rows (record, verdict, register hits) to one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for f in flows:
        row = _record_row(f.record)
        row["capture"] = f.capture
        v = f.verdict
        for n in _VERDICT_SCALARS:
            row["v_" + n] = getattr(v, n)
        row["v_evidence"] = json.dumps([dataclasses.astuple(e) for e in v.evidence])
        row["register"] = json.dumps([dataclasses.astuple(h) for h in f.register])
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=record_schema(verdicts=True)), path)


def read_verdicts(path: str) -> list[FlowVerdict]:
    """The rows of a file :func:`write_verdicts` wrote, as they were."""
    import pyarrow.parquet as pq

    from sluice.detect.service import FlowVerdict, RegisterHit
    from sluice.detect.verdict import Evidence, Verdict

    out = []
    for row in pq.read_table(path).to_pylist():
        rec = _record_of(row)
        verdict = Verdict(
            flow_id=rec.flow_id,
            evidence=tuple(Evidence(*e) for e in json.loads(row["v_evidence"])),
            **{n: row["v_" + n] for n in _VERDICT_SCALARS},
        )
        hits = tuple(RegisterHit(*h) for h in json.loads(row["register"]))
        out.append(FlowVerdict(row["capture"], rec, verdict, hits))
    return out
