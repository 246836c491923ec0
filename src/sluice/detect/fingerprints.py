"""Layer 1: deterministic protocol fingerprints, each with the evidence that made it fire.

Theory of operation: every rule is a pure function of one :class:`~sluice.flows.record.FlowRecord`
(through :class:`~sluice.features.view.FlowView`): it reads the first bytes of each direction's
first payload, packet sizes and directions, and the application metadata, and either returns a
:class:`RuleMatch` (class, family, confidence, the packet index at which it had what it needed, and
its evidence) or ``None``. Rules never see addresses or ports, except the structural context a
protocol defines for itself (an IP protocol number, a tunnel header). Every rule runs on every flow
of the transports it declares (:func:`sluice.detect._rules.transports`; a rule without a
declaration runs on all); the strongest match is the fingerprint verdict. The rule set is
versioned: a change in what fires changes :data:`FINGERPRINTS_VERSION`.
"""

from __future__ import annotations

__all__ = [
    "FINGERPRINTS_VERSION",
    "RULE_NAMES",
    "FingerprintDetector",
    "RuleMatch",
    "match_record",
]

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from sluice.detect import _commercial, _covert, _crypto, _proxy, _vpn
from sluice.detect._base import check_is_fitted, constructor_params
from sluice.detect._rules import Rule, RuleMatch, transports_of
from sluice.detect.verdict import DETECTABLE_CLASSES, Verdict, flow_key_text
from sluice.errors import ConfigError
from sluice.features.view import FlowView
from sluice.flows.record import FlowRecord

FINGERPRINTS_VERSION = "6"
"""Version of the rule set (3: the commercial VPN variants of :mod:`sluice.detect._commercial`;
4: crypto node, mining and exchange rules of :mod:`sluice.detect._crypto`; 5: simple-obfs's HTTP
disguise, :func:`sluice.detect._covert.http_disguise`; 6: Stratum over TLS by its share cadence,
:func:`sluice.detect._mining.stratum_tls`, and Ethereum's RLPx handshake,
:func:`sluice.detect._crypto.rlpx`)."""

_ALL_RULES: tuple[tuple[str, Rule], ...] = (
    _vpn.RULES + _commercial.RULES + _proxy.RULES + _covert.RULES + _crypto.RULES
)
RULE_NAMES: tuple[str, ...] = tuple(name for name, _ in _ALL_RULES)
"""Names of every rule, in the order they run."""


class _RulesByTransport:
    """A rule set split once by the transports its rules declare: a flow runs only the rules
    that can fire on its IP protocol, in the set's order (so ties sort as with every rule run)."""

    __slots__ = ("_any", "_by_proto")

    def __init__(self, rules: Sequence[tuple[str, Rule]]) -> None:
        declared = {p for _name, rule in rules for p in transports_of(rule) or ()}
        self._by_proto = {p: self._running_on(rules, p) for p in declared}
        self._any = self._running_on(rules, None)

    @staticmethod
    def _running_on(rules: Sequence[tuple[str, Rule]], proto: int | None) -> tuple[tuple[str, Rule], ...]:
        """The rules that run on ``proto`` (None: a protocol no rule declares)."""
        return tuple(
            (name, rule)
            for name, rule in rules
            if (t := transports_of(rule)) is None or (proto is not None and proto in t)
        )

    def match(self, rec: FlowRecord | FlowView) -> list[RuleMatch]:
        """Every rule that fires on ``rec``, strongest first (see :func:`match_record`)."""
        view = rec if isinstance(rec, FlowView) else FlowView(rec)
        rules = self._by_proto.get(view.rec.proto, self._any)
        out = [m for _name, rule in rules if (m := rule(view)) is not None]
        if len(out) > 1:
            out.sort(key=lambda m: (-m.confidence, m.label not in DETECTABLE_CLASSES))
        return out


_ALL_BY_TRANSPORT = _RulesByTransport(_ALL_RULES)


