"""The review queue: detectors propose register entries, people accept or reject them.

Theory of operation
-------------------
"Nothing found by a detector is enforced without review."  A detector (VPN-service discovery,
later mirrors and crypto sites) calls :func:`propose` with a :class:`~sluice.registry.model.Proposal`:
kind, indicator, its own name, a reason, evidence and (optionally) an impact preview
(:mod:`sluice.registry.impact`).  The proposal is stored ``proposed`` in the register's store, with
a ``proposed`` audit row.  Proposing is idempotent: while a proposal of the same
``(detector, kind, indicator)`` is open, or has been accepted, its id is returned and nothing
is written; after a rejection the decision stands (the rejected id is returned) unless the
caller asks to ``reconsider`` with new evidence.

A reviewer decides (:func:`accept`, :func:`reject`; several ids at once).  Every decision runs
in one exclusive store transaction (:meth:`~sluice.registry.stores.RegistryStore.review`): the
proposal moves ``proposed -> accepted | rejected`` only if it is still open (a conditional
update: of two reviewers, one wins and the other is told who decided), an audit row records
who, when and why, and for an acceptance the register source ``proposals:<detector>`` is
synced from all its accepted proposals through :func:`~sluice.registry.sync.sync_result`, the
write path every import uses (import row, entry, ``added`` audit row).  Each entry's legal basis
cites the review: ``review by <reviewer>: <reason> / proposal #<id> / <date>``.  A rejected
proposal never becomes an entry.

Open proposals are not register entries; :func:`proposed_matcher` loads them as a
:class:`~sluice.registry.matcher.Matcher` whose entries say ``proposed=True``, which only a
shadow-mode policy rule with ``register = "proposed"`` may act on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sluice.registry.importers._common import ParseResult
from sluice.registry.matcher import Matcher
from sluice.registry.model import (
    PROPOSAL_SOURCE_PREFIX,
    AuditAction,
    Kind,
    LegalBasis,
    Proposal,
    ProposalState,
    RegistryError,
    basis_to_json,
)
from sluice.registry.names import BadIndicator, canon_host, canon_ip, canon_mask, canon_url
from sluice.registry.stores import RegistryStore
from sluice.registry.sync import sync_result
from sluice.registry.wallets import canon_wallet

__all__ = [
    "ReviewOutcome",
    "accept",
    "canonical_proposal",
    "get_proposal",
    "list_proposals",
    "propose",
    "proposed_matcher",
    "reject",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""A detector name: becomes part of a register source name."""
