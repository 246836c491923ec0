"""The register option every command shares, and what a group hands its subcommands.

One vocabulary: the register is ``--register`` (a SQLite file or a ``postgresql://`` URL), or
``$SLUICE_REGISTRY``, on every command that reads or writes one, given after the subcommand
(``sluice registry check --register x.db NAME``).  ``--db`` and ``$SLUICE_REGISTRY_DB`` (the
old names) still work, and say once on stderr that they are deprecated.

Which value counts, first found: the command's ``--register``, its ``--db``, the group's
(``sluice registry --register x.db check``), ``$SLUICE_REGISTRY``, ``$SLUICE_REGISTRY_DB``, the
command's default.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_REGISTER",
    "REGISTER_ENV",
    "REGISTER_GIVEN_KEY",
    "REGISTRY_DB_KEY",
    "register_option",
    "registry_db",
    "resolve_register",
    "store_group_register",
]

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

REGISTER_ENV = "SLUICE_REGISTRY"
"""The environment variable naming the register."""
OLD_REGISTER_ENV = "SLUICE_REGISTRY_DB"
"""Deprecated name of :data:`REGISTER_ENV` (still read)."""
DEFAULT_REGISTER = "sluice-registry.db"
"""The ``registry`` commands' register when none is named (never created by a reader)."""
REGISTRY_DB_KEY = "sluice.registry.db"
"""``Context.meta`` key of the register a ``registry`` subcommand resolved."""
_GROUP_KEY = "sluice.registry.group"
"""``Context.meta`` key of the register given to the group (before the subcommand)."""
REGISTER_GIVEN_KEY = "sluice.registry.given"
"""``Context.meta`` key: the register came from ``--register`` (this command's or its group's),
not from ``$SLUICE_REGISTRY`` or the default."""
_warned: set[str] = set()

F = TypeVar("F", bound=Callable[..., Any])

REGISTER_HELP = (
    f"The register: a SQLite file or a postgresql:// URL [env: {REGISTER_ENV}]."
    " It must exist (sluice registry init or import create one)."
)


def _deprecated(old: str, new: str) -> None:
    """Say once per process that ``old`` is deprecated."""
    if old in _warned:
        return
    _warned.add(old)
    click.echo(f"sluice: {old} is deprecated, use {new} (it still works)", err=True)


def resolve_register(
    ctx: click.Context | None, given: str | None, old: str | None, default: str | None
) -> str | None:
    """The register a command was given (see the module's order), or ``default``."""
    if given:
        return given
    if old:
        _deprecated("--db", "--register")
        return old
    group = ctx.meta.get(_GROUP_KEY) if ctx is not None else None
    if group:
        return str(group)
    env = os.environ.get(REGISTER_ENV, "")
    if env:
        return env
    env_old = os.environ.get(OLD_REGISTER_ENV, "")
    if env_old:
        _deprecated(f"${OLD_REGISTER_ENV}", f"${REGISTER_ENV}")
        return env_old
    return default


def store_group_register(ctx: click.Context, given: str | None, old: str | None) -> None:
    """Keep the register given to a group (``sluice registry --register x``) for its subcommands."""
    if old and not given:
        _deprecated("--db", "--register")
    if given or old:
        ctx.meta[_GROUP_KEY] = given or old


def register_option(
    *,
    param: str | None = "register_db",
    default: str | None = None,
    required: bool = False,
    help_text: str = REGISTER_HELP,
) -> Callable[[F], F]:
    """Add ``--register`` (and the hidden, deprecated ``--db``) to a command.

    Args:
        param: the keyword the command receives the resolved register as; None: it is kept
            in ``ctx.meta`` for :func:`registry_db` instead.
        default: the register when none is given (None: no register).
        required: fail with a usage error when none is given.
        help_text: the option's help.
    """

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            given, old = kwargs.pop("register_given"), kwargs.pop("db_given")
            value = resolve_register(ctx, given, old, default)
            ctx.meta[REGISTER_GIVEN_KEY] = bool(given or old or ctx.meta.get(_GROUP_KEY))
            if value is None and required:
                raise click.UsageError(f"give the register: --register PATH|URL (or ${REGISTER_ENV})")
            if param is None:
                ctx.meta[REGISTRY_DB_KEY] = value
            else:
                kwargs[param] = value
            return f(*args, **kwargs)

        shown = f"{help_text} [default: {default}]" if default else help_text
        run = click.option("--db", "db_given", default=None, hidden=True, help="Deprecated: --register.")(run)
        run = click.option("--register", "register_given", default=None, metavar="PATH|URL", help=shown)(run)
        return run  # type: ignore[return-value]

    return decorate


def registry_db(ctx: click.Context) -> str:
    """The register a ``registry`` subcommand resolved (see :func:`register_option`)."""
    value = ctx.meta.get(REGISTRY_DB_KEY)
    if value is None:
        value = resolve_register(ctx, None, None, DEFAULT_REGISTER)
    return str(value)
