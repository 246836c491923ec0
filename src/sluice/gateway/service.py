"""``sluice gateway run`` as a service: policy, register, detectors, log, rules, shaper, queues.

Theory of operation: :func:`run_gateway` does what the command does once its options are parsed
(:class:`GatewayConfig`): it reads the policy and the register (the register's entries and the
proposals under review, one :class:`~sluice.decide.register.RegisterLookup`), warms the engine
up, installs the netfilter rules and the throttle shaper, then serves the queue in this process
or forks ``workers`` processes (:mod:`sluice.gateway.workers`). Each serving process has its
engine (:class:`~sluice.gateway.engine.GatewayEngine`), its decision log and its
:class:`~sluice.gateway.reload.Reloader` thread; SIGHUP reloads, SIGTERM stops. What cannot be
set up raises :class:`GatewayFailure` with the exit code the CLI uses (2: configuration,
3: the register, the log or the queue cannot be opened); inside a serving process it is reported
and ends the process with that code.
"""

from __future__ import annotations

__all__ = ["EXIT_IO", "EXIT_USAGE", "GatewayConfig", "GatewayFailure", "run_gateway"]

import json
import os
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.errors import ConfigError, SluiceError
from sluice.gateway.rules import RuleSet, setup
from sluice.gateway.shaper import Shaping
from sluice.gateway.unit import sd_notify

if TYPE_CHECKING:
    from sluice.decide.register import RegisterLookup
    from sluice.decisions.log import DecisionLog
    from sluice.detect.combiner import Combiner
    from sluice.gateway.metrics import GatewayMonitor, MetricsServer, SnapshotPusher
    from sluice.gateway.workers import WorkerReport
    from sluice.policy.model import Policy

EXIT_USAGE, EXIT_IO = 2, 3


class GatewayFailure(SluiceError):
    """The gateway cannot start or serve; ``exit_code`` says why (2 configuration, 3 I/O)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What ``sluice gateway run`` was asked to do."""

    policy_file: str
    """The policy file (TOML)."""
    rules: RuleSet
    """The netfilter rules (first queue, queues, packets queued, chain, fail-open or not)."""
    register: str | None = None
    """The register (SQLite file or ``postgresql://`` URL); None: none."""
    register_poll_s: float = 2.0
    """Seconds between checks for a new register import (0: only on SIGHUP, or a notification)."""
    register_push: bool = True
    """With a ``postgresql://`` register: ``LISTEN`` for imports and reload at once (polling stays)."""
    register_snapshot: str | None = None
    """A signed register snapshot (file or ``http(s)://`` URL) instead of ``register``."""
    snapshot_key: str | None = None
    """The snapshot publisher's Ed25519 public key (PEM); required with ``register_snapshot``."""
    log_dir: str | None = None
    """Decision log directory (one per worker below it with several workers)."""
    fsync: str = "always"
    """The decision log's fsync policy."""
    ipv6: bool = True
    """Install the ip6tables rules too."""
    install_rules: bool = True
    """Install the netfilter rules (False: they are in place)."""
    shape_devs: tuple[str, ...] = ()
    """Interfaces the throttle shaper runs on (empty: every interface that is up)."""
    allow_empty_register: bool = False
    """Start with a register that has no entries (refused otherwise: it would enforce nothing)."""
    metrics: tuple[str, int] | None = None
    """Serve ``/metrics`` and ``/healthz`` on this (host, port) (None: off); see
    :mod:`sluice.gateway.metrics`."""

    @property
    def workers(self) -> int:
        """Worker processes (one queue each)."""
        return self.rules.queues

    @property
    def packets(self) -> int:
        """Packets of each connection the kernel queues."""
        return self.rules.packets


