"""The gateway's Prometheus metrics and health endpoint (``sluice gateway run --metrics ADDR:PORT``).

Theory of operation: nothing on the packet path talks to Prometheus. The engine keeps its plain
counters (:class:`~sluice.gateway.engine.GatewayStats`: decisions by action, mode and class, the
decision latency's bucket counts, packets, reloads); a :class:`GatewayMonitor` points at the
engine, the :class:`~sluice.gateway.reload.Reloader` and the register once they exist, and a
collector (:class:`GatewayCollector`) turns them into metric families when Prometheus scrapes.
The kernel's side is read at the same moment: the NFQUEUE counters of
``/proc/net/netfilter/nfnetlink_queue`` (packets dropped because the queue was full or netlink
could not deliver them) and the packet counter of the queue rule (``iptables -L CHAIN -v -x``).

Fail-open bypasses: the kernel counts no packet it lets through because nobody listens
(``--queue-bypass``) or because a fail-open queue is full. What it does count is every packet
the queue rule sent towards the queue; ``sluice_gateway_unserved_packets_total`` is that count
minus the packets the gateway saw, minus the kernel's drops, minus those still queued: packets
accepted undecided in fail-open mode, dropped in fail-closed mode (label ``mode``). It counts
from when the rules were installed (``gateway run`` re-installs them, which resets the rule's
counter; with ``--no-setup`` it includes what passed before the gateway started).

:class:`MetricsServer` serves, on a thread of its own:

* ``GET /metrics``: the exposition text (``text/plain; version=0.0.4``);
* ``GET /healthz``: a JSON object ``{"ok", "ready", "register_loaded", "last_reload_ok", ...}``,
  status 200 when the queue is bound, the register (when one is configured) is loaded and the
  last reload did not fail, else 503. A failed reload keeps the old policy and register, so the
  gateway still decides; 503 says the newest policy or list is not the one in force.

With ``--workers`` the parent serves the endpoint: each worker's :class:`SnapshotPusher` sends
its :meth:`GatewayMonitor.snapshot` over its pipe every second, and the parent's monitor merges
the newest of each (:func:`merge_snapshots`).

The address is the operator's choice: ``--metrics PORT`` binds ``127.0.0.1`` only; ``--metrics
ADDR:PORT`` binds ``ADDR`` (``[::1]:9108`` for IPv6). There is no authentication: bind a
non-loopback address only on a management network.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_METRICS_HOST",
    "LATENCY_BUCKETS_S",
    "GatewayCollector",
    "GatewayMonitor",
    "MetricsServer",
    "NfqueueCounters",
    "SnapshotPusher",
    "merge_snapshots",
    "parse_address",
    "read_nfqueue",
]

import contextlib
import json
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from sluice.errors import ConfigError
from sluice.gateway.engine import LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

    from sluice.decide.register import RegisterLookup
    from sluice.gateway.engine import GatewayEngine
    from sluice.gateway.reload import Reloader
    from sluice.gateway.rules import RuleSet
    from sluice.registry.matcher import Matcher

DEFAULT_METRICS_HOST = "127.0.0.1"
"""Where ``--metrics PORT`` binds: the local machine only."""
NFQUEUE_PROC = "/proc/net/netfilter/nfnetlink_queue"
"""The kernel's per-queue counters (of the network namespace the gateway runs in)."""
_KERNEL_CACHE_S = 1.0


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT`` as (host, port); a bare port is localhost only.

    Raises:
        ConfigError: not an address with a port 0-65535.
    """
    if text.isdigit():
        host, sep, port = DEFAULT_METRICS_HOST, ":", text
    elif text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:  # an IPv6 address needs brackets: [::1]:9108
            sep = ""
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError("metrics", f"expected PORT, HOST:PORT or [V6]:PORT, not {text!r}")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class NfqueueCounters:
    """One queue's line of :data:`NFQUEUE_PROC`."""

    queue: int
    """The queue number."""
    queued: int
    """Packets waiting for a verdict now."""
    dropped: int
    """Packets dropped because the queue was full (fail-closed queues)."""
    user_dropped: int
    """Packets netlink could not deliver (the socket's buffer was full)."""


def read_nfqueue(path: str = NFQUEUE_PROC) -> dict[int, NfqueueCounters]:
    """The kernel's counters of every bound queue (empty when the file is absent)."""
    out: dict[int, NfqueueCounters] = {}
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) >= 7 and all(p.lstrip("-").isdigit() for p in parts[:7]):
            q = int(parts[0])
            out[q] = NfqueueCounters(q, int(parts[2]), int(parts[5]), int(parts[6]))
    return out


