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

__all__ = ["COMMANDS", "EXTRAS", "main"]

import importlib
import os
import sys

import click

from sluice import __version__
from sluice.cli._exit import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_IO, EXIT_USAGE
from sluice.errors import CaptureError, ConfigError

DEBUG_ENV = "SLUICE_DEBUG"
"""Set (to anything but ``0`` or empty) to print internal errors' tracebacks."""
_debug = False


COMMANDS: dict[str, tuple[str, str, str]] = {
    "analyze": (
        "sluice.cli.analyze",
        "analyze",
        "Judge every flow of CAPTURE files: class, family, confidence, evidence, register matches.",
    ),
    "collect": (
        "sluice.cli.collect",
        "collect",
        "Consume the decision stream - decisions and flow summaries - into the decisions store, each"
        " record once.",
    ),
    "crypto": ("sluice.cli.crypto", "crypto", "Crypto assets: wallet addresses and crypto content in text."),
    "decisions": (
        "sluice.cli.decisions",
        "decisions",
        "Print the decisions of a log, oldest first, with counts by rule and action.",
    ),
    "flows": (
        "sluice.cli.flows",
        "flows_command",
        "Print one row per flow of CAPTURE files (pcap, pcapng, optionally .gz) or an interface.",
    ),
    "gateway": (
        "sluice.cli.gateway",
        "gateway",
        "Inline enforcement: NFQUEUE, decisions in the conntrack mark (needs root).",
    ),
    "lab": ("sluice.cli.lab", "lab", "Real VPN, proxy, tunnel and ordinary traffic, captured and labeled."),
    "mirrors": (
        "sluice.cli.mirrors",
        "mirrors",
        "Mirror discovery: copies of blocked sites by name, design, content and function.",
    ),
    "model": ("sluice.cli.model", "model", "Train, evaluate and describe the early-flow model."),
    "policy": ("sluice.cli.policy", "policy", "Check policy files and try them on captures (dry runs)."),
    "publish": (
        "sluice.cli.collect",
        "publish",
        "Publish a decision log - or flow summaries (--flows) - to NATS JetStream, at least once, each"
        " record under a fixed key (producer, file, line offset).",
    ),
    "registry": (
        "sluice.cli.registry",
        "registry",
        "The register of blocked resources: import lists, check, audit, export.",
    ),
    "serve": (
        "sluice.cli.serve",
        "serve",
        "Start the console: web pages and the HTTP API (/api/v1, OpenAPI at /api/v1/openapi.json).",
    ),
    "services": (
        "sluice.cli.services",
        "services",
        "The catalogue of VPN, proxy and circumvention services, and of shared infrastructure.",
    ),
}
"""Every command: name -> (module, attribute, one-line help for ``sluice --help``).

A command's module is imported only when the command runs (or its own ``--help`` is asked for):
the modules behind ``analyze`` or ``model`` pull numba, LightGBM and pyarrow, which ``sluice
--help`` and ``sluice registry check`` must not wait for. The one-line help is kept here for the
same reason; ``tests/cli/test_startup.py`` checks it against each command's own.
"""


EXTRAS = {
    "pyarrow": "parquet",
    "pandas": "pandas",
    "netfilterqueue": "gateway",
    "prometheus_client": "gateway",
    "psycopg": "postgres",
    "dask": "cluster",
    "distributed": "cluster",
    "nats": "cluster",
    "fastapi": "console",
    "uvicorn": "console",
    "jinja2": "console",
    "matplotlib": "report",
    "ahocorasick": "mirrors",
    "httpx": "mirrors",
}
"""Optional libraries by import name -> the extra that installs them: a command that needs one
that is missing says which extra to install (exit 2) instead of failing as a bug."""


class _LazyGroup(click.Group):
    """A group whose commands are imported when used (see :data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, attr, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):  # pragma: no cover - a wrong COMMANDS entry
            raise TypeError(f"{module}.{attr} is not a click command")
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][2])
            text = command.get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sluice")
@click.option("--debug", is_flag=True, help=f"Print the traceback of an internal error (or {DEBUG_ENV}=1).")
def cli(debug: bool) -> None:
    """sluice: traffic policy engine (register, recognition, explained decisions)."""
    global _debug
    _debug = debug


def main() -> None:
    """Entry point of the ``sluice`` console script."""
    from sluice.cli._compile_notice import install

    install()  # a cold numba cache: say why the first run is slow
    try:
        cli.main(prog_name="sluice", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ConfigError as exc:
        click.echo(f"sluice: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except CaptureError as exc:
        click.echo(f"sluice: error: {exc} [{exc.reason}]", err=True)
        sys.exit(EXIT_IO)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS:
            sys.exit(_internal_error(exc))
        click.echo(
            f"sluice: error: this needs {top}, which is not installed: pip install 'sluice[{EXTRAS[top]}]'",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        click.echo(f"sluice: error: {exc}", err=True)
        sys.exit(EXIT_IO)
    except Exception as exc:
        sys.exit(_internal_error(exc))


def _internal_error(exc: BaseException) -> int:
    """Report a bug: one line, the traceback only when asked for."""
    if _debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        import traceback  # here: importing it costs every command a share of its start

        traceback.print_exception(exc, file=sys.stderr)
    click.echo(
        f"sluice: internal error (a bug in sluice): {type(exc).__name__}: {exc}\n"
        f"  rerun with --debug or {DEBUG_ENV}=1 for the traceback; exit code {EXIT_INTERNAL}",
        err=True,
    )
    return EXIT_INTERNAL
