"""The streaming flow table: packets in, early and final :class:`FlowRecord` out.

Theory of operation: a flow is keyed by its two endpoints in a canonical order (the smaller
address/port pair first), the IP protocol, the VLAN stack and the tunnel context, so both
directions of a conversation land on one entry. The client is the sender of the flow's first
packet, unless that packet is a TCP SYN+ACK, in which case its receiver is. A packet that arrives
more than ``idle_timeout_s`` after the flow's last one, or more than ``active_timeout_s`` after its
first one, ends the old flow and starts a new one; :meth:`FlowTable.expire` does the same for
flows that simply stop, so memory stays bounded by the number of live flows. ``max_flows`` bounds
it absolutely: when full, the least recently seen flow is evicted and ``flows.table_full`` counted.

Every method that depends on time takes ``now`` (capture time, seconds); the table never reads a
clock, so the same capture always gives the same flows. The batch path
(:mod:`sluice.batch.flows`) implements the same rules on columns; tests prove they agree.
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_TIMEOUT_S",
    "EARLY_PACKETS",
    "IDLE_TIMEOUT_S",
    "INSPECT_PACKETS",
    "MAX_FLOWS",
    "SEQUENCE_PACKETS",
    "FlowConfig",
    "FlowState",
    "FlowTable",
    "flow_key",
    "format_tunnels",
    "payload_stats",
]

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass

import numpy as np

from sluice.flows.app import AppInspector
from sluice.flows.record import HEAD_BYTES, FlowRecord, format_addr
from sluice.flows.stats import byte_stats
from sluice.wire.packet import Packet
from sluice.wire.transport import TcpFlags

IDLE_TIMEOUT_S = 120.0
ACTIVE_TIMEOUT_S = 1800.0
MAX_FLOWS = 1_000_000
EARLY_PACKETS = 8
"""Packets an early record holds by default, and the packets the per-packet feature columns
read (:mod:`sluice.features.flow` takes it from here: one definition)."""
SEQUENCE_PACKETS = 32
INSPECT_PACKETS = 32

_SYNACK = TcpFlags.SYN | TcpFlags.ACK

TunnelContext = tuple[tuple[str, bytes, bytes, int], ...]
FlowKey = tuple[bytes, int, bytes, int, int, tuple[int, ...], TunnelContext]


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Limits and timeouts of flow tracking (both paths)."""

    idle_timeout_s: float = IDLE_TIMEOUT_S
    """A gap longer than this ends a flow."""
    active_timeout_s: float = ACTIVE_TIMEOUT_S
    """A flow older than this is ended and a new one started."""
    max_flows: int = MAX_FLOWS
    """Flows held in memory at most (streaming path)."""
    early_packets: int = EARLY_PACKETS
    """Emit the early record when a flow reaches this many packets (0: never)."""
    inspect_packets: int = INSPECT_PACKETS
    """Payloads of the first this-many packets of a flow go to the application inspectors."""


def flow_key(pkt: Packet) -> tuple[FlowKey, bool]:
    """Canonical key of the packet's flow, and whether the packet goes from side A to side B."""
    fwd = (pkt.src, pkt.sport) <= (pkt.dst, pkt.dport)
    tun: TunnelContext = ()
    if pkt.tunnels:
        tun = tuple(
            (t.kind, t.src, t.dst, t.ident if t.kind == "vxlan" else 0)
            if fwd
            else (t.kind, t.dst, t.src, t.ident if t.kind == "vxlan" else 0)
            for t in pkt.tunnels
        )
    if fwd:
        return (pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.proto, pkt.vlans, tun), True
    return (pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.proto, pkt.vlans, tun), False


def payload_stats(payload: bytes) -> tuple[float, float]:
    """Shannon entropy in bits per byte, and the printable fraction, of a payload (-1 if empty)."""
    if not payload:
        return -1.0, -1.0
    ent, printable = byte_stats(np.frombuffer(payload, np.uint8), 0, len(payload))
    return round(float(ent), 6), round(float(printable), 6)


def format_tunnels(tun: TunnelContext, a_is_client: bool) -> str:
    """Text form of a flow's tunnel context, oriented client to server."""
    if not tun:
        return ""
    return "|".join(
        f"{kind}{'/' + str(ident) if ident else ''}:"
        + (f"{format_addr(s)}>{format_addr(d)}" if a_is_client else f"{format_addr(d)}>{format_addr(s)}")
        for kind, s, d, ident in tun
    )