def read_queue_rule_packets(chain: str, ipv6: bool) -> int | None:
    """Packets the chain's NFQUEUE rule matched (IPv4 plus IPv6); None when it cannot be read."""
    total, found = 0, False
    for tool in ("iptables", "ip6tables") if ipv6 else ("iptables",):
        try:
            res = subprocess.run(
                [tool, "-w", "-t", "filter", "-L", chain, "-v", "-x", "-n"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in res.stdout.splitlines():
            parts = line.split()
            if "NFQUEUE" in parts and parts[0].isdigit():
                total += int(parts[0])
                found = True
    return total if found else None


@dataclass
class GatewayMonitor:
    """What the metrics and the health endpoint read: set by the gateway as it starts and serves.

    Args:
        rules: the netfilter rules (queues, chain, fail-open or not).
        ipv6: whether the ip6tables rules are installed too.
        register_configured: a register (store or snapshot) was asked for.
    """

    rules: RuleSet
    ipv6: bool = True
    register_configured: bool = False
    engine: GatewayEngine | None = None
    """The serving engine (None until the queue process built it)."""
    reloader: Reloader | None = None
    """The reload thread (None until started)."""
    ready: bool = False
    """The queue is bound."""
    workers: Callable[[], list[dict[str, Any] | None]] | None = None
    """With ``--workers``: the newest snapshot of each worker (None: none yet), in the parent."""
    started: float = field(default_factory=time.time)
    """When the gateway started (Unix time)."""
    _versions: weakref.WeakKeyDictionary[Any, int] = field(default_factory=weakref.WeakKeyDictionary)
    _kernel: tuple[float, dict[int, NfqueueCounters], int | None] | None = None
    _unserved_max: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note_register(self, register: RegisterLookup | Matcher, version: int | None) -> None:
        """Remember the version (newest import id, or snapshot version) a loaded register has."""
        if version is not None:
            self._versions[register] = version

    def register_version(self) -> int | None:
        """The version of the register the engine decides with (None: none, or unknown)."""
        reg = self.engine.register if self.engine is not None else None
        return None if reg is None else self._versions.get(reg)

    def snapshot(self) -> dict[str, Any] | None:
        """This process's counters as a JSON-friendly dict (None before the engine exists).

        Keys: ``packets``, ``undecodable``, ``actions`` (``action|mode|class`` -> n), ``latency``
        (bucket index -> n), ``latency_seconds``, ``reloads`` (ok/refused/error), ``entries``
        (``kind|proposed`` -> n), ``register`` (a register is in force), ``register_entries``,
        ``register_version``, ``last_reload_error``, ``ready``, ``policy``. With ``--workers``
        each worker sends its own to the parent, which adds them up (:func:`merge_snapshots`).
        """
        engine, reloader = self.engine, self.reloader
        if engine is None:
            return None
        st = engine.stats
        reg = engine.register
        return {
            "packets": st.packets,
            "undecodable": st.undecodable,
            "actions": dict(st.actions),
            "latency": {str(i): n for i, n in enumerate(list(st.latency))},
            "latency_seconds": st.latency_seconds,
            "reloads": {
                "ok": reloader.loads if reloader else 0,
                "refused": reloader.refused if reloader else 0,
                "error": reloader.errors if reloader else 0,
            },
            "entries": {f"{k}|{int(p)}": n for (k, p), n in _entries_by_kind(reg).items()},
            "register": reg is not None,
            "register_entries": len(reg) if reg is not None else None,
            "register_version": self.register_version(),
            "last_reload_error": reloader.last_error if reloader is not None else None,
            "ready": self.ready,
            "policy": engine.policy.digest,
        }

    def current(self) -> dict[str, Any] | None:
        """What the endpoint shows: this process's snapshot, or the workers' merged."""
        if self.workers is not None:
            parts = self.workers()
            return merge_snapshots(parts) if parts else None
        return self.snapshot()

    def kernel(self) -> tuple[dict[int, NfqueueCounters], int | None]:
        """The queues' counters and the queue rule's packet count, read at most once a second."""
        with self._lock:
            now = time.monotonic()
            if self._kernel is None or now - self._kernel[0] > _KERNEL_CACHE_S:
                rs = self.rules
                queues = read_nfqueue()
                mine = {q: c for q, c in queues.items() if rs.queue <= q < rs.queue + rs.queues}
                self._kernel = (now, mine, read_queue_rule_packets(rs.chain, self.ipv6))
            return self._kernel[1], self._kernel[2]

    def unserved(self, rule_packets: int, seen: int, queues: dict[int, NfqueueCounters]) -> int:
        """Packets the queue rule matched that the gateway never saw (monotonic)."""
        lost = sum(c.dropped + c.user_dropped + c.queued for c in queues.values())
        self._unserved_max = max(self._unserved_max, rule_packets - seen - lost)
        return self._unserved_max

    def health(self) -> dict[str, Any]:
        """The health endpoint's body; ``ok`` is the conjunction of the checks."""
        snap = self.current() or {}
        ready = bool(snap.get("ready"))
        last_error = snap.get("last_reload_error")
        loaded = bool(snap.get("register")) or not self.register_configured
        return {
            "ok": ready and loaded and last_error is None,
            "ready": ready,
            "register_loaded": loaded,
            "register_entries": snap.get("register_entries"),
            "register_version": snap.get("register_version"),
            "last_reload_ok": last_error is None,
            "last_reload_error": last_error,
            "mode": "fail-open" if self.rules.bypass else "fail-closed",
            "workers": self.rules.queues,
            "uptime_seconds": round(time.time() - self.started, 3),
        }


def merge_snapshots(parts: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Several workers' snapshots as one: counters added up; the register shown is the one of
    the worker with the oldest version (the one in force everywhere); ready, register loaded and
    reload ok only when every worker is; a worker without a snapshot yet counts as not ready."""
    out: dict[str, Any] = {"packets": 0, "undecodable": 0, "latency_seconds": 0.0}
    for key in ("actions", "latency", "reloads", "entries"):
        out[key] = {}
    got = [p for p in parts if p is not None]
    for p in got:
        for key in ("packets", "undecodable", "latency_seconds"):
            out[key] += p[key]
        for key in ("actions", "latency", "reloads", "entries"):
            acc = out[key]
            for k, v in p[key].items():
                acc[k] = acc.get(k, 0) + v
    oldest = min(
        got, key=lambda p: (p["register_version"] is not None, p["register_version"] or 0), default=None
    )
    if oldest is not None:
        out["entries"] = dict(oldest["entries"])
        for key in ("register_entries", "register_version", "policy"):
            out[key] = oldest[key]
    errors = [p["last_reload_error"] for p in got if p["last_reload_error"] is not None]
    out["last_reload_error"] = errors[0] if errors else None
    complete = len(got) == len(parts)
    out["ready"] = complete and all(p["ready"] for p in got)
    out["register"] = complete and all(p["register"] for p in got)
    return out


def _entries_by_kind(register: RegisterLookup | Matcher | None) -> dict[tuple[str, bool], int]:
    """Entries per (kind, proposed) of the register the engine decides with."""
    import numpy as np

    from sluice.registry.model import Kind

    kinds = tuple(Kind)
    out = {(k.value, p): 0 for k in kinds for p in (False, True)}
    if register is None:
        return out
    from sluice.decide.register import RegisterLookup

    parts: list[tuple[Matcher | None, bool]] = (
        [(register.matcher, False), (register.proposed, True)]
        if isinstance(register, RegisterLookup)
        else [(register, False)]
    )
    for matcher, proposed in parts:
        if matcher is None:
            continue
        counts = np.bincount(matcher.kind, minlength=len(kinds))
        for k, n in zip(kinds, counts.tolist(), strict=False):
            out[(k.value, proposed)] = int(n)
    return out


class GatewayCollector:
    """A Prometheus collector reading a :class:`GatewayMonitor` at scrape time."""

    def __init__(self, monitor: GatewayMonitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Metric]:
        """Nothing up front: the families are built when scraped (keeps registration cheap)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metric families (see the module docstring)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.monitor
        snap = m.current()
        mode = "fail-open" if m.rules.bypass else "fail-closed"
        up = GaugeMetricFamily("sluice_gateway_ready", "1 when the queues are bound and packets are served.")
        up.add_metric([], 1.0 if snap and snap["ready"] else 0.0)
        yield up
        info = GaugeMetricFamily(
            "sluice_gateway_info",
            "The gateway's configuration (value 1).",
            labels=["mode", "queues", "policy"],
        )
        info.add_metric([mode, str(m.rules.queues), snap.get("policy", "") if snap else ""], 1.0)
        yield info

        decisions = CounterMetricFamily(
            "sluice_gateway_decisions",
            "Connections decided, by action, mode (enforce/shadow) and detector class.",
            labels=["action", "mode", "class"],
        )
        packets = CounterMetricFamily(
            "sluice_gateway_packets", "Queued packets the gateway gave a verdict to."
        )
        undecodable = CounterMetricFamily(
            "sluice_gateway_undecodable_packets", "Packets that did not decode (accepted unmarked)."
        )
        latency = HistogramMetricFamily(
            "sluice_gateway_decision_latency_seconds",
            "Time the gateway spent on the packet that decided a connection.",
        )
        reloads = CounterMetricFamily(
            "sluice_gateway_reloads", "Policy or register reloads, by result.", labels=["result"]
        )
        entries = GaugeMetricFamily(
            "sluice_register_entries",
            "Entries of the register in force, by kind (proposed: under review).",
            labels=["kind", "proposed"],
        )
        seen = 0
        if snap is not None:
            seen = snap["packets"]
            for key, n in sorted(snap["actions"].items()):
                action, dmode, cls = key.split("|", 2)
                decisions.add_metric([action, dmode, cls], n)
            packets.add_metric([], snap["packets"])
            undecodable.add_metric([], snap["undecodable"])
            acc, buckets = 0, []
            for i, bound in enumerate((*LATENCY_BUCKETS_S, float("inf"))):
                acc += snap["latency"].get(str(i), 0)
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), acc))
            latency.add_metric([], buckets, snap["latency_seconds"])
            for result in ("ok", "refused", "error"):
                reloads.add_metric([result], snap["reloads"].get(result, 0))
            for key, n in sorted(snap["entries"].items()):
                kind, proposed = key.split("|")
                entries.add_metric([kind, "true" if proposed == "1" else "false"], n)
        yield from (decisions, packets, undecodable, latency, reloads, entries)
        version = snap.get("register_version") if snap else None
        if version is not None:
            ver = GaugeMetricFamily(
                "sluice_register_version",
                "Version of the register in force (newest import id, or the snapshot's version).",
            )
            ver.add_metric([], version)
            yield ver

        queues, rule_packets = m.kernel()
        dropped = CounterMetricFamily(
            "sluice_nfqueue_dropped_packets",
            "Packets the kernel dropped on the way to the gateway, by queue and reason "
            "(queue_full: the queue was full; netlink: the socket could not take them).",
            labels=["queue", "reason"],
        )
        queued = GaugeMetricFamily(
            "sluice_nfqueue_queued_packets", "Packets waiting in the queue now.", labels=["queue"]
        )
        for q, c in sorted(queues.items()):
            dropped.add_metric([str(q), "queue_full"], c.dropped)
            dropped.add_metric([str(q), "netlink"], c.user_dropped)
            queued.add_metric([str(q)], c.queued)
        yield from (dropped, queued)
        if rule_packets is not None:
            rule = CounterMetricFamily(
                "sluice_nfqueue_rule_packets", "Packets the gateway's queue rule sent towards the queue."
            )
            rule.add_metric([], rule_packets)
            unserved = CounterMetricFamily(
                "sluice_gateway_unserved_packets",
                "Packets the queue rule matched that the gateway never saw: accepted undecided "
                "(fail-open) or dropped (fail-closed), e.g. while no gateway listened.",
                labels=["mode"],
            )
            unserved.add_metric([mode], m.unserved(rule_packets, seen, queues))
            yield from (rule, unserved)


