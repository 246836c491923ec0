"""Synthetic traffic: packet encoders, session builders, real application payloads, mixes.

Used for golden-test fixtures, reader tests, the bundled demo capture and the benchmark capture.
Every generated flow comes with its ground truth (:class:`FlowTruth`) so tests can compare what
sluice's dissectors recover against what was sent.
"""

from __future__ import annotations

from sluice.synth.payloads import PayloadPool
from sluice.synth.scenario import DEFAULT_MIX, Scenario, generate
from sluice.synth.sessions import (
    EthernetFraming,
    Frame,
    Framing,
    LinuxSllFraming,
    NullFraming,
    RawIpFraming,
    TcpSession,
    TunnelFraming,
    UdpExchange,
)
from sluice.synth.truth import FlowTruth, GroundTruth

__all__ = [
    "DEFAULT_MIX",
    "EthernetFraming",
    "FlowTruth",
    "Frame",
    "Framing",
    "GroundTruth",
    "LinuxSllFraming",
    "NullFraming",
    "PayloadPool",
    "RawIpFraming",
    "Scenario",
    "TcpSession",
    "TunnelFraming",
    "UdpExchange",
    "generate",
]
