"""WireGuard messages: type, indices and counter (WireGuard paper §5.4; sans-IO).

Theory of operation
-------------------
Every WireGuard message is one UDP datagram that opens with a type byte and three reserved zero
bytes. The handshake messages have fixed sizes: initiation (type 1, 148 bytes: sender index,
ephemeral, static, timestamp, two MACs), response (type 2, 92 bytes: sender and receiver
index, ephemeral, empty, two MACs) and cookie reply (type 3, 64 bytes: receiver index, nonce,
cookie). Transport data (type 4) carries the receiver index, a 64-bit little-endian counter and
the encrypted packet, padded to 16 bytes, with its 16-byte tag: at least 32 bytes. Indices and
the counter are little-endian (§5.4.2-5.4.6).

:func:`decode_wireguard` reads the 16 bytes every message type has in common; :meth:`fits`
checks a message against its datagram's length, which the caller knows. A payload without the
type and the reserved zeros is not WireGuard, not a malformed message: :func:`try_decode_wireguard`
returns ``None`` for it and never raises.
"""

from __future__ import annotations

__all__ = [
    "MESSAGE_SIZES",
    "WireGuardMessage",
    "WireGuardType",
    "decode_wireguard",
    "try_decode_wireguard",
]

import struct
from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError
from sluice.wire.cursor import Cursor


class WireGuardType(IntEnum):
    """Message types (§5.4)."""

    INITIATION = 1
    RESPONSE = 2
    COOKIE_REPLY = 3
    TRANSPORT_DATA = 4


MESSAGE_SIZES = {
    WireGuardType.INITIATION: 148,
    WireGuardType.RESPONSE: 92,
    WireGuardType.COOKIE_REPLY: 64,
}
"""Datagram length of each handshake message."""
MIN_TRANSPORT_DATA = 32
"""Header (16 bytes) and the tag of an empty (keepalive) packet."""
HEADER_BYTES = 16
"""Bytes every message type has: type, reserved, and what its layout puts in the next 12."""
_WORDS = struct.Struct("<III")
"""The 12 bytes after type and reserved as little-endian words (indices; the counter's halves)."""


@dataclass(frozen=True, slots=True)
class WireGuardMessage:
    """The common start of a WireGuard message."""

    message_type: int
    """:class:`WireGuardType` value."""
    sender_index: int
    """The sender's index (initiation, response; else 0)."""
    receiver_index: int
    """The receiver's index, the peer's sender index (response, cookie reply, transport data; else 0)."""
    counter: int
    """Transport data's nonce counter (else 0)."""

    @property
    def kind(self) -> str:
        """``initiation``, ``response``, ``cookie reply`` or ``transport data``."""
        return WireGuardType(self.message_type).name.lower().replace("_", " ")

    def fits(self, length: int) -> bool:
        """The datagram's ``length`` is this message type's: 148/92/64, or 32+ in steps of 16."""
        if self.message_type == WireGuardType.TRANSPORT_DATA:
            return length >= MIN_TRANSPORT_DATA and length % 16 == 0
        return MESSAGE_SIZES[WireGuardType(self.message_type)] == length


def decode_wireguard(cur: Cursor) -> WireGuardMessage:
    """Read the first 16 bytes of a WireGuard message (§5.4.2-5.4.6).

    Args:
        cur: the UDP payload.

    Returns:
        The message type, its indices and (transport data) the counter.

    Raises:
        DecodeError: ``wireguard.truncated``, ``wireguard.bad_type`` (not 1-4),
            ``wireguard.bad_reserved`` (the three bytes after the type are not zero).
    """
    start = cur.pos
    head = cur.take(HEADER_BYTES)  # bounds checked by the cursor
    t = head[0]
    if not WireGuardType.INITIATION <= t <= WireGuardType.TRANSPORT_DATA:
        raise DecodeError("wireguard.bad_type", start, f"type {t}")
    if head[1:4] != b"\x00\x00\x00":
        raise DecodeError("wireguard.bad_reserved", start + 1)
    return _message(t, head)


def _message(t: int, head: bytes) -> WireGuardMessage:
    """The message of type ``t`` whose first 16 bytes are ``head`` (type and reserved checked)."""
    a, b, c = _WORDS.unpack_from(head, 4)
    if t == WireGuardType.INITIATION:
        return WireGuardMessage(t, a, 0, 0)
    if t == WireGuardType.RESPONSE:
        return WireGuardMessage(t, a, b, 0)
    if t == WireGuardType.COOKIE_REPLY:
        return WireGuardMessage(t, 0, a, 0)
    return WireGuardMessage(t, 0, a, b | (c << 32))


def try_decode_wireguard(data: bytes) -> WireGuardMessage | None:
    """:func:`decode_wireguard`, or None when ``data`` does not start like a WireGuard message.

    Never raises: fewer than 16 bytes, an unknown type or non-zero reserved bytes are not
    WireGuard.
    """
    if len(data) < HEADER_BYTES or data[1:4] != b"\x00\x00\x00" or not 1 <= data[0] <= 4:
        return None
    return _message(data[0], data)