class FlowState:
    """Mutable state of one live flow."""

    __slots__ = (
        "a_is_client",
        "bytes",
        "dirs",
        "early_sent",
        "first_payload",
        "first_ts",
        "flags",
        "flow_id",
        "iats",
        "inspector",
        "key",
        "last_ts",
        "packets",
        "payload_bytes",
        "sizes",
    )

    def __init__(self, key: FlowKey, flow_id: int, a_is_client: bool, ts: float) -> None:
        self.key = key
        self.flow_id = flow_id
        self.a_is_client = a_is_client
        self.first_ts = ts
        self.last_ts = ts
        self.packets = [0, 0]
        self.bytes = [0, 0]
        self.payload_bytes = [0, 0]
        self.flags = [0, 0]
        self.sizes: list[int] = []
        self.dirs: list[int] = []
        self.iats: list[float] = []
        self.first_payload: list[bytes | None] = [None, None]
        self.inspector: AppInspector | None = None
        self.early_sent = False

    @property
    def ports(self) -> tuple[int, int]:
        """(client port, server port)."""
        if self.a_is_client:
            return self.key[1], self.key[3]
        return self.key[3], self.key[1]

    @property
    def count(self) -> int:
        """Packets seen in both directions."""
        return self.packets[0] + self.packets[1]

    def record(self, early: bool, reason: str) -> FlowRecord:
        """Build the flow record from the current state."""
        a_addr, a_port, b_addr, b_port, proto, vlans, tun = self.key
        if self.a_is_client:
            client, cport, server, sport = a_addr, a_port, b_addr, b_port
        else:
            client, cport, server, sport = b_addr, b_port, a_addr, a_port
        tunnels = format_tunnels(tun, self.a_is_client)
        c2s = payload_stats(self.first_payload[0] or b"")
        s2c = payload_stats(self.first_payload[1] or b"")
        meta = self.inspector.meta if self.inspector is not None else None
        rec = FlowRecord(
            flow_id=self.flow_id,
            early=early,
            end_reason=reason,
            ip_version=4 if len(a_addr) == 4 else 6,
            client=format_addr(client),
            client_port=cport,
            server=format_addr(server),
            server_port=sport,
            proto=proto,
            vlans=vlans,
            tunnels=tunnels,
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            c2s_packets=self.packets[0],
            s2c_packets=self.packets[1],
            c2s_bytes=self.bytes[0],
            s2c_bytes=self.bytes[1],
            c2s_payload_bytes=self.payload_bytes[0],
            s2c_payload_bytes=self.payload_bytes[1],
            c2s_tcp_flags=self.flags[0],
            s2c_tcp_flags=self.flags[1],
            pkt_sizes=tuple(self.sizes),
            pkt_dirs=tuple(self.dirs),
            pkt_iats=tuple(self.iats),
            c2s_entropy=c2s[0],
            c2s_printable=c2s[1],
            s2c_entropy=s2c[0],
            s2c_printable=s2c[1],
            c2s_first_payload_len=len(self.first_payload[0] or b""),
            c2s_head=(self.first_payload[0] or b"")[:HEAD_BYTES].hex(),
            s2c_head=(self.first_payload[1] or b"")[:HEAD_BYTES].hex(),
        )
        if meta is not None:
            rec.meta = meta.copy()
        return rec


class FlowTable:
    """Bounded table of live flows (the streaming path).

    Args:
        config: timeouts and limits.
    """

    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()
        self.flows: OrderedDict[FlowKey, FlowState] = OrderedDict()
        self.anomalies: Counter[str] = Counter()
        self.next_id = 0
        self.flows_total = 0
        self.clock = -math.inf
        """The capture clock: the latest packet time seen (timestamps may go backwards)."""

    def add(self, pkt: Packet, ts: float, wirelen: int, out: list[FlowRecord]) -> tuple[FlowState, int]:
        """Account one decoded IP packet; append records it ends (and the early one) to ``out``.

        Returns:
            (the flow's state, the packet's direction: 0 client to server, 1 server to client).
        """
        key, fwd = flow_key(pkt)
        cfg = self.config
        flows = self.flows
        if ts > self.clock:
            self.clock = ts
        clock = self.clock
        st = flows.get(key)
        if st is not None:
            if clock - st.last_ts > cfg.idle_timeout_s:
                out.append(st.record(False, "idle"))
                st = None
            elif clock - st.first_ts > cfg.active_timeout_s:
                out.append(st.record(False, "active"))
                st = None
            else:
                flows.move_to_end(key)
        if st is None:
            if key not in flows and len(flows) >= cfg.max_flows:
                _old_key, old = flows.popitem(last=False)
                self.anomalies["flows.table_full"] += 1
                out.append(old.record(False, "evicted"))
            a_is_client = fwd != (pkt.tcp_flags & _SYNACK == _SYNACK and pkt.proto == 6)
            st = FlowState(key, self.next_id, a_is_client, ts)
            self.next_id += 1
            self.flows_total += 1
            flows[key] = st
            flows.move_to_end(key)
        d = 0 if fwd == st.a_is_client else 1
        n = st.count
        if n < SEQUENCE_PACKETS:
            st.sizes.append(pkt.ip_len)
            st.dirs.append(d)
            st.iats.append(max(0.0, ts - st.last_ts) if n else 0.0)
        st.last_ts = max(st.last_ts, ts)
        st.packets[d] += 1
        st.bytes[d] += wirelen
        st.flags[d] |= pkt.tcp_flags
        if pkt.payload:
            st.payload_bytes[d] += len(pkt.payload)
            if st.first_payload[d] is None and (pkt.fragment is None or not pkt.fragment.offset):
                st.first_payload[d] = pkt.payload
        return st, d

    def expire(self, now: float, out: list[FlowRecord]) -> None:
        """End flows whose last packet is more than the idle timeout before ``now``.

        Flows are checked from the least recently updated; when timestamps go backwards a flow
        may be left for :meth:`add` or :meth:`flush`, which apply the same rule.

        The active timeout is applied when a flow's next packet arrives (a flow that stops is
        ended by the idle timeout), so the reason of every record follows from the packets alone.
        """
        idle = self.config.idle_timeout_s
        flows = self.flows
        now = max(now, self.clock)
        while flows:
            key, st = next(iter(flows.items()))
            if now - st.last_ts <= idle:
                break
            del flows[key]
            out.append(st.record(False, "idle"))

    def flush(self, out: list[FlowRecord]) -> None:
        """End every live flow (end of the capture)."""
        idle = self.config.idle_timeout_s
        for st in self.flows.values():
            out.append(st.record(False, "idle" if self.clock - st.last_ts > idle else "end"))
        self.flows.clear()
