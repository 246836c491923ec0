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

from typing import TYPE_CHECKING, Any

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

_ENGINE = frozenset({"GatewayEngine", "GatewayStats", "QueueVerdict", "mark_for", "run_queue"})

if TYPE_CHECKING:
    from sluice.gateway.engine import GatewayEngine, GatewayStats, QueueVerdict, mark_for, run_queue


def __getattr__(name: str) -> Any:
    """The engine's names load with the engine (the detectors, the Decider) on first use, so
    ``sluice gateway --help`` and the rules alone stay light."""
    if name in _ENGINE:
        from sluice.gateway import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
