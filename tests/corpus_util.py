"""Packets, TCP streams and UDP datagrams of real captures, for tests that compare with nDPI.

Built on the project's reader (:func:`sluice.io.capture.open_capture`) and dissector
(:func:`sluice.wire.packet.decode_packet`), so every link type, VLAN, PPPoE and tunnel sluice reads
is looked through here too, and the fields describe the innermost datagram. Frames that do not
decode are skipped, and so are IP fragments: a fragment's payload is not its datagram's.
Addresses are text (:func:`sluice.flows.record.format_addr`); a direction is keyed
``(src, sport, dst, dport)``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.errors import DecodeError
from sluice.flows.record import format_addr
from sluice.io.capture import open_capture
from sluice.wire.ip import IpProto
from sluice.wire.packet import Packet, decode_packet
from tests.corpus.ndpi_out import NDPI, NdpiFlow

__all__ = [
    "NDPI",
    "Direction",
    "Endpoint",
    "corpus_file",
    "first_payloads",
    "iter_packets",
    "ndpi_key",
    "tcp_payloads",
    "tcp_segments",
    "tcp_streams",
    "udp_datagrams",
]

Endpoint = tuple[str, int]
"""(address, port)."""
Direction = tuple[str, int, str, int]
"""(source address, source port, destination address, destination port)."""

TCP_SYN = 0x02


def corpus_file(name: str) -> Path:
    """A capture (or ``.out`` file) of the nDPI corpus; skips the test when ../shared is absent."""
    path = NDPI / name
    if not path.exists():
        pytest.skip(f"../shared not present: {path}")
    return path


def ndpi_key(flow: NdpiFlow) -> frozenset[Endpoint]:
    """The endpoints of an nDPI flow line, addresses in sluice's text form.

    Raises:
        ValueError: an endpoint is not an IP address.
    """
    return frozenset((str(ipaddress.ip_address(addr)), port) for addr, port in (flow.a, flow.b))


def iter_packets(path: Path) -> Iterator[tuple[float, Packet]]:
    """(timestamp, decoded packet) of each frame of a capture that decodes."""
    with open_capture(path) as reader:
        for raw in reader:
            pkt = Packet()
            try:
                decode_packet(raw.data, raw.linktype, pkt)
            except DecodeError:
                continue
            yield raw.ts, pkt


def _whole(path: Path, proto: int) -> Iterator[Packet]:
    """Unfragmented packets of one transport protocol."""
    for _, pkt in iter_packets(path):
        if pkt.ip_version and pkt.proto == proto and pkt.fragment is None:
            yield pkt


def udp_datagrams(path: Path) -> Iterator[tuple[Endpoint, Endpoint, bytes]]:
    """(source, destination, payload) of each unfragmented UDP datagram."""
    for pkt in _whole(path, IpProto.UDP):
        yield (format_addr(pkt.src), pkt.sport), (format_addr(pkt.dst), pkt.dport), pkt.payload


def tcp_segments(path: Path) -> Iterator[tuple[Endpoint, Endpoint, int, int, bytes]]:
    """(source, destination, sequence number, flags, payload) of each unfragmented TCP segment."""
    for pkt in _whole(path, IpProto.TCP):
        src, dst = (format_addr(pkt.src), pkt.sport), (format_addr(pkt.dst), pkt.dport)
        yield src, dst, pkt.seq, pkt.tcp_flags, pkt.payload


def first_payloads(path: Path) -> dict[Direction, bytes]:
    """The first TCP payload of each direction, in capture order."""
    out: dict[Direction, bytes] = {}
    for src, dst, _, _, payload in tcp_segments(path):
        if payload:
            out.setdefault((*src, *dst), payload)
    return out


def tcp_payloads(path: Path) -> dict[Direction, list[bytes]]:
    """TCP payloads of each direction in capture order, retransmissions (same seq) dropped."""
    out: dict[Direction, list[bytes]] = {}
    seen: set[tuple[Direction, int]] = set()
    for src, dst, seq, _, payload in tcp_segments(path):
        key = (*src, *dst)
        if payload and (key, seq) not in seen:
            seen.add((key, seq))
            out.setdefault(key, []).append(payload)
    return out


def tcp_streams(path: Path) -> dict[Direction, bytes]:
    """Each TCP direction's bytes in sequence order, from its start up to the first gap.

    The start is the byte after the SYN when the capture has it, else the first payload seen.
    """
    segs: dict[Direction, dict[int, bytes]] = {}
    first: dict[Direction, int] = {}
    for src, dst, seq, flags, payload in tcp_segments(path):
        key = (*src, *dst)
        if flags & TCP_SYN:
            seq += 1  # a SYN's sequence number is one before the first byte
            first[key] = seq
        if not payload:
            continue
        rel = (seq - first.setdefault(key, seq)) % 2**32
        if rel < 2**31:
            segs.setdefault(key, {}).setdefault(rel, payload)
    out: dict[Direction, bytes] = {}
    for key, parts in segs.items():
        buf = b""
        for rel in sorted(parts):
            if rel > len(buf):
                break
            buf += parts[rel][len(buf) - rel :]
        out[key] = buf
    return out
