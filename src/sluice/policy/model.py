"""The policy's records: actions, modes, rules and their conditions, decisions.

A policy is an ordered list of rules and a default. :meth:`Policy.decide` walks the rules in
order and the first rule whose every condition holds decides; when none does, the default
decides. Conditions of one rule are ANDed; the values listed for one condition are ORed. All
register conditions of a rule (``register_kind``, ``register_source``, ``register_authority``)
must hold for the *same* register match.

Decisions are public output (the decision log): renaming a field is a breaking change.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_RULE",
    "Action",
    "Decision",
    "DefaultRule",
    "Mode",
    "Policy",
    "RegisterRef",
    "Rule",
]

import enum
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.detect.verdict import Verdict, flow_key_text
from sluice.flows.record import FlowRecord

if TYPE_CHECKING:
    from sluice.registry.matcher import Match

DEFAULT_RULE = "(default)"
"""The rule name decisions carry when no rule matched."""
MAX_REGISTER_REFS = 8
"""Register matches kept in one decision."""
MAX_EVIDENCE = 5
"""Evidence items kept in one decision."""


class Action(enum.StrEnum):
    """What a decision does to a flow."""

    ALLOW = "allow"
    """Let it pass."""
    LOG = "log"
    """Let it pass and record the decision as a finding."""
    BLOCK = "block"
    """Drop its packets."""
    RESET = "reset"
    """Refuse it: TCP RST, ICMP unreachable for other protocols."""
    THROTTLE = "throttle"
    """Let it pass at ``rate_kbit`` kbit/s."""


class Mode(enum.StrEnum):
    """Whether a rule's decisions are applied or only recorded."""

    ENFORCE = "enforce"
    """Apply the action."""
    SHADOW = "shadow"
    """Decide and log, apply nothing."""


