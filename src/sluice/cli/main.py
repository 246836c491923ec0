"""The ``sluice`` command.

Exit codes (every command):

====  ==========================================================
0     success
1     findings, when asked to fail on them (``--fail-on-findings``)
2     usage or configuration error (bad option, unknown format)
3     input/output error (missing file, unreadable capture, interface)
====  ==========================================================
"""

from __future__ import annotations

__all__ = ["main"]

import sys

import click

from sluice import __version__
from sluice.cli.flows import flows_command

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sluice")
def cli() -> None:
    """sluice: traffic policy engine (register, recognition, explained decisions)."""


cli.add_command(flows_command)


def _attach_groups() -> None:
    """Attach the command groups of other parts (imported here to keep start-up light)."""
    import importlib

    for module, name in (
        ("sluice.cli.registry", "registry"),
        ("sluice.cli.lab", "lab"),
        ("sluice.cli.analyze", "analyze"),
        ("sluice.cli.model", "model"),
        ("sluice.cli.policy", "policy"),
        ("sluice.cli.decisions", "decisions"),
        ("sluice.cli.gateway", "gateway"),
    ):
        try:
            group = getattr(importlib.import_module(module), name)
        except ImportError:  # pragma: no cover - part not installed in this build
            continue
        cli.add_command(group)


_attach_groups()


def main() -> None:
    """Entry point of the ``sluice`` console script."""
    try:
        cli.main(prog_name="sluice", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
