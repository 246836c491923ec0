"""How a command ends when it does not succeed: exit codes, and the exceptions that carry them.

A command raises one of these; click handles every :class:`click.ClickException` in one place
(its ``main``, also under ``CliRunner``): :meth:`CommandFailed.show` prints the one line
``sluice <command>: error: <message>`` on stderr, and the process exits with the class's code.
:func:`sluice.cli.main.main` handles what a command did not expect (``EXIT_INTERNAL``).

=====  ======================================================================================
code   meaning
=====  ======================================================================================
0      done
1      done, and it found what ``--fail-on-findings`` asks about (or a lab run failed to verify)
2      usage: a bad option, value, policy, model, filter or a register that does not exist
3      input/output: a file that cannot be read or written, a damaged capture
70     internal error: a bug (``--debug`` prints its traceback)
130    interrupted
=====  ======================================================================================
"""

from __future__ import annotations

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_IO",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandFailed",
    "Findings",
    "InputFailure",
    "Interrupted",
    "UsageFailure",
    "failure_for",
]

from typing import IO, Any

import click

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_IO, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 70, 130


class CommandFailed(click.ClickException):
    """A command ends without success; ``message`` (may be empty: already said) is shown once."""

    exit_code = EXIT_IO

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.command = _command_path()

    def show(self, file: IO[Any] | None = None) -> None:
        if self.message:
            click.echo(f"{self.command}: error: {self.message}", err=True)


class UsageFailure(CommandFailed):
    """A bad option or value, or something named that does not exist: exit 2."""

    exit_code = EXIT_USAGE


class InputFailure(CommandFailed):
    """A file or capture that cannot be read or written: exit 3."""

    exit_code = EXIT_IO


class Findings(CommandFailed):
    """The command did its job and found what the caller asked to fail on: exit 1."""

    exit_code = EXIT_FINDINGS


class Interrupted(CommandFailed):
    """Stopped by the user: exit 130."""

    exit_code = EXIT_INTERRUPTED


_BY_CODE: dict[int, type[CommandFailed]] = {
    EXIT_FINDINGS: Findings,
    EXIT_USAGE: UsageFailure,
    EXIT_IO: InputFailure,
    EXIT_INTERRUPTED: Interrupted,
}


def failure_for(code: int, message: str = "") -> CommandFailed:
    """The exception that ends a command with ``code`` (one of the codes above; another code, as
    a service's own status, is kept as it is)."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    own: type[CommandFailed] = type("CommandFailed", (CommandFailed,), {"exit_code": code})
    return own(message)


def _command_path() -> str:
    """``sluice <group> <command>`` of the running command, whatever the root was called."""
    ctx = click.get_current_context(silent=True)
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["sluice", *reversed(names)])
