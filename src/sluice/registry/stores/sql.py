"""The SQL the SQLite and PostgreSQL stores share: reads, settings, the review queue and the
writing of one sync (inside a transaction each database opens its own way)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from itertools import repeat
from typing import Any

from sluice.registry.model import (
    AuditAction,
    AuditRecord,
    Entry,
    ImportRecord,
    Kind,
    Proposal,
    ProposalState,
    basis_from_json,
)
from sluice.registry.stores.base import KEY_SQL, Added, ImportMeta

__all__ = ["SqlStore"]

_KIND_OF_KEY = (
    "CASE substr(?2, 1, 1) WHEN 'a' THEN 'domain' WHEN 'b' THEN 'domain-mask' WHEN 'c' THEN 'ip'"
    " WHEN 'd' THEN 'subnet' WHEN 'f' THEN 'wallet' ELSE 'url' END"
)
_IMPORT_COLS = (
    "id, source, fmt, path, sha256, at, rows, entries, added, removed, changed, rejected, dump_time"
)
_PROPOSAL_COLS = (
    "id, kind, indicator, detector, reason, evidence, impact, state, reviewer, decided_at,"
    " decision_reason, created_at"
)
_ENTRY_SELECT = (
    "SELECT e.source, e.kind, e.indicator, e.display, b.basis, i.at FROM entries e"
    " JOIN bases b ON b.id = e.basis_id JOIN imports i ON i.id = e.import_id"
)


def _proposal(row: Sequence[Any]) -> Proposal:
    pid, kind, ind, det, reason, ev, imp, state, reviewer, dec_at, dec_reason, created = row
    return Proposal(
        Kind(kind),
        ind,
        det,
        reason,
        json.loads(ev),
        json.loads(imp),
        int(pid),
        ProposalState(state),
        reviewer,
        dec_at,
        dec_reason,
        created,
    )


class SqlStore:
    """The SQL shared by the SQLite and PostgreSQL stores (``P`` is the placeholder)."""

    P = "?"
    conn: Any

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.P) if self.P != "?" else sql

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(self._q(sql), params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        cur.close()
        return rows

    def source_state(self, source: str) -> dict[tuple[str, str], str]:
        """Current entries of one source: ``(kind, indicator) -> basis_json``."""
        rows = self._all(
            "SELECT e.kind, e.indicator, b.basis FROM entries e JOIN bases b ON b.id = e.basis_id"
            " WHERE e.source = ?",
            (source,),
        )
        return {(k, i): b for k, i, b in rows}

    _KEY_ORDER = "kind, indicator"
    """Byte order of keys (PostgreSQL: ``COLLATE "C"``)."""
    _SOURCE_KEYS_SQL = (
        "SELECT group_concat(k, char(1)), group_concat(b, char(1)), COUNT(*) FROM"  # noqa: S608
        f" (SELECT {KEY_SQL} AS k, CAST(basis_id AS TEXT) AS b FROM entries WHERE source = ?"
        " ORDER BY kind, indicator) t"
    )
    """One row: every key of a source and every basis id, each joined by \\x01, and the count."""

    def source_keys(self, source: str) -> tuple[list[str], list[int]]:
        """Current entries of one source in key order: keys (kind letter + indicator), basis ids.

        Fetched as two aggregated strings (a million row tuples cost far more); should a key
        hold the separator, the rows are fetched one by one instead.  The caller checks the
        order.
        """
        sql = self._SOURCE_KEYS_SQL
        (keys_s, ids_s, count), *_ = self._all(sql, (source,))
        if not count:
            return [], []
        keys = str(keys_s).split("\x01")
        if len(keys) == count:
            return keys, list(map(int, str(ids_s).split("\x01")))
        rows = self._all(
            f"SELECT {KEY_SQL}, basis_id FROM entries WHERE source = ? ORDER BY {self._KEY_ORDER}",  # noqa: S608
            (source,),
        )
        return [k for k, _ in rows], [int(b) for _, b in rows]

    def basis_ids(self) -> dict[str, int]:
        """Every stored decision set: basis JSON -> basis id."""
        return {b: int(i) for i, b in self._all("SELECT id, basis FROM bases")}

    def rows(self, source: str | None = None) -> Iterator[tuple[str, str, str, str]]:
        """Every current entry as ``(source, kind, indicator, basis_json)``."""
        sql = "SELECT e.source, e.kind, e.indicator, b.basis FROM entries e JOIN bases b ON b.id = e.basis_id"
        params: tuple[str, ...] = ()
        if source is not None:
            sql += " WHERE e.source = ?"
            params = (source,)
        cur = self.conn.cursor()
        cur.execute(self._q(sql), params)
        while True:
            chunk = cur.fetchmany(10000)
            if not chunk:
                break
            yield from chunk
        cur.close()

    def entries(self, source: str | None = None) -> Iterator[Entry]:
        """Every current entry."""
        sql = _ENTRY_SELECT
        params: tuple[str, ...] = ()
        if source is not None:
            sql += " WHERE e.source = ?"
            params = (source,)
        cur = self.conn.cursor()
        cur.execute(self._q(sql), params)
        for s, k, i, d, b, a in cur:
            yield Entry(Kind(k), i, s, basis_from_json(b), d, a)
        cur.close()

    def lookup(self, indicator: str) -> list[Entry]:
        """Current entries with exactly this canonical indicator (any source, kind)."""
        rows = self._all(
            _ENTRY_SELECT  # noqa: S608 - constant SQL
            + " JOIN (SELECT DISTINCT source, kind FROM audit WHERE indicator = ?) a"
            " ON e.source = a.source AND e.kind = a.kind WHERE e.indicator = ?"
            " ORDER BY e.source, e.kind",
            (indicator, indicator),
        )
        return [Entry(Kind(k), i, s, basis_from_json(b), d, a) for s, k, i, d, b, a in rows]

    def entries_of(self, keys: Collection[tuple[Kind, str]], source: str | None = None) -> list[Entry]:
        """Current entries with one of these ``(kind, canonical indicator)`` keys (all sources, or
        one), ordered by source, kind, indicator.

        Every lookup goes through the primary key ``(source, kind, indicator)``: the sources are
        those of the imports table (every entry was written by an import of its source, and that
        table has a row per sync, not per entry), the kinds and indicators are the keys'.  What
        ``registry check`` asks (a name and its parent domains, an address and its networks) is
        a few dozen keys, answered without reading the register.
        """
        if not keys:
            return []
        kinds = sorted({k.value for k, _ in keys})
        inds = sorted({i for _, i in keys})
        params: list[object] = [*kinds, *inds]
        if source is None:
            where = "e.source IN (SELECT DISTINCT source FROM imports)"
        else:
            where = "e.source = ?"
            params.insert(0, source)
        sql = (
            _ENTRY_SELECT + f" WHERE {where} AND e.kind IN ({','.join('?' * len(kinds))})"
            f" AND e.indicator IN ({','.join('?' * len(inds))}) ORDER BY {self._KEY_ORDER_SOURCE}"
        )
        wanted = {(k.value, i) for k, i in keys}
        return [
            Entry(Kind(k), i, s, basis_from_json(b), d, a)
            for s, k, i, d, b, a in self._all(sql, params)
            if (k, i) in wanted
        ]

    _KEY_ORDER_SOURCE = "e.source, e.kind, e.indicator"
    """Order of :meth:`entries_of` (PostgreSQL: byte order, as SQLite's)."""

    def history(self, indicator: str) -> list[AuditRecord]:
        """Audit records of one canonical indicator, oldest first."""
        rows = self._all(
            "SELECT COALESCE(a.at, i.at), a.action, a.source, a.kind, a.indicator, a.import_id,"
            " COALESCE(o.basis, '[]'), COALESCE(n.basis, '[]'), COALESCE(a.actor, ''),"
            " COALESCE(a.note, ''), COALESCE(a.proposal_id, 0) FROM audit a"
            " LEFT JOIN imports i ON i.id = a.import_id LEFT JOIN bases o ON o.id = a.old_basis"
            " LEFT JOIN bases n ON n.id = a.new_basis WHERE a.indicator = ? ORDER BY a.id",
            (indicator,),
        )
        return [
            AuditRecord(
                at,
                AuditAction(a),
                s,
                Kind(k),
                i,
                int(imp),
                basis_from_json(o),
                basis_from_json(n),
                actor,
                note,
                int(pid),
            )
            for at, a, s, k, i, imp, o, n, actor, note, pid in rows
        ]

    def imports(self, source: str | None = None, limit: int = 50) -> list[ImportRecord]:
        """Recent imports, newest first."""
        sql = f"SELECT {_IMPORT_COLS} FROM imports"  # noqa: S608 - constant column list
        params: list[object] = []
        if source is not None:
            sql += " WHERE source = ?"
            params.append(source)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [ImportRecord(*r) for r in self._all(sql, params)]

    def stats(self) -> dict[str, dict[str, int]]:
        """Entry counts: ``{source: {kind: count}}``."""
        out: dict[str, dict[str, int]] = {}
        rows = self._all("SELECT source, kind, COUNT(*) FROM entries GROUP BY source, kind")
        for s, k, n in rows:
            out.setdefault(s, {})[k] = int(n)
        return out

    # -- settings: ``meta`` rows other than ``schema_version`` (per-source fetch state) --

    def settings(self, prefix: str) -> dict[str, str]:
        """The register's settings (``meta`` rows) whose key starts with ``prefix``."""
        rows = self._all(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )
        return {str(k): str(v) for k, v in rows}

    def put_setting(self, key: str, value: str) -> None:
        """Set one setting (committed at once, or with the transaction it runs in)."""
        if key == "schema_version":
            raise ValueError("schema_version is not a setting")
        self._exec(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_setting(self, key: str) -> None:
        """Remove one setting (nothing when absent)."""
        if key == "schema_version":
            raise ValueError("schema_version is not a setting")
        self._exec("DELETE FROM meta WHERE key = ?", (key,))

    # -- the review queue (writes inside ``review()``) --

    def _exec(self, sql: str, params: Sequence[object] = ()) -> int:
        cur = self.conn.cursor()
        cur.execute(self._q(sql), params)
        n = int(cur.rowcount)
        cur.close()
        return n

    def add_proposal(self, p: Proposal, at: str) -> int:
        """Store a new open proposal with its ``proposed`` audit row (inside :meth:`review`)."""
        cur = self.conn.cursor()
        cur.execute(
            self._q(
                "INSERT INTO proposals (kind, indicator, detector, reason, evidence, impact, state,"
                " reviewer, decided_at, decision_reason, created_at)"
                " VALUES (?,?,?,?,?,?,'proposed','','','',?) RETURNING id"
            ),
            (
                p.kind.value,
                p.indicator,
                p.detector,
                p.reason,
                json.dumps(p.evidence, ensure_ascii=False, sort_keys=True),
                json.dumps(p.impact, ensure_ascii=False, sort_keys=True),
                at,
            ),
        )
        pid = int(cur.fetchone()[0])
        cur.close()
        self.audit_review(AuditAction.PROPOSED, p, p.detector, p.reason, at, 0, pid)
        return pid

    def proposals(
        self,
        *,
        state: ProposalState | None = None,
        ids: Sequence[int] | None = None,
        key: tuple[str, Kind, str] | None = None,
        limit: int | None = None,
    ) -> list[Proposal]:
        """Proposals, newest first: all, of one state, these ids, or one ``(detector, kind, indicator)``."""
        where: list[str] = []
        params: list[object] = []
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        if ids is not None:
            if not ids:
                return []
            where.append(f"id IN ({','.join('?' * len(ids))})")
            params.extend(int(i) for i in ids)
        if key is not None:
            where.append("detector = ? AND kind = ? AND indicator = ?")
            params.extend((key[0], key[1].value, key[2]))
        sql = f"SELECT {_PROPOSAL_COLS} FROM proposals"  # noqa: S608 - constant columns, ? params
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_proposal(r) for r in self._all(sql, params)]

    def set_proposal_state(self, pid: int, state: ProposalState, reviewer: str, reason: str, at: str) -> bool:
        """Decide an open proposal; False when it is no longer open (someone decided first)."""
        n = self._exec(
            "UPDATE proposals SET state = ?, reviewer = ?, decision_reason = ?, decided_at = ?"
            " WHERE id = ? AND state = 'proposed'",
            (state.value, reviewer, reason, at, int(pid)),
        )
        return n == 1

    def audit_review(
        self,
        action: AuditAction,
        p: Proposal,
        actor: str,
        note: str,
        at: str,
        import_id: int = 0,
        pid: int = 0,
    ) -> None:
        """Append one review event (proposed, accepted, rejected) to the audit table."""
        self._exec(
            "INSERT INTO audit (import_id, action, source, kind, indicator, old_basis, new_basis,"
            " at, actor, note, proposal_id) VALUES (?,?,?,?,?,NULL,NULL,?,?,?,?)",
            (import_id, action.value, p.source, p.kind.value, p.indicator, at, actor, note, pid or p.id),
        )

    # -- writing (inside a transaction the subclass opened) --

    def _write_sync(
        self,
        cur: Any,
        source: str,
        meta: ImportMeta,
        added: Added,
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        fmt, path, sha, at, nrows, rejected, dump_time = meta
        n_added = len(added.keys)
        cur.execute(
            self._q(
                "INSERT INTO imports (source, fmt, path, sha256, at, rows, entries, added,"
                " removed, changed, rejected, dump_time) VALUES (?,?,?,?,?,?,0,?,?,?,?,?)"
                " RETURNING id"
            ),
            (source, fmt, path, sha, at, nrows, n_added, len(removed), len(changed), rejected, dump_time),
        )
        import_id = int(cur.fetchone()[0])
        ids = self._basis_ids_for(cur, {*added.sets, *(c[3] for c in changed)})
        if removed:
            old_ids = self._basis_ids_for(cur, {r[2] for r in removed})
            cur.executemany(
                self._q("DELETE FROM entries WHERE source = ? AND kind = ? AND indicator = ?"),
                [(source, k, i) for k, i, _ in removed],
            )
            cur.executemany(
                self._q(
                    "INSERT INTO audit (import_id, action, source, kind, indicator, old_basis,"
                    " new_basis) VALUES (?,'removed',?,?,?,?,NULL)"
                ),
                [(import_id, source, k, i, old_ids[b]) for k, i, b in removed],
            )
        if changed:
            old_ids = self._basis_ids_for(cur, {c[2] for c in changed})
            cur.executemany(
                self._q("UPDATE entries SET basis_id = ? WHERE source = ? AND kind = ? AND indicator = ?"),
                [(ids[new], source, k, i) for k, i, _, new in changed],
            )
            cur.executemany(
                self._q(
                    "INSERT INTO audit (import_id, action, source, kind, indicator, old_basis,"
                    " new_basis) VALUES (?,'changed',?,?,?,?,?)"
                ),
                [(import_id, source, k, i, old_ids[old], ids[new]) for k, i, old, new in changed],
            )
        if n_added:
            import numpy as np  # only a sync needs it: readers (registry check) start without

            set_ids = np.asarray([ids[j] for j in added.sets], np.int64)
            bids = set_ids[np.asarray(added.basis, np.int64)].tolist()
            self._insert_entries(cur, source, import_id, added, bids)
            cur.execute(
                self._q(
                    "INSERT INTO audit (import_id, action, source, kind, indicator, old_basis,"
                    " new_basis) SELECT import_id, 'added', source, kind, indicator, NULL,"
                    " basis_id FROM entries WHERE source = ? AND import_id = ?"
                ),
                (source, import_id),
            )
        cur.execute(self._q("SELECT COUNT(*) FROM entries WHERE source = ?"), (source,))
        total = int(cur.fetchone()[0])
        cur.execute(self._q("UPDATE imports SET entries = ? WHERE id = ?"), (total, import_id))
        return import_id

    def _basis_ids_for(self, cur: Any, jsons: set[str]) -> dict[str, int]:
        """Ids of decision sets (JSON), inserting the new ones; inside the sync's transaction."""
        if not jsons:
            return {}
        self._lock_bases(cur)
        cur.execute(self._q("SELECT id, basis FROM bases"))
        known = {b: int(i) for i, b in cur.fetchall()}
        for j in sorted(jsons - known.keys()):
            cur.execute(self._q("INSERT INTO bases (basis) VALUES (?) RETURNING id"), (j,))
            known[j] = int(cur.fetchone()[0])
        return known

    def _lock_bases(self, cur: Any) -> None:
        """Serialise additions to ``bases`` (SQLite: the write transaction already does)."""

    def _insert_entries(self, cur: Any, source: str, import_id: int, added: Added, bids: list[int]) -> None:
        # the key is split in SQL: cheaper than two more Python lists of a million strings
        cur.executemany(
            self._q(
                "INSERT INTO entries (source, kind, indicator, display, basis_id, import_id)"  # noqa: S608
                f" VALUES (?1, {_KIND_OF_KEY}, substr(?2, 2), ?3, ?4, ?5)"
            ),
            zip(repeat(source), added.keys, added.display, bids, repeat(import_id)),
        )
