"""``sluice gateway``: the inline gateway (NFQUEUE) on a Linux router.

``run`` installs the netfilter rules (idempotent), serves the queue until SIGTERM/SIGINT and
leaves the rules in place, so that when the process dies undecided traffic is accepted
(``--queue-bypass``, fail-open) or dropped (fail-closed); ``teardown`` removes them. SIGHUP reloads
the policy file and the register. ``--workers N`` forks N processes, one queue each
(:mod:`sluice.gateway.workers`). Exit codes as in :mod:`sluice.cli.main` (2: configuration,
3: the register, the log or the queue cannot be opened, or a worker died).
"""

from __future__ import annotations

__all__ = ["gateway"]

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sluice.cli._detect import load_combiner, model_options
from sluice.errors import ConfigError, SluiceError
from sluice.gateway.rules import DEFAULT_CHAIN, DEFAULT_PACKETS, RuleSet, setup, teardown
from sluice.gateway.shaper import Shaping, remove_shaper

if TYPE_CHECKING:
    from sluice.decisions.log import DecisionLog
    from sluice.policy.model import Policy
    from sluice.registry import Matcher

EXIT_USAGE, EXIT_IO = 2, 3


def _fail(msg: str, code: int) -> NoReturn:
    click.echo(f"sluice gateway: error: {msg}", err=True)
    sys.exit(code)


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
    workers: int,
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
    throttles: every interface that is up); the shaper stays when the gateway exits. With
    --workers N, N processes serve queues Q..Q+N-1 and log to LOG/worker-I each.
    """
    from sluice.features.flow import EARLY_PACKETS
    from sluice.gateway.engine import GatewayEngine, run_queue, warm_up
    from sluice.gateway.reload import Reloader
    from sluice.policy import load_policy

    rs = _ruleset(queue, queue_bypass, packets, chain, workers)
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
    warm_up(pol, matcher, detector)  # the first client must not wait for kernels and model to load
    log = _open_log(log_dir, fsync) if log_dir and workers == 1 else None
    if log_dir and workers > 1:
        _fsync_policy(fsync)  # refused here, not in every worker
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

    def serve(index: int, ready: Callable[[], None]) -> dict[str, Any]:
        """Serve queue ``queue + index`` until SIGTERM (in this process, or in a worker)."""
        from sluice.decisions.log import worker_dir

        q = queue + index
        wlog = log if workers == 1 or not log_dir else _open_log(str(worker_dir(log_dir, index)), fsync)
        engine = GatewayEngine(
            pol,
            matcher,
            wlog,
            detector=detector,
            decide_after=max(1, min(packets - 2, EARLY_PACKETS)),
            capture=f"nfqueue:{q}",
        )
        tag = "sluice gateway: " if workers == 1 else f"sluice gateway: worker {index}: "
        reloader = Reloader(
            lambda: load_policy(policy_file),
            load_matcher if register_db else None,
            revision if register_db and register_poll > 0 else None,
            poll_s=register_poll or 2.0,
            report=lambda msg: say(msg.replace("sluice gateway: ", tag, 1)),
        )
        reloader.start()
        cpu0 = [0.0]

        def bound() -> None:
            cpu0[0] = time.process_time()
            ready()

        try:
            run_queue(
                engine,
                q,
                on_ready=bound,
                on_hup=reloader.request,
                # one worker re-installs the shaper itself; with several, the parent does
                before_packet=lambda: (
                    reloader.apply(engine) and workers == 1 and _reshape(shaping, engine.policy)
                ),
            )
        except ImportError:
            _fail("netfilterqueue is not installed (pip install 'sluice[gateway]')", EXIT_USAGE)
        except OSError as exc:
            _fail(f"cannot bind queue {q}: {exc}", EXIT_IO)
        finally:
            reloader.stop()
            if wlog is not None:
                wlog.close()
        stats = engine.stats.to_dict(engine.anomalies)
        stats["cpu_seconds"] = round(time.process_time() - cpu0[0], 3)  # this process, while serving
        return stats

    mode = "fail-open" if queue_bypass else "fail-closed"
    detect = "off" if detector is None else ("layers 1-2" if detector.model is None else "layers 1-3")
    if workers == 1:

        def ready() -> None:
            say(f"sluice gateway: ready on queue {queue} ({mode}), policy {pol.digest}, detectors {detect}")

        click.echo(json.dumps({"stats": serve(0, ready)}), err=True)
        return
    _run_workers(
        workers,
        serve,
        shaping,
        policy_file,
        say,
        queue,
        f"({mode}, {workers} workers), policy {pol.digest}, detectors {detect}",
    )


def _run_workers(
    workers: int,
    serve: Callable[[int, Callable[[], None]], dict[str, Any]],
    shaping: Shaping,
    policy_file: str,
    say: Callable[[str], None],
    queue: int,
    what: str,
) -> None:
    """Fork the workers, supervise them, print their summed counters; exit non-zero if one died."""
    from sluice.gateway.workers import sum_stats, supervise
    from sluice.policy import load_policy

    def reshape() -> None:  # after SIGHUP: the workers reload the policy, the parent the shaper
        try:
            _reshape(shaping, load_policy(policy_file))
        except (ConfigError, OSError) as exc:
            say(f"sluice gateway: shaper not updated: {exc}")

    last = queue + workers - 1
    code, reports = supervise(
        workers,
        serve,
        on_ready=lambda: say(f"sluice gateway: ready on queues {queue}-{last} {what}"),
        on_hup=reshape,
        report=say,
        describe=lambda i: f"worker {i} (queue {queue + i})",
    )
    parts = [r.stats for r in reports if r.stats is not None]
    per_worker = [
        {"worker": r.index, "queue": queue + r.index, "exit_code": r.exit_code, **(r.stats or {})}
        for r in reports
    ]
    say(json.dumps({"stats": sum_stats(parts), "workers": per_worker}))
    if code:
        sys.exit(code)


def _fsync_policy(fsync: str) -> None:
    from sluice.decisions.log import FsyncPolicy

    try:
        FsyncPolicy.parse(fsync)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _open_log(log_dir: str, fsync: str) -> DecisionLog:
    from sluice.decisions.log import DecisionLog

    try:
        return DecisionLog(log_dir, fsync=fsync)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        _fail(f"cannot open the decision log {log_dir}: {exc.strerror}", EXIT_IO)


def _reshape(shaping: Shaping, policy: Policy) -> bool:
    """Re-install the shaper after a reload, when the throttle classes changed."""
    try:
        return shaping.apply(policy)
    except ConfigError as exc:
        click.echo(f"sluice gateway: shaper not updated: {exc}", err=True)
        return False


if __name__ == "__main__":  # pragma: no cover - `python -m sluice.cli.gateway` until main attaches it
    gateway()