def match_record(
    rec: FlowRecord | FlowView, rules: Sequence[tuple[str, Rule]] = _ALL_RULES
) -> list[RuleMatch]:
    """Every rule that fires on ``rec``, strongest first (findings before benign at equal strength).

    Args:
        rec: the flow record (or a view of it already built).
        rules: (name, rule) pairs; default all.

    Returns:
        The matches, sorted by confidence (ties: rule order).
    """
    table = _ALL_BY_TRANSPORT if rules is _ALL_RULES else _RulesByTransport(rules)
    return table.match(rec)


class FingerprintDetector:
    """The fingerprint layer as a detector (fit/score_samples/decision_function/predict/explain).

    Args:
        rules: names of the rules to run (default: all of :data:`RULE_NAMES`).
        threshold: confidence at or above which a match is a finding.
    """

    name = "fingerprint"

    def __init__(self, *, rules: tuple[str, ...] | None = None, threshold: float = 0.5) -> None:
        self.rules = rules
        self.threshold = threshold

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments."""
        return constructor_params(self)

    def fit(self, X: Sequence[FlowRecord] | None = None, y: object = None) -> Self:
        """Check the parameters (rules learn nothing from data).

        Raises:
            ConfigError: an unknown rule name or a threshold outside [0, 1].
        """
        names = self.rules if self.rules is not None else RULE_NAMES
        unknown = sorted(set(names) - set(RULE_NAMES))
        if unknown:
            raise ConfigError("fingerprint.rules", f"unknown rule(s) {unknown}; known: {list(RULE_NAMES)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError("fingerprint.threshold", f"{self.threshold} is not in [0, 1]")
        self.rules_: tuple[tuple[str, Rule], ...] | None = tuple((n, r) for n, r in _ALL_RULES if n in names)
        self.by_transport_: _RulesByTransport | None = _RulesByTransport(self.rules_)
        self.threshold_: float | None = float(self.threshold)
        return self

    def best(self, rec: FlowRecord | FlowView) -> RuleMatch | None:
        """The strongest match on one record (or its view), or None."""
        check_is_fitted(self, "by_transport_")
        assert self.by_transport_ is not None
        got = self.by_transport_.match(rec)
        return got[0] if got else None

    def score_samples(self, X: Sequence[FlowRecord]) -> npt.NDArray[np.float64]:
        """Confidence of the strongest *finding* match per record (0 when none), shape ``(n,)``."""
        check_is_fitted(self, "by_transport_")
        assert self.by_transport_ is not None
        out = np.zeros(len(X))
        for i, rec in enumerate(X):
            found = [m.confidence for m in self.by_transport_.match(rec) if m.label in DETECTABLE_CLASSES]
            out[i] = max(found, default=0.0)
        return out

    def decision_function(self, X: Sequence[FlowRecord]) -> npt.NDArray[np.float64]:
        """Score minus ``threshold_``, shape ``(n,)``."""
        check_is_fitted(self, "threshold_")
        assert self.threshold_ is not None
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Sequence[FlowRecord]) -> npt.NDArray[np.str_]:
        """Class per record: the strongest match's, or ``unknown`` when no rule fires."""
        return np.array([v.label for v in self.explain(X)], dtype=np.str_)

    def explain(self, X: Sequence[FlowRecord]) -> list[Verdict]:
        """One verdict per record with the strongest match's evidence (``unknown`` when none)."""
        check_is_fitted(self, "rules_")
        assert self.threshold_ is not None
        out = []
        for rec in X:
            m = self.best(rec)
            if m is None:
                out.append(
                    Verdict(
                        rec.flow_id,
                        flow_key_text(rec),
                        "unknown",
                        "",
                        0.0,
                        -1,
                        self.name,
                        FINGERPRINTS_VERSION,
                        threshold=self.threshold_,
                    )
                )
                continue
            out.append(
                Verdict(
                    rec.flow_id,
                    flow_key_text(rec),
                    m.label,
                    m.family,
                    m.confidence,
                    m.decided_at,
                    f"{self.name}:{m.rule}",
                    FINGERPRINTS_VERSION,
                    score=m.confidence,
                    threshold=self.threshold_,
                    evidence=m.evidence,
                )
            )
        return out