def _load_policy(path: str) -> Policy:
    from sluice.policy import load_policy

    try:
        return load_policy(path)
    except ConfigError as exc:
        raise GatewayFailure(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise GatewayFailure(f"cannot read {path}: {exc.strerror}", EXIT_IO) from None


def _revision(url: str) -> Callable[[], int]:
    def revision() -> int:
        from sluice.registry import open_store

        store = open_store(url)
        try:
            last = store.imports(limit=1)
            return last[0].import_id if last else 0
        finally:
            store.close()

    return revision


def _register_loader(url: str) -> Callable[[], RegisterLookup]:
    def load() -> RegisterLookup:
        from sluice.decide.register import open_register

        return open_register(url)

    return load


def _snapshot_loader(source: str, key_path: str) -> Callable[[], RegisterLookup]:
    """Loads the snapshot at ``source`` after verifying it; never one older than the last loaded."""
    from sluice.registry.snapshot import load_public_key

    pub = load_public_key(key_path)
    loaded = [0]

    def load() -> RegisterLookup:
        from sluice.decide.register import RegisterLookup
        from sluice.registry.snapshot import read_snapshot

        snap = read_snapshot(source, pub, min_version=loaded[0])
        matcher, proposed = snap.matchers()
        loaded[0] = snap.header.version
        lookup = RegisterLookup(matcher, proposed)
        _SNAPSHOT_VERSIONS[lookup] = snap.header.version
        return lookup

    return load


_SNAPSHOT_VERSIONS: weakref.WeakKeyDictionary[RegisterLookup, int] = weakref.WeakKeyDictionary()
"""The version of each register loaded from a snapshot (for the metrics)."""


def _noting_version(
    cfg: GatewayConfig, load: Callable[[], RegisterLookup], monitor: GatewayMonitor | None
) -> Callable[[], RegisterLookup]:
    """``load``, telling ``monitor`` the version of what it loaded (import id or snapshot version)."""
    if monitor is None:
        return load
    store_revision = _revision(cfg.register) if cfg.register and not cfg.register_snapshot else None

    def noted() -> RegisterLookup:
        before = store_revision() if store_revision is not None else None  # an import after: next poll
        lookup = load()
        version = before if store_revision is not None else _SNAPSHOT_VERSIONS.get(lookup)
        monitor.note_register(lookup, version)
        return lookup

    return noted


def _snapshot_revision(source: str) -> Callable[[], Hashable]:
    """The snapshot's identity, cheap to ask: the file's inode, size and time, or the URL's ETag."""

    def revision() -> Hashable:
        if source.startswith(("http://", "https://")):
            import urllib.request

            req = urllib.request.Request(source, method="HEAD")  # noqa: S310 - http(s) only
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                h = resp.headers
                return (h.get("ETag"), h.get("Last-Modified"), h.get("Content-Length"))
        st = os.stat(source)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    return revision


def _register_source(
    cfg: GatewayConfig,
) -> tuple[Callable[[], RegisterLookup] | None, Callable[[], Hashable] | None]:
    """The register's loader and revision check (None, None: no register)."""
    if cfg.register_snapshot:
        if not cfg.snapshot_key:
            raise GatewayFailure("--register-snapshot needs --snapshot-key", EXIT_USAGE)
        try:
            load = _snapshot_loader(cfg.register_snapshot, cfg.snapshot_key)
        except SluiceError as exc:
            raise GatewayFailure(f"cannot read the snapshot key: {exc}", EXIT_USAGE) from None
        return load, _snapshot_revision(cfg.register_snapshot)
    if cfg.register:
        return _register_loader(cfg.register), _revision(cfg.register)
    return None, None


def _pushes(cfg: GatewayConfig) -> bool:
    url = cfg.register or ""
    return (
        cfg.register_push and not cfg.register_snapshot and url.startswith(("postgresql://", "postgres://"))
    )


def _open_log(log_dir: str, fsync: str) -> DecisionLog:
    from sluice.decisions.log import DecisionLog

    try:
        return DecisionLog(log_dir, fsync=fsync)
    except ConfigError as exc:
        raise GatewayFailure(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise GatewayFailure(f"cannot open the decision log {log_dir}: {exc.strerror}", EXIT_IO) from None


def _check_fsync(fsync: str) -> None:
    from sluice.decisions.log import FsyncPolicy

    try:
        FsyncPolicy.parse(fsync)
    except ConfigError as exc:
        raise GatewayFailure(str(exc), EXIT_USAGE) from None


def _reshape(shaping: Shaping, policy: Policy, say: Callable[[str], None]) -> bool:
    """Re-install the shaper after a reload, when the throttle classes changed."""
    try:
        return shaping.apply(policy)
    except ConfigError as exc:
        say(f"sluice gateway: shaper not updated: {exc}")
        return False


def run_gateway(
    config: GatewayConfig,
    load_detector: Callable[[], Combiner | None],
    say: Callable[[str], None],
) -> int:
    """Serve the gateway until SIGTERM/SIGINT; the exit code (0, or a failed worker's).

    Args:
        config: what to do.
        load_detector: builds the detectors (None: no verdicts); called after the policy and
            the register loaded.
        say: where messages go (one line each; the final counters as one JSON line).

    Raises:
        GatewayFailure: the gateway cannot start (policy, register, log, rules, shaper).
    """
    from sluice.decide.stages import decide_after_for
    from sluice.gateway.engine import warm_up

    pol = _load_policy(config.policy_file)
    register = None
    monitor, metrics = _start_metrics(config)
    if metrics is not None:
        host, port = metrics.address
        say(f"sluice gateway: metrics on http://{_url_host(host)}:{port}/metrics, health on /healthz")
    load_register, _rev = _register_source(config)
    version: object = None
    if load_register is not None:
        load_register = _noting_version(config, load_register, monitor)
        try:
            version = (
                _revision(config.register)() if config.register and not config.register_snapshot else None
            )
            register = load_register()
        except SluiceError as exc:
            code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_IO  # no register there: usage
            raise GatewayFailure(f"cannot open the register: {exc}", code) from None
        if config.register_snapshot:
            version = _SNAPSHOT_VERSIONS.get(register)
        if len(register) == 0 and not config.allow_empty_register:
            where = config.register or config.register_snapshot
            raise GatewayFailure(
                f"the register {where} has no entries: the gateway would enforce nothing from it"
                " (import a list first: sluice registry import --register REGISTER FILE),"
                " or start anyway with --allow-empty-register",
                EXIT_USAGE,
            )
    held = _register_text(register, version)
    detector = load_detector()
    warm_up(pol, register, detector)  # the first client must not wait for kernels and model to load
    workers = config.workers
    log = _open_log(config.log_dir, config.fsync) if config.log_dir and workers == 1 else None
    if config.log_dir and workers > 1:
        _check_fsync(config.fsync)  # refused here, not in every worker
    if config.install_rules:
        try:
            setup(config.rules, ipv6=config.ipv6)
        except ConfigError as exc:
            raise GatewayFailure(str(exc), EXIT_USAGE) from None
    shaping = Shaping(config.shape_devs, report=say)
    try:
        shaping.apply(pol)  # without shape_devs: every interface that is up, if the policy throttles
    except ConfigError as exc:
        raise GatewayFailure(str(exc), EXIT_USAGE) from None
    server = _Server(config, pol, register, detector, log, shaping, decide_after_for(config.packets), say)
    server.monitor, server.metrics = monitor, metrics  # the endpoint stops when serving ends
    queue = config.rules.queue
    mode = "fail-open" if config.rules.bypass else "fail-closed"
    detect = "off" if detector is None else ("layers 1-2" if detector.model is None else "layers 1-3")
    if workers == 1:

        def ready() -> None:
            say(
                f"sluice gateway: ready on queue {queue} ({mode}), policy {pol.digest}, {held},"
                f" detectors {detect}"
            )

        say(json.dumps({"stats": server.serve(0, ready)}))
        return 0
    return _run_workers(
        server, f"({mode}, {workers} workers), policy {pol.digest}, {held}, detectors {detect}"
    )


def _register_text(register: RegisterLookup | None, version: object) -> str:
    """The ready line's register: entries by kind and its version (last import id, or snapshot's)."""
    if register is None:
        return "no register"
    kinds = register.matcher.kind_counts() if register.matcher is not None else {}
    by_kind = ", ".join(f"{k} {n}" for k, n in kinds.items()) or "none"
    return f"register {len(register)} entries ({by_kind}), version {version if version is not None else '?'}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _start_metrics(cfg: GatewayConfig) -> tuple[GatewayMonitor | None, MetricsServer | None]:
    """The metrics endpoint, serving before anything else starts (its health says not ready)."""
    if cfg.metrics is None:
        return None, None
    from sluice.gateway.metrics import GatewayMonitor, MetricsServer

    monitor = GatewayMonitor(
        cfg.rules, ipv6=cfg.ipv6, register_configured=bool(cfg.register or cfg.register_snapshot)
    )
    host, port = cfg.metrics
    try:
        server = MetricsServer(monitor, host, port)
    except ConfigError as exc:
        raise GatewayFailure(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise GatewayFailure(f"cannot serve metrics on {host}:{port}: {exc.strerror}", EXIT_IO) from None
    if cfg.workers == 1:
        server.start()  # with workers: once they are forked (the parent starts no thread before)
    return monitor, server


class _Server:
    """Serves one queue (in this process, or in a forked worker)."""

    def __init__(
        self,
        config: GatewayConfig,
        policy: Policy,
        register: RegisterLookup | None,
        detector: Combiner | None,
        log: DecisionLog | None,
        shaping: Shaping,
        decide_after: int,
        say: Callable[[str], None],
    ) -> None:
        self.config = config
        self.policy = policy
        self.register = register
        self.detector = detector
        self.log = log
        self.shaping = shaping
        self.decide_after = decide_after
        self.say = say
        self.monitor: GatewayMonitor | None = None
        """What the metrics endpoint reads (None: no endpoint)."""
        self.metrics: MetricsServer | None = None
        """The metrics endpoint, stopped when serving ends."""

    def serve(self, index: int, ready: Callable[[], None]) -> dict[str, Any]:
        """Serve queue ``queue + index`` until SIGTERM; this process's counters.

        A failure is reported and ends the process with its exit code (``SystemExit``).
        """
        try:
            return self._serve(index, ready)
        except GatewayFailure as exc:
            self.say(f"sluice gateway: error: {exc.message}")
            raise SystemExit(exc.exit_code) from None

    def _serve(self, index: int, ready: Callable[[], None]) -> dict[str, Any]:
        from sluice.decisions.log import worker_dir
        from sluice.gateway.engine import GatewayEngine, run_queue
        from sluice.gateway.reload import Reloader
        from sluice.policy import load_policy

        cfg = self.config
        workers = cfg.workers
        q = cfg.rules.queue + index
        log = self.log
        if workers > 1 and self.metrics is not None:
            self.metrics.stop()  # a worker: close the parent's listening socket it inherited
            self.metrics = None
        if workers > 1 and cfg.log_dir:
            log = _open_log(str(worker_dir(cfg.log_dir, index)), cfg.fsync)
        engine = GatewayEngine(
            self.policy,
            self.register,
            log,
            detector=self.detector,
            decide_after=self.decide_after,
            capture=f"nfqueue:{q}",
        )
        tag = "sluice gateway: " if workers == 1 else f"sluice gateway: worker {index}: "
        say = self.say
        load_register, revision = _register_source(cfg)
        monitor = self.monitor
        if load_register is not None:
            load_register = _noting_version(cfg, load_register, monitor)
        push = _pushes(cfg)
        reloader = Reloader(
            lambda: load_policy(cfg.policy_file),
            load_register,
            revision if cfg.register_poll_s > 0 or push else None,
            poll_s=cfg.register_poll_s or (3600.0 if push else 2.0),
            report=lambda msg: say(msg.replace("sluice gateway: ", tag, 1)),
        )
        reloader.start()
        if monitor is not None:
            monitor.engine, monitor.reloader = engine, reloader
        pusher = _pusher(monitor, ready) if workers > 1 else None
        listener = None
        if push and cfg.register:
            from sluice.registry.notify import RegisterListener

            listener = RegisterListener(
                cfg.register,
                lambda _import_id: reloader.push(),
                report=lambda msg: say(msg.replace("sluice gateway: ", tag, 1)),
            )
            listener.start()
        cpu0 = [0.0]

        def bound() -> None:
            cpu0[0] = time.process_time()
            if monitor is not None:
                monitor.ready = True
            ready()
            if workers == 1:
                sd_notify("READY=1")  # under systemd (Type=notify): started once the queue is bound
            if pusher is not None:
                pusher.push()
                pusher.start()

        def before_packet() -> object:
            # one worker re-installs the shaper itself; with several, the parent does
            return reloader.apply(engine) and workers == 1 and _reshape(self.shaping, engine.policy, say)

        try:
            run_queue(engine, q, on_ready=bound, on_hup=reloader.request, before_packet=before_packet)
        except ImportError:
            raise GatewayFailure(
                "netfilterqueue is not installed (pip install 'sluice[gateway]')", EXIT_USAGE
            ) from None
        except OSError as exc:
            raise GatewayFailure(f"cannot bind queue {q}: {exc}", EXIT_IO) from None
        finally:
            if pusher is not None:
                pusher.stop()
            if monitor is not None:
                monitor.ready = False
            if self.metrics is not None:
                self.metrics.stop()
            if listener is not None:
                listener.stop()
            reloader.stop()
            engine.stats.reload_failures = reloader.refused + reloader.errors
            if log is not None:
                log.close()
        stats = engine.stats.to_dict(engine.anomalies)
        stats["cpu_seconds"] = round(time.process_time() - cpu0[0], 3)  # this process, while serving
        return stats


def _pusher(monitor: GatewayMonitor | None, ready: Callable[[], None]) -> SnapshotPusher | None:
    """A worker's sender of metrics snapshots to the parent (None: no metrics endpoint)."""
    send = getattr(ready, "metrics", None)  # the worker's pipe (sluice.gateway.workers)
    if monitor is None or send is None:
        return None
    from sluice.gateway.metrics import SnapshotPusher

    return SnapshotPusher(monitor, send)


def _run_workers(server: _Server, what: str) -> int:
    """Fork the workers, supervise them, report their summed counters; the exit code."""
    from sluice.gateway.workers import sum_stats, supervise
    from sluice.policy import load_policy

    cfg = server.config
    say = server.say
    queue, workers = cfg.rules.queue, cfg.workers

    def reshape() -> None:  # after SIGHUP: the workers reload the policy, the parent the shaper
        try:
            _reshape(server.shaping, load_policy(cfg.policy_file), say)
        except (ConfigError, OSError) as exc:
            say(f"sluice gateway: shaper not updated: {exc}")

    last = queue + workers - 1

    def ready() -> None:
        say(f"sluice gateway: ready on queues {queue}-{last} {what}")
        sd_notify("READY=1")

    def forked(reports: list[WorkerReport]) -> None:
        if server.monitor is not None and server.metrics is not None:
            server.monitor.workers = lambda: [r.metrics if r.exit_code is None else None for r in reports]
            server.metrics.start()

    try:
        code, reports = supervise(
            workers,
            server.serve,
            on_ready=ready,
            on_hup=reshape,
            report=say,
            describe=lambda i: f"worker {i} (queue {queue + i})",
            forked=forked,
        )
    finally:
        if server.metrics is not None:
            server.metrics.stop()
    parts = [r.stats for r in reports if r.stats is not None]
    per_worker = [
        {"worker": r.index, "queue": queue + r.index, "exit_code": r.exit_code, **(r.stats or {})}
        for r in reports
    ]
    say(json.dumps({"stats": sum_stats(parts), "workers": per_worker}))
    return code
