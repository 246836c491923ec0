"""The ``sluice`` command.

Exit codes (every command):

====  ==========================================================
0     success
1     findings, when asked to fail on them (``--fail-on-findings``)
2     usage or configuration error (bad option, unknown format)
3     input/output error (missing file, unreadable capture, interface)
70    internal error: a bug in sluice (``EX_SOFTWARE``); a one-line message, and the
      traceback with ``sluice --debug`` or ``SLUICE_DEBUG=1``
====  ==========================================================

The mapping lives here, in :func:`main`, once: a :class:`~sluice.errors.ConfigError` that no
command handled exits 2, a :class:`~sluice.errors.CaptureError` or :class:`OSError` exits 3, and
any other exception is an internal error - so ``--fail-on-findings`` never mistakes a crash for
a finding.
"""

from __future__ import annotations

__all__ = ["main"]

import os
import sys
import traceback

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
from sluice.cli.serve import serve
from sluice.cli.services import services
from sluice.errors import CaptureError, ConfigError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3
EXIT_INTERNAL = 70
"""An unexpected exception: a bug (``EX_SOFTWARE`` of sysexits.h)."""
DEBUG_ENV = "SLUICE_DEBUG"
"""Set (to anything but ``0`` or empty) to print internal errors' tracebacks."""
_debug = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sluice")
@click.option("--debug", is_flag=True, help=f"Print the traceback of an internal error (or {DEBUG_ENV}=1).")
def cli(debug: bool) -> None:
    """sluice: traffic policy engine (register, recognition, explained decisions)."""
    global _debug
    _debug = debug


for _command in (flows_command, registry, lab, analyze, model, policy, decisions, gateway, services):
    cli.add_command(_command)
cli.add_command(mirrors)
cli.add_command(crypto)
cli.add_command(serve)


def main() -> None:
    """Entry point of the ``sluice`` console script."""
    try:
        cli.main(prog_name="sluice", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except ConfigError as exc:
        click.echo(f"sluice: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except CaptureError as exc:
        click.echo(f"sluice: error: {exc} [{exc.reason}]", err=True)
        sys.exit(EXIT_IO)
    except OSError as exc:
        click.echo(f"sluice: error: {exc}", err=True)
        sys.exit(EXIT_IO)
    except Exception as exc:
        sys.exit(_internal_error(exc))


def _internal_error(exc: BaseException) -> int:
    """Report a bug: one line, the traceback only when asked for."""
    if _debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(
        f"sluice: internal error (a bug in sluice): {type(exc).__name__}: {exc}\n"
        f"  rerun with --debug or {DEBUG_ENV}=1 for the traceback; exit code {EXIT_INTERNAL}",
        err=True,
    )
    return EXIT_INTERNAL
