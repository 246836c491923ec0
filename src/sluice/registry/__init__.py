"""The register of blocked resources: entries with legal basis and history, importers, matcher,
exports.

* :mod:`~sluice.registry.model`: entry kinds, legal basis, entries, audit and import records;
* :mod:`~sluice.registry.store`: the :class:`RegistryStore` protocol, SQLite (default) and
  PostgreSQL (:mod:`~sluice.registry.pgstore`) stores with an append-only audit table;
* :mod:`~sluice.registry.importers`: RKN CSV and XML dumps, hosts, Adblock, plain domains and
  CIDRs, Spamhaus DROP, RPZ zones;
* :mod:`~sluice.registry.sync`: imports as syncs (diff, one transaction, damage refused first);
* :mod:`~sluice.registry.matcher`: batch and single lookups of host names, URLs and addresses;
* :mod:`~sluice.registry.exports`: nftables, RPZ, unbound, dnsmasq, Squid and hosts outputs;
* :mod:`~sluice.registry.service`: what the CLI calls.
"""

from __future__ import annotations

from sluice.registry.exports import EXPORT_TARGETS, ExportResult, export_entries
from sluice.registry.importers import FORMATS, ParseResult, detect_format, parse_files
from sluice.registry.matcher import BatchMatches, Match, Matcher, MatchReason
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
from sluice.registry.store import RegistryStore, SqliteStore, open_store
from sluice.registry.sync import import_files, sync_result

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
