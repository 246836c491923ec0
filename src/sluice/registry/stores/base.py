"""The store protocol and the records and constants every register database shares.

:class:`RegistryStore` is what the register services need from a database; the SQL they have in
common is :class:`~sluice.registry.stores.sql.SqlStore`, the databases are
:mod:`~sluice.registry.stores.sqlite` and :mod:`~sluice.registry.stores.postgres`, and
:func:`~sluice.registry.stores.opener.open_store` picks one by the target's form.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from sluice.registry.model import AuditAction, AuditRecord, Entry, ImportRecord, Kind, Proposal, ProposalState

__all__ = [
    "BULK_CHANGES",
    "KEY_SQL",
    "KNOWN_VERSIONS",
    "NOT_A_REGISTER",
    "SCHEMA_VERSION",
    "Added",
    "ImportMeta",
    "RegistryStore",
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

    def entries_of(self, keys: Collection[tuple[Kind, str]], source: str | None = None) -> list[Entry]:
        """Current entries with one of these ``(kind, canonical indicator)`` keys (all sources, or
        one), by primary-key lookups; ordered by source, kind, indicator."""
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
