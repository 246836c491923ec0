"""Where the register lives: the store protocol, the shared SQL, and one module per database.

Modules
-------
* :mod:`~sluice.registry.stores.base`: the :class:`RegistryStore` protocol, :class:`Added`,
  ``ImportMeta`` and the schema constants;
* :mod:`~sluice.registry.stores.sql`: the SQL both databases share (reads, settings, the review
  queue, writing a sync);
* :mod:`~sluice.registry.stores.migrations`: version 1 -> 2 -> 3;
* :mod:`~sluice.registry.stores.sqlite` and :mod:`~sluice.registry.stores.postgres`: one per
  database; neither imports the other;
* :mod:`~sluice.registry.stores.opener`: :func:`open_store` picks the database by the target.

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
:class:`~sluice.registry.stores.postgres.PostgresStore` serves several gateways from one PostgreSQL
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

from sluice.registry.stores.base import (
    BULK_CHANGES,
    SCHEMA_VERSION,
    Added,
    ImportMeta,
    RegistryStore,
)
from sluice.registry.stores.opener import create_store, is_postgres, open_store, register_exists
from sluice.registry.stores.sqlite import SqliteStore

__all__ = [
    "BULK_CHANGES",
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
