"""The one packet loop: raw frames in, flow records out, every problem counted.

Theory of operation: :class:`PacketLoop` is the only place in sluice that catches errors on the
packet path. A :class:`~sluice.errors.DecodeError` from any dissector is counted under its reason
and the loop goes on (a packet whose L2–L4 headers fail is left out of the flows; a payload whose
application dissector fails stops inspection of that flow only). Any other exception is a bug: it
is re-raised when ``strict`` (tests, CI) and counted as ``internal.error`` otherwise. The batch
path reuses :meth:`PacketLoop.decode` and :meth:`PacketLoop.inspect` for the packets it does not
vectorise, so both paths count the same anomalies.
"""

from __future__ import annotations

__all__ = ["FragmentTracker", "Malformed", "PacketLoop", "RunSummary"]

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sluice.errors import DecodeError
from sluice.flows.app import AppInspector
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig, FlowState, FlowTable
from sluice.wire.frame import RawPacket
from sluice.wire.packet import Packet, decode_packet

log = logging.getLogger(__name__)

MAX_FRAGMENT_DATAGRAMS = 4096
FRAGMENT_BUDGET_BYTES = 16 * 1024 * 1024
MAX_MALFORMED_KEPT = 100


@dataclass(frozen=True, slots=True)
class Malformed:
    """A packet a dissector refused (the first ones of a run are kept for inspection)."""

    index: int
    """Index of the packet in the run (0-based)."""
    ts: float
    """Capture time."""
    reason: str
    """Stable reason code."""
    offset: int
    """Offset in the frame where decoding failed."""
    head: str
    """Hex of the frame's first 32 bytes."""


@dataclass
class RunSummary:
    """What a run saw: packets, flows and anomalies by reason."""

    packets: int = 0
    """Frames read."""
    ip_packets: int = 0
    """Frames that decoded to an IP packet and were put in a flow."""
    non_ip: int = 0
    """Frames without IP (ARP, LLDP ...): not an anomaly, not in flows."""
    flows: int = 0
    """Flows started."""
    early_records: int = 0
    """Early records emitted."""
    anomalies: Counter[str] = field(default_factory=Counter)
    """Counted problems by reason."""
    malformed: list[Malformed] = field(default_factory=list)
    """The first malformed packets."""

    def merge_counts(self, counts: dict[str, int]) -> None:
        """Add counters (from a capture source) to the anomalies."""
        for reason, n in counts.items():
            self.anomalies[reason] += n

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "packets": self.packets,
            "ip_packets": self.ip_packets,
            "non_ip": self.non_ip,
            "flows": self.flows,
            "early_records": self.early_records,
            "anomalies": dict(sorted(self.anomalies.items())),
        }


class _Datagram:
    __slots__ = ("flags", "header_len", "pieces", "ports", "seq", "stored", "total")

    def __init__(self) -> None:
        self.ports: tuple[int, int] | None = None
        self.header_len = -1
        self.seq = 0
        self.flags = 0
        self.total = -1
        self.stored = 0
        self.pieces: dict[int, bytes] = {}


class FragmentTracker:
    """Reassemble fragmented IP datagrams (RFC 791 §3.2, RFC 8200 §4.5), bounded.

    Later fragments get the ports of their datagram's first fragment, so they count in the right
    flow; the fragment that completes a datagram carries the whole transport payload
    (``Packet.reassembled``) for the application inspectors. Incomplete datagrams are dropped
    oldest first when more than ``limit`` are pending or more than ``budget_bytes`` are held; a
    datagram never holds more than 64 KiB (overlapping or excess fragments are not kept and are
    counted as ``ip.fragment_overflow``).
    """

    MAX_DATAGRAM_BYTES = 65535

    def __init__(
        self,
        limit: int = MAX_FRAGMENT_DATAGRAMS,
        budget_bytes: int = FRAGMENT_BUDGET_BYTES,
        anomalies: Counter[str] | None = None,
    ) -> None:
        self.limit = limit
        self.budget_bytes = budget_bytes
        self.held = 0
        self.anomalies: Counter[str] = anomalies if anomalies is not None else Counter()
        self.pending: OrderedDict[tuple[bytes, bytes, int, int], _Datagram] = OrderedDict()

    def _drop_oldest(self) -> None:
        _key, old = self.pending.popitem(last=False)
        self.held -= old.stored

    def _keep(self, dg: _Datagram, offset: int, data: bytes) -> None:
        if offset in dg.pieces or dg.stored + len(data) > self.MAX_DATAGRAM_BYTES:
            self.anomalies["ip.fragment_overflow"] += 1
            return
        dg.pieces[offset] = data
        dg.stored += len(data)
        self.held += len(data)
        while self.held > self.budget_bytes and len(self.pending) > 1:
            self._drop_oldest()

    def apply(self, pkt: Packet) -> bool:
        """Account one fragment; False for a later fragment whose first fragment is unknown."""
        frag = pkt.fragment
        assert frag is not None
        key = (pkt.src, pkt.dst, pkt.proto, frag.ident)
        dg = self.pending.get(key)
        if dg is None:
            dg = self.pending[key] = _Datagram()
            if len(self.pending) > self.limit:
                self._drop_oldest()
        if frag.offset == 0:
            dg.ports = (pkt.sport, pkt.dport)
            dg.header_len, dg.seq, dg.flags = pkt.l4_header_len, pkt.seq, pkt.tcp_flags
            self._keep(dg, dg.header_len, pkt.payload)
        else:
            self._keep(dg, frag.offset, pkt.payload)
        if not frag.more:
            dg.total = frag.offset + len(pkt.payload)
        known = dg.ports is not None
        if known and frag.offset:
            pkt.sport, pkt.dport = dg.ports  # type: ignore[misc]
        if known and dg.total >= 0:
            payload = self._complete(dg)
            if payload is not None:
                pkt.reassembled = (payload, dg.seq, dg.flags)
                if self.pending.pop(key, None) is not None:
                    self.held -= dg.stored
        return known or frag.offset == 0

    def _complete(self, dg: _Datagram) -> bytes | None:
        expected = dg.header_len
        parts = []
        for off in sorted(dg.pieces):
            if off > expected or off + len(dg.pieces[off]) > self.MAX_DATAGRAM_BYTES:
                return None
            data = dg.pieces[off][expected - off :]
            parts.append(data)
            expected += len(data)
        return b"".join(parts) if expected >= dg.total else None


