"""What the ``sluice registry`` command modules share: how a :class:`RegistryError` fails (its
exit code), and the ``--register`` option of a subcommand.

Exit codes: 1 findings, 2 usage or configuration error (the reasons in :data:`USAGE_REASONS`),
3 I/O error (every other reason).
"""

from __future__ import annotations

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_IO",
    "EXIT_USAGE",
    "USAGE_REASONS",
    "fail",
    "register_made_opt",
    "register_opt",
    "registry_errors",
]

import contextlib
import json
from collections.abc import Iterator
from typing import NoReturn

import click

from sluice.cli._context import DEFAULT_REGISTER, register_option
from sluice.cli._exit import failure_for
from sluice.registry.model import RegistryError

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_IO = 3
USAGE_REASONS = frozenset(
    {
        "registry.bad_format",
        "registry.no_input",
        "registry.bad_export_target",
        "registry.bad_export_option",
        "registry.bad_indicator",
        "registry.bad_state",
        "registry.bad_proposal",
        "registry.no_proposal",
        "registry.no_register",
        "registry.no_source",
        "registry.bad_source",
        "registry.unknown_source",
        "registry.source_exists",
        "registry.bad_url",
        "registry.bad_interval",
    }
)
"""Reasons that are the user's to fix (exit 2); any other :class:`RegistryError` exits 3."""


@contextlib.contextmanager
def registry_errors(as_json: bool) -> Iterator[None]:
    """A :class:`RegistryError` raised inside fails the command (:func:`fail`)."""
    try:
        yield
    except RegistryError as exc:
        fail(exc, as_json)


def fail(exc: RegistryError, as_json: bool) -> NoReturn:
    """Print the error as JSON when asked, and raise the failure of its exit code."""
    code = EXIT_USAGE if exc.reason in USAGE_REASONS else EXIT_IO
    if as_json:
        click.echo(
            json.dumps({"error": exc.reason, "detail": exc.detail, "path": exc.path}, ensure_ascii=False)
        )
    raise failure_for(code, f"{exc} [{exc.reason}]")


register_opt = register_option(param=None, default=DEFAULT_REGISTER)
"""``--register`` on a subcommand (kept in ``ctx.meta`` for :func:`~sluice.cli._context.registry_db`)."""
register_made_opt = register_option(
    param=None,
    default=DEFAULT_REGISTER,
    help_text="The register: a SQLite file or a postgresql:// URL [env: SLUICE_REGISTRY];"
    " created when absent.",
)
"""``--register`` of the two commands that create one (``init``, ``import``)."""