MAX_TEXT = 2000
"""Longest reason, reviewer name or decision reason kept (characters)."""


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """What a decision did to one proposal."""

    id: int
    """The proposal."""
    state: ProposalState
    """Its state after the call."""
    changed: bool
    """True when this call decided it; False when it was already decided."""
    reviewer: str
    """Who decided it (this call's reviewer, or whoever decided first)."""
    import_id: int = 0
    """The import that added the entry (an acceptance by this call), else 0."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "state": self.state.value,
            "changed": self.changed,
            "reviewer": self.reviewer,
            "import_id": self.import_id,
        }


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds")


def _text(value: str, what: str) -> str:
    t = value.strip()
    if not t:
        raise RegistryError("registry.bad_proposal", f"{what} is empty")
    if len(t) > MAX_TEXT:
        raise RegistryError("registry.bad_proposal", f"{what} is longer than {MAX_TEXT} characters")
    return t


def canonical_proposal(p: Proposal) -> Proposal:
    """The proposal with its indicator in canonical form, checked.

    Args:
        p: as a detector made it (indicator in any accepted spelling).

    Returns:
        The same proposal, canonical indicator (an ``ip`` with a prefix becomes a ``subnet``
        and vice versa, as :func:`~sluice.registry.names.canon_ip` decides).

    Raises:
        RegistryError: ``registry.bad_indicator`` (the indicator is not of its kind) or
            ``registry.bad_proposal`` (detector name, reason).
    """
    if not _NAME.fullmatch(p.detector):
        raise RegistryError(
            "registry.bad_proposal",
            f"detector name {p.detector!r} is not lower-case letters, digits, '.', '_', '-' (1-64)",
        )
    reason = _text(p.reason, "reason")
    kind = Kind(p.kind)
    try:
        if kind is Kind.DOMAIN:
            ind = canon_host(p.indicator)
        elif kind is Kind.DOMAIN_MASK:
            t = p.indicator.strip()
            ind = canon_mask(t if t.startswith("*.") else "*." + t)
        elif kind is Kind.URL:
            ind = canon_url(p.indicator)
        elif kind is Kind.WALLET:
            ind = canon_wallet(p.indicator).indicator
        else:
            kind, ind = canon_ip(p.indicator)
    except BadIndicator as exc:
        raise RegistryError("registry.bad_indicator", f"{kind.value} {p.indicator!r}: {exc}") from exc
    return replace(p, kind=kind, indicator=ind, reason=reason)


def propose(
    store: RegistryStore, proposal: Proposal, *, reconsider: bool = False, now: datetime | None = None
) -> int:
    """Put an indicator in the review queue (what detectors call).

    Args:
        store: the register.
        proposal: kind, indicator, detector, reason, evidence, impact (``id``, state and
            decision fields are ignored).
        reconsider: after a rejection, open a new proposal (new evidence) instead of
            returning the rejected one.
        now: the time recorded (default: the clock).

    Returns:
        The id of the open proposal of this ``(detector, kind, indicator)``: a new one, or the
        one already open or accepted (or rejected, unless ``reconsider``).

    Raises:
        RegistryError: ``registry.bad_indicator``, ``registry.bad_proposal`` or a store failure.
    """
    p = canonical_proposal(proposal)
    at = _now(now)
    with store.review():
        latest = store.proposals(key=(p.detector, p.kind, p.indicator), limit=1)
        if latest and (latest[0].state is not ProposalState.REJECTED or not reconsider):
            return latest[0].id
        fresh = replace(
            p,
            id=0,
            state=ProposalState.PROPOSED,
            reviewer="",
            decided_at="",
            decision_reason="",
            created_at=at,
        )
        return store.add_proposal(fresh, at)


def list_proposals(
    store: RegistryStore, state: ProposalState | None = None, limit: int | None = None
) -> list[Proposal]:
    """Proposals, newest first (all, or those of one state)."""
    return store.proposals(state=state, limit=limit)


def get_proposal(store: RegistryStore, pid: int) -> Proposal:
    """One proposal.

    Raises:
        RegistryError: ``registry.no_proposal``.
    """
    got = store.proposals(ids=[pid])
    if not got:
        raise RegistryError("registry.no_proposal", f"no proposal #{pid}")
    return got[0]


def accept(
    store: RegistryStore, ids: Sequence[int], *, reviewer: str, reason: str, now: datetime | None = None
) -> list[ReviewOutcome]:
    """Accept proposals: each becomes an entry of ``proposals:<detector>``, in one transaction.

    Args:
        store: the register.
        ids: the proposals (all must exist; already decided ones are reported, not changed).
        reviewer: who decides.
        reason: why.
        now: the decision time (default: the clock).

    Returns:
        One outcome per id, in the order given.

    Raises:
        RegistryError: ``registry.no_proposal`` (nothing changed then), ``registry.bad_proposal``
            (empty reviewer or reason) or a store failure (nothing changed).
    """
    return _decide(store, ids, ProposalState.ACCEPTED, reviewer, reason, now)


def reject(
    store: RegistryStore, ids: Sequence[int], *, reviewer: str, reason: str, now: datetime | None = None
) -> list[ReviewOutcome]:
    """Reject proposals (they never become entries); see :func:`accept` for the arguments."""
    return _decide(store, ids, ProposalState.REJECTED, reviewer, reason, now)


def _decide(
    store: RegistryStore,
    ids: Sequence[int],
    state: ProposalState,
    reviewer: str,
    reason: str,
    now: datetime | None,
) -> list[ReviewOutcome]:
    who = _text(reviewer, "reviewer")
    why = _text(reason, "reason")
    at = _now(now)
    wanted = list(dict.fromkeys(int(i) for i in ids))
    if not wanted:
        raise RegistryError("registry.no_input", "no proposal id given")
    action = AuditAction.ACCEPTED if state is ProposalState.ACCEPTED else AuditAction.REJECTED
    with store.review():
        found = {p.id: p for p in store.proposals(ids=wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise RegistryError("registry.no_proposal", "no proposal " + ", ".join(f"#{i}" for i in missing))
        won = [p for p in (found[i] for i in wanted) if store.set_proposal_state(p.id, state, who, why, at)]
        import_ids: dict[str, int] = {}
        if state is ProposalState.ACCEPTED:
            for source in sorted({p.source for p in won}):
                import_ids[source] = _sync_source(store, source, at)
        for p in won:
            store.audit_review(action, p, who, why, at, import_ids.get(p.source, 0))
        after = {p.id: p for p in store.proposals(ids=wanted)}
    won_ids = {p.id for p in won}
    return [
        ReviewOutcome(
            i,
            after[i].state,
            i in won_ids,
            after[i].reviewer,
            import_ids.get(after[i].source, 0) if i in won_ids else 0,
        )
        for i in wanted
    ]


def review_basis(p: Proposal) -> LegalBasis:
    """The legal basis an accepted proposal's entry carries: the review that decided it."""
    return LegalBasis(f"review by {p.reviewer}: {p.decision_reason}", f"proposal #{p.id}", p.decided_at[:10])


def _sync_source(store: RegistryStore, source: str, at: str) -> int:
    """Sync ``source`` with all its accepted proposals (inside the review transaction)."""
    detector = source[len(PROPOSAL_SOURCE_PREFIX) :]
    accepted = [p for p in store.proposals(state=ProposalState.ACCEPTED) if p.detector == detector]
    result = ParseResult("proposals", rows=len(accepted))
    for p in sorted(accepted, key=lambda q: q.id):
        result.add(p.kind, p.indicator, "", review_basis(p))
    digest = hashlib.sha256(",".join(str(p.id) for p in accepted).encode()).hexdigest()
    summary = sync_result(
        store,
        result,
        source,
        path="proposals",
        sha256=digest,
        max_drop=1.0,
        now=datetime.fromisoformat(at),
    )
    return summary.import_id


def proposed_matcher(store: RegistryStore) -> Matcher:
    """The open proposals as a matcher; its entries have ``proposed=True``.

    Their source is the one they would get (``proposals:<detector>``) and their basis says who
    proposed them and why.  Only a shadow-mode rule with ``register = "proposed"`` acts on them.
    """
    rows = [
        (
            p.source,
            p.kind.value,
            p.indicator,
            basis_to_json(
                (LegalBasis(f"proposed by {p.detector}: {p.reason}", f"proposal #{p.id}", p.created_at[:10]),)
            ),
        )
        for p in store.proposals(state=ProposalState.PROPOSED)
    ]
    return Matcher(rows, proposed=True)