@dataclass(frozen=True, slots=True)
class RegisterRef:
    """A register entry a decision relied on, with its legal basis."""

    query: str
    """The host name or address looked up."""
    reason: str
    """Stable dotted code of the matching rule (``domain.www``, ``ip.subnet``)."""
    source: str
    """The list that names the entry."""
    kind: str
    """The entry's kind (``domain``, ``subnet`` ...)."""
    indicator: str
    """The entry's canonical indicator."""
    basis: tuple[str, ...] = ()
    """The decisions behind the entry, as text (``суд / 2-1687/2013 / 2013-05-23``)."""

    @classmethod
    def from_match(cls, m: Match) -> RegisterRef:
        """The reference for one matcher result."""
        e = m.entry
        return cls(m.query, m.reason.code, e.source, str(e.kind.value), e.indicator, tuple(map(str, e.basis)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "query": self.query,
            "reason": self.reason,
            "source": self.source,
            "kind": self.kind,
            "indicator": self.indicator,
            "basis": list(self.basis),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegisterRef:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(d["query"]),
            str(d["reason"]),
            str(d["source"]),
            str(d["kind"]),
            str(d["indicator"]),
            tuple(str(b) for b in d.get("basis", ())),
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: conditions (all must hold; empty means any) and what to do."""

    name: str
    """Unique name, carried by every decision the rule makes."""
    action: Action
    """What to do with a matching flow."""
    mode: Mode = Mode.ENFORCE
    """Enforce or only record."""
    rate_kbit: int = 0
    """Rate for ``throttle`` (kbit/s); 0 for other actions."""
    register: bool | None = None
    """True: some register entry must match; False: none may; None: either (entries under review
    never count here)."""
    proposed: bool = False
    """``register = "proposed"``: some *proposed* entry (under review, ``Entry.proposed``) must
    match, and the register conditions apply to those; the loader allows it in shadow mode only."""
    register_kind: frozenset[str] = frozenset()
    """The matching entry must be of one of these kinds."""
    register_source: tuple[str, ...] = ()
    """The matching entry's source must match one of these globs."""
    register_authority: tuple[str, ...] = ()
    """One of the entry's decisions must come from an authority matching one of these globs."""
    classes: frozenset[str] = frozenset()
    """The verdict's class must be one of these."""
    family: tuple[str, ...] = ()
    """The verdict's family must match one of these globs."""
    min_confidence: float = 0.0
    """The verdict's confidence must be at least this."""
    host: tuple[str, ...] = ()
    """The flow's server name (SNI, else HTTP Host, else DNS query) must match one of these globs."""
    sni: tuple[str, ...] = ()
    """The TLS/QUIC SNI must match one of these globs."""
    ports: tuple[tuple[int, int], ...] = ()
    """The server port must lie in one of these inclusive ranges."""
    proto: frozenset[int] = frozenset()
    """The IP protocol number must be one of these."""
    app: frozenset[str] = frozenset()
    """The recognised application protocol must be one of these (``tls``, ``quic``, ``dns`` ...)."""
    line: int = 0
    """Line of the rule's table in the policy file (0 when not from a file)."""
    _host_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    _sni_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    _family_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    _source_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    _authority_re: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    @property
    def uses_register(self) -> bool:
        """True when the rule looks at register entries' kind, source or authority."""
        return bool(self.register_kind or self.register_source or self.register_authority)

    @property
    def uses_verdict(self) -> bool:
        """True when the rule looks at the detectors' verdict (class, family or confidence)."""
        return bool(self.classes or self._family_re or self.min_confidence > 0)

    def pool(self, matches: Sequence[Match]) -> Sequence[Match]:
        """The matches the rule looks at: proposed ones for ``register = "proposed"``, else entries."""
        if self.proposed:
            return [m for m in matches if m.entry.proposed]
        if any(m.entry.proposed for m in matches):
            return [m for m in matches if not m.entry.proposed]
        return matches

    def register_hits(self, matches: Sequence[Match]) -> list[Match]:
        """The matches that satisfy every register condition of the rule."""
        out = []
        for m in self.pool(matches):
            e = m.entry
            if self.register_kind and str(e.kind.value) not in self.register_kind:
                continue
            if self._source_re and not _any(self._source_re, e.source.lower()):
                continue
            if self._authority_re and not any(_any(self._authority_re, b.authority.lower()) for b in e.basis):
                continue
            out.append(m)
        return out

    def matches(self, flow: FlowRecord, verdict: Verdict | None, matches: Sequence[Match]) -> bool:
        """Whether every condition holds for this flow."""
        if self.proto and flow.proto not in self.proto:
            return False
        if self.ports and not any(lo <= flow.server_port <= hi for lo, hi in self.ports):
            return False
        meta = flow.meta
        if self.app and meta.app not in self.app:
            return False
        if self._host_re and not _any(self._host_re, _canon(meta.server_name)):
            return False
        if self._sni_re and not _any(self._sni_re, _canon(meta.sni)):
            return False
        if self.uses_verdict:
            if verdict is None:
                return False
            if self.classes and verdict.label not in self.classes:
                return False
            if self._family_re and not _any(self._family_re, verdict.family.lower()):
                return False
            if verdict.confidence < self.min_confidence:
                return False
        pool = self.pool(matches)
        if self.proposed and not pool:
            return False
        if self.register is not None and bool(pool) != self.register:
            return False
        return not (self.uses_register and not self.register_hits(pool))


def _canon(name: str) -> str:
    return name.lower().rstrip(".")


def _any(patterns: tuple[re.Pattern[str], ...], text: str) -> bool:
    return bool(text) and any(p.fullmatch(text) for p in patterns)


@dataclass(frozen=True, slots=True)
class DefaultRule:
    """What happens to a flow no rule matches."""

    action: Action = Action.ALLOW
    """The action."""
    mode: Mode = Mode.ENFORCE
    """Enforce or only record."""
    rate_kbit: int = 0
    """Rate for ``throttle`` (kbit/s)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided about one flow, with everything needed to review it."""

    time: float
    """When the decision was made (Unix seconds; replays use the flow's first packet time)."""
    flow_id: int
    """The flow's id within its run."""
    flow_key: str
    """The 5-tuple as text (``tcp 10.0.0.1:5000 > 10.0.0.2:443``)."""
    server_name: str
    """SNI, HTTP Host or DNS query name ("" when none)."""
    app: str
    """Application protocol recognised ("" when none)."""
    rule: str
    """Name of the rule that decided (:data:`DEFAULT_RULE` for the default)."""
    rule_index: int
    """Position of the rule in the policy (0-based; -1 for the default)."""
    action: Action
    """What the rule says to do."""
    mode: Mode
    """The rule's mode."""
    enforced: bool
    """True when the action is applied to traffic (enforce mode and not a dry run)."""
    rate_kbit: int = 0
    """Rate of a throttle (kbit/s), 0 otherwise."""
    verdict_class: str = ""
    """The verdict's class ("" when no verdict)."""
    family: str = ""
    """The verdict's family."""
    confidence: float = 0.0
    """The verdict's confidence."""
    detector: str = ""
    """Which detector decided the verdict."""
    evidence: tuple[str, ...] = ()
    """The strongest evidence, as ``code: feature=observed``."""
    register: tuple[RegisterRef, ...] = ()
    """Register entries relied on (those satisfying the rule's register conditions, else all)."""
    capture: str = ""
    """Capture file or interface the flow came from ("" when not known)."""
    policy: str = ""
    """Digest of the policy that decided (first 16 hex digits of its SHA-256)."""
    stage: str = ""
    """Where in the decision path it was made (:class:`sluice.decide.Stage`: ``settled``,
    ``fingerprint``, ``final`` inline; ``offline`` on the whole flow); "" when not known."""
    decided_at: int = -1
    """Index (0-based, both directions) of the flow's packet it was made on; -1 when not known."""

    @property
    def iso_time(self) -> str:
        """:attr:`time` as ISO 8601 UTC with milliseconds."""
        return (
            datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (one decision log line)."""
        return {
            "time": self.iso_time,
            "ts": self.time,
            "flow_id": self.flow_id,
            "flow_key": self.flow_key,
            "server_name": self.server_name,
            "app": self.app,
            "rule": self.rule,
            "rule_index": self.rule_index,
            "action": self.action.value,
            "rate_kbit": self.rate_kbit,
            "mode": self.mode.value,
            "enforced": self.enforced,
            "class": self.verdict_class,
            "family": self.family,
            "confidence": self.confidence,
            "detector": self.detector,
            "evidence": list(self.evidence),
            "register": [r.to_dict() for r in self.register],
            "capture": self.capture,
            "policy": self.policy,
            "stage": self.stage,
            "decided_at": self.decided_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError, ValueError, TypeError: the dict is not a decision.
        """
        return cls(
            time=float(d["ts"]),
            flow_id=int(d["flow_id"]),
            flow_key=str(d["flow_key"]),
            server_name=str(d.get("server_name", "")),
            app=str(d.get("app", "")),
            rule=str(d["rule"]),
            rule_index=int(d.get("rule_index", -1)),
            action=Action(d["action"]),
            mode=Mode(d["mode"]),
            enforced=bool(d["enforced"]),
            rate_kbit=int(d.get("rate_kbit", 0)),
            verdict_class=str(d.get("class", "")),
            family=str(d.get("family", "")),
            confidence=float(d.get("confidence", 0.0)),
            detector=str(d.get("detector", "")),
            evidence=tuple(str(e) for e in d.get("evidence", ())),
            register=tuple(RegisterRef.from_dict(r) for r in d.get("register", ())),
            capture=str(d.get("capture", "")),
            policy=str(d.get("policy", "")),
            stage=str(d.get("stage", "")),
            decided_at=int(d.get("decided_at", -1)),
        )


@dataclass(frozen=True, slots=True)
class Policy:
    """Ordered rules and a default (build with :func:`sluice.policy.load_policy`)."""

    rules: tuple[Rule, ...]
    """The rules, in the order they are tried."""
    default: DefaultRule = DefaultRule()
    """What happens when no rule matches."""
    digest: str = ""
    """First 16 hex digits of the SHA-256 of the policy text."""
    path: str = ""
    """The file it was read from ("" when from text)."""

    def matching_rules(
        self, flow: FlowRecord, verdict: Verdict | None, matches: Sequence[Match]
    ) -> list[int]:
        """Indices of every rule whose conditions hold (the first one decides)."""
        return [i for i, r in enumerate(self.rules) if r.matches(flow, verdict, matches)]

    def first_match(self, flow: FlowRecord, verdict: Verdict | None, matches: Sequence[Match]) -> int:
        """Index of the rule that decides, -1 for the default."""
        for i, r in enumerate(self.rules):
            if r.matches(flow, verdict, matches):
                return i
        return -1

    @property
    def uses_verdicts(self) -> bool:
        """True when some rule looks at the detectors' verdict."""
        return any(r.uses_verdict for r in self.rules)

    def settled(self, flow: FlowRecord, matches: Sequence[Match]) -> int | None:
        """The deciding rule's index (-1: the default) when no verdict could change it, else None.

        A rule that needs no verdict and matches decides unless a rule before it looks at the
        verdict: then, and when only the default would match, the verdict may still matter.
        """
        for i, r in enumerate(self.rules):
            if r.uses_verdict:
                return None
            if r.matches(flow, None, matches):
                return i
        return -1

    def decide(
        self,
        flow: FlowRecord,
        verdict: Verdict | None,
        matches: Sequence[Match] = (),
        *,
        now: float | None = None,
        dry_run: bool = False,
        capture: str = "",
        rule_index: int | None = None,
        stage: str = "",
        decided_at: int = -1,
    ) -> Decision:
        """The decision for one flow: the first matching rule's, else the default's.

        Args:
            flow: the flow (early or final record).
            verdict: the detectors' verdict, None when none ran.
            matches: register entries matching the flow's server name or address.
            now: decision time (default: the clock).
            dry_run: decide without enforcing (``enforced`` is then False for every rule).
            capture: where the flow came from, recorded in the decision.
            rule_index: the deciding rule when the caller already knows it (see
                :meth:`first_match`).
            stage: where in the decision path it is made, recorded in the decision.
            decided_at: the flow's packet index it is made on, recorded in the decision.

        Returns:
            The decision.
        """
        idx = self.first_match(flow, verdict, matches) if rule_index is None else rule_index
        if idx >= 0:
            rule = self.rules[idx]
            name, action, mode, rate = rule.name, rule.action, rule.mode, rule.rate_kbit
            relied = rule.register_hits(matches) if rule.uses_register else list(rule.pool(matches))
        else:
            d = self.default
            name, action, mode, rate = DEFAULT_RULE, d.action, d.mode, d.rate_kbit
            relied = [m for m in matches if not m.entry.proposed]  # under review: no rule relied on it
        v = verdict
        return Decision(
            time=time.time() if now is None else now,
            flow_id=flow.flow_id,
            flow_key=flow_key_text(flow),
            server_name=flow.meta.server_name,
            app=flow.meta.app,
            rule=name,
            rule_index=idx,
            action=action,
            mode=mode,
            enforced=mode is Mode.ENFORCE and not dry_run,
            rate_kbit=rate,
            verdict_class=v.label if v else "",
            family=v.family if v else "",
            confidence=v.confidence if v else 0.0,
            detector=v.detector if v else "",
            evidence=tuple(f"{e.code}: {e.feature}={e.observed}" for e in v.evidence[:MAX_EVIDENCE])
            if v
            else (),
            register=tuple(RegisterRef.from_match(m) for m in relied[:MAX_REGISTER_REFS]),
            capture=capture,
            policy=self.digest,
            stage=stage,
            decided_at=decided_at,
        )
