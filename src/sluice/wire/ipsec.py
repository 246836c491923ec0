"""IKE headers and ESP in UDP (RFC 7296 §3.1, RFC 2408 §3.1, RFC 3948 §2; sans-IO).

Theory of operation
-------------------
IKE (v1, RFC 2408, and v2, RFC 7296) messages share a 28-byte header: initiator and responder
SPI (8 bytes each), next payload, version (major and minor nibbles), exchange type, flags,
message id and the length of the whole message. On UDP port 500 the datagram is the message; on
the NAT-T port 4500 (RFC 3948 §2) IKE is preceded by the 4-byte non-ESP marker (zeros), and a
datagram that does not start with it is ESP: SPI (non-zero) and sequence number (RFC 4303 §2).

:func:`decode_ike` reads the header (after the marker, if there is one); :meth:`IkeHeader.fits`
checks its length field against the datagram's. :func:`try_decode_ike` also requires what a
random payload would rarely have (a non-zero initiator SPI, version 1.0 or 2.0, an exchange type
IKE defines) and returns ``None`` otherwise, never raising: such a payload is not IKE, not a
malformed IKE message. :func:`try_decode_esp_in_udp` does the same for an ESP header.
"""

from __future__ import annotations

__all__ = [
    "EXCHANGE_NAMES",
    "IKE_HEADER_BYTES",
    "NAT_T_PORT",
    "EspHeader",
    "IkeHeader",
    "decode_ike",
    "try_decode_esp_in_udp",
    "try_decode_ike",
]

import struct
from dataclasses import dataclass

from sluice.errors import DecodeError
from sluice.wire.cursor import Cursor

NAT_T_PORT = 4500
"""The UDP port RFC 3948 assigns to ESP-in-UDP and IKE behind NAT."""
IKE_HEADER_BYTES = 28
"""The fixed IKE header (RFC 7296 §3.1)."""
NON_ESP_MARKER = b"\x00\x00\x00\x00"
"""What precedes IKE on the NAT-T port (RFC 3948 §2.2)."""
ESP_HEADER_BYTES = 16
"""SPI, sequence number and 8 bytes of what follows, the least an ESP-in-UDP datagram holds here."""

EXCHANGE_NAMES = {
    2: "IKEv1 identity protection",
    4: "IKEv1 aggressive",
    5: "IKEv1 informational",
    32: "IKEv1 quick mode",
    34: "IKE_SA_INIT",
    35: "IKE_AUTH",
    36: "CREATE_CHILD_SA",
    37: "INFORMATIONAL",
}
"""Exchange types of IKEv1 (RFC 2408 §3.1, RFC 2409 §5) and IKEv2 (RFC 7296 §3.1)."""
_VERSIONS = frozenset({0x10, 0x20})
_HEADER = struct.Struct(">8s8sBBBBII")
_ESP = struct.Struct(">II")


@dataclass(frozen=True, slots=True)
class IkeHeader:
    """An IKE message header."""

    initiator_spi: bytes
    """Initiator's SPI (8 bytes)."""
    responder_spi: bytes
    """Responder's SPI (8 bytes; zero in the first message)."""
    next_payload: int
    """Type of the first payload."""
    major_version: int
    """1 (IKEv1) or 2 (IKEv2)."""
    minor_version: int
    """0."""
    exchange_type: int
    """Exchange type (:data:`EXCHANGE_NAMES`)."""
    flags: int
    """Flags (initiator, version, response)."""
    message_id: int
    """Message id."""
    length: int
    """Length of the whole message, header included."""
    non_esp_marker: bool
    """The header followed the NAT-T non-ESP marker."""

    @property
    def exchange(self) -> str:
        """The exchange type's name (its number when IKE defines none)."""
        return EXCHANGE_NAMES.get(self.exchange_type, str(self.exchange_type))

    def fits(self, datagram_length: int) -> bool:
        """The length field equals the datagram's length (less the marker, if any)."""
        return self.length == datagram_length - (len(NON_ESP_MARKER) if self.non_esp_marker else 0)


@dataclass(frozen=True, slots=True)
class EspHeader:
    """The clear start of an ESP packet (RFC 4303 §2)."""

    spi: int
    """Security parameters index."""
    sequence: int
    """Sequence number."""


def decode_ike(cur: Cursor) -> IkeHeader:
    """Read an IKE header (RFC 7296 §3.1), after the non-ESP marker if the payload opens with one.

    Four leading zero bytes are taken for the marker on any port (an initiator SPI is random, and
    a responder's first message echoes the initiator's).

    Args:
        cur: the UDP payload.

    Returns:
        The header.

    Raises:
        DecodeError: ``ike.truncated``, ``ike.bad_version`` (major version not 1 or 2).
    """
    marker = cur.remaining >= 4 and bytes(cur.data[cur.pos : cur.pos + 4]) == NON_ESP_MARKER
    if marker:
        cur.skip(4)
    start = cur.pos
    return _header(cur.take(IKE_HEADER_BYTES), marker, start)  # bounds checked by the cursor


def _header(raw: bytes, marker: bool, start: int) -> IkeHeader:
    """The header in ``raw`` (exactly :data:`IKE_HEADER_BYTES`), found at ``start``."""
    ispi, rspi, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack(raw)
    if version >> 4 not in (1, 2):
        raise DecodeError("ike.bad_version", start + 17, f"version 0x{version:02x}")
    return IkeHeader(
        ispi, rspi, next_payload, version >> 4, version & 15, exchange, flags, message_id, length, marker
    )


def try_decode_ike(data: bytes) -> IkeHeader | None:
    """:func:`decode_ike`, or None when ``data`` does not hold a plausible IKE header.

    Never raises. Plausible: 28 bytes (after a non-ESP marker, if any), a non-zero initiator
    SPI, version 1.0 or 2.0 and an exchange type of :data:`EXCHANGE_NAMES`.
    """
    at = 4 if data[:4] == NON_ESP_MARKER else 0
    if len(data) < at + IKE_HEADER_BYTES or data[at : at + 8] == bytes(8):
        return None
    if data[at + 17] not in _VERSIONS or data[at + 18] not in EXCHANGE_NAMES:
        return None
    return _header(data[at : at + IKE_HEADER_BYTES], at != 0, at)  # lengths checked above


def try_decode_esp_in_udp(data: bytes) -> EspHeader | None:
    """The ESP header of an ESP-in-UDP datagram (RFC 3948 §2.1), or None; never raises.

    None for fewer than 16 bytes, a zero SPI (the non-ESP marker: IKE follows) and a first byte
    0xFF (the NAT-keepalive's, RFC 3948 §2.3, and reserved SPI space).
    """
    if len(data) < ESP_HEADER_BYTES or data[:4] == NON_ESP_MARKER or data[:1] == b"\xff":
        return None
    spi, sequence = _ESP.unpack_from(data)  # the length is checked above
    return EspHeader(spi, sequence)
