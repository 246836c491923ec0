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
from sluice.cli.analyze import analyze
from sluice.cli.crypto import crypto
from sluice.cli.decisions import decisions
from sluice.cli.flows import flows_command
from sluice.cli.gateway import gateway
from sluice.cli.lab import lab
from sluice.cli.mirrors import mirrors
from sluice.cli.model import model
from sluice.cli.policy import policy
from sluice.cli.registry import registry
from sluice.cli.services import services

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sluice")
def cli() -> None:
    """sluice: traffic policy engine (register, recognition, explained decisions)."""


for _command in (flows_command, registry, lab, analyze, model, policy, decisions, gateway, services):
    cli.add_command(_command)
cli.add_command(mirrors)
cli.add_command(crypto)


def main() -> None:
    """Entry point of the ``sluice`` console script."""
    try:
        cli.main(prog_name="sluice", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
