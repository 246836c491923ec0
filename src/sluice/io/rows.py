"""The two conventions of a flat flow row: in memory (sentinels) and exported (nulls, timestamps).

:func:`sluice.io.flowlog.export_row` writes absent values as null and Parquet writes
``first_ts``/``last_ts`` as timestamps; :func:`import_row` turns such a row back into the
in-memory convention (``-1``, ``0``, ``""``, Unix seconds) that :class:`FlowRecord` uses, so
readers of sluice's own logs (model training, replays) take either form.
"""

from __future__ import annotations

__all__ = ["NULL_WHEN", "import_row"]

from collections.abc import Mapping
from datetime import datetime
from typing import Any

NULL_WHEN: dict[str, object] = {
    "tls_cipher": -1, "dns_rcode": -1, "tls_version": 0, "dns_qtype": 0, "http_status": 0,
    "c2s_entropy": -1.0, "c2s_printable": -1.0, "s2c_entropy": -1.0, "s2c_printable": -1.0,
}  # fmt: skip
"""Numeric columns and the in-memory sentinel that means "not seen" (exported as null)."""


def import_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An exported row in the in-memory convention: sentinels for nulls, Unix seconds for times.

    Args:
        row: a row of sluice's JSONL, CSV-decoded or Parquet flow output (or already in-memory).

    Returns:
        A new dict; a null column without a numeric sentinel becomes ``""`` (text columns).
    """
    out = dict(row)
    for name, value in row.items():
        if isinstance(value, datetime):
            out[name] = value.timestamp()
        elif value is None:
            out[name] = NULL_WHEN.get(name, "")
    return out
