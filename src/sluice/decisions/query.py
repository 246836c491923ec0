"""Reading a decision log back: every segment, oldest first, filtered; torn lines skipped and counted."""

from __future__ import annotations

__all__ = ["DecisionFilter", "ReadStats", "parse_since", "read_decisions"]

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from sluice.decisions.log import log_dirs, segments
from sluice.errors import ConfigError
from sluice.policy.model import Decision

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

    Args:
        directory: the log directory.
        flt: which decisions to yield (default: all).
        stats: filled in as the read goes.

    Yields:
        The decisions.
    """
    st = stats if stats is not None else ReadStats()
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
            for raw in fh:
                st.lines += 1
                if not raw.endswith(b"\n"):
                    st.skipped += 1
                    continue
                if raw == b"\n":
                    continue
                try:
                    d = Decision.from_dict(orjson.loads(raw))
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
                    st.skipped += 1
                    continue
                if flt is None or flt.wants(d):
                    yield d
