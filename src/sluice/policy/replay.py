"""Dry runs: captures replayed through analysis and a policy, counting what every rule would do."""

from __future__ import annotations

__all__ = ["ReplayResult", "RuleCount", "flow_matches", "replay_captures"]

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.detect.combiner import Combiner
from sluice.detect.service import analyze_captures
from sluice.flows.record import FlowRecord
from sluice.policy.model import DEFAULT_RULE, Action, Decision, Mode, Policy
from sluice.registry.matcher import Match, Matcher


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


@dataclass
class ReplayResult:
    """Decisions of a dry run, and counts per rule and per action."""

    decisions: list[Decision] = field(default_factory=list)
    """One decision per flow, in capture order."""
    rules: list[RuleCount] = field(default_factory=list)
    """One row per rule, then the default."""
    by_action: dict[str, int] = field(default_factory=dict)
    """Flows per action (``block``, ``block/shadow`` for shadow decisions)."""
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per capture: what the flow stage saw (as ``sluice analyze`` reports it)."""

    def summary(self) -> dict[str, Any]:
        """JSON-friendly counts."""
        return {
            "flows": len(self.decisions),
            "by_action": self.by_action,
            "rules": [r.to_dict() for r in self.rules],
        }


def flow_matches(matcher: Matcher, flow: FlowRecord) -> list[Match]:
    """Register entries matching a flow's server name, then its server address."""
    out: list[Match] = []
    name = flow.meta.server_name
    if name:
        out.extend(matcher.match_host(name))
    if flow.server:
        out.extend(matcher.match_ip(flow.server))
    return out


def replay_captures(
    policy: Policy,
    paths: Sequence[str],
    combiner: Combiner,
    *,
    matcher: Matcher | None = None,
) -> ReplayResult:
    """Judge every flow of some captures and decide each with ``policy``, enforcing nothing.

    Args:
        policy: the policy to try.
        paths: capture files.
        combiner: the detectors.
        matcher: the register (None: no flow has register matches).

    Returns:
        Decisions (``enforced`` is False for all: a dry run) and counts.

    Raises:
        CaptureError: a capture cannot be read.
    """
    analysis = analyze_captures(paths, combiner)
    res = ReplayResult(runs=analysis.runs)
    decided: Counter[int] = Counter()
    matched: Counter[int] = Counter()
    by_action: Counter[str] = Counter()
    for fv in analysis.flows:
        matches = flow_matches(matcher, fv.record) if matcher is not None else []
        hit = policy.matching_rules(fv.record, fv.verdict, matches)
        matched.update(hit)
        idx = hit[0] if hit else -1
        decided[idx] += 1
        d = policy.decide(
            fv.record,
            fv.verdict,
            matches,
            now=fv.record.first_ts,
            dry_run=True,
            capture=fv.capture,
            rule_index=idx,
        )
        by_action[d.action.value if d.mode is Mode.ENFORCE else f"{d.action.value}/shadow"] += 1
        res.decisions.append(d)
    res.rules = [
        RuleCount(i, r.name, r.action, r.mode, decided[i], matched[i]) for i, r in enumerate(policy.rules)
    ]
    dflt = policy.default
    res.rules.append(RuleCount(-1, DEFAULT_RULE, dflt.action, dflt.mode, decided[-1], decided[-1]))
    res.by_action = dict(sorted(by_action.items()))
    return res
