"""Read-only, paged views of the register for the console, and a cached matcher for "is X
blocked".

Theory of operation
-------------------
The register's services (:mod:`sluice.registry.service`) answer whole questions (the history of
one indicator, counts per source, the entries that apply to a name); a console over a register
of a million entries also needs *pages* of entries, which the store protocol does not offer.
This module reads the register's tables (schema version 3) directly, never writing them:

* a prefix search goes through the audit table's index on ``indicator`` (every indicator ever
  added has an audit row), taking the next ``limit`` distinct indicators after the cursor, then
  their current entries by primary key; indicators without a current entry are skipped;
* a listing without a search walks the entries' primary key ``(source, kind, indicator)``.

Both are keyset-paginated (the cursor is the last row's key), so page 1000 costs what page 1
costs.  "Is X blocked" builds a :class:`~sluice.registry.matcher.Matcher` once per register
version (the latest import id) and answers in the shape of
:func:`sluice.registry.service.check` (a test compares them).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from typing import Any

from sluice.console.db import Database
from sluice.registry.matcher import Match, Matcher
from sluice.registry.model import Kind, basis_from_json
from sluice.registry.stores import open_store

__all__ = ["MAX_PAGE", "RegisterView", "decode_cursor", "encode_cursor"]

MAX_PAGE = 500
"""Largest page of any listing."""
_PREFIX_END = "\x7f"
"""Appended to a prefix for the upper bound of a range (indicators are ASCII)."""
_MAX_ROUNDS = 20
"""Rounds of a search that skips removed indicators before it returns a short page."""


def encode_cursor(key: Sequence[object]) -> str:
    """An opaque cursor for a page's last key."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str, size: int) -> list[Any] | None:
    """The key of a cursor made by :func:`encode_cursor`, or None when it is not one of ``size``."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(key, list) or len(key) != size:
        return None
    if not all(isinstance(k, str | int | float) and not isinstance(k, bool) for k in key):
        return None
    return key


def _entry(row: Sequence[Any]) -> dict[str, Any]:
    source, kind, ind, display, basis, at = row
    return {
        "source": source,
        "kind": kind,
        "indicator": ind,
        "shown": display or ind,
        "added_at": at,
        "basis_text": [str(b) for b in basis_from_json(basis)],
    }


def match_dict(m: Match) -> dict[str, Any]:
    """One match in the shape :func:`sluice.registry.service.check` gives."""
    e = m.entry
    return {
        "reason": m.reason.code,
        "kind": e.kind.value,
        "indicator": e.indicator,
        "shown": e.shown,
        "source": e.source,
        "basis": [{"authority": b.authority, "number": b.number, "date": b.date} for b in e.basis],
        "basis_text": [str(b) for b in e.basis],
    }


_ENTRY_COLS = "e.source, e.kind, e.indicator, e.display, b.basis, i.at"
_ENTRY_JOIN = "JOIN bases b ON b.id = e.basis_id JOIN imports i ON i.id = e.import_id"


class RegisterView:
    """Paged reads of one register (SQLite file or PostgreSQL URL).

    Args:
        target: the register, as :func:`sluice.registry.stores.open_store` takes it.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        open_store(target).close()  # refuses a missing register (RegisterNotFound), migrates an older one
        self.db = Database(target)
        self._matcher: tuple[int, Matcher] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the connections."""
        self.db.close()

    def version(self) -> int:
        """The latest import id (0 for an empty register): changes whenever the register does."""
        row = self.db.one("SELECT MAX(id) FROM imports")
        return int(row[0]) if row and row[0] is not None else 0

    def open_proposals(self) -> tuple[int, int]:
        """``(count, highest id)`` of the open proposals: changes whenever the queue does."""
        row = self.db.one("SELECT COUNT(*), MAX(id) FROM proposals WHERE state = 'proposed'")
        return (int(row[0]), int(row[1] or 0)) if row else (0, 0)

    def search(
        self,
        q: str = "",
        *,
        source: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of current entries: those whose indicator starts with ``q`` (a mask's name
        counts too), or all, in key order.

        Returns:
            The entries and the cursor of the next page (None at the end).
        """
        limit = max(1, min(limit, MAX_PAGE))
        q = q.strip().lower()
        if q:
            return self._prefix(q, source, kind, limit, cursor)
        return self._walk(source, kind, limit, cursor)

    def _walk(
        self, source: str | None, kind: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        where, params = [], []
        if source is not None:
            where.append("e.source = ?")
            params.append(source)
        if kind is not None:
            where.append("e.kind = ?")
            params.append(kind)
        key = decode_cursor(cursor, 3) if cursor else None
        if key is not None:
            where.append("(e.source, e.kind, e.indicator) > (?, ?, ?)")
            params += key
        order = ' COLLATE "C"' if self.db.postgres else ""
        sql = f"SELECT {_ENTRY_COLS} FROM entries e {_ENTRY_JOIN}"  # noqa: S608 - constant SQL
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY e.source{order}, e.kind{order}, e.indicator{order} LIMIT ?"
        rows = self.db.all(sql, [*params, limit + 1])
        items = [_entry(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = items[-1]
            nxt = encode_cursor([last["source"], last["kind"], last["indicator"]])
        return items, nxt

    def _indicators(self, prefixes: list[str], after: str, n: int) -> list[str]:
        """The next ``n`` distinct audited indicators after ``after`` starting with a prefix."""
        got: set[str] = set()
        for p in prefixes:
            if self.db.postgres:
                esc = p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                sql = (
                    'SELECT DISTINCT indicator COLLATE "C" AS ind FROM audit'
                    " WHERE indicator LIKE ? ESCAPE '\\'"
                    ' AND indicator COLLATE "C" > ? ORDER BY ind LIMIT ?'
                )
                rows = self.db.all(sql, (esc + "%", after, n))
            else:
                sql = (
                    "SELECT DISTINCT indicator FROM audit WHERE indicator >= ? AND indicator < ?"
                    " AND indicator > ? ORDER BY indicator LIMIT ?"
                )
                rows = self.db.all(sql, (p, p + _PREFIX_END, after, n))
            got.update(str(r[0]) for r in rows)
        return sorted(got)[:n]

    def _prefix(
        self, q: str, source: str | None, kind: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        key = decode_cursor(cursor, 1) if cursor else None
        after = str(key[0]) if key else ""
        prefixes = [q] if q.startswith("*.") else [q, "*." + q]
        items: list[dict[str, Any]] = []
        for _ in range(_MAX_ROUNDS):
            inds = self._indicators(prefixes, after, limit + 1 - len(items))
            if not inds:
                return items, None
            rows = self._current(inds, source, kind)
            for ind in inds:
                after = ind
                items.extend(rows.get(ind, []))
                if len(items) >= limit:
                    more = ind != inds[-1] or bool(self._indicators(prefixes, ind, 1))
                    return items, encode_cursor([ind]) if more else None
        return items, encode_cursor([after])

    def _current(
        self, inds: list[str], source: str | None, kind: str | None
    ) -> dict[str, list[dict[str, Any]]]:
        marks = ",".join("?" * len(inds))
        sql = (
            f"SELECT {_ENTRY_COLS} FROM (SELECT DISTINCT source, kind, indicator FROM audit"  # noqa: S608
            f" WHERE indicator IN ({marks})) a JOIN entries e ON e.source = a.source AND e.kind = a.kind"
            f" AND e.indicator = a.indicator {_ENTRY_JOIN}"
        )
        params: list[object] = list(inds)
        if source is not None:
            sql += " WHERE e.source = ?"
            params.append(source)
        if kind is not None:
            sql += (" AND" if source is not None else " WHERE") + " e.kind = ?"
            params.append(kind)
        out: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(self.db.all(sql, params), key=lambda r: (r[2], r[0], r[1])):
            out.setdefault(r[2], []).append(_entry(r))
        return out

    def matcher(self) -> Matcher:
        """The register as a matcher, rebuilt when the register changed."""
        v = self.version()
        with self._lock:
            if self._matcher is None or self._matcher[0] != v:
                store = open_store(self.target)
                try:
                    self._matcher = (v, Matcher.from_store(store))
                finally:
                    store.close()
            return self._matcher[1]

    def check(self, items: Sequence[str]) -> list[dict[str, Any]]:
        """Entries that apply to each host, URL or address (as ``sluice registry check``)."""
        m = self.matcher()
        return [{"query": it, "matches": [match_dict(x) for x in m.match(it)]} for it in items]

    def kinds(self) -> list[str]:
        """The entry kinds, for filters."""
        return [k.value for k in Kind]
