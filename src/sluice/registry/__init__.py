"""The register of blocked resources: entries with legal basis and history, importers, matcher,
exports.

* :mod:`~sluice.registry.model`: entry kinds, legal basis, entries, audit and import records;
* :mod:`~sluice.registry.stores`: the :class:`RegistryStore` protocol, SQLite (default) and
  PostgreSQL stores with an append-only audit table, one module per database;
* :mod:`~sluice.registry.importers`: RKN CSV and XML dumps, hosts, Adblock, plain domains and
  CIDRs, Spamhaus DROP, RPZ zones;
* :mod:`~sluice.registry.sync`: imports as syncs (diff, one transaction, damage refused first);
* :mod:`~sluice.registry.matcher`: batch and single lookups of host names, URLs and addresses;
* :mod:`~sluice.registry.check`: ``registry check``, the same answers from indexed store lookups;
* :mod:`~sluice.registry.exports`: nftables, RPZ, unbound, dnsmasq, Squid and hosts outputs;
* :mod:`~sluice.registry.service`: what the CLI calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.registry.exports import EXPORT_TARGETS, ExportResult, export_entries
    from sluice.registry.importers import FORMATS, ParseResult, detect_format, parse_files
    from sluice.registry.matcher import BatchMatches, Matcher
    from sluice.registry.matches import Match, MatchReason
    from sluice.registry.model import (
        AuditAction,
        AuditRecord,
        Entry,
        ImportRecord,
        ImportSummary,
        Kind,
        LegalBasis,
        RegistryError,
        RejectedLine,
    )
    from sluice.registry.stores import RegistryStore, SqliteStore, open_store
    from sluice.registry.sync import import_files, sync_result

_HOME = {
    "EXPORT_TARGETS": "exports",
    "ExportResult": "exports",
    "export_entries": "exports",
    "FORMATS": "importers",
    "ParseResult": "importers",
    "detect_format": "importers",
    "parse_files": "importers",
    "BatchMatches": "matcher",
    "Matcher": "matcher",
    "Match": "matches",
    "MatchReason": "matches",
    "AuditAction": "model",
    "AuditRecord": "model",
    "Entry": "model",
    "ImportRecord": "model",
    "ImportSummary": "model",
    "Kind": "model",
    "LegalBasis": "model",
    "RegistryError": "model",
    "RejectedLine": "model",
    "RegistryStore": "stores",
    "SqliteStore": "stores",
    "open_store": "stores",
    "import_files": "sync",
    "sync_result": "sync",
}
"""Where each name of :data:`__all__` lives.  They are imported on first use (PEP 562), so that
``import sluice.registry.stores`` (``registry check``) does not load the matcher's numba kernels
or the importers."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "EXPORT_TARGETS",
    "FORMATS",
    "AuditAction",
    "AuditRecord",
    "BatchMatches",
    "Entry",
    "ExportResult",
    "ImportRecord",
    "ImportSummary",
    "Kind",
    "LegalBasis",
    "Match",
    "MatchReason",
    "Matcher",
    "ParseResult",
    "RegistryError",
    "RegistryStore",
    "RejectedLine",
    "SqliteStore",
    "detect_format",
    "export_entries",
    "import_files",
    "open_store",
    "parse_files",
    "sync_result",
]
