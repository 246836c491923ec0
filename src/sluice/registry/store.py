"""Where the register lives: the :class:`RegistryStore` protocol and its SQLite implementation.

Theory of operation
-------------------
Six tables hold the register (schema version 3):

* ``bases``: every distinct set of decisions once, as a JSON array of
  ``[authority, number, date]`` (:func:`~sluice.registry.model.basis_to_json`); rows are only
  ever added.  A million entries of a real dump share a few thousand of them.
* ``entries``: the current state, one row per ``(source, kind, indicator)`` with the Unicode
  display form ("" when it is the indicator), the basis (``bases.id``) and the import that added
  it (its time is the entry's ``added_at``).
* ``imports``: one row per sync of a source (file, digest, counts, the dump's own time stamp).
* ``audit``: append-only (triggers refuse UPDATE and DELETE), one row per change: added, removed,
  changed (basis), with the old and new basis (``bases.id``, NULL for none) and the import that
  did it (whose time is the change's time); and one row per review event (proposed, accepted,
  rejected) with its own time, who (``actor``: detector or reviewer), why (``note``) and the
  proposal (``proposal_id``; ``import_id`` is 0, or the import an acceptance wrote).
* ``meta``: the schema version, and settings (:meth:`RegistryStore.settings`): the URL, format,
  interval and HTTP validators of each list fetched from a URL (``source:NAME``, JSON; see
  :mod:`sluice.registry.fetch`).
* ``proposals``: the review queue (:mod:`sluice.registry.proposals`): indicators detectors
  propose, their evidence and impact preview (JSON), state ``proposed -> accepted | rejected``
  and the decision.  At most one open proposal per ``(detector, kind, indicator)`` (a partial
  unique index); a decided proposal is final (a trigger refuses changing or deleting it).

A sync (:meth:`RegistryStore.apply_sync`) writes the difference a caller computed against
:meth:`RegistryStore.source_keys`, both inside the source's write transaction
(:meth:`RegistryStore.sync_tx`, which serialises syncs of one source), in **one transaction**:
the import row, new decision sets, the entry inserts, updates and deletes, and their audit
rows.  A failure anywhere rolls all of it back, so a crash half-way leaves the previous
register as it was.  Review changes run inside
:meth:`RegistryStore.review`, one exclusive transaction (a sync started inside it joins it), so an
acceptance, its audit row and the entry it adds commit together, and two reviewers deciding the
same proposal are serialised.

Opening never creates a register unless asked (``create=True``: ``registry init`` and ``registry
import`` only, :func:`create_store`): a missing file, or a database without the register's
tables, raises :class:`~sluice.registry.model.RegisterNotFound` and leaves nothing behind (SQLite
is opened with ``mode=rw``).  :class:`SqliteStore` is the default (a file path);
:class:`~sluice.registry.pgstore.PostgresStore` serves several gateways from one PostgreSQL
database.

``kind`` is plain TEXT (no CHECK constraint or enum) in both databases: the ``wallet`` kind
(issue 17) needed no migration; its key letter is ``f``, after ``url``'s ``e`` as ``wallet``
sorts after ``url``.

Older schemas are migrated in place, in one transaction, when a store is opened: version 1
(decisions as JSON on every entry and audit row, time stamps repeated on each) to 2, and 2 to 3
(the review columns of ``audit`` and the ``proposals`` table; nothing else changes).  Any other
version is refused with ``registry.store_unavailable`` naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from sluice.registry.model import (
    AuditAction,
    AuditRecord,
    Entry,
    ImportRecord,
    Kind,
    Proposal,
    ProposalState,
    RegisterNotFound,
    RegistryError,
    basis_from_json,
)

__all__ = [
    "SCHEMA_VERSION",
    "Added",
    "ImportMeta",
    "RegistryStore",
    "SqliteStore",
    "create_store",
    "is_postgres",
    "open_store",
    "register_exists",
]

NOT_A_REGISTER = (
    "not a sluice register (the database has no register tables; create one with"
    " sluice registry init --register {path})"
)
"""Message of a database that exists but holds no register."""

SCHEMA_VERSION = 3
"""Version of the table layout, stored in ``meta``."""
KNOWN_VERSIONS = "1, 2 and 3"
"""The versions a store opens (older ones are migrated), for messages."""

SQLITE_BUSY_TIMEOUT_S = 600.0
"""How long a SQLite writer waits for another's transaction (an import of a million entries
holds it for a minute on a slow disk); then ``registry.store_failed``."""
SQLITE_CACHE_KIB = 256 * 1024
"""SQLite page cache (KiB): a sync of a million entries touches a hundred MB of B-tree."""

BULK_CHANGES = 50_000
"""A SQLite sync of more changes than this is written in bulk mode (see ``apply_sync``)."""

ImportMeta = tuple[str, str, str, str, int, int, str]
"""``(fmt, path, sha256, at, rows, rejected, dump_time)`` of one sync."""


class Added(NamedTuple):
    """Entries a sync adds, as aligned columns."""

    keys: Sequence[str]
    """Entry keys: kind letter (:data:`~sluice.registry.model.KIND_LETTER`) + indicator."""
    display: Sequence[str]
    """Unicode form of each ("" when the same as the indicator)."""
    basis: Sequence[int]
    """Index into :attr:`sets` of each entry's decisions."""
    sets: Sequence[str]
    """Decision sets as JSON (:func:`~sluice.registry.model.basis_to_json`)."""