def _handler(registry: CollectorRegistry, monitor: GatewayMonitor) -> type[BaseHTTPRequestHandler]:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        server_version = "sluice-gateway"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                body = monitor.health()
                data = (json.dumps(body, sort_keys=True) + "\n").encode()
                self._send(200 if body["ok"] else 503, "application/json", data)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: /metrics or /healthz\n")

        def _send(self, status: int, ctype: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``(host, port)``, served by a daemon thread.

    Raises:
        ConfigError: ``prometheus_client`` is not installed.
        OSError: the address cannot be bound.
    """

    def __init__(self, monitor: GatewayMonitor, host: str, port: int) -> None:
        try:
            from prometheus_client.registry import CollectorRegistry
        except ImportError:
            raise ConfigError(
                "metrics", "prometheus_client is not installed (pip install 'sluice[gateway]')"
            ) from None
        self.monitor = monitor
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(monitor))
        self._server = _HttpServer((host, port), _handler(self.registry, monitor))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the port chosen by the kernel when 0 was asked for)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="sluice-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (only closes it where it was never started, e.g.
        in a forked worker that inherited it)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()


class SnapshotPusher:
    """Sends a worker's :meth:`GatewayMonitor.snapshot` to its parent every ``interval_s``.

    Args:
        monitor: the worker's monitor.
        send: delivers one snapshot (to the parent's pipe).
        interval_s: seconds between snapshots.
    """

    def __init__(
        self, monitor: GatewayMonitor, send: Callable[[dict[str, Any]], None], interval_s: float = 1.0
    ) -> None:
        self.monitor = monitor
        self.send = send
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sluice-metrics-push", daemon=True)

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def push(self) -> None:
        """Send one snapshot now."""
        snap = self.monitor.snapshot()
        if snap is not None:
            self.send(snap)

    def stop(self) -> None:
        """Stop sending (after one last snapshot)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(OSError, ValueError):  # the pipe closed: the parent is gone
                self.push()
