"""Per-packet decisions of the inline gateway.

Theory of operation: :class:`GatewayEngine` sees the first packets of every connection (the
kernel queues at most ``RuleSet.packets`` of them, see :mod:`sluice.gateway.rules`) as raw IP
datagrams and accounts them with the spine's own :class:`~sluice.flows.loop.PacketLoop` (flow
table, fragment reassembly, application inspectors), so a connection's early record here is the
record ``sluice flows --early`` would give. It decides a connection at the first point where the
decision cannot change any more:

1. once the server name is known (TLS/QUIC SNI, HTTP Host, DNS query) or the inspectors have
   nothing more to find, when no detector verdict could change the policy's answer (see
   :meth:`Policy.settled <sluice.policy.model.Policy.settled>`): a register block is applied on
   the ClientHello or the QUIC Initial;
2. when a fingerprint (layer 1) finds a VPN, proxy, tunnel or circumvention protocol on the
   first payload of either direction (the fully-encrypted test alone decides here only when no
   model is loaded: the model may still name the family);
3. otherwise after ``decide_after`` packets, when the connection ends (FIN/RST), or for a DNS
   exchange once the answer is seen: then with every layer, the trained model included.

The decision (:meth:`Policy.decide <sluice.policy.model.Policy.decide>` with the verdict and the
register matches of the name and the server address) is written to the decision log and turned
into a conntrack mark (see :func:`mark_for`); the kernel applies it to the rest of the
connection. Undecided packets are accepted unmarked. A tunnelled flow (VXLAN, GRE...) shares its
outer connection with every other flow of the tunnel, so only a non-pass decision marks it.
:func:`run_queue` binds the engine to an NFQUEUE with ``netfilterqueue``.

Policy and register are swapped with :meth:`GatewayEngine.reload`: connections already decided
keep their conntrack mark, new ones get the new decision.
"""

from __future__ import annotations

__all__ = [
    "DECIDED_CACHE",
    "MAX_PENDING",
    "GatewayEngine",
    "GatewayStats",
    "Verdict",
    "mark_for",
    "run_queue",
]

import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.detect.combiner import Combiner
from sluice.features.flow import EARLY_PACKETS
from sluice.flows.loop import PacketLoop
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig, FlowKey, FlowState
from sluice.gateway.rules import MARK_ALLOW, MARK_DROP, MARK_MASK, MARK_RESET, MARK_THROTTLE
from sluice.gateway.shaper import ThrottleClass, throttle_classes, throttle_mark
from sluice.io.source import LinkType, RawPacket
from sluice.policy.model import Action, Decision, Mode, Policy
from sluice.wire.packet import Packet
from sluice.wire.transport import TcpFlags

if TYPE_CHECKING:
    from sluice.decisions.log import DecisionLog
    from sluice.detect.verdict import Verdict as DetectorVerdict
    from sluice.registry.matcher import Match, Matcher

MAX_PENDING = 65536
"""Undecided connections tracked at once (the least recently seen is forgotten beyond)."""
DECIDED_CACHE = 16384
"""Recently decided connections remembered (packets queued before the conntrack mark was set)."""
MATCH_CACHE = 65536
"""Server names and addresses whose register matches are remembered (until a reload)."""
PENDING_IDLE_S = 30.0
"""An undecided connection silent this long is forgotten."""

_ENDING = TcpFlags.FIN | TcpFlags.RST
_FINGERPRINT = "combiner:fingerprint:"


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
class Verdict:
    """What to do with one queued packet."""

    mark: int
    """0: accept unmarked (connection not decided yet); else the mark to set and repeat with."""
    decision: Decision | None = None
    """The decision made on this packet (None when none was made on it)."""


