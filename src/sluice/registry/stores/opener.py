"""Opening a register: the database is picked by the target's form, nothing created unless asked.

Neither database module knows the other: this module is the only one that names both, and it
imports the PostgreSQL store (and psycopg) only for a ``postgresql://`` URL.
"""

from __future__ import annotations

from pathlib import Path

from sluice.registry.model import RegisterNotFound
from sluice.registry.stores.base import RegistryStore
from sluice.registry.stores.sqlite import SqliteStore

__all__ = ["create_store", "is_postgres", "open_store", "register_exists"]


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
        from sluice.registry.stores.postgres import PostgresStore

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
