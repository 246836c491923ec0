"""Transport headers: TCP (RFC 9293 §3.1), UDP (RFC 768), ICMP (RFC 792) and ICMPv6 (RFC 4443)."""

from __future__ import annotations

__all__ = ["TcpFlags", "TcpHeader", "decode_icmp", "decode_tcp", "decode_udp"]

import struct
from dataclasses import dataclass
from enum import IntFlag

from sluice.errors import DecodeError

_TCP = struct.Struct("!HHIIBBH")
_UDP = struct.Struct("!HHHH")


class TcpFlags(IntFlag):
    """TCP control bits."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass(frozen=True, slots=True)
class TcpHeader:
    """A TCP header."""

    sport: int
    """Source port."""
    dport: int
    """Destination port."""
    seq: int
    """Sequence number."""
    ack: int
    """Acknowledgement number."""
    flags: int
    """Control bits (:class:`TcpFlags`)."""
    window: int
    """Receive window (unscaled)."""
    options: bytes = b""
    """Raw options."""


def decode_tcp(buf: bytes | memoryview, off: int, end: int) -> tuple[TcpHeader, int]:
    """Decode a TCP header; returns it and the offset of the payload.

    Raises:
        DecodeError: ``tcp.truncated``, ``tcp.bad_data_offset``.
    """
    if off + 20 > end:
        raise DecodeError("tcp.truncated", off)
    sport, dport, seq, ack, doff, flags, window = _TCP.unpack_from(buf, off)
    hlen = (doff >> 4) * 4
    if hlen < 20:
        raise DecodeError("tcp.bad_data_offset", off, f"data offset {hlen}")
    if off + hlen > end:
        raise DecodeError("tcp.truncated", off, "options cut")
    options = bytes(buf[off + 20 : off + hlen]) if hlen > 20 else b""
    return TcpHeader(sport, dport, seq, ack, flags, window, options), off + hlen


def decode_udp(buf: bytes | memoryview, off: int, end: int) -> tuple[int, int, int, int]:
    """Decode a UDP header.

    Returns:
        (source port, destination port, payload offset, payload end). The end follows the
        UDP length field when it is consistent, else the IP payload end.

    Raises:
        DecodeError: ``udp.truncated``, ``udp.bad_length``.
    """
    if off + 8 > end:
        raise DecodeError("udp.truncated", off)
    sport, dport, length, _csum = _UDP.unpack_from(buf, off)
    if length and length < 8:
        raise DecodeError("udp.bad_length", off, f"length {length}")
    if length:
        end = min(end, off + length)
    return sport, dport, off + 8, end


def decode_icmp(buf: bytes | memoryview, off: int, end: int, *, layer: str = "icmp") -> tuple[int, int]:
    """Decode the type and code of an ICMP or ICMPv6 message.

    Raises:
        DecodeError: ``icmp.truncated`` / ``icmpv6.truncated``.
    """
    if off + 4 > end:
        raise DecodeError(f"{layer}.truncated", off)
    return buf[off], buf[off + 1]
