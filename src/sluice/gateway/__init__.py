"""The inline gateway: NFQUEUE enforcement of policy decisions on a Linux router.

* :mod:`~sluice.gateway.rules`: the iptables chain (setup and teardown, fail-open or fail-closed);
* :mod:`~sluice.gateway.engine`: the Decider's decisions (:mod:`sluice.decide`) as conntrack
  marks, and the queue loop;
* :mod:`~sluice.gateway.reload`: policy and register reloads off the packet path;
* :mod:`~sluice.gateway.service`: ``sluice gateway run`` as a service (what the CLI calls);
* :mod:`~sluice.gateway.workers`: several queue processes forked from one parent (``--workers``).

Operation, marks and failure modes are in ``docs/gateway-notes.md``.
"""

from __future__ import annotations

from sluice.gateway.engine import GatewayEngine, GatewayStats, QueueVerdict, mark_for, run_queue
from sluice.gateway.rules import (
    DEFAULT_CHAIN,
    DEFAULT_PACKETS,
    MARK_ALLOW,
    MARK_DROP,
    MARK_MASK,
    MARK_RESET,
    MARK_THROTTLE,
    RuleSet,
    is_installed,
    setup,
    teardown,
)

__all__ = [
    "DEFAULT_CHAIN",
    "DEFAULT_PACKETS",
    "MARK_ALLOW",
    "MARK_DROP",
    "MARK_MASK",
    "MARK_RESET",
    "MARK_THROTTLE",
    "GatewayEngine",
    "GatewayStats",
    "QueueVerdict",
    "RuleSet",
    "is_installed",
    "mark_for",
    "run_queue",
    "setup",
    "teardown",
]
