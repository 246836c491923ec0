"""Mirror proposals: the good candidates become review-queue proposals, each with its impact preview.

:func:`proposals_for` proposes a candidate of :func:`~sluice.mirrors.discover.find_candidates`
when the legal test holds (pages compared), or, without pages, when its score is high enough and
its function trait holds, citing the blocked entry it copies; every name of the operator's
popularity list (:mod:`sluice.mirrors.popular`) is refused instead, with the reason, whatever its
evidence. :func:`with_impact` adds to each proposal what blocking it would also hit in the traffic
at hand (:mod:`sluice.registry.impact`).
"""

from __future__ import annotations

__all__ = ["DETECTOR", "Refused", "Review", "proposals_for", "with_impact"]

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sluice.mirrors.discover import Candidate
from sluice.mirrors.popular import PopularList
from sluice.mirrors.traits import legal_test
from sluice.registry.impact import Traffic, preview_impact, shared_lookup
from sluice.registry.model import Kind, Proposal

DETECTOR = "mirrors"
"""Detector name in the review queue (accepted entries: source ``proposals:mirrors``)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A candidate that would have been proposed and is not (it is a popular name)."""

    domain: str
    seed: str
    score: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "domain": self.domain,
            "seed": self.seed,
            "score": round(self.score, 4),
            "reason": self.reason,
        }


@dataclass(slots=True)
class Review:
    """What :func:`proposals_for` sends to the review queue, and what it refuses."""

    proposed: list[Proposal] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def proposals_for(
    cands: Iterable[Candidate],
    *,
    min_score: float = 0.8,
    blocked: Mapping[str, str] | None = None,
    popular: PopularList | None = None,
) -> Review:
    """Review-queue proposals for the good candidates.

    A candidate is proposed when the legal test holds (pages compared), or, without pages, when
    its score reaches ``min_score`` *and* its function trait holds (name alone never proposes).
    A popular name (flagged by :func:`~sluice.mirrors.discover.find_candidates`, or in
    ``popular``) is never proposed: it is refused with the reason, whatever its evidence.

    Args:
        cands: candidates (:func:`~sluice.mirrors.discover.find_candidates`).
        min_score: the score a candidate needs.
        blocked: seed -> the register entry it is (source and basis, in words) for the evidence.
        popular: the operator's popularity list (checked here too, so no path skips it).

    Returns:
        One domain proposal per candidate domain (the best seed), detector ``mirrors``; the
        refused popular names, one per domain.
    """
    best: dict[str, Candidate] = {}
    refused: dict[str, Refused] = {}
    for c in cands:
        ok = c.copy if c.fetched else (c.score >= min_score and c.traits.function.holds)
        if not ok:
            continue
        why = c.popular or (popular.reason(c.domain) if popular is not None else "")
        if why:
            if c.domain not in refused or c.score > refused[c.domain].score:
                refused[c.domain] = Refused(c.domain, c.seed, c.score, why)
        elif c.domain not in best or c.score > best[c.domain].score:
            best[c.domain] = c
    out = []
    for d, c in sorted(best.items()):
        entry = (blocked or {}).get(c.seed, f"domain {c.seed}")
        _, why = legal_test(c.traits)
        out.append(
            Proposal(
                Kind.DOMAIN,
                d,
                DETECTOR,
                f"mirror of blocked {c.seed} ({entry}): {why}; score {c.score:.2f}",
                {"blocked_entry": c.seed, "blocked_basis": entry, **c.to_dict()},
            )
        )
    return Review(out, [refused[d] for d in sorted(refused)])


def with_impact(props: Sequence[Proposal], traffic: Traffic) -> list[Proposal]:
    """Each proposal with its collateral-impact preview (:mod:`sluice.registry.impact`), as the
    VPN-service proposals carry one: what blocking the mirror would also hit in ``traffic``.

    The proposals copying one blocked name are previewed together (each other's names are not
    collateral: they are the same operator's, by the evidence); every other name seen on their
    addresses is.

    Args:
        props: proposals (:func:`proposals_for`).
        traffic: the traffic at hand (:func:`~sluice.mirrors.discover.read_observed_traffic`).

    Returns:
        The proposals with ``impact`` set ({} for none).
    """
    by_seed: dict[str, list[int]] = {}
    for i, p in enumerate(props):
        by_seed.setdefault(str(p.evidence.get("blocked_entry", "")), []).append(i)
    shared = shared_lookup()
    out = list(props)
    for idx in by_seed.values():
        entries = [(props[i].kind, props[i].indicator) for i in idx]
        own = [f"*.{props[i].indicator}" for i in idx]
        report = preview_impact(entries, traffic, own=own, shared=shared)
        for i, e in zip(idx, report.entries, strict=True):
            out[i] = replace(props[i], impact=e.as_dict())
    return out