KEY_SQL = (
    "(CASE kind WHEN 'domain' THEN 'a' WHEN 'domain-mask' THEN 'b' WHEN 'ip' THEN 'c'"
    " WHEN 'subnet' THEN 'd' WHEN 'wallet' THEN 'f' ELSE 'e' END || indicator)"
)
"""SQL of an entry's key: kind letter (as ``importers._common.KIND_LETTER``) + indicator."""

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


@runtime_checkable
class RegistryStore(Protocol):
    """What the register services need from a database."""

    def source_state(self, source: str) -> dict[tuple[str, str], str]:
        """Current entries of one source: ``(kind, indicator) -> basis_json``."""
        ...

    def source_keys(self, source: str) -> tuple[list[str], list[int]]:
        """Current entries of one source in key order: keys (kind letter + indicator), basis ids."""
        ...

    def basis_ids(self) -> dict[str, int]:
        """Every stored decision set: basis JSON -> basis id."""
        ...

    def sync_tx(self, source: str, bulk: bool = False) -> contextlib.AbstractContextManager[None]:
        """The write transaction of one sync of ``source``, holding the source's lock.

        A sync reads the source's state, diffs and writes inside it (:meth:`apply_sync` joins
        it), so two syncs of one source never interleave.  ``bulk``: the sync may be large (see
        :data:`BULK_CHANGES`).  Inside :meth:`review` it joins that transaction.
        """
        ...

    def apply_sync(
        self,
        source: str,
        meta: ImportMeta,
        added: Added,
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        """Write one sync in one transaction (joining :meth:`sync_tx`); return the new import id.

        ``removed`` holds ``(kind, indicator, old_basis)``; ``changed`` holds
        ``(kind, indicator, old_basis, new_basis)`` (bases as JSON).
        """
        ...

    def rows(self, source: str | None = None) -> Iterator[tuple[str, str, str, str]]:
        """Every current entry as ``(source, kind, indicator, basis_json)``."""
        ...

    def entries(self, source: str | None = None) -> Iterator[Entry]:
        """Every current entry."""
        ...

    def lookup(self, indicator: str) -> list[Entry]:
        """Current entries with exactly this canonical indicator (any source, kind)."""
        ...

    def history(self, indicator: str) -> list[AuditRecord]:
        """Audit records of one canonical indicator, oldest first."""
        ...

    def imports(self, source: str | None = None, limit: int = 50) -> list[ImportRecord]:
        """Recent imports, newest first."""
        ...

    def stats(self) -> dict[str, dict[str, int]]:
        """Entry counts: ``{source: {kind: count}}``."""
        ...

    def review(self) -> contextlib.AbstractContextManager[None]:
        """One exclusive transaction for review changes; a sync started inside joins it."""
        ...

    def add_proposal(self, p: Proposal, at: str) -> int:
        """Store a new open proposal (canonical indicator) with its ``proposed`` audit row.

        Call inside :meth:`review`.  Returns the new id.
        """
        ...

    def proposals(
        self,
        *,
        state: ProposalState | None = None,
        ids: Sequence[int] | None = None,
        key: tuple[str, Kind, str] | None = None,
        limit: int | None = None,
    ) -> list[Proposal]:
        """Proposals, newest first: all, of one state, these ids, or one ``(detector, kind, indicator)``."""
        ...

    def set_proposal_state(self, pid: int, state: ProposalState, reviewer: str, reason: str, at: str) -> bool:
        """Decide an open proposal; False when it is no longer open (someone decided first)."""
        ...

    def audit_review(
        self, action: AuditAction, p: Proposal, actor: str, note: str, at: str, import_id: int = 0
    ) -> None:
        """Append one review event (proposed, accepted, rejected) to the audit table."""
        ...

    def settings(self, prefix: str) -> dict[str, str]:
        """The register's settings (``meta`` rows) whose key starts with ``prefix``."""
        ...

    def put_setting(self, key: str, value: str) -> None:
        """Set one setting (committed at once, or with the transaction it runs in)."""
        ...

    def delete_setting(self, key: str) -> None:
        """Remove one setting (nothing when absent)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


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


class _SqlStore:
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


_SQLITE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS imports (
  id INTEGER PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
  sha256 TEXT NOT NULL, at TEXT NOT NULL, rows INTEGER NOT NULL, entries INTEGER NOT NULL,
  added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL,
  rejected INTEGER NOT NULL, dump_time TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS bases (id INTEGER PRIMARY KEY, basis TEXT NOT NULL UNIQUE)",
    """CREATE TABLE IF NOT EXISTS entries (
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, display TEXT NOT NULL,
  basis_id INTEGER NOT NULL, import_id INTEGER NOT NULL,
  PRIMARY KEY (source, kind, indicator)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY, import_id INTEGER NOT NULL, action TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis INTEGER, new_basis INTEGER)""",
    "CREATE INDEX IF NOT EXISTS audit_indicator ON audit (indicator)",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
]

SQLITE_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE imports (
  id INTEGER PRIMARY KEY, source TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
  sha256 TEXT NOT NULL, at TEXT NOT NULL, rows INTEGER NOT NULL, entries INTEGER NOT NULL,
  added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL,
  rejected INTEGER NOT NULL, dump_time TEXT NOT NULL);
CREATE TABLE entries (
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL, display TEXT NOT NULL,
  basis TEXT NOT NULL, added_at TEXT NOT NULL, import_id INTEGER NOT NULL,
  PRIMARY KEY (source, kind, indicator)) WITHOUT ROWID;
CREATE TABLE audit (
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, import_id INTEGER NOT NULL, action TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL, indicator TEXT NOT NULL,
  old_basis TEXT NOT NULL, new_basis TEXT NOT NULL);
CREATE INDEX audit_indicator ON audit (indicator);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"""
"""The layout of schema version 1 (what :func:`migrate_v1_statements` starts from)."""


def migrate_v1_statements(drop_triggers: Sequence[str], schema: Sequence[str]) -> list[str]:
    """SQL that turns a version-1 register into version 2 (to run inside one transaction).

    Version 1 kept the decisions as JSON on every entry and audit row and the import's time on
    each; version 2 keeps each decision set once (``bases``) and takes the times from
    ``imports`` (they always were the import's time).  ``'[]'`` (no basis) in the audit becomes
    NULL.  Nothing is lost: every method of the store returns what it returned before.

    Args:
        drop_triggers: statements dropping the audit table's append-only triggers (they
            differ between SQLite and PostgreSQL).
        schema: the version-2 schema statements (they put the triggers back).
    """
    return [
        *drop_triggers,
        "DROP INDEX audit_indicator",
        "ALTER TABLE entries RENAME TO entries_v1",
        "ALTER TABLE audit RENAME TO audit_v1",
        *schema,
        "INSERT INTO bases (basis) SELECT basis FROM entries_v1 UNION"
        " SELECT old_basis FROM audit_v1 WHERE old_basis <> '[]' UNION"
        " SELECT new_basis FROM audit_v1 WHERE new_basis <> '[]' ORDER BY 1",
        "INSERT INTO entries (source, kind, indicator, display, basis_id, import_id)"
        " SELECT e.source, e.kind, e.indicator, e.display, b.id, e.import_id FROM entries_v1 e"
        " JOIN bases b ON b.basis = e.basis",
        "INSERT INTO audit (id, import_id, action, source, kind, indicator, old_basis, new_basis)"
        " SELECT a.id, a.import_id, a.action, a.source, a.kind, a.indicator, o.id, n.id"
        " FROM audit_v1 a LEFT JOIN bases o ON o.basis = a.old_basis"
        " LEFT JOIN bases n ON n.basis = a.new_basis ORDER BY a.id",
        "DROP TABLE entries_v1",
        "DROP TABLE audit_v1",
        "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
    ]


def migrate_v2_statements(serial: str, bigint: str, triggers: Sequence[str]) -> list[str]:
    """SQL that turns a version-2 register into version 3 (to run inside one transaction).

    Version 3 adds the review queue: the ``proposals`` table and, on ``audit``, the columns of
    review events (own time, actor, note, proposal).  Existing rows keep NULL there (their time
    is still their import's).  A new store is made as version 2 and then migrated, so there is
    one way to each layout.

    Args:
        serial: the id column's type (``INTEGER PRIMARY KEY``, ``BIGSERIAL PRIMARY KEY``).
        bigint: the type of ``audit.proposal_id``.
        triggers: statements that make a decided proposal final.
    """
    return [
        "ALTER TABLE audit ADD COLUMN at TEXT",
        "ALTER TABLE audit ADD COLUMN actor TEXT",
        "ALTER TABLE audit ADD COLUMN note TEXT",
        f"ALTER TABLE audit ADD COLUMN proposal_id {bigint}",
        f"""CREATE TABLE proposals (
  id {serial}, kind TEXT NOT NULL, indicator TEXT NOT NULL, detector TEXT NOT NULL,
  reason TEXT NOT NULL, evidence TEXT NOT NULL, impact TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('proposed', 'accepted', 'rejected')),
  reviewer TEXT NOT NULL, decided_at TEXT NOT NULL, decision_reason TEXT NOT NULL,
  created_at TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX proposals_open ON proposals (detector, kind, indicator)"
        " WHERE state = 'proposed'",
        "CREATE INDEX proposals_key ON proposals (indicator, kind, detector)",
        "CREATE INDEX proposals_state ON proposals (state, id)",
        *triggers,
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
    ]


_SQLITE_MIGRATE_V2 = migrate_v2_statements(
    "INTEGER PRIMARY KEY",
    "INTEGER",
    [
        """CREATE TRIGGER proposals_final BEFORE UPDATE ON proposals WHEN OLD.state <> 'proposed'
  BEGIN SELECT RAISE(ABORT, 'a decided proposal is final'); END""",
        """CREATE TRIGGER proposals_kept BEFORE DELETE ON proposals
  BEGIN SELECT RAISE(ABORT, 'proposals are kept'); END""",
    ],
)


class SqliteStore(_SqlStore):
    """The register in one SQLite file (WAL mode).

    Args:
        path: the database file.
        create: make the file and its tables when absent (``registry init``, ``registry
            import``); otherwise a missing file, or a database without the register's tables,
            is refused and nothing is created.

    Raises:
        RegisterNotFound: ``registry.no_register`` (no ``create``, and no register there).
        RegistryError: ``registry.store_unavailable`` when the file cannot be opened or is not a
            register of a known schema version.
    """

    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        self.path = str(path)
        if not create and (self.path == ":memory:" or not os.path.exists(self.path)):
            raise RegisterNotFound(self.path)
        # without create, open read-write but never create the file (SQLite's URI mode=rw)
        target = self.path if create else Path(self.path).absolute().as_uri() + "?mode=rw"
        try:
            self.conn = sqlite3.connect(
                target,
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
                uri=not create,
            )
            self._tx = False
            version = self._version()  # before any PRAGMA: journal_mode=WAL writes to the file
            if version is None and not create:
                self.conn.close()
                raise RegisterNotFound(self.path, NOT_A_REGISTER.format(path=self.path))
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            self.conn.execute("PRAGMA foreign_keys=ON")
            if version != str(SCHEMA_VERSION):
                self._upgrade()
            version = self._version()
        except sqlite3.Error as exc:
            if not create and not os.path.exists(self.path):
                raise RegisterNotFound(self.path) from exc
            raise RegistryError("registry.store_unavailable", str(exc), self.path) from exc
        if version != str(SCHEMA_VERSION):
            self.conn.close()
            raise RegistryError(
                "registry.store_unavailable",
                f"register schema version {version} is not one this sluice knows"
                f" (it reads versions {KNOWN_VERSIONS})",
                self.path,
            )

    def _version(self) -> str | None:
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if has_meta is None:
            return None
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    def _upgrade(self) -> None:
        """Create the tables, or migrate an older schema, in one transaction.

        A new file is made as version 2 and migrated like any version-2 register; version 1 goes
        through 2 (see :func:`migrate_v1_statements`, :func:`migrate_v2_statements`).  Another
        version is left alone (the caller refuses it).
        """
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()  # again: another process may have done it meanwhile
            if version is None:
                for stmt in _SQLITE_SCHEMA:
                    c.execute(stmt)
                c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '2')")
                version = "2"
            if version == "1":
                drops = ["DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"]
                for stmt in migrate_v1_statements(drops, _SQLITE_SCHEMA):
                    c.execute(stmt)
                version = "2"
            if version == "2":
                for stmt in _SQLITE_MIGRATE_V2:
                    c.execute(stmt)
        except BaseException:
            c.rollback()
            raise
        c.commit()

    @contextlib.contextmanager
    def review(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction (writers queue on SQLite's lock); re-entrant."""
        if self._tx:
            yield
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise RegistryError("registry.store_failed", str(exc), self.path) from exc
        self._tx = True
        try:
            yield
        except sqlite3.Error as exc:
            self.conn.rollback()
            raise RegistryError("registry.store_failed", str(exc), self.path) from exc
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()
        finally:
            self._tx = False

    @contextlib.contextmanager
    def sync_tx(self, source: str, bulk: bool = False) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: SQLite's one writer lock serialises syncs (of every source).

        A ``bulk`` sync runs with a rollback journal when the store has no other connection:
        WAL mode would write every new page twice (log, then checkpoint).  Both modes make the
        transaction atomic; WAL is restored afterwards.  Inside :meth:`review` the sync joins
        that transaction.
        """
        if self._tx:
            yield
            return
        bulk_mode = bulk and self._enter_bulk()
        try:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise RegistryError("registry.store_failed", str(exc), self.path) from exc
            self._tx = True
            try:
                yield
            except sqlite3.Error as exc:
                self.conn.rollback()
                raise RegistryError("registry.store_failed", str(exc), self.path) from exc
            except BaseException:
                self.conn.rollback()
                raise
            finally:
                self._tx = False
            try:
                self.conn.commit()
                if bulk and not bulk_mode:
                    # the WAL is as large as what the sync wrote: fold it in, give the space back
                    self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise RegistryError("registry.store_failed", str(exc), self.path) from exc
        finally:
            if bulk_mode:
                self._leave_bulk()

    def apply_sync(
        self,
        source: str,
        meta: ImportMeta,
        added: Added,
        removed: Sequence[tuple[str, str, str]],
        changed: Sequence[tuple[str, str, str, str]],
    ) -> int:
        """Write one sync in one transaction (joining :meth:`sync_tx`); return the new import id."""
        big = len(added.keys) + len(removed) + len(changed) > BULK_CHANGES
        with self.sync_tx(source, big):
            try:
                return self._write_sync(self.conn.cursor(), source, meta, added, removed, changed)
            except sqlite3.Error as exc:
                raise RegistryError("registry.store_failed", str(exc), self.path) from exc

    def _enter_bulk(self) -> bool:
        """Switch to a rollback journal (synchronous=FULL) if no other connection prevents it."""
        try:
            mode = self.conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        except sqlite3.Error:
            return False
        if mode is None or str(mode[0]).lower() != "delete":
            return False
        self.conn.execute("PRAGMA synchronous=FULL")
        return True

    def _leave_bulk(self) -> None:
        self.conn.execute("PRAGMA synchronous=NORMAL")
        with contextlib.suppress(sqlite3.Error):  # a reader came meanwhile: next open sets WAL
            self.conn.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        """Release the connection."""
        self.conn.close()


def open_store(target: str | Path, *, create: bool = False) -> RegistryStore:
    """Open the register named by a path (SQLite) or a ``postgresql://`` URL.

    Only ``create`` makes a new register; every reader and every writer other than ``registry
    init`` and ``registry import`` opens an existing one, so a mistyped path fails instead of
    giving an empty register that matches nothing.

    Args:
        target: file path, or ``postgresql://user@host/db`` (``postgres://`` also accepted).
        create: create the register (file and tables, or the tables in the database) when
            there is none.

    Returns:
        The store.

    Raises:
        RegisterNotFound: ``registry.no_register`` (no register there, and not ``create``).
        RegistryError: ``registry.store_unavailable``.
    """
    t = str(target)
    if is_postgres(t):
        from sluice.registry.pgstore import PostgresStore

        return PostgresStore(t, create=create)
    return SqliteStore(t, create=create)


def create_store(target: str | Path) -> RegistryStore:
    """Open the register at ``target``, creating it when absent (``open_store(create=True)``)."""
    return open_store(target, create=True)


def is_postgres(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL register (a ``postgresql://`` URL)."""
    return str(target).startswith(("postgresql://", "postgres://"))


def register_exists(target: str | Path) -> bool:
    """Whether a register is at ``target`` (opened and closed; nothing is created).

    Raises:
        RegistryError: ``registry.store_unavailable`` (unreachable, unknown schema version).
    """
    try:
        open_store(target).close()
    except RegisterNotFound:
        return False
    return True
