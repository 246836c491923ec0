"""Per-packet decisions of the inline gateway.

Theory of operation: :class:`GatewayEngine` sees the first packets of every connection (the
kernel queues at most ``RuleSet.packets`` of them, see :mod:`sluice.gateway.rules`) as raw IP
datagrams. It keeps a small state per connection (client = sender of the first packet seen, an
:class:`~sluice.flows.app.AppInspector`), and decides as soon as the connection's server name is
known (TLS or QUIC SNI, HTTP Host, DNS query), the inspector has nothing more to find, or
``decide_after`` packets have gone by. The decision (:meth:`Policy.decide
<sluice.policy.Policy.decide>` with the register matches of the name and the server address; no
detector verdict) is written to the decision log and turned into a conntrack mark (see
:func:`mark_for`); the kernel applies it to the rest of the connection. Undecided packets are
accepted unmarked. :func:`run_queue` binds the engine to an NFQUEUE with ``netfilterqueue``.

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

import signal
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.errors import DecodeError
from sluice.flows.app import AppInspector
from sluice.flows.record import FlowRecord, format_addr
from sluice.gateway.rules import DEFAULT_PACKETS, MARK_ALLOW, MARK_DROP, MARK_MASK, MARK_RESET, MARK_THROTTLE
from sluice.io.source import LinkType
from sluice.policy.model import Action, Decision, Mode, Policy
from sluice.wire.packet import Packet, decode_packet

if TYPE_CHECKING:
    from sluice.decisions.log import DecisionLog
    from sluice.registry.matcher import Match, Matcher

MAX_PENDING = 65536
"""Undecided connections tracked at once (the oldest is decided-by-default and forgotten beyond)."""
DECIDED_CACHE = 16384
"""Recently decided connections remembered (packets queued before the conntrack mark was set)."""
PENDING_IDLE_S = 30.0
"""An undecided connection silent this long is forgotten."""

_Key = tuple[bytes, int, bytes, int, int]


def mark_for(decision: Decision) -> int:
    """The conntrack mark that applies a decision (shadow decisions and ``allow``/``log`` pass)."""
    if decision.mode is Mode.SHADOW or not decision.enforced:
        return MARK_ALLOW
    if decision.action is Action.BLOCK:
        return MARK_DROP
    if decision.action is Action.RESET:
        return MARK_RESET
    if decision.action is Action.THROTTLE:
        return MARK_THROTTLE
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
    marked: dict[int, int] | None = None
    """Packets per mark given (0 = accepted undecided)."""
    undecodable: int = 0
    """Packets that did not decode (accepted unmarked)."""
    inspect_errors: int = 0
    """Connections whose payload a dissector refused (decided without the name)."""
    evicted: int = 0
    """Undecided connections forgotten (table full or idle)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "packets": self.packets,
            "decisions": self.decisions,
            "marked": {f"{k:#x}": v for k, v in sorted((self.marked or {}).items())},
            "undecodable": self.undecodable,
            "inspect_errors": self.inspect_errors,
            "evicted": self.evicted,
        }


class _Conn:
    __slots__ = ("client", "client_port", "first_ts", "insp", "last_ts", "packets", "server", "server_port")

    def __init__(self, pkt: Packet, now: float) -> None:
        self.client, self.client_port = pkt.src, pkt.sport
        self.server, self.server_port = pkt.dst, pkt.dport
        self.insp = AppInspector(pkt.proto, pkt.sport, pkt.dport)
        self.packets = 0
        self.first_ts = self.last_ts = now


