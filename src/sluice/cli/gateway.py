"""``sluice gateway``: the inline gateway (NFQUEUE) on a Linux router.

``run`` installs the netfilter rules (idempotent), serves the queue until SIGTERM/SIGINT and
leaves the rules in place, so that when the process dies undecided traffic is accepted
(``--queue-bypass``, fail-open) or dropped (fail-closed); ``teardown`` removes them. SIGHUP reloads
the policy file and the register. ``--workers N`` forks N processes, one queue each
(:mod:`sluice.gateway.workers`). The command parses options; :func:`sluice.gateway.service.run_gateway`
does the rest. Exit codes as in :mod:`sluice.cli.main` (2: configuration,
3: the register, the log or the queue cannot be opened, or a worker died).
"""

from __future__ import annotations

__all__ = ["gateway"]

import sys
from typing import TYPE_CHECKING, NoReturn

import click

from sluice.cli._context import REGISTER_GIVEN_KEY, register_option
from sluice.cli._detect import load_combiner, model_options
from sluice.cli._exit import EXIT_IO, EXIT_USAGE, failure_for
from sluice.errors import ConfigError
from sluice.gateway.rules import DEFAULT_CHAIN, DEFAULT_PACKETS, RuleSet, setup, teardown
from sluice.gateway.shaper import remove_shaper
from sluice.gateway.unit import DEFAULT_UNIT_DIR, DEFAULT_UNIT_NAME, STATE_DIR

if TYPE_CHECKING:
    from sluice.detect.combiner import Combiner


def _fail(msg: str, code: int) -> NoReturn:
    raise failure_for(code, msg)


def _ruleset(queue: int, bypass: bool, packets: int, chain: str, workers: int = 1) -> RuleSet:
    try:
        return RuleSet(queue, bypass, packets, chain, queues=workers)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


_queue = click.option("--queue", type=int, default=0, show_default=True, help="NFQUEUE number (the first).")
_workers = click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes, one queue each: queues Q..Q+N-1, balanced by the kernel (--queue-balance).",
)
_bypass = click.option(
    "--queue-bypass",
    is_flag=True,
    help="Fail-open: accept undecided packets while no gateway listens (default: fail-closed, drop).",
)
_packets = click.option(
    "--packets",
    type=int,
    default=DEFAULT_PACKETS,
    show_default=True,
    help="Packets of each connection (both directions) sent to userspace.",
)
_chain = click.option("--chain", default=DEFAULT_CHAIN, show_default=True, help="The gateway's chain.")
_no6 = click.option("--no-ipv6", is_flag=True, help="Leave ip6tables alone.")
_shape_dev = click.option(
    "--shape-dev",
    "shape_devs",
    multiple=True,
    metavar="DEV",
    help="Interface whose egress the throttle shaper runs on (repeatable).",
)


@click.group("gateway")
def gateway() -> None:
    """Inline enforcement: NFQUEUE, decisions in the conntrack mark (needs root)."""


@gateway.command("setup")
@_queue
@_workers
@_bypass
@_packets
@_chain
@_no6
def setup_command(
    queue: int, workers: int, queue_bypass: bool, packets: int, chain: str, no_ipv6: bool
) -> None:
    """Install (or update) the netfilter rules; running it again changes nothing."""
    try:
        setup(_ruleset(queue, queue_bypass, packets, chain, workers), ipv6=not no_ipv6)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


@gateway.command("teardown")
@_chain
@_no6
@_shape_dev
def teardown_command(chain: str, no_ipv6: bool, shape_devs: tuple[str, ...]) -> None:
    """Remove the netfilter rules and the shaper of each --shape-dev (nothing happens when absent)."""
    try:
        teardown(chain=chain, ipv6=not no_ipv6)
        remove_shaper(shape_devs)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


