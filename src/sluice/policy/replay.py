"""Dry runs' records: what the gateway would have decided per flow, what only the whole flow says.

The dry run itself (captures replayed packet by packet through the Decider) is
:func:`sluice.decide.replay.replay_captures`; this module holds what it returns and the counting
per rule and per action, which only need the policy's records.
"""

from __future__ import annotations

__all__ = ["UNDECIDED", "FlowOutcome", "ReplayResult", "RuleCount", "count_rules"]

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.detect.verdict import Verdict
from sluice.flows.record import FlowRecord
from sluice.policy.model import DEFAULT_RULE, Action, Decision, Mode, Policy

UNDECIDED = "undecided"
"""``by_action`` key of flows the gateway would pass without a decision (too few packets)."""


@dataclass(frozen=True, slots=True)
class RuleCount:
    """What one rule (or the default) would have done over a replay."""

    index: int
    """Position in the policy (-1 for the default)."""
    name: str
    """The rule's name."""
    action: Action
    """Its action."""
    mode: Mode
    """Its mode."""
    decided: int
    """Flows it decided (it was the first rule to match)."""
    matched: int
    """Flows whose conditions it matched, including those an earlier rule decided."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "index": self.index,
            "rule": self.name,
            "action": self.action.value,
            "mode": self.mode.value,
            "decided": self.decided,
            "matched": self.matched,
        }


def _same(a: Decision, b: Decision) -> bool:
    return (a.rule, a.action, a.mode, a.rate_kbit) == (b.rule, b.action, b.mode, b.rate_kbit)


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    """One flow of a dry run: the gateway's decision and the whole flow's."""

    capture: str
    """Capture file the flow comes from."""
    record: FlowRecord
    """The flow's final record (flow ids as ``sluice flows`` and ``sluice analyze`` give them)."""
    verdict: Verdict
    """The combiner's verdict on the whole flow (as ``sluice analyze`` gives it)."""
    inline: Decision | None
    """What the gateway would have decided (None: too few packets for a decision; it would
    pass the flow unmarked and log nothing)."""
    offline: Decision
    """The decision on the whole flow (stage ``offline``)."""

    @property
    def offline_only(self) -> bool:
        """True when the whole flow is decided otherwise than the gateway would have decided it.

        A flow the gateway passes undecided is offline-only when the whole flow would be decided
        by a rule (or a default other than ``allow``).
        """
        off = self.offline
        if self.inline is None:
            return off.rule != DEFAULT_RULE or off.action is not Action.ALLOW
        return not _same(self.inline, off)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: the record's id and key, both decisions."""
        return {
            "capture": self.capture,
            "flow_id": self.record.flow_id,
            "inline": self.inline.to_dict() if self.inline is not None else None,
            "offline": self.offline.to_dict(),
            "offline_only": self.offline_only,
        }


@dataclass
class ReplayResult:
    """Decisions of a dry run, and counts per rule and per action."""

    outcomes: list[FlowOutcome] = field(default_factory=list)
    """One per flow, in the order flows ended."""
    decisions: list[Decision] = field(default_factory=list)
    """What the gateway would have decided, in the order it would have (every decision, as its
    log would have them: a flow silent longer than the gateway remembers may be decided again)."""
    rules: list[RuleCount] = field(default_factory=list)
    """One row per rule, then the default (over :attr:`decisions`)."""
    by_action: dict[str, int] = field(default_factory=dict)
    """Flows per action (``block``, ``block/shadow`` for shadow decisions, ``undecided``)."""
    by_stage: dict[str, int] = field(default_factory=dict)
    """Decisions per stage (``settled``, ``fingerprint``, ``final``)."""
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per capture: what the flow stage saw (as ``sluice analyze`` reports it)."""

    @property
    def offline_only(self) -> list[FlowOutcome]:
        """Flows the whole flow decides otherwise than the gateway would (see
        :attr:`FlowOutcome.offline_only`)."""
        return [o for o in self.outcomes if o.offline_only]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly counts."""
        off = self.offline_only
        by_off: Counter[str] = Counter(_action_key(o.offline) for o in off)
        return {
            "flows": len(self.outcomes),
            "decided": len(self.decisions),
            "undecided": sum(1 for o in self.outcomes if o.inline is None),
            "by_action": self.by_action,
            "by_stage": self.by_stage,
            "rules": [r.to_dict() for r in self.rules],
            "offline_only": {"flows": len(off), "by_action": dict(sorted(by_off.items()))},
        }


def _action_key(d: Decision) -> str:
    return d.action.value if d.mode is Mode.ENFORCE else f"{d.action.value}/shadow"


def count_rules(
    policy: Policy, decisions: Sequence[Decision], matched: Counter[int], undecided: int
) -> tuple[list[RuleCount], dict[str, int], dict[str, int]]:
    """Rows per rule (then the default), flows per action and decisions per stage.

    Args:
        policy: the policy that decided.
        decisions: its decisions.
        matched: per rule index, the decisions whose flow matched the rule's conditions.
        undecided: flows left without a decision.
    """
    decided: Counter[int] = Counter(d.rule_index for d in decisions)
    by_action: Counter[str] = Counter(_action_key(d) for d in decisions)
    if undecided:
        by_action[UNDECIDED] += undecided
    by_stage: Counter[str] = Counter(d.stage for d in decisions)
    rules = [
        RuleCount(i, r.name, r.action, r.mode, decided[i], matched[i]) for i, r in enumerate(policy.rules)
    ]
    dflt = policy.default
    rules.append(RuleCount(-1, DEFAULT_RULE, dflt.action, dflt.mode, decided[-1], decided[-1]))
    return rules, dict(sorted(by_action.items())), dict(sorted(by_stage.items()))
