"""The register's records: entry kinds, legal basis, entries, audit and import records.

An *entry* is one indicator (a domain name, a domain mask, a URL, an IP address, a subnet or a
crypto wallet address) that
one *source* (a list such as ``rkn`` or ``hagezi-fake``) names, with the legal basis the source
gives for it.  Entries are keyed by ``(source, kind, indicator)``; the same indicator named by two
sources is two entries.  Indicators are stored in one canonical ASCII form (IDNA/punycode, lower
case, no trailing dot, compressed IPv6) and shown in Unicode (:attr:`Entry.display`).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

__all__ = [
    "KIND_LETTER",
    "LETTER_KIND",
    "PROPOSAL_SOURCE_PREFIX",
    "AuditAction",
    "AuditRecord",
    "Entry",
    "ImportRecord",
    "ImportSummary",
    "Kind",
    "LegalBasis",
    "Proposal",
    "ProposalState",
    "RegisterNotFound",
    "RegistryError",
    "RejectedLine",
    "basis_from_json",
    "basis_to_json",
]

from sluice.errors import ConfigError, SluiceError


class RegistryError(SluiceError):
    """A register operation that was refused; ``reason`` is a stable dotted code.

    Attributes:
        reason: ``registry.truncated``, ``registry.binary_input``, ``registry.not_found`` ...
        path: the file or store concerned ("" when none).
    """

    def __init__(self, reason: str, detail: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}" if path else detail)


CREATE_COMMANDS = "sluice registry init --register {path}, or sluice registry import --register {path} FILE"
"""How a register is made (the two commands that create one), for messages."""


class RegisterNotFound(RegistryError, ConfigError):
    """The register named does not exist (``registry.no_register``): a usage error (exit 2).

    Only ``registry init`` and ``registry import`` create a register; every other command opens
    an existing one, so a mistyped path is an error instead of an empty register that matches
    nothing.  Also a :class:`~sluice.errors.ConfigError` (of the ``--register`` option), so a
    command that does not catch it exits 2.
    """

    def __init__(self, path: str, detail: str = "") -> None:
        how = CREATE_COMMANDS.format(path=path)
        self.reason = "registry.no_register"
        self.path = path
        self.option = "--register"
        self.detail = detail or f"no register here (create one with {how})"
        Exception.__init__(self, f"{path}: {self.detail}")


class Kind(enum.StrEnum):
    """What an indicator names and how it matches."""

    DOMAIN = "domain"
    """Exactly that host name (and ``www.`` + it, see :mod:`sluice.registry.matcher`)."""
    DOMAIN_MASK = "domain-mask"
    """The name and every name below it; written ``*.d``."""
    URL = "url"
    """One URL, matched after normalisation."""
    IP = "ip"
    """One IPv4 or IPv6 address."""
    SUBNET = "subnet"
    """An IPv4 or IPv6 network in CIDR notation."""
    WALLET = "wallet"
    """A crypto wallet address, ``chain:address`` (:mod:`sluice.registry.wallets`); matched in
    content, never a network indicator (exports skip it)."""


class AuditAction(enum.StrEnum):
    """What happened to an entry."""

    ADDED = "added"
    """The entry appeared in its source."""
    REMOVED = "removed"
    """The entry disappeared from its source."""
    CHANGED = "changed"
    """The entry's legal basis changed."""
    PROPOSED = "proposed"
    """A detector proposed the indicator for review (``actor``: the detector)."""
    ACCEPTED = "accepted"
    """A reviewer accepted a proposal (``actor``: the reviewer, ``note``: why)."""
    REJECTED = "rejected"
    """A reviewer rejected a proposal (``actor``: the reviewer, ``note``: why)."""