@gateway.command("run")
@_queue
@_workers
@click.option(
    "--policy", "policy_file", required=True, type=click.Path(dir_okay=False), help="Policy file (TOML)."
)
@register_option()
@click.option(
    "--allow-empty-register",
    is_flag=True,
    help="Start even when the register has no entries (by default refused: it would enforce nothing).",
)
@click.option(
    "--register-poll",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds between checks for a new register import (0: only on SIGHUP).",
)
@click.option(
    "--no-register-push",
    is_flag=True,
    help="With a postgresql:// register: do not LISTEN for imports (poll only).",
)
@click.option(
    "--register-snapshot",
    help="Load the register from a signed snapshot (file or http(s) URL) instead of --register; "
    "checked every --register-poll seconds, a snapshot that does not verify keeps the old one.",
)
@click.option(
    "--snapshot-key",
    type=click.Path(dir_okay=False),
    help="The snapshot publisher's Ed25519 public key (PEM).",
)
@click.option("--log", "log_dir", type=click.Path(file_okay=False), help="Decision log directory.")
@click.option("--fsync", default="always", show_default=True, help="Decision log fsync policy.")
@model_options
@click.option("--no-detect", is_flag=True, help="No detector verdicts (register and name rules only).")
@_bypass
@_packets
@_chain
@_no6
@click.option("--no-setup", is_flag=True, help="Do not install the netfilter rules (they are in place).")
@_shape_dev
@click.option(
    "--metrics",
    "metrics_addr",
    metavar="[ADDR:]PORT",
    help="Serve Prometheus /metrics and /healthz on this address (a bare PORT: 127.0.0.1 only; "
    "[::1]:PORT for IPv6; no authentication). Default: off.",
)
def run_command(
    queue: int,
    workers: int,
    policy_file: str,
    register_db: str | None,
    allow_empty_register: bool,
    register_poll: float,
    no_register_push: bool,
    register_snapshot: str | None,
    snapshot_key: str | None,
    log_dir: str | None,
    fsync: str,
    model_dir: str | None,
    no_model: bool,
    fet_veto: float | None,
    no_detect: bool,
    queue_bypass: bool,
    packets: int,
    chain: str,
    no_ipv6: bool,
    no_setup: bool,
    shape_devs: tuple[str, ...],
    metrics_addr: str | None,
) -> None:
    """Decide the connections forwarded through this machine; stop with SIGTERM, reload with SIGHUP.

    The ready line gives the register's entries by kind and its version (the last import, or the
    snapshot's); a register with no entries is refused unless --allow-empty-register.
    A new import into the register is picked up within --register-poll seconds; SIGHUP re-reads
    the policy file and the register. Both load in the background and apply to new connections.
    Throttled connections are shaped on the egress of each --shape-dev (default, when the policy
    throttles: every interface that is up); the shaper stays when the gateway exits. With
    --workers N, N processes serve queues Q..Q+N-1 and log to LOG/worker-I each. --metrics
    serves Prometheus metrics (decisions by action and class, latency, queue drops, register
    version and entries, reloads) and a health check, /healthz (200 when serving, 503 when not).
    """
    from sluice.gateway.metrics import parse_address
    from sluice.gateway.service import GatewayConfig, GatewayFailure, run_gateway

    rs = _ruleset(queue, queue_bypass, packets, chain, workers)
    if no_detect and (model_dir or no_model):
        raise click.UsageError("--no-detect excludes --model and --no-model")
    if register_snapshot:
        if click.get_current_context().meta.get(REGISTER_GIVEN_KEY) or not snapshot_key:
            raise click.UsageError("--register-snapshot needs --snapshot-key and excludes --register")
        register_db = None  # $SLUICE_REGISTRY names the register of other commands: the snapshot wins
    try:
        metrics = parse_address(metrics_addr) if metrics_addr is not None else None
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics") from None
    config = GatewayConfig(
        policy_file,
        rs,
        register=register_db or None,
        allow_empty_register=allow_empty_register,
        register_poll_s=register_poll,
        register_push=not no_register_push,
        register_snapshot=register_snapshot,
        snapshot_key=snapshot_key,
        log_dir=log_dir,
        fsync=fsync,
        ipv6=not no_ipv6,
        install_rules=not no_setup,
        shape_devs=shape_devs,
        metrics=metrics,
    )

    def load_detector() -> Combiner | None:
        return None if no_detect else load_combiner(model_dir, no_model, fet_veto)

    try:
        code = run_gateway(config, load_detector, lambda msg: click.echo(msg, err=True))
    except GatewayFailure as exc:
        _fail(exc.message, exc.exit_code)
    if code:
        raise failure_for(code)


@gateway.command(
    "install-service",
    context_settings={"ignore_unknown_options": True},
)
@click.option(
    "--policy", "policy_file", required=True, type=click.Path(dir_okay=False), help="Policy file (TOML)."
)
@register_option()
@click.option(
    "--fail-open/--fail-closed",
    default=False,
    show_default=True,
    help="Whether undecided traffic passes (open) or is dropped (closed) while no gateway runs; "
    "sets --queue-bypass and the restart policy.",
)
@click.option(
    "--log",
    "log_dir",
    default=f"{STATE_DIR}/decisions",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Decision log directory.",
)
@click.option(
    "--unit-dir",
    default=DEFAULT_UNIT_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the unit file goes.",
)
@click.option("--name", default=DEFAULT_UNIT_NAME, show_default=True, help="The unit's name.")
@click.option(
    "--exec",
    "executable",
    type=click.Path(dir_okay=False),
    help="The sluice program the unit runs (default: this installation's).",
)
@click.option("--dry-run", is_flag=True, help="Print the unit; write nothing.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def install_service_command(
    policy_file: str,
    register_db: str | None,
    fail_open: bool,
    log_dir: str,
    unit_dir: str,
    name: str,
    executable: str | None,
    dry_run: bool,
    run_args: tuple[str, ...],
) -> None:
    """Write a hardened systemd unit that runs `gateway run` (then: systemctl daemon-reload and
    systemctl enable --now NAME).

    RUN_ARGS (after --) are more `gateway run` options, e.g. -- --queue 3 --metrics 9108. The
    unit restarts a failed gateway: at once and forever when fail-closed (traffic stops while it
    is down), at most 5 times in 10 minutes when fail-open; never after a configuration error.
    """
    import os
    from pathlib import Path

    from sluice.gateway.unit import ServiceSpec, install_unit, render_unit

    exe = executable or str(Path(sys.executable).with_name("sluice"))
    for what, file in (("policy", policy_file), ("program", exe)):
        if not os.path.isfile(file):
            _fail(f"{what} {file} not found", EXIT_IO)
    register = register_db
    if register and "://" not in register:
        if not os.path.isfile(register):
            _fail(
                f"no register at {register} (create one with sluice registry init --register {register},"
                f" or sluice registry import --register {register} FILE) [registry.no_register]",
                EXIT_USAGE,
            )
        register = os.path.abspath(register)
    try:
        spec = ServiceSpec(
            os.path.abspath(exe),
            os.path.abspath(policy_file),
            register,
            fail_open=fail_open,
            log_dir=os.path.abspath(log_dir),
            extra_args=tuple(a for a in run_args if a != "--"),
            name=name,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if dry_run:
        click.echo(render_unit(spec), nl=False)
        return
    try:
        path = install_unit(spec, unit_dir)
    except OSError as exc:
        _fail(f"cannot write the unit into {unit_dir}: {exc.strerror}", EXIT_IO)
    click.echo(f"wrote {path}; now: systemctl daemon-reload && systemctl enable --now {spec.name}")


if __name__ == "__main__":  # pragma: no cover - `python -m sluice.cli.gateway` until main attaches it
    gateway()
