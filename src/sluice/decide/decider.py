"""The Decider: packets in, one :class:`~sluice.policy.model.Decision` per connection out.

Theory of operation: :class:`Decider` is the one place where a connection is decided, for the
inline gateway (:mod:`sluice.gateway.engine` adds NFQUEUE marks around it) and for the dry runs
(:mod:`sluice.decide.replay`: ``sluice policy test``, ``sluice analyze --decisions``), which feed
it a capture's packets on the capture's clock. It accounts packets with the spine's own
:class:`~sluice.flows.loop.PacketLoop` (flow table, fragment reassembly, application inspectors),
so a connection's early record here is the record ``sluice flows --early`` would give, and decides
at the first checkpoint (:func:`~sluice.decide.stages.checkpoint`) where the decision cannot
change any more:

1. once the server name is known or the inspectors have nothing more to find, when no verdict
   could change the policy's answer (:meth:`Policy.settled
   <sluice.policy.model.Policy.settled>`): a register block is applied on the ClientHello or the
   QUIC Initial (stage ``settled``);
2. when a fingerprint (layer 1) finds a VPN, proxy, tunnel or circumvention protocol on the first
   payload of either direction (stage ``fingerprint``; the fully-encrypted test alone decides
   here only when no model is loaded: the model may still name the family);
3. otherwise at the final checkpoint with every layer, the trained model included (stage
   ``final``).

The decision is :meth:`Policy.decide <sluice.policy.model.Policy.decide>` with the verdict and
the register matches of the name and the server address (:class:`~sluice.decide.register.
RegisterLookup`, cached). A decided connection leaves the flow table; its later packets are told
the decision they belong to (:attr:`Step.earlier`) until :data:`DECIDED_CACHE` newer decisions
pushed it out. Nothing here reads a clock or does I/O: times are the packets' own, and the time
spent in the detectors is measured only with the ``timer`` the caller gives.
"""

from __future__ import annotations

__all__ = [
    "DECIDED_CACHE",
    "MAX_PENDING",
    "PENDING_IDLE_S",
    "Decider",
    "DeciderStats",
    "DecisionHook",
    "Step",
]

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.decide.register import RegisterLookup
from sluice.decide.stages import Stage, checkpoint
from sluice.detect.combiner import Combiner
from sluice.features.flow import EARLY_PACKETS
from sluice.flows.loop import PacketLoop
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig, FlowKey, FlowState
from sluice.policy.model import Decision, Policy
from sluice.wire.frame import RawPacket
from sluice.wire.packet import Packet
from sluice.wire.transport import TcpFlags

if TYPE_CHECKING:
    from sluice.detect.verdict import Verdict
    from sluice.registry.matcher import Match, Matcher

MAX_PENDING = 65536
"""Undecided connections tracked at once (the least recently seen is forgotten beyond)."""
DECIDED_CACHE = 16384
"""Recently decided connections remembered (their later packets are told the decision). After
:data:`PENDING_IDLE_S` of silence, a packet that may start a connection (a TCP SYN, any UDP
datagram) with the same addresses and ports starts a new one (conntrack's UDP timeouts are of
that order); any other packet still belongs to the decided connection."""
PENDING_IDLE_S = 30.0
"""An undecided connection silent this long is forgotten."""

_FINGERPRINT = "combiner:fingerprint:"
_SYNACK = TcpFlags.SYN | TcpFlags.ACK

DecisionHook = Callable[[FlowRecord, "Verdict | None", "list[Match]", Decision], None]
"""``on_decision(record, verdict, matches, decision)``."""


@dataclass(slots=True)
class DeciderStats:
    """Counters of one Decider."""

    decisions: int = 0
    """Decisions made."""
    by_stage: dict[str, int] = field(default_factory=dict)
    """Decisions per stage: ``settled``, ``fingerprint``, ``final``."""
    detector_seconds: float = 0.0
    """Time spent in the detectors (measured only when the Decider was given a timer)."""


