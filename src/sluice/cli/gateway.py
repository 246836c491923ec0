"""``sluice gateway``: the inline gateway (NFQUEUE) on a Linux router.

``run`` installs the netfilter rules (idempotent), serves the queue until SIGTERM/SIGINT and
leaves the rules in place, so that when the process dies undecided traffic is accepted
(``--queue-bypass``, fail-open) or dropped (fail-closed); ``teardown`` removes them. SIGHUP reloads
the policy file and the register. Exit codes as in :mod:`sluice.cli.main` (2: configuration,
3: the register, the log or the queue cannot be opened).
"""

from __future__ import annotations

__all__ = ["gateway"]

import json
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from sluice.cli._detect import load_combiner, model_options
from sluice.errors import ConfigError, SluiceError
from sluice.gateway.rules import DEFAULT_CHAIN, DEFAULT_PACKETS, RuleSet, setup, teardown
from sluice.gateway.shaper import Shaping, remove_shaper

if TYPE_CHECKING:
    from sluice.policy.model import Policy
    from sluice.registry import Matcher

EXIT_USAGE, EXIT_IO = 2, 3


def _fail(msg: str, code: int) -> NoReturn:
    click.echo(f"sluice gateway: error: {msg}", err=True)
    sys.exit(code)


def _ruleset(queue: int, bypass: bool, packets: int, chain: str) -> RuleSet:
    try:
        return RuleSet(queue, bypass, packets, chain)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


_queue = click.option("--queue", type=int, default=0, show_default=True, help="NFQUEUE number.")
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
@_bypass
@_packets
@_chain
@_no6
def setup_command(queue: int, queue_bypass: bool, packets: int, chain: str, no_ipv6: bool) -> None:
    """Install (or update) the netfilter rules; running it again changes nothing."""
    try:
        setup(_ruleset(queue, queue_bypass, packets, chain), ipv6=not no_ipv6)
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
@click.option(
    "--policy", "policy_file", required=True, type=click.Path(dir_okay=False), help="Policy file (TOML)."
)
@click.option("--register", "register_db", help="Register (SQLite file or postgresql:// URL).")
@click.option(
    "--register-poll",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds between checks for a new register import (0: only on SIGHUP).",
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
def run_command(
    queue: int,
    policy_file: str,
    register_db: str | None,
    register_poll: float,
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
) -> None:
    """Decide the connections forwarded through this machine; stop with SIGTERM, reload with SIGHUP.

    A new import into the register is picked up within --register-poll seconds; SIGHUP re-reads
    the policy file and the register. Both load in the background and apply to new connections.
    Throttled connections are shaped on the egress of each --shape-dev (default, when the policy
    throttles: every interface that is up); the shaper stays when the gateway exits.
    """
    from sluice.features.flow import EARLY_PACKETS
    from sluice.gateway.engine import GatewayEngine, run_queue
    from sluice.gateway.reload import Reloader
    from sluice.policy import load_policy

    rs = _ruleset(queue, queue_bypass, packets, chain)
    if no_detect and (model_dir or no_model):
        raise click.UsageError("--no-detect excludes --model and --no-model")

    def load_matcher() -> Matcher:
        from sluice.registry import Matcher, open_store

        store = open_store(register_db or "")
        try:
            return Matcher.from_store(store)
        finally:
            store.close()

    def revision() -> int:
        from sluice.registry import open_store

        store = open_store(register_db or "")
        try:
            last = store.imports(limit=1)
            return last[0].import_id if last else 0
        finally:
            store.close()

    try:
        pol = load_policy(policy_file)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        _fail(f"cannot read {policy_file}: {exc.strerror}", EXIT_IO)
    matcher = None
    if register_db:
        try:
            matcher = load_matcher()
        except SluiceError as exc:
            _fail(f"cannot open the register: {exc}", EXIT_IO)
    detector = None if no_detect else load_combiner(model_dir, no_model, "sluice gateway", fet_veto)
    log = None
    if log_dir:
        from sluice.decisions.log import DecisionLog

        try:
            log = DecisionLog(log_dir, fsync=fsync)
        except ConfigError as exc:
            _fail(str(exc), EXIT_USAGE)
        except OSError as exc:
            _fail(f"cannot open the decision log {log_dir}: {exc.strerror}", EXIT_IO)
    engine = GatewayEngine(
        pol,
        matcher,
        log,
        detector=detector,
        decide_after=max(1, min(packets - 2, EARLY_PACKETS)),
        capture=f"nfqueue:{queue}",
    )
    if not no_setup:
        try:
            setup(rs, ipv6=not no_ipv6)
        except ConfigError as exc:
            _fail(str(exc), EXIT_USAGE)
    shaping = Shaping(shape_devs, report=lambda msg: click.echo(msg, err=True))
    try:
        shaping.apply(pol)  # without --shape-dev: every interface that is up, if the policy throttles
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)

    def say(msg: str) -> None:
        click.echo(msg, err=True)

    reloader = Reloader(
        lambda: load_policy(policy_file),
        load_matcher if register_db else None,
        revision if register_db and register_poll > 0 else None,
        poll_s=register_poll or 2.0,
        report=say,
    )

    def ready() -> None:
        mode = "fail-open" if queue_bypass else "fail-closed"
        detect = "off" if detector is None else ("layers 1-2" if detector.model is None else "layers 1-3")
        say(f"sluice gateway: ready on queue {queue} ({mode}), policy {pol.digest}, detectors {detect}")

    reloader.start()
    try:
        run_queue(
            engine,
            queue,
            on_ready=ready,
            on_hup=reloader.request,
            before_packet=lambda: reloader.apply(engine) and _reshape(shaping, engine.policy),
        )
    except ImportError:
        _fail("netfilterqueue is not installed (pip install 'sluice[gateway]')", EXIT_USAGE)
    except OSError as exc:
        _fail(f"cannot bind queue {queue}: {exc}", EXIT_IO)
    finally:
        reloader.stop()
        if log is not None:
            log.close()
    click.echo(json.dumps({"stats": engine.stats.to_dict(engine.anomalies)}), err=True)


def _reshape(shaping: Shaping, policy: Policy) -> bool:
    """Re-install the shaper after a reload, when the throttle classes changed."""
    try:
        return shaping.apply(policy)
    except ConfigError as exc:
        click.echo(f"sluice gateway: shaper not updated: {exc}", err=True)
        return False


if __name__ == "__main__":  # pragma: no cover - `python -m sluice.cli.gateway` until main attaches it
    gateway()
