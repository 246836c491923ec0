"""What a fingerprint rule returns, and small helpers shared by the rule modules."""

from __future__ import annotations

__all__ = ["Rule", "RuleMatch", "ev", "hexs"]

from collections.abc import Callable
from dataclasses import dataclass

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
