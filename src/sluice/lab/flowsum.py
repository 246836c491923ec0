"""Per-flow packet and byte counts of a lab capture (classic pcap from tcpdump).

This is lab tooling, not the spine's dissector path: it reads the capture the lab itself wrote
(Ethernet, IPv4, TCP/UDP/ICMP) to list the flows that the label file names and to check that the
scenario's carrier flows actually carried the payload.  Non-first IPv4 fragments are attributed
to the flow of their first fragment.  Anything it does not understand is counted in ``other``.
"""

from __future__ import annotations

__all__ = ["CaptureSummary", "ObservedFlow", "summarize_capture"]

import os
import struct
from dataclasses import dataclass, field

from sluice.errors import CaptureError
from sluice.lab.labels import FiveTuple

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_LINK_ETHERNET = 1
_LINK_RAW = 101
_LINK_SLL = 113
_ETH_IPV4 = 0x0800
_ETH_VLAN = 0x8100


@dataclass(slots=True)
class ObservedFlow:
    """Counts of one flow seen in a capture."""

    key: FiveTuple
    """5-tuple oriented from the sender of the first packet."""
    packets: int = 0
    """Packets, both directions."""
    bytes: int = 0
    """IP bytes (IP header included), both directions."""
    fwd_bytes: int = 0
    """IP bytes from the first sender."""
    rev_bytes: int = 0
    """IP bytes towards the first sender."""
    first_ts: float = 0.0
    """Time of the first packet."""
    last_ts: float = 0.0
    """Time of the last packet."""


@dataclass(slots=True)
class CaptureSummary:
    """All flows of a capture, plus what was not IPv4."""

    flows: list[ObservedFlow] = field(default_factory=list)
    """Flows in order of their first packet."""
    packets: int = 0
    """Every record in the file."""
    other: int = 0
    """Records that are not IPv4 TCP/UDP/ICMP (ARP, IPv6, truncated ...)."""


def _l3_offset(linktype: int, frame: bytes) -> int | None:
    """Offset of the IPv4 header in ``frame``, or ``None`` if the frame is not IPv4."""
    if linktype == _LINK_RAW:
        return 0 if frame[:1] and frame[0] >> 4 == 4 else None
    if linktype == _LINK_SLL:
        if len(frame) < 16:
            return None
        return 16 if struct.unpack_from(">H", frame, 14)[0] == _ETH_IPV4 else None
    if linktype == _LINK_ETHERNET:
        if len(frame) < 14:
            return None
        et = struct.unpack_from(">H", frame, 12)[0]
        off = 14
        if et == _ETH_VLAN and len(frame) >= 18:
            et = struct.unpack_from(">H", frame, 16)[0]
            off = 18
        return off if et == _ETH_IPV4 else None
    return None


class _Counter:
    """Accumulates flows from IPv4 packets."""

    def __init__(self) -> None:
        self.summary = CaptureSummary()
        self.by_key: dict[tuple[int, str, int, str, int], ObservedFlow] = {}
        self.frags: dict[tuple[str, str, int, int], tuple[int, str, int, str, int]] = {}

    def add(self, ts: float, pkt: bytes) -> bool:
        if len(pkt) < 20 or pkt[0] >> 4 != 4:
            return False
        ihl = (pkt[0] & 0x0F) * 4
        total, ident, frag = struct.unpack_from(">HHH", pkt, 2)
        proto = pkt[9]
        src = ".".join(str(b) for b in pkt[12:16])
        dst = ".".join(str(b) for b in pkt[16:20])
        offset = frag & 0x1FFF
        more = bool(frag & 0x2000)
        fkey = (src, dst, proto, ident)
        if offset:
            k = self.frags.get(fkey)
            if k is None:
                return False
            return self._count(k, src, ts, total)
        sport = dport = 0
        if proto in (6, 17):
            if len(pkt) < ihl + 4:
                return False
            sport, dport = struct.unpack_from(">HH", pkt, ihl)
        elif proto != 1:
            return False
        a, b = (src, sport), (dst, dport)
        k = (proto, *a, *b) if a <= b else (proto, *b, *a)
        if more:
            self.frags[fkey] = k
        return self._count(k, src, ts, total, FiveTuple(proto, src, sport, dst, dport))

    def _count(
        self,
        k: tuple[int, str, int, str, int],
        src: str,
        ts: float,
        size: int,
        key: FiveTuple | None = None,
    ) -> bool:
        fl = self.by_key.get(k)
        if fl is None:
            if key is None:
                return False
            fl = ObservedFlow(key=key, first_ts=ts)
            self.by_key[k] = fl
            self.summary.flows.append(fl)
        fl.packets += 1
        fl.bytes += size
        if src == fl.key.src:
            fl.fwd_bytes += size
        else:
            fl.rev_bytes += size
        fl.last_ts = ts
        return True


def summarize_capture(path: str | os.PathLike[str]) -> CaptureSummary:
    """Flows of a classic pcap file written by tcpdump.

    Raises:
        CaptureError: the file is missing or is not a classic pcap file.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise CaptureError("capture.not_found", str(path)) from exc
    if len(data) < 24 or data[:4] not in _MAGICS:
        raise CaptureError("capture.bad_magic", str(path), "not a classic pcap file")
    endian, unit = _MAGICS[data[:4]]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    counter = _Counter()
    pos = 24
    rec = struct.Struct(endian + "IIII")
    while pos + 16 <= len(data):
        sec, frac, caplen, _wirelen = rec.unpack_from(data, pos)
        pos += 16
        frame = data[pos : pos + caplen]
        pos += caplen
        counter.summary.packets += 1
        off = _l3_offset(linktype, frame)
        if off is None or not counter.add(sec + frac * unit, frame[off:]):
            counter.summary.other += 1
    return counter.summary