class GatewayEngine:
    """Decide connections from their first packets.

    Args:
        policy: the policy.
        matcher: the register (None: no register matches).
        log: where decisions go (None: nowhere).
        decide_after: decide with what is known after this many packets of a connection; keep it
            below the kernel's ``RuleSet.packets``.
        capture: recorded in every decision (e.g. ``nfqueue:0``).
        clock: wall clock for decision times.
    """

    def __init__(
        self,
        policy: Policy,
        matcher: Matcher | None = None,
        log: DecisionLog | None = None,
        *,
        decide_after: int = DEFAULT_PACKETS - 2,
        capture: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.matcher = matcher
        self.log = log
        self.decide_after = max(1, decide_after)
        self.capture = capture
        self._clock = clock
        self._pending: OrderedDict[_Key, _Conn] = OrderedDict()
        self._decided: OrderedDict[_Key, int] = OrderedDict()
        self._next_id = 1
        self.stats = GatewayStats(marked={})

    def reload(self, policy: Policy | None = None, matcher: Matcher | None = None) -> None:
        """Use a new policy and/or register for connections not decided yet."""
        if policy is not None:
            self.policy = policy
        if matcher is not None:
            self.matcher = matcher
        self._decided.clear()

    def handle(self, raw: bytes) -> Verdict:
        """The verdict for one queued IP datagram (never raises on bad input)."""
        self.stats.packets += 1
        v = self._handle(raw)
        marked = self.stats.marked
        assert marked is not None
        marked[v.mark] = marked.get(v.mark, 0) + 1
        return v

    def _handle(self, raw: bytes) -> Verdict:
        pkt = Packet()
        try:
            decode_packet(raw, LinkType.RAW, pkt)
        except DecodeError:
            self.stats.undecodable += 1
            return Verdict(0)
        if pkt.ip_version == 0 or pkt.tunnels or (pkt.fragment is not None and pkt.fragment.offset):
            return Verdict(0)
        fwd: _Key = (pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.proto)
        rev: _Key = (pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.proto)
        for key in (fwd, rev):
            mark = self._decided.get(key)
            if mark is not None:
                return Verdict(mark)
        now = self._clock()
        conn = self._pending.get(fwd)
        key, d = fwd, 0
        if conn is None:
            conn = self._pending.get(rev)
            key, d = rev, 1
        if conn is None:
            self._evict(now)
            key, d = fwd, 0
            conn = self._pending[key] = _Conn(pkt, now)
        else:
            self._pending.move_to_end(key)
        conn.packets += 1
        conn.last_ts = now
        insp = conn.insp
        try:
            insp.feed(d, pkt.payload, pkt.seq, pkt.tcp_flags)
        except DecodeError:
            self.stats.inspect_errors += 1
            insp.abort()
        if not (insp.meta.server_name or insp.done or conn.packets >= self.decide_after):
            return Verdict(0)
        decision = self._decide(conn, pkt.ip_version, now)
        del self._pending[key]
        mark = mark_for(decision)
        self._decided[key] = mark
        if len(self._decided) > DECIDED_CACHE:
            self._decided.popitem(last=False)
        return Verdict(mark, decision)

    def _evict(self, now: float) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if len(self._pending) < MAX_PENDING and now - oldest.last_ts < PENDING_IDLE_S:
                break
            self._pending.popitem(last=False)
            self.stats.evicted += 1

    def _decide(self, conn: _Conn, ip_version: int, now: float) -> Decision:
        server = format_addr(conn.server)
        rec = FlowRecord(
            flow_id=self._next_id,
            early=True,
            end_reason="early",
            ip_version=ip_version,
            client=format_addr(conn.client),
            client_port=conn.client_port,
            server=server,
            server_port=conn.server_port,
            proto=conn.insp.proto,
            vlans=(),
            tunnels="",
            first_ts=conn.first_ts,
            last_ts=now,
            c2s_packets=0,
            s2c_packets=0,
            c2s_bytes=0,
            s2c_bytes=0,
            c2s_payload_bytes=0,
            s2c_payload_bytes=0,
            c2s_tcp_flags=0,
            s2c_tcp_flags=0,
            pkt_sizes=(),
            pkt_dirs=(),
            pkt_iats=(),
            c2s_entropy=-1.0,
            c2s_printable=-1.0,
            s2c_entropy=-1.0,
            s2c_printable=-1.0,
            c2s_first_payload_len=0,
            c2s_head="",
            s2c_head="",
            meta=conn.insp.meta.copy(),
        )
        self._next_id += 1
        matches: list[Match] = []
        if self.matcher is not None:
            name = rec.meta.server_name
            if name:
                matches.extend(self.matcher.match_host(name))
            matches.extend(self.matcher.match_ip(server))
        decision = self.policy.decide(rec, None, matches, now=now, capture=self.capture)
        self.stats.decisions += 1
        if self.log is not None:
            self.log.write(decision)
        return decision


def run_queue(
    engine: GatewayEngine,
    queue: int,
    *,
    on_ready: Callable[[], None] | None = None,
    on_hup: Callable[[], None] | None = None,
) -> None:
    """Serve an NFQUEUE until SIGTERM or SIGINT (needs root and ``netfilterqueue``).

    Args:
        engine: decides.
        queue: the queue number (as in :class:`~sluice.gateway.rules.RuleSet`).
        on_ready: called once the queue is bound.
        on_hup: called (between packets) after each SIGHUP, to reload policy and register.

    Raises:
        ImportError: ``netfilterqueue`` is not installed.
        OSError: the queue cannot be bound (not root, or another process holds it).
    """
    from netfilterqueue import NetfilterQueue  # type: ignore[import-not-found,unused-ignore]

    hup = [False]

    def callback(pkt: Any) -> None:
        if hup[0] and on_hup is not None:
            hup[0] = False
            on_hup()
        try:
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
    old_hup = signal.signal(signal.SIGHUP, lambda *_: hup.__setitem__(0, True))
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
