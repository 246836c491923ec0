"""What a fingerprint rule returns, what it declares, and small helpers shared by the rule modules."""

from __future__ import annotations

__all__ = [
    "AH",
    "ESP",
    "GRE",
    "ICMP",
    "ICMPV6",
    "TCP",
    "UDP",
    "Rule",
    "RuleMatch",
    "ev",
    "hexs",
    "transports",
    "transports_of",
]

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sluice.detect.verdict import Evidence
from sluice.features.view import FlowView


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A fingerprint rule that fired on a flow."""

    rule: str
    """Name of the rule (``openvpn``, ``wireguard`` ...)."""
    label: str
    """Class the rule names."""
    family: str
    """Family the rule names."""
    confidence: float
    """How sure the rule is (0–1)."""
    decided_at: int
    """Index of the packet at which the rule had what it needed."""
    evidence: tuple[Evidence, ...]
    """The facts that made the rule fire."""


Rule = Callable[[FlowView], "RuleMatch | None"]
R = TypeVar("R", bound=Rule)

ICMP, TCP, UDP, GRE, ESP, AH, ICMPV6 = 1, 6, 17, 47, 50, 51, 58
"""IP protocol numbers the rules name."""
_TRANSPORTS = "transports"


def transports(*protos: int) -> Callable[[R], R]:
    """Declare the IP protocols a rule can fire on (a rule without a declaration: any).

    :mod:`sluice.detect.fingerprints` runs a rule only on flows of the transports it declares,
    which spares most flows a third of the calls. The rule keeps its own check of ``rec.proto``
    (it stays right when called alone); ``tests/detect/test_fingerprints.py`` checks that no
    rule fires on a transport it did not declare, so skipping it there changes nothing.
    """

    def declare(rule: R) -> R:
        setattr(rule, _TRANSPORTS, frozenset(protos))
        return rule

    return declare


def transports_of(rule: Rule) -> frozenset[int] | None:
    """The IP protocols a rule declared with :func:`transports`, or None (any)."""
    got: frozenset[int] | None = getattr(rule, _TRANSPORTS, None)
    return got


def ev(
    code: str,
    feature: str,
    observed: object,
    reference: str,
    contribution: float,
    reason: str,
    packet: int = -1,
) -> Evidence:
    """Build one :class:`Evidence` (observed values are turned into text)."""
    return Evidence(code, feature, str(observed), reference, contribution, reason, packet)


def hexs(data: bytes) -> str:
    """Short hex of a byte string for evidence text."""
    return data.hex() if len(data) <= 16 else data[:16].hex() + "…"
