"""The decision log: every decision (enforced or shadow) as one JSONL record, rotated by size,
fsync as configured, queryable across segments.

* :mod:`~sluice.decisions.log`: :class:`DecisionLog` (writer) and :class:`FsyncPolicy`;
* :mod:`~sluice.decisions.query`: :func:`read_decisions` with :class:`DecisionFilter`.
"""

from __future__ import annotations

from sluice.decisions.log import (
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    DecisionLog,
    FsyncPolicy,
    log_dirs,
    segments,
    worker_dir,
)
from sluice.decisions.query import DecisionFilter, ReadStats, parse_since, read_decisions

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "DecisionFilter",
    "DecisionLog",
    "FsyncPolicy",
    "ReadStats",
    "log_dirs",
    "parse_since",
    "read_decisions",
    "segments",
    "worker_dir",
]