@dataclass(slots=True)
class GatewayStats:
    """Counters of one engine."""

    packets: int = 0
    """Packets seen."""
    decisions: int = 0
    """Decisions made."""
    marked: dict[int, int] = field(default_factory=dict)
    """Packets per mark given (0 = accepted undecided)."""
    undecodable: int = 0
    """Packets that did not decode or carry no IP (accepted unmarked)."""
    by_stage: dict[str, int] = field(default_factory=dict)
    """Decisions per stage: ``settled``, ``fingerprint``, ``final``."""
    detector_seconds: float = 0.0
    """Time spent in the detectors."""

    def to_dict(self, anomalies: dict[str, int] | None = None) -> dict[str, Any]:
        """JSON-friendly form (with the packet path's anomaly counters, when given)."""
        return {
            "packets": self.packets,
            "decisions": self.decisions,
            "marked": {f"{k:#x}": v for k, v in sorted(self.marked.items())},
            "undecodable": self.undecodable,
            "by_stage": dict(sorted(self.by_stage.items())),
            "detector_seconds": round(self.detector_seconds, 3),
            "anomalies": dict(sorted((anomalies or {}).items())),
        }


class GatewayEngine:
    """Decide connections from their first packets.

    Args:
        policy: the policy.
        matcher: the register (None: no register matches).
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
        matcher: Matcher | None = None,
        log: DecisionLog | None = None,
        *,
        detector: Combiner | None = None,
        decide_after: int = EARLY_PACKETS,
        capture: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self._classes = throttle_classes(policy)
        self.matcher = matcher
        self.log = log
        self.detector = detector
        self._quick = (
            Combiner(None, fingerprints=detector.fingerprints, fet=detector.fet, use_fet=detector.use_fet)
            if detector is not None
            else None
        )
        self.decide_after = max(1, decide_after)
        self.capture = capture
        self._clock = clock
        config = FlowConfig(
            idle_timeout_s=PENDING_IDLE_S,
            max_flows=MAX_PENDING,
            early_packets=0,
            inspect_packets=max(self.decide_after, EARLY_PACKETS),
        )
        self._loop = PacketLoop(config)
        self._ended: list[FlowRecord] = []
        self._decided: OrderedDict[FlowKey, int] = OrderedDict()
        self._match_cache: dict[str, list[Match]] = {}
        self.stats = GatewayStats()

    @property
    def anomalies(self) -> dict[str, int]:
        """Problems of the packet path by reason (undecodable packets, refused payloads...)."""
        counts = dict(self._loop.summary.anomalies)
        counts.update(self._loop.table.anomalies)
        return counts

    def reload(self, policy: Policy | None = None, matcher: Matcher | None = None) -> None:
        """Use a new policy and/or register for connections not decided yet."""
        if policy is not None:
            self._classes = throttle_classes(policy)
            self.policy = policy
        if matcher is not None:
            self.matcher = matcher
        self._decided.clear()
        self._match_cache.clear()

    def handle(self, raw: bytes, linktype: int = LinkType.RAW, ts: float | None = None) -> Verdict:
        """The verdict for one queued IP datagram (never raises on bad input).

        Args:
            raw: the packet (an IP datagram as NFQUEUE gives it).
            linktype: its framing, for replaying captures (:class:`LinkType`).
            ts: its time (default: the engine's clock).
        """
        self.stats.packets += 1
        v = self._handle(raw, linktype, self._clock() if ts is None else ts)
        marked = self.stats.marked
        marked[v.mark] = marked.get(v.mark, 0) + 1
        return v

    def _handle(self, raw: bytes, linktype: int, now: float) -> Verdict:
        res = self._loop.step(RawPacket(now, linktype, raw, len(raw)), self._ended)
        self._ended.clear()
        if res is None:
            self.stats.undecodable += 1
            return Verdict(0)
        pkt, st, d = res
        flows = self._loop.table.flows
        mark = self._decided.get(st.key)
        if mark is not None:
            flows.pop(st.key, None)  # queued before the conntrack mark was set: not a new connection
            return Verdict(mark)
        if pkt.fragment is not None and pkt.fragment.offset:
            return Verdict(0)  # netfilter's conntrack reassembles; a stray fragment decides nothing
        decision = self._consider(st, d, pkt, now)
        if decision is None:
            return Verdict(0)
        del flows[st.key]
        mark = mark_for(decision, self._classes)
        if pkt.tunnels and mark == MARK_ALLOW:
            mark = 0  # the outer connection carries other flows: keep looking at them
        self._decided[st.key] = mark
        if len(self._decided) > DECIDED_CACHE:
            self._decided.popitem(last=False)
        return Verdict(mark, decision)

    def _consider(self, st: FlowState, d: int, pkt: Packet, now: float) -> Decision | None:
        """The decision for this connection if it can be made on this packet, else None."""
        n = st.count
        insp = st.inspector
        meta = insp.meta if insp is not None else None
        ending = bool(pkt.tcp_flags & _ENDING)
        final = n >= self.decide_after or ending
        if meta is not None and meta.app == "dns" and st.packets[1] and st.packets[0]:
            final = True  # a DNS question and its answer: nothing more will come
        # the first payload of either direction: where names and the layers 1-2 are found
        checkpoint = bool(pkt.payload) and st.payload_bytes[d] == len(pkt.payload)
        if not (final or checkpoint):
            return None
        named = (meta is not None and bool(meta.server_name)) or (insp is not None and insp.done)
        rec = st.record(True, "early")
        rec.last_ts = now
        matches = self._matches(rec)
        if final or named:
            idx = self.policy.settled(rec, matches)
            if idx is None and self.detector is None:
                idx = self.policy.first_match(rec, None, matches)
            if idx is not None:
                return self._decide(rec, None, matches, now, "settled", idx)
        if self.detector is None or self._quick is None:
            return None
        t0 = time.perf_counter()
        if final:
            verdict = self.detector.judge(rec)
        else:
            verdict = self._quick.judge(rec)
        self.stats.detector_seconds += time.perf_counter() - t0
        if final:
            return self._decide(rec, verdict, matches, now, "final")
        # a fingerprint finding is what the full combiner would say too; the FET alone is not
        # when a model may still name the family
        if verdict.is_finding and (
            self.detector.model is None or verdict.detector.startswith(_FINGERPRINT)
        ):
            return self._decide(rec, verdict, matches, now, "fingerprint")
        return None

    def _matches(self, rec: FlowRecord) -> list[Match]:
        """Register entries naming the flow's server name or address (cached per name and address)."""
        if self.matcher is None:
            return []
        matches: list[Match] = []
        name = rec.meta.server_name
        if name:
            matches.extend(self._lookup(name, self.matcher.match_host))
        matches.extend(self._lookup(rec.server, self.matcher.match_ip))
        return matches

    def _lookup(self, key: str, fn: Callable[[str], list[Match]]) -> list[Match]:
        cache = self._match_cache
        hit = cache.get(key)
        if hit is None:
            if len(cache) >= MATCH_CACHE:
                cache.clear()
            hit = cache[key] = fn(key)
        return hit

    def _decide(
        self,
        rec: FlowRecord,
        verdict: DetectorVerdict | None,
        matches: list[Match],
        now: float,
        stage: str,
        rule_index: int | None = None,
    ) -> Decision:
        decision = self.policy.decide(
            rec, verdict, matches, now=now, capture=self.capture, rule_index=rule_index
        )
        self.stats.decisions += 1
        self.stats.by_stage[stage] = self.stats.by_stage.get(stage, 0) + 1
        if self.log is not None:
            self.log.write(decision)
        return decision


def warm_up(policy: Policy, matcher: Matcher | None, detector: Combiner | None) -> int:
    """Push one made-up connection through a throwaway engine; the packets it decided.

    The first connection otherwise pays for loading the compiled feature kernels and the model's
    first prediction (seconds on a cold cache), while the client's handshake waits in the queue.
    Call it before announcing the gateway ready (and before forking workers, who inherit it).
    """
    from sluice.synth.packets import ipv4, tcp

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
