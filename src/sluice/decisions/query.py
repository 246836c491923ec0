"""Reading a decision log back: every segment, oldest first, filtered; bad lines skipped and counted.

A line is skipped, and counted in :attr:`ReadStats.reasons` under a stable reason, when it is
torn (``decisions.torn_line``: no final newline), longer than :data:`MAX_LINE_BYTES`
(``decisions.line_too_long``, read past in bounded memory), not JSON (``decisions.bad_json``),
not a decision (``decisions.not_a_decision``: a field missing or of the wrong type), or has a time
that is not a finite number between 1970 and 9999 (``decisions.bad_time``). Nothing a log holds
stops a query.
"""

from __future__ import annotations

__all__ = ["DecisionFilter", "ReadStats", "parse_since", "read_decisions"]

import heapq
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from sluice.decisions.log import log_dirs, segments
from sluice.decisions.store import (
    TABLE,
    is_postgres_url,
    is_store,
    pg_connect,
    read_store_file,
    store_files,
)
from sluice.errors import ConfigError
from sluice.policy.model import Decision

MAX_LINE_BYTES = 1 << 20
"""Longest decision line read (bytes); the writer's lines are well under 4 KiB."""
MAX_TIME_S = 253402300799.0
"""Latest decision time accepted: 9999-12-31T23:59:59Z (what ISO 8601 output can show)."""
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([smhdw]))+?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    """Which decisions a query wants (every condition must hold; None means any)."""

    since: float | None = None
    """Decisions at or after this time (Unix seconds)."""
    until: float | None = None
    """Decisions before this time."""
    action: str | None = None
    """Only this action."""
    rule: str | None = None
    """Only this rule's decisions."""
    mode: str | None = None
    """Only ``enforce`` or ``shadow`` decisions."""

    def wants(self, d: Decision) -> bool:
        """Whether a decision passes."""
        if self.since is not None and d.time < self.since:
            return False
        if self.until is not None and d.time >= self.until:
            return False
        if self.action is not None and d.action.value != self.action:
            return False
        if self.rule is not None and d.rule != self.rule:
            return False
        return self.mode is None or d.mode.value == self.mode


@dataclass
class ReadStats:
    """What a read went through."""

    files: int = 0
    """Segments read."""
    lines: int = 0
    """Lines read."""
    skipped: int = 0
    """Lines that are not a whole decision (torn by a crash, or damaged), skipped."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Skipped lines by reason (``decisions.bad_time`` ...; see the module docstring)."""

    def skip(self, reason: str) -> None:
        """Count one skipped line."""
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def parse_since(text: str, now: float) -> float:
    """A point in time from ISO 8601 (``2025-01-31``, ``2025-01-31T12:00:00Z``) or a duration
    before ``now`` (``90s``, ``15m``, ``2h``, ``7d``, ``1h30m``).

    Raises:
        ConfigError: neither.
    """
    t = text.strip()
    if t and _DURATION.fullmatch(t):
        secs = sum(float(n) * _UNIT_S[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", t))
        return now - secs
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00") if t.endswith("Z") else t)
    except ValueError:
        raise ConfigError("since", f"{text!r} is neither ISO 8601 nor a duration like 15m, 2h, 7d") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_decisions(
    directory: str | Path, flt: DecisionFilter | None = None, stats: ReadStats | None = None
) -> Iterator[Decision]:
    """Decisions of a log, oldest segment first, in write order within each.

    A log written by several gateway workers (``worker-*`` subdirectories, see
    :mod:`sluice.decisions.log`) is read as one: each writer's decisions in write order, the
    writers merged by decision time.

    A segment deleted by rotation while it is being listed is skipped. A line that does not
    parse as a whole decision (a torn last line after a crash) is skipped and counted in
    ``stats.skipped``.

    ``directory`` may also be a decisions store (:mod:`sluice.decisions.store`) that
    ``sluice collect`` fills: a Parquet store directory (read day by day, each file in time
    order; a file that cannot be read is skipped and counted as ``decisions.bad_file``) or a
    ``postgresql://`` URL (read in time order; needs psycopg).

    Args:
        directory: the log directory, a Parquet store directory or a PostgreSQL URL.
        flt: which decisions to yield (default: all).
        stats: filled in as the read goes.

    Yields:
        The decisions.
    """
    st = stats if stats is not None else ReadStats()
    if is_postgres_url(directory):
        yield from _read_postgres(str(directory), flt, st)
        return
    if is_store(directory):
        yield from _read_store(Path(directory), flt, st)
        return
    dirs = [d for d in log_dirs(directory) if d == Path(directory) or segments(d)]
    if len(dirs) == 1:
        yield from _read_one(dirs[0], flt, st)
    else:
        yield from heapq.merge(*(_read_one(d, flt, st) for d in dirs), key=lambda d: d.time)


def _read_one(directory: Path, flt: DecisionFilter | None, st: ReadStats) -> Iterator[Decision]:
    for seg in segments(directory):
        try:
            fh = open(seg, "rb")  # noqa: SIM115 - closed below, generator
        except FileNotFoundError:
            continue
        st.files += 1
        with fh:
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                st.lines += 1
                if len(raw) > MAX_LINE_BYTES:
                    while raw and not raw.endswith(b"\n"):  # the rest of the line, in pieces
                        raw = fh.readline(MAX_LINE_BYTES)
                    st.skip("decisions.line_too_long")
                    continue
                if not raw.endswith(b"\n"):
                    st.skip("decisions.torn_line")
                    continue
                if raw == b"\n":
                    continue
                d = _decision(raw, st)
                if d is not None and (flt is None or flt.wants(d)):
                    yield d


def _read_store(root: Path, flt: DecisionFilter | None, st: ReadStats) -> Iterator[Decision]:
    import pyarrow as pa

    f = flt or DecisionFilter()
    for path in store_files(root, f.since, f.until):
        try:
            rows = list(read_store_file(path))
        except (OSError, pa.ArrowException):
            st.skip("decisions.bad_file")
            continue
        st.files += 1
        for _row, _producer, raw in rows:
            st.lines += 1
            d = _decision(raw, st)
            if d is not None and f.wants(d):
                yield d


def _read_postgres(url: str, flt: DecisionFilter | None, st: ReadStats) -> Iterator[Decision]:
    import psycopg

    f = flt or DecisionFilter()
    sql = f"SELECT record::text FROM {TABLE}"  # noqa: S608 - a constant
    where, params = [], []
    if f.since is not None:
        where.append("ts >= %s")
        params.append(f.since)
    if f.until is not None:
        where.append("ts < %s")
        params.append(f.until)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts, key"
    conn = pg_connect(url)
    with conn, conn.cursor(name="sluice_decisions") as cur:
        try:
            cur.execute(sql, params)
        except psycopg.errors.UndefinedTable:
            return
        st.files += 1
        for (text,) in cur:
            st.lines += 1
            d = _decision(text.encode(), st)
            if d is not None and f.wants(d):
                yield d


def _decision(raw: bytes, st: ReadStats) -> Decision | None:
    """One line as a decision, or None (counted) when it is not one."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        st.skip("decisions.bad_json")
        return None
    try:
        d = Decision.from_dict(obj)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError):
        st.skip("decisions.not_a_decision")
        return None
    if not (math.isfinite(d.time) and 0.0 <= d.time <= MAX_TIME_S):
        st.skip("decisions.bad_time")
        return None
    return d
