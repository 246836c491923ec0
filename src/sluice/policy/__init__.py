"""Policy: ordered rules turn verdicts and register matches into decisions.

* :mod:`~sluice.policy.model`: actions, modes, rules, :class:`Policy` and :class:`Decision`;
* :mod:`~sluice.policy.loader`: TOML policy files, checked with line numbers;
* :mod:`~sluice.policy.replay`: the records of dry runs (``sluice policy test``), which
  :func:`sluice.decide.replay_captures` makes.

The file format, the matching semantics and the default policy are in ``docs/policy-notes.md``.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from sluice.policy.loader import PolicyError, PolicyIssue, check_policy, load_policy, parse_policy
from sluice.policy.model import (
    DEFAULT_RULE,
    Action,
    Decision,
    DefaultRule,
    Mode,
    Policy,
    RegisterRef,
    Rule,
)

if TYPE_CHECKING:
    from sluice.policy.replay import FlowOutcome, ReplayResult, RuleCount

_LAZY = ("FlowOutcome", "ReplayResult", "RuleCount")

__all__ = [
    "DEFAULT_RULE",
    "Action",
    "Decision",
    "DefaultRule",
    "FlowOutcome",
    "Mode",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "RegisterRef",
    "ReplayResult",
    "Rule",
    "RuleCount",
    "check_policy",
    "default_policy",
    "default_policy_text",
    "load_policy",
    "parse_policy",
]


def default_policy_text() -> str:
    """The TOML text of the policy sluice ships (``sluice/policy/default.toml``)."""
    return resources.files("sluice.policy").joinpath("default.toml").read_text(encoding="utf-8")


def default_policy() -> Policy:
    """The shipped policy: block what the register names, log what detectors find, allow the rest."""
    return parse_policy(default_policy_text(), "<default>")


def __getattr__(name: str) -> Any:
    """The replay records, imported on first use."""
    if name in _LAZY:
        from sluice.policy import replay

        return getattr(replay, name)
    raise AttributeError(f"module 'sluice.policy' has no attribute {name!r}")