@dataclass(frozen=True, slots=True, order=True)
class LegalBasis:
    """Why an entry is in the register (free text where the source has no decision)."""

    authority: str = ""
    """The body that decided (``суд``, ``ФНС``, ``Spamhaus``, a list's name)."""
    number: str = ""
    """The decision's number (``2-1687/2013``, ``SBL123``), "" when none."""
    date: str = ""
    """The decision's date as the source writes it (``2013-05-23``), "" when none."""

    def __str__(self) -> str:
        parts = [p for p in (self.authority, self.number, self.date) if p]
        return " / ".join(parts) if parts else "(no decision given)"


KIND_LETTER = {"domain": "a", "domain-mask": "b", "ip": "c", "subnet": "d", "url": "e", "wallet": "f"}
"""Kind -> the letter that starts an entry *key* (letter + canonical indicator).

Keys are how imports and syncs handle entries in bulk; the letters sort as the kinds' names
do, so sorted keys are in the store's ``(kind, indicator)`` key order.
"""
LETTER_KIND = {v: k for k, v in KIND_LETTER.items()}
"""Entry key letter -> kind."""


def basis_to_json(basis: tuple[LegalBasis, ...]) -> str:
    """Serialise a tuple of decisions for the store (stable, compact).

    Args:
        basis: the decisions.

    Returns:
        A JSON array of ``[authority, number, date]`` arrays.
    """
    return json.dumps([[b.authority, b.number, b.date] for b in basis], ensure_ascii=False)


def basis_from_json(text: str) -> tuple[LegalBasis, ...]:
    """Inverse of :func:`basis_to_json`.

    Args:
        text: the stored JSON.

    Returns:
        The decisions.
    """
    return tuple(LegalBasis(str(a), str(n), str(d)) for a, n, d in json.loads(text))


@dataclass(frozen=True, slots=True)
class Entry:
    """One indicator named by one source."""

    kind: Kind
    """How the indicator matches."""
    indicator: str
    """Canonical ASCII form (punycode, lower case; ``*.d`` for masks)."""
    source: str
    """The list that names it (``rkn``, ``spamhaus-drop`` ...)."""
    basis: tuple[LegalBasis, ...] = ()
    """The decisions behind it, in the order the source gives them."""
    display: str = ""
    """The Unicode form shown to people ("" means same as ``indicator``)."""
    added_at: str = ""
    """When it first appeared (ISO 8601 UTC), "" when not from a store."""
    proposed: bool = False
    """True for an indicator still under review (a proposal, not a register entry)."""

    @property
    def shown(self) -> str:
        """The form to show: Unicode when the indicator has one."""
        return self.display or self.indicator


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One line of the append-only audit table."""

    at: str
    """When (ISO 8601 UTC)."""
    action: AuditAction
    """What happened."""
    source: str
    """Which list."""
    kind: Kind
    """The entry's kind."""
    indicator: str
    """The entry's canonical indicator."""
    import_id: int
    """Which import did it (see :class:`ImportRecord`)."""
    old_basis: tuple[LegalBasis, ...] = ()
    """Basis before (removed, changed)."""
    new_basis: tuple[LegalBasis, ...] = ()
    """Basis after (added, changed)."""
    actor: str = ""
    """Who did it: the detector (proposed) or the reviewer (accepted, rejected); "" for imports."""
    note: str = ""
    """Why: the proposal's or the decision's reason; "" for imports."""
    proposal_id: int = 0
    """The proposal concerned (0 for imports)."""


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One import (a sync of one source) as the store keeps it."""

    import_id: int
    """Store-assigned id."""
    source: str
    """The list synced."""
    fmt: str
    """The input format (``rkn-csv`` ...)."""
    path: str
    """The file(s) read, ``;``-joined."""
    sha256: str
    """Digest of the input bytes."""
    at: str
    """When (ISO 8601 UTC)."""
    rows: int
    """Data rows read (lines or records)."""
    entries: int
    """Entries in the source after the import."""
    added: int
    """Entries added."""
    removed: int
    """Entries removed."""
    changed: int
    """Entries whose basis changed."""
    rejected: int
    """Lines rejected."""
    dump_time: str = ""
    """The dump's own time stamp (``Updated:`` header), "" when none."""


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """An input line that gave no entry, with why."""

    line: int
    """1-based line number (for multi-file imports: in its file)."""
    reason: str
    """Stable dotted code (``rkn_csv.bad_ip``)."""
    text: str
    """The line, shortened to 200 characters."""
    path: str = ""
    """The file it came from."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did."""

    source: str
    """The list synced."""
    fmt: str
    """The format read."""
    rows: int
    """Data rows read."""
    entries: int
    """Distinct entries the input gives."""
    added: int
    """Entries added to the register."""
    removed: int
    """Entries removed from the register."""
    changed: int
    """Entries whose legal basis changed."""
    unchanged: int
    """Entries already there as they are."""
    rejected: tuple[RejectedLine, ...] = field(default_factory=tuple)
    """Lines that gave no entry."""
    import_id: int = 0
    """The store's id for this import (0 for a dry run)."""
    dump_time: str = ""
    """The dump's own time stamp, if it has one."""
    dry_run: bool = False
    """True when nothing was written."""
    held: int = 0
    """Removals (and basis changes dropping a decision) held back because rows were rejected:
    a rejected row never takes an entry or a decision away."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (rejected lines as a list of dicts)."""
        return {
            "source": self.source,
            "format": self.fmt,
            "rows": self.rows,
            "entries": self.entries,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "rejected": [
                {"path": r.path, "line": r.line, "reason": r.reason, "text": r.text} for r in self.rejected
            ],
            "import_id": self.import_id,
            "dump_time": self.dump_time,
            "dry_run": self.dry_run,
            "held": self.held,
        }


