"""Verdicts and the evidence behind them: what every detector hands to the combiner and the operator.

Class and family names are those of ``TAXONOMY.md``; a verdict without the evidence that decided it
is not a verdict. Evidence codes (``openvpn.client_reset``, ``fet.fully_encrypted``) are stable
public output: renaming one is a breaking change.
"""

from __future__ import annotations

__all__ = [
    "CLASSES",
    "DEFAULT_FET_VETO",
    "DETECTABLE_CLASSES",
    "Evidence",
    "Verdict",
    "flow_key_text",
]

from dataclasses import dataclass, field
from typing import Any

from sluice.flows.record import FlowRecord

CLASSES = ("benign", "vpn", "proxy", "circumvention", "tunnel", "crypto", "unknown")
"""Every class a verdict can name (``TAXONOMY.md``)."""
DETECTABLE_CLASSES = ("vpn", "proxy", "circumvention", "tunnel", "crypto")
"""The classes an operator acts on (a verdict in one of these is a finding)."""

DEFAULT_FET_VETO: float | None = 0.99
"""The model's ``P(benign)`` at or above which it vetoes a finding of the FET alone (None: never).

Measured (docs/detection-notes.md): held-out benign flows the FET alone flags score 0.95-0.995,
fully-encrypted circumvention of configurations the model never saw at most 0.977, so 0.99 vetoed
none of the latter in any check (and 1 to 5 of the 5 former, depending on the seed).
"""

_PROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 47: "gre", 50: "esp", 51: "ah"}


def flow_key_text(rec: FlowRecord) -> str:
    """A flow's 5-tuple as text: ``tcp 10.0.0.1:5000 > 10.0.0.2:443``."""
    proto = _PROTO.get(rec.proto, str(rec.proto))
    if rec.ip_version == 6:
        return f"{proto} [{rec.client}]:{rec.client_port} > [{rec.server}]:{rec.server_port}"
    return f"{proto} {rec.client}:{rec.client_port} > {rec.server}:{rec.server_port}"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact that supports (or weighs against) a verdict, in words a person can check."""

    code: str
    """Stable dotted code of the rule or feature (``wireguard.index_echo``)."""
    feature: str
    """What was looked at (``c2s_head[0]``, ``pkt_sizes``, ``model.p_benign``)."""
    observed: str
    """The value seen in this flow."""
    reference: str
    """The value or range the rule expects."""
    contribution: float
    """How much this fact moved the verdict (confidence points; negative weighs against)."""
    reason: str
    """A short sentence saying why this matters."""
    packet: int = -1
    """Index of the packet (in the flow) where the fact was seen; -1 when not one packet."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "code": self.code,
            "feature": self.feature,
            "observed": self.observed,
            "reference": self.reference,
            "contribution": round(self.contribution, 4),
            "reason": self.reason,
            "packet": self.packet,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a detector (or the combiner) concludes about one flow."""

    flow_id: int
    """The flow's id within its run."""
    flow_key: str
    """The flow's 5-tuple as text (see :func:`flow_key_text`)."""
    label: str
    """Class: one of :data:`CLASSES`."""
    family: str
    """Family within the class (``openvpn``, ``tor``, ``dns`` ...); empty when not known."""
    confidence: float
    """How sure the detector is of ``label`` and ``family`` (0–1)."""
    decided_at: int
    """Index of the packet of the flow at which the verdict could be made (-1: undecided)."""
    detector: str
    """Name of the detector (``fingerprint``, ``fet``, ``model``, ``combiner``)."""
    version: str
    """Version of the detector's rules or model."""
    score: float = 0.0
    """The detector's raw score (for rules: the confidence; for the model: P(not benign))."""
    threshold: float = 0.0
    """The score at or above which the detector calls a flow a finding."""
    model_digest: str = ""
    """Digest of the model that decided (empty for rules)."""
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)
    """The facts behind the verdict, strongest first."""
    service: str = ""
    """The catalogue service the flow belongs to (``nordvpn``, ``psiphon``); empty when none is known."""

    @property
    def is_finding(self) -> bool:
        """True when the class is one an operator acts on (vpn, proxy, circumvention, tunnel, crypto)."""
        return self.label in DETECTABLE_CLASSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``class`` for the label)."""
        return {
            "flow_id": self.flow_id,
            "flow_key": self.flow_key,
            "class": self.label,
            "family": self.family,
            "confidence": round(self.confidence, 4),
            "decided_at": self.decided_at,
            "detector": self.detector,
            "version": self.version,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "model_digest": self.model_digest,
            "evidence": [e.to_dict() for e in self.evidence],
            "service": self.service,
        }
