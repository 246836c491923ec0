"""What a command group hands its subcommands through click's shared ``Context.meta``."""

from __future__ import annotations

__all__ = ["REGISTRY_DB_KEY", "registry_db"]

import click

REGISTRY_DB_KEY = "sluice.registry.db"
"""``sluice registry --db``: the register store every ``registry`` subcommand opens."""


def registry_db(ctx: click.Context) -> str:
    """The register store given to the ``registry`` group."""
    return str(ctx.meta[REGISTRY_DB_KEY])