class PacketLoop:
    """Streaming path: decode, track flows, inspect payloads, count problems.

    Args:
        config: flow timeouts and limits.
        strict: re-raise unexpected exceptions (bugs) instead of counting them.
    """

    def __init__(self, config: FlowConfig | None = None, *, strict: bool = False) -> None:
        self.config = config or FlowConfig()
        self.strict = strict
        self.table = FlowTable(self.config)
        self.summary = RunSummary()
        self.fragments = FragmentTracker(anomalies=self.summary.anomalies)

    # -- the guarded steps, shared with the batch path -----------------------------------------

    def decode(self, index: int, raw: RawPacket) -> Packet | None:
        """Decode one frame; None (and the problem counted) when a dissector refused it.

        A frame without IP comes back with ``ip_version`` 0. Later fragments get the ports of
        their datagram's first fragment.
        """
        pkt = Packet()
        try:
            decode_packet(raw.data, raw.linktype, pkt)
        except DecodeError as exc:
            self._malformed(index, raw, exc)
            return None
        except Exception as exc:
            self._bug(exc)
            return None
        if pkt.fragment is not None and pkt.ip_version and not self.fragments.apply(pkt):
            self.summary.anomalies["ip.fragment_orphan"] += 1
        return pkt

    def inspect(self, st: FlowState, d: int, pkt: Packet) -> None:
        """Give a packet among a flow's first ones to the flow's application inspector.

        A fragment is inspected only when it completes its datagram, with the whole payload.
        """
        payload, seq, flags = pkt.payload, pkt.seq, pkt.tcp_flags
        if pkt.fragment is not None:
            if pkt.reassembled is None:
                return
            payload, seq, flags = pkt.reassembled
        insp = st.inspector
        if insp is None:
            if not payload and not flags:
                return
            cport, sport = st.ports
            insp = st.inspector = AppInspector(pkt.proto, cport, sport)
        self.inspect_payload(insp, d, payload, seq, flags)

    def inspect_payload(self, insp: AppInspector, d: int, payload: bytes, seq: int, flags: int) -> None:
        """Feed one payload to an inspector, counting a dissector's refusal."""
        if insp.done:
            return
        try:
            insp.feed(d, payload, seq, flags)
        except DecodeError as exc:
            self.summary.anomalies[exc.reason] += 1
            insp.abort()
        except Exception as exc:
            insp.abort()
            self._bug(exc)

    def _malformed(self, index: int, raw: RawPacket, exc: DecodeError) -> None:
        self.summary.anomalies[exc.reason] += 1
        if len(self.summary.malformed) < MAX_MALFORMED_KEPT:
            head = bytes(raw.data[:32]).hex()
            self.summary.malformed.append(Malformed(index, raw.ts, exc.reason, exc.offset, head))

    def _bug(self, exc: Exception) -> None:
        if self.strict:
            raise exc
        self.summary.anomalies["internal.error"] += 1
        if self.summary.anomalies["internal.error"] <= 10:
            log.exception("internal error on the packet path (a bug): %s", exc)

    # -- streaming ------------------------------------------------------------------------------

    def step(self, raw: RawPacket, out: list[FlowRecord]) -> tuple[Packet, FlowState, int] | None:
        """Account one frame to its flow; records that end are appended to ``out``.

        Returns:
            (the packet, its flow's state, its direction: 0 client to server), or None when
            the frame did not decode or carries no IP (both counted in the summary).
        """
        index = self.summary.packets
        self.summary.packets += 1
        pkt = self.decode(index, raw)
        if pkt is None:
            return None
        if not pkt.ip_version:
            self.summary.non_ip += 1
            return None
        ts = raw.ts
        self.table.expire(ts, out)
        self.summary.ip_packets += 1
        st, d = self.table.add(pkt, ts, raw.wirelen, out)
        if st.count <= self.config.inspect_packets:
            self.inspect(st, d, pkt)
        return pkt, st, d

    def process(self, raw: RawPacket, out: list[FlowRecord]) -> None:
        """Handle one frame; records that end (and early records) are appended to ``out``."""
        res = self.step(raw, out)
        if res is not None and res[1].count == self.config.early_packets:
            out.append(res[1].record(True, "early"))
            self.summary.early_records += 1

    def finish(self, out: list[FlowRecord]) -> RunSummary:
        """End every flow; returns the run's summary."""
        self.table.flush(out)
        self.summary.flows = self.table.flows_total
        self.summary.merge_counts(dict(self.table.anomalies))
        return self.summary