class ProposalState(enum.StrEnum):
    """Where a proposal is in review: ``proposed`` -> ``accepted`` | ``rejected`` (final)."""

    PROPOSED = "proposed"
    """Waiting for a reviewer."""
    ACCEPTED = "accepted"
    """Accepted: the indicator is a register entry of the proposal's source."""
    REJECTED = "rejected"
    """Rejected: never becomes an entry."""


PROPOSAL_SOURCE_PREFIX = "proposals:"
"""Accepted proposals of detector ``d`` are entries of the source ``proposals:d``."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """An indicator a detector proposes for the register, waiting for (or after) review."""

    kind: Kind
    """What the indicator names."""
    indicator: str
    """The indicator (canonical form once stored)."""
    detector: str
    """The proposing detector (``vpn-services``); accepted entries go to ``proposals:<detector>``."""
    reason: str
    """Why the detector proposes it, in words."""
    evidence: dict[str, object] = field(default_factory=dict)
    """What the detector saw (JSON-ready)."""
    impact: dict[str, object] = field(default_factory=dict)
    """Collateral-impact preview (:mod:`sluice.registry.impact`), JSON-ready; {} when none."""
    id: int = 0
    """Store-assigned id (0 before it is stored)."""
    state: ProposalState = ProposalState.PROPOSED
    """Review state."""
    reviewer: str = ""
    """Who decided ("" while proposed)."""
    decided_at: str = ""
    """When it was decided (ISO 8601 UTC), "" while proposed."""
    decision_reason: str = ""
    """Why the reviewer decided so."""
    created_at: str = ""
    """When it was proposed (ISO 8601 UTC)."""

    @property
    def source(self) -> str:
        """The register source an accepted proposal's entry belongs to."""
        return PROPOSAL_SOURCE_PREFIX + self.detector

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "indicator": self.indicator,
            "detector": self.detector,
            "source": self.source,
            "reason": self.reason,
            "evidence": self.evidence,
            "impact": self.impact,
            "state": self.state.value,
            "reviewer": self.reviewer,
            "decided_at": self.decided_at,
            "decision_reason": self.decision_reason,
            "created_at": self.created_at,
        }