class Step:
    """What one packet did to its connection (made once per packet: a plain slotted class)."""

    __slots__ = ("decision", "earlier", "key", "state", "tunnelled")

    def __init__(
        self,
        key: FlowKey,
        state: FlowState | None,
        decision: Decision | None = None,
        earlier: Decision | None = None,
        tunnelled: bool = False,
    ) -> None:
        self.key = key
        """The connection's flow key."""
        self.state = state
        """Its state in the table (None when it was decided before this packet)."""
        self.decision = decision
        """The decision made on this packet (None when none was)."""
        self.earlier = earlier
        """The decision made on an earlier packet of the connection (None when undecided)."""
        self.tunnelled = tunnelled
        """The packet is inside a tunnel (VXLAN, GRE ...): its outer connection carries other flows."""


class Decider:
    """Decide connections from their first packets, packet by packet.

    Args:
        policy: the policy.
        register: the register lookup (a bare :class:`~sluice.registry.matcher.Matcher` is
            wrapped; None: no register matches).
        combiner: the detectors whose verdict the policy's ``class``/``family``/
            ``min_confidence`` rules read; None: no verdicts, such rules never match.
        decide_after: the final checkpoint's packet count (see
            :func:`~sluice.decide.stages.decide_after_for`).
        capture: recorded in every decision (``nfqueue:0``, a capture file's name).
        dry_run: decisions enforce nothing (``enforced`` False).
        timer: measures the time spent in the detectors (e.g. ``time.perf_counter``); None: not
            measured.
        stats: the counters to add to (default: new ones).
        on_decision: called with each decision's record, verdict and register matches, and the
            decision (a dry run counts the rules that matched with it).
    """

    def __init__(
        self,
        policy: Policy,
        register: RegisterLookup | Matcher | None = None,
        *,
        combiner: Combiner | None = None,
        decide_after: int = EARLY_PACKETS,
        capture: str = "",
        dry_run: bool = False,
        timer: Callable[[], float] | None = None,
        stats: DeciderStats | None = None,
        on_decision: DecisionHook | None = None,
    ) -> None:
        self.policy = policy
        self.register = _as_lookup(register)
        self.combiner = combiner
        self._quick = _quick(combiner)
        self.decide_after = max(1, decide_after)
        self.capture = capture
        self.dry_run = dry_run
        self._timer = timer
        self.stats = stats if stats is not None else DeciderStats()
        self._on_decision = on_decision
        config = FlowConfig(
            idle_timeout_s=PENDING_IDLE_S,
            max_flows=MAX_PENDING,
            early_packets=0,
            inspect_packets=max(self.decide_after, EARLY_PACKETS),
        )
        self.loop = PacketLoop(config)
        self._ended: list[FlowRecord] = []
        self._decided: OrderedDict[FlowKey, list[Any]] = OrderedDict()  # [decision, last seen]

    @property
    def anomalies(self) -> dict[str, int]:
        """Problems of the packet path by reason (undecodable packets, refused payloads...)."""
        counts = dict(self.loop.summary.anomalies)
        counts.update(self.loop.table.anomalies)
        return counts

    def reload(self, policy: Policy | None = None, register: RegisterLookup | Matcher | None = None) -> None:
        """Use a new policy and/or register for connections not decided yet."""
        if policy is not None:
            self.policy = policy
        if register is not None:
            self.register = _as_lookup(register)
        self._decided.clear()

    def step(self, raw: RawPacket) -> Step | None:
        """Account one packet and decide its connection if this packet can (never raises on bad input).

        Returns:
            What the packet did, or None when it did not decode or carries no IP (counted in
            :attr:`anomalies`).
        """
        res = self.loop.step(raw, self._ended)
        self._ended.clear()
        if res is None:
            return None
        pkt, st, d = res
        key = st.key
        seen = self._decided.get(key)
        if seen is not None:
            if raw.ts - seen[1] <= PENDING_IDLE_S or not _starts(pkt):
                seen[1] = max(seen[1], raw.ts)
                del self.loop.table.flows[key]  # a packet of a decided connection: not a new one
                return Step(key, None, earlier=seen[0], tunnelled=bool(pkt.tunnels))
            del self._decided[key]  # silent too long, and a connection's first packet: a new one
        if pkt.fragment is not None and pkt.fragment.offset:
            return Step(key, st)  # netfilter's conntrack reassembles; a stray fragment decides nothing
        decision = self._consider(st, d, pkt, raw.ts)
        if decision is None:
            return Step(key, st)
        del self.loop.table.flows[key]
        self._decided[key] = [decision, raw.ts]
        if len(self._decided) > DECIDED_CACHE:
            self._decided.popitem(last=False)
        return Step(key, st, decision, tunnelled=bool(pkt.tunnels))

    def _consider(self, st: FlowState, d: int, pkt: Packet, now: float) -> Decision | None:
        """The decision for this connection if it can be made on this packet, else None."""
        cp = checkpoint(st, d, pkt, self.decide_after)
        if cp is None:
            return None
        final, named = cp
        rec = st.record(True, "early")
        rec.last_ts = now
        at = st.count - 1
        matches = self.register.for_flow(rec) if self.register is not None else []
        if final or named:
            idx = self.policy.settled(rec, matches)
            if idx is None and self.combiner is None:
                idx = self.policy.first_match(rec, None, matches)
            if idx is not None:
                return self._decide(rec, None, matches, now, Stage.SETTLED, at, idx)
        if self.combiner is None or self._quick is None:
            return None
        timer = self._timer
        t0 = timer() if timer is not None else 0.0
        verdict = self.combiner.judge(rec) if final else self._quick.judge(rec)
        if timer is not None:
            self.stats.detector_seconds += timer() - t0
        if final:
            return self._decide(rec, verdict, matches, now, Stage.FINAL, at)
        # a fingerprint finding is what the full combiner would say too; the FET alone is not
        # when a model may still name the family
        if verdict.is_finding and (self.combiner.model is None or verdict.detector.startswith(_FINGERPRINT)):
            return self._decide(rec, verdict, matches, now, Stage.FINGERPRINT, at)
        return None

    def _decide(
        self,
        rec: FlowRecord,
        verdict: Verdict | None,
        matches: list[Match],
        now: float,
        stage: Stage,
        at: int,
        rule_index: int | None = None,
    ) -> Decision:
        decision = self.policy.decide(
            rec,
            verdict,
            matches,
            now=now,
            dry_run=self.dry_run,
            capture=self.capture,
            rule_index=rule_index,
            stage=stage.value,
            decided_at=at,
        )
        stats = self.stats
        stats.decisions += 1
        stats.by_stage[stage.value] = stats.by_stage.get(stage.value, 0) + 1
        if self._on_decision is not None:
            self._on_decision(rec, verdict, matches, decision)
        return decision


def _starts(pkt: Packet) -> bool:
    """Whether a packet may start a connection (TCP: a SYN without ACK; any other protocol)."""
    return pkt.proto != 6 or pkt.tcp_flags & _SYNACK == TcpFlags.SYN


def _as_lookup(register: RegisterLookup | Matcher | None) -> RegisterLookup | None:
    if register is None or isinstance(register, RegisterLookup):
        return register
    return RegisterLookup(register)


def _quick(combiner: Combiner | None) -> Combiner | None:
    """The combiner's layers 1-2 (for first payloads: fingerprints and the FET, no model)."""
    if combiner is None:
        return None
    if combiner.model is None:
        return combiner
    return Combiner(
        None,
        fingerprints=combiner.fingerprints,
        fet=combiner.fet,
        use_fet=combiner.use_fet,
        catalogue=combiner.catalogue,
        name_services=combiner.catalogue is not None,
    )
