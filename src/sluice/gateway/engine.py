"""The inline gateway: the Decider's decisions as NFQUEUE verdicts and conntrack marks.

Theory of operation: :class:`GatewayEngine` sees the first packets of every connection (the
kernel queues at most ``RuleSet.packets`` of them, see :mod:`sluice.gateway.rules`) as raw IP
datagrams and hands them to a :class:`~sluice.decide.decider.Decider`, the same one the dry runs
(``sluice policy test``, ``sluice analyze --decisions``) replay captures through: it decides a
connection at its first checkpoint where the decision cannot change any more (stages
``settled``, ``fingerprint``, ``final``; see :mod:`sluice.decide.decider`).

What is the gateway's own: the decision is written to the decision log and turned into a
conntrack mark (see :func:`mark_for`); the kernel applies it to the rest of the connection.
Undecided packets are accepted unmarked. A tunnelled flow (VXLAN, GRE...) shares its outer
connection with every other flow of the tunnel, so only a non-pass decision marks it. Packets of
a connection decided before (queued before the conntrack mark was set) get its mark again.
:func:`run_queue` binds the engine to an NFQUEUE with ``netfilterqueue``.

Policy and register are swapped with :meth:`GatewayEngine.reload`: connections already decided
keep their conntrack mark, new ones get the new decision.
"""

from __future__ import annotations

__all__ = [
    "DECIDED_CACHE",
    "LATENCY_BUCKETS_S",
    "MAX_PENDING",
    "GatewayEngine",
    "GatewayStats",
    "QueueVerdict",
    "mark_for",
    "run_queue",
]

import os
import signal
import socket
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.decide.decider import DECIDED_CACHE, MAX_PENDING, Decider, DeciderStats
from sluice.decide.register import RegisterLookup
from sluice.detect.combiner import Combiner
from sluice.features.flow import EARLY_PACKETS
from sluice.gateway.rules import MARK_ALLOW, MARK_DROP, MARK_MASK, MARK_RESET, MARK_THROTTLE
from sluice.gateway.shaper import ThrottleClass, throttle_classes, throttle_mark
from sluice.policy.model import Action, Decision, Mode, Policy
from sluice.wire.frame import LinkType, RawPacket
from sluice.wire.transport import TcpFlags

if TYPE_CHECKING:
    from sluice.decisions.log import DecisionLog
    from sluice.registry.matcher import Matcher

LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds (seconds) of the decision latency histogram's buckets (``+Inf`` follows; see
:mod:`sluice.gateway.metrics`)."""


def mark_for(decision: Decision, classes: Mapping[str, ThrottleClass] | None = None) -> int:
    """The conntrack mark that applies a decision (shadow decisions and ``allow``/``log`` pass).

    A throttle gets its rule's class mark from ``classes``, the deciding policy's
    :func:`~sluice.gateway.shaper.throttle_classes`; without them, :data:`MARK_THROTTLE` (class 0).
    """
    if decision.mode is Mode.SHADOW or not decision.enforced:
        return MARK_ALLOW
    if decision.action is Action.BLOCK:
        return MARK_DROP
    if decision.action is Action.RESET:
        return MARK_RESET
    if decision.action is Action.THROTTLE:
        return MARK_THROTTLE if classes is None else throttle_mark(decision, classes)
    return MARK_ALLOW


@dataclass(frozen=True, slots=True)
class QueueVerdict:
    """What to do with one queued packet."""

    mark: int
    """0: accept unmarked (connection not decided yet); else the mark to set and repeat with."""
    decision: Decision | None = None
    """The decision made on this packet (None when none was made on it)."""


@dataclass(slots=True)
class GatewayStats(DeciderStats):
    """Counters of one engine (the Decider's, and the gateway's own)."""

    packets: int = 0
    """Packets seen."""
    marked: dict[int, int] = field(default_factory=dict)
    """Packets per mark given (0 = accepted undecided)."""
    undecodable: int = 0
    """Packets that did not decode or carry no IP (accepted unmarked)."""
    reloads: int = 0
    """Policy or register reloads applied."""
    reload_failures: int = 0
    """Reloads that failed (refused, or an unexpected error): the last good state was kept."""
    actions: dict[str, int] = field(default_factory=dict)
    """Decisions by ``action|mode|class`` (class empty when no detector judged the connection)."""
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    """Decisions per latency bucket (:data:`LATENCY_BUCKETS_S`, then the rest): the time the
    engine spent on the packet that decided the connection."""
    latency_seconds: float = 0.0
    """The sum of those times."""

    def observe(self, decision: Decision, seconds: float) -> None:
        """Count a decision made in ``seconds``."""
        key = f"{decision.action.value}|{decision.mode.value}|{decision.verdict_class}"
        self.actions[key] = self.actions.get(key, 0) + 1
        self.latency[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_seconds += seconds

    def to_dict(self, anomalies: dict[str, int] | None = None) -> dict[str, Any]:
        """JSON-friendly form (with the packet path's anomaly counters, when given)."""
        return {
            "packets": self.packets,
            "decisions": self.decisions,
            "marked": {f"{k:#x}": v for k, v in sorted(self.marked.items())},
            "undecodable": self.undecodable,
            "by_stage": dict(sorted(self.by_stage.items())),
            "detector_seconds": round(self.detector_seconds, 3),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "actions": dict(sorted(self.actions.items())),
            "anomalies": dict(sorted((anomalies or {}).items())),
        }


class GatewayEngine:
    """Decide connections from their first packets and mark them.

    Args:
        policy: the policy.
        matcher: the register (a :class:`~sluice.decide.register.RegisterLookup`, or a bare
            :class:`~sluice.registry.matcher.Matcher`; None: no register matches).
        log: where decisions go (None: nowhere).
        detector: the detectors (fingerprints, FET, model) whose verdict the policy's
            ``class``/``family``/``min_confidence`` rules read; None: no verdicts, such rules
            never match.
        decide_after: decide with what is known after this many packets of a connection; keep it
            below the kernel's ``RuleSet.packets``. The default is the packets the model's
            features read (:data:`~sluice.features.flow.EARLY_PACKETS`).
        capture: recorded in every decision (e.g. ``nfqueue:0``).
        clock: wall clock for packet and decision times.
    """

    def __init__(
        self,
        policy: Policy,
        matcher: RegisterLookup | Matcher | None = None,
        log: DecisionLog | None = None,
        *,
        detector: Combiner | None = None,
        decide_after: int = EARLY_PACKETS,
        capture: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._classes = throttle_classes(policy)
        self.log = log
        self._clock = clock
        self.stats = GatewayStats()
        self.decider = Decider(
            policy,
            matcher,
            combiner=detector,
            decide_after=decide_after,
            capture=capture,
            timer=time.perf_counter,
            stats=self.stats,
        )

    @property
    def policy(self) -> Policy:
        """The policy new connections are decided with."""
        return self.decider.policy

    @property
    def register(self) -> RegisterLookup | None:
        """The register lookup new connections are decided with."""
        return self.decider.register

    @property
    def detector(self) -> Combiner | None:
        """The detectors."""
        return self.decider.combiner

    @property
    def decide_after(self) -> int:
        """The final checkpoint's packet count."""
        return self.decider.decide_after

    @property
    def anomalies(self) -> dict[str, int]:
        """Problems of the packet path by reason (undecodable packets, refused payloads...)."""
        return self.decider.anomalies

    def reload(self, policy: Policy | None = None, matcher: RegisterLookup | Matcher | None = None) -> None:
        """Use a new policy and/or register for connections not decided yet."""
        if policy is not None:
            self._classes = throttle_classes(policy)
        self.decider.reload(policy, matcher)
        self.stats.reloads += 1

    def handle(self, raw: bytes, linktype: int = LinkType.RAW, ts: float | None = None) -> QueueVerdict:
        """The verdict for one queued IP datagram (never raises on bad input).

        Args:
            raw: the packet (an IP datagram as NFQUEUE gives it).
            linktype: its framing, for replaying captures (:class:`LinkType`).
            ts: its time (default: the engine's clock).
        """
        t0 = time.perf_counter()
        self.stats.packets += 1
        now = self._clock() if ts is None else ts
        step = self.decider.step(RawPacket(now, linktype, raw, len(raw)))
        if step is None:
            self.stats.undecodable += 1
            v = QueueVerdict(0)
        else:
            decision = step.decision
            if decision is not None:
                if self.log is not None:
                    self.log.write(decision)
                self.stats.observe(decision, time.perf_counter() - t0)
            decided = decision if decision is not None else step.earlier
            if decided is None:
                v = QueueVerdict(0)
            else:
                mark = mark_for(decided, self._classes)
                if step.tunnelled and mark == MARK_ALLOW:
                    mark = 0  # the outer connection carries other flows: keep looking at them
                v = QueueVerdict(mark, decision)
        marked = self.stats.marked
        marked[v.mark] = marked.get(v.mark, 0) + 1
        return v


def warm_up(policy: Policy, matcher: RegisterLookup | Matcher | None, detector: Combiner | None) -> int:
    """Push one made-up connection through a throwaway engine; the packets it decided.

    The first connection otherwise pays for loading the compiled feature kernels and the model's
    first prediction (seconds on a cold cache), while the client's handshake waits in the queue.
    Call it before announcing the gateway ready (and before forking workers, who inherit it).
    """
    from sluice.wire.encode import ipv4, tcp

    cli, srv = "192.0.2.1", "192.0.2.2"
    engine = GatewayEngine(policy, matcher, None, detector=detector)
    syn, ack, psh = TcpFlags.SYN, TcpFlags.ACK, TcpFlags.ACK | TcpFlags.PSH
    steps = [(True, syn, b""), (False, syn | ack, b""), (True, ack, b"")]
    steps += [(i % 2 == 0, psh, os.urandom(200 + 300 * i)) for i in range(EARLY_PACKETS)]
    seq = {True: 1000, False: 5000}
    decided = 0
    for n, (up, flags, data) in enumerate(steps):
        src, dst = (cli, srv) if up else (srv, cli)
        sport, dport = (40000, 443) if up else (443, 40000)
        seg = tcp(sport, dport, seq[up], seq[not up], flags, data, src_ip=src, dst_ip=dst)
        seq[up] += len(data) + bool(flags & TcpFlags.SYN)
        decided += engine.handle(ipv4(src, dst, 6, seg), ts=1.0 + n / 100).decision is not None
    return decided


def run_queue(
    engine: GatewayEngine,
    queue: int,
    *,
    on_ready: Callable[[], None] | None = None,
    on_hup: Callable[[], None] | None = None,
    before_packet: Callable[[], object] | None = None,
) -> None:
    """Serve an NFQUEUE until SIGTERM or SIGINT (needs root and ``netfilterqueue``).

    Args:
        engine: decides.
        queue: the queue number (as in :class:`~sluice.gateway.rules.RuleSet`).
        on_ready: called once the queue is bound.
        on_hup: called from the SIGHUP handler (keep it short: e.g. wake a loader thread).
        before_packet: called before each packet (e.g. to hand a reloaded policy to the engine).

    Raises:
        ImportError: ``netfilterqueue`` is not installed.
        OSError: the queue cannot be bound (not root, or another process holds it).
    """
    from netfilterqueue import NetfilterQueue  # type: ignore[import-not-found,unused-ignore]

    def callback(pkt: Any) -> None:
        try:
            if before_packet is not None:
                before_packet()
            v = engine.handle(pkt.get_payload())
        except Exception as exc:  # never leave a packet without a verdict
            print(f"sluice gateway: error on a packet: {exc!r}", file=sys.stderr, flush=True)
            pkt.accept()
            return
        if v.mark:
            pkt.set_mark((int(pkt.get_mark()) & ~MARK_MASK & 0xFFFFFFFF) | v.mark)
            pkt.repeat()
        else:
            pkt.accept()

    nfq = NetfilterQueue()
    nfq.bind(queue, callback, max_len=4096)
    sock = socket.fromfd(nfq.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW)
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    old_hup = signal.signal(signal.SIGHUP, lambda *_: on_hup() if on_hup is not None else None)
    try:
        if on_ready is not None:
            on_ready()
        nfq.run_socket(sock)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)
        sock.close()
        nfq.unbind()
