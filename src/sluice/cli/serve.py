"""``sluice serve``: the console (web pages and HTTP API) over a register and a decision log.

Exit codes: 0 OK, 2 usage error (bad address, console extra missing, no register at the path
given), 3 the register or the console database cannot be opened.
"""

from __future__ import annotations

__all__ = ["serve"]

import os

import click

from sluice.cli._context import DEFAULT_REGISTER, register_option
from sluice.cli._exit import InputFailure, UsageFailure
from sluice.errors import ConfigError, SluiceError

EXIT_USAGE, EXIT_IO = 2, 3
ROLES = ("viewer", "reviewer", "admin")


def _bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r} is not ADDR:PORT", param_hint="--bind")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("serve")
@register_option(
    default=DEFAULT_REGISTER,
    help_text="The register: SQLite file or postgresql:// URL; it must exist (sluice registry init)"
    " [env: SLUICE_REGISTRY]. The console's users live there too.",
)
@click.option(
    "--log",
    "log_dir",
    default="decisions",
    show_default=True,
    help="Decision log directory, or a decisions store (sluice collect): its directory or postgresql:// URL.",
)
@click.option("--bind", default="127.0.0.1:8470", show_default=True, help="Address and port to listen on.")
@click.option(
    "--state",
    "state_dir",
    default=".sluice-console",
    show_default=True,
    help="Decision index and kept capture reports.",
)
@click.option(
    "--policy", "policy_file", default="", help="Policy file shown and dry-run (default: the shipped one)."
)
@click.option(
    "--console-db", default="", help="Keep users, sessions, tokens and audit in this database instead."
)
@click.option("--no-model", is_flag=True, help="Analyse captures with fingerprints and the FET only.")
@click.option("--secure-cookies", is_flag=True, help="Mark cookies Secure (when served behind HTTPS).")
@click.option(
    "--add-user", metavar="NAME", help="Add a user (password from SLUICE_PASSWORD or a prompt), then exit."
)
@click.option(
    "--set-password", metavar="NAME", help="Set a user's password (SLUICE_PASSWORD or a prompt), then exit."
)
@click.option(
    "--role", type=click.Choice(ROLES), default="viewer", show_default=True, help="Role of --add-user."
)
def serve(
    register_db: str,
    log_dir: str,
    bind: str,
    state_dir: str,
    policy_file: str,
    console_db: str,
    no_model: bool,
    secure_cookies: bool,
    add_user: str | None,
    set_password: str | None,
    role: str,
) -> None:
    """Start the console: web pages and the HTTP API (/api/v1, OpenAPI at /api/v1/openapi.json).

    The first admin: sluice serve --register DB --add-user NAME --role admin
    """
    host, port = _bind(bind)
    try:
        from sluice.console.auth import AuthError, Role
        from sluice.console.service import Console, ConsoleConfig
    except ImportError as exc:
        click.echo(
            f"sluice serve: error: the console needs its extra: pip install 'sluice[console]' ({exc})",
            err=True,
        )
        raise UsageFailure() from None
    cfg = ConsoleConfig(
        register=register_db,
        log_dir=log_dir,
        state_dir=state_dir,
        console_db=console_db,
        policy=policy_file,
        no_model=no_model,
        secure_cookies=secure_cookies,
    )
    try:
        console = Console(cfg)
    except SluiceError as exc:
        raise (UsageFailure if isinstance(exc, ConfigError) else InputFailure)(
            str(exc)
        ) from None  # no register: usage
    if add_user or set_password:
        name = add_user or set_password or ""
        password = os.environ.get("SLUICE_PASSWORD") or click.prompt(
            f"password for {name}", hide_input=True, confirmation_prompt=True
        )
        try:
            if add_user:
                console.users.create(name, Role(role), password)
                click.echo(f"user {name} ({role}) added")
            else:
                console.users.update(name, None, password=password)
                click.echo(f"password of {name} changed")
        except AuthError as exc:
            raise UsageFailure(f"{exc.detail} [{exc.reason}]") from None
        finally:
            console.close()
        return
    import uvicorn

    from sluice.console.app import create_app

    if console.users.count() == 0:
        click.echo(
            "no users yet: create the first admin with\n"
            f"  sluice serve --register {register_db} --add-user admin --role admin",
            err=True,
        )
    click.echo(
        f"sluice console on http://{host}:{port}/ (register {register_db}, decisions {log_dir})", err=True
    )
    app = create_app(cfg, console=console)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        console.close()
