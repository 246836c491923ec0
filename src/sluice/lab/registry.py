"""The scenario registry, and the Debian packages the lab needs."""

from __future__ import annotations

__all__ = ["BASE_PACKAGES", "all_packages", "all_scenarios", "get_scenario", "parse_selection"]

from collections.abc import Sequence

from sluice.errors import ConfigError
from sluice.lab.scenario import Scenario
from sluice.lab.scenarios import SCENARIO_CLASSES

BASE_PACKAGES = ("iproute2", "iptables", "tcpdump", "ethtool", "iputils-ping", "curl", "openssl")
"""Packages every session needs (namespaces, capture, client)."""


def all_scenarios() -> dict[str, Scenario]:
    """Every registered scenario by name, in listing order."""
    return {cls.name: cls() for cls in SCENARIO_CLASSES}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises:
        ConfigError: no such scenario.
    """
    scenarios = all_scenarios()
    if name not in scenarios:
        raise ConfigError("scenario", f"unknown scenario {name!r} (known: {', '.join(scenarios)})")
    return scenarios[name]


def parse_selection(names: Sequence[str], *, quick: bool = False) -> list[tuple[Scenario, str | None]]:
    """Scenarios (and forced variants) from ``NAME`` or ``NAME:VARIANT`` words.

    No names means every scenario, or the quick subset when ``quick`` is set.

    Raises:
        ConfigError: an unknown scenario or variant.
    """
    if not names:
        return [(sc, None) for sc in all_scenarios().values() if sc.quick or not quick]
    out: list[tuple[Scenario, str | None]] = []
    for word in names:
        name, _, variant = word.partition(":")
        sc = get_scenario(name)
        if variant and variant not in sc.variants:
            raise ConfigError(
                "scenario", f"{name} has no variant {variant!r} (has: {', '.join(sc.variants)})"
            )
        out.append((sc, variant or None))
    return out


def all_packages() -> list[str]:
    """Every Debian package the lab can use (base packages first, then sorted)."""
    pkgs = {p for sc in all_scenarios().values() for p in sc.packages()}
    return list(BASE_PACKAGES) + sorted(pkgs - set(BASE_PACKAGES))
