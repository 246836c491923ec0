"""QUIC dissector: long headers, Initial-packet decryption, CRYPTO data.

Theory of operation
-------------------
A UDP datagram may carry several QUIC packets back to back ("coalesced", RFC 9000 §12.2): any
number of long-header packets (§17.2), each delimited by its Length field, then at most one
short-header packet that runs to the end. :func:`decode_initials` walks the long-header packets,
skips 0-RTT and Handshake packets (their keys come from the TLS handshake, which a middlebox
does not have), stops at a short header, a Retry, padding or a packet with another Destination
Connection ID, and decrypts each Initial packet:

1. the keys come from the version's public salt and the client's first DCID
   (:mod:`sluice.wire.quic_crypto`, cached per DCID);
2. header protection is removed (RFC 9001 §5.4): AES-ECB of a 16-byte sample of the ciphertext,
   taken 4 bytes after the packet-number offset, masks the low 4 bits of the first byte (which
   give the packet-number length) and the packet-number bytes;
3. the packet number is expanded (RFC 9000 §17.1, Appendix A.3) and the payload is opened with
   AES-128-GCM, the unprotected header being the associated data;
4. the frames are walked (RFC 9000 §19) and the CRYPTO frames are returned as (offset, data).

QUIC v2 (RFC 9369) differs in the version number, the salt, the HKDF labels and the long-header
type bits (Initial is 0b01 instead of 0b00). IETF drafts 22-34 and Facebook's mvfst versions
use the v1 layout with older salts. Google's Q050/T050/T051 use the IETF header and Initial
protection with their own salts but gQUIC frame types (CRYPTO is 0x08); T05x carry TLS, Q050
carries a CHLO (:mod:`sluice.wire.gquic` reads it, and the clear CHLOs of older gQUIC). The
frames of those Initials are gQUIC's (:func:`skip_gquic_ack` is shared with that module).

The TLS ClientHello may span several Initial packets, which may arrive in any order;
:class:`QuicClientHelloAssembler` collects the client's CRYPTO data until the handshake message
is whole. :func:`decode_long_header` reads the clear header fields a flow tracker needs (the
client's first DCID keys every Initial of the connection in both directions, until a Retry
names a new one), and :func:`decode_transport_parameters` splits the ClientHello's
``quic_transport_parameters`` extension (where Chrome puts its user agent).
"""

from __future__ import annotations

__all__ = [
    "CLIENT_HELLO_MAX_BYTES",
    "GQUIC_PN_LENGTHS",
    "MAX_CID_LEN",
    "LongPacketType",
    "QuicClientHelloAssembler",
    "QuicInitial",
    "QuicLongHeader",
    "QuicVersion",
    "TransportParameter",
    "decode_initials",
    "decode_long_header",
    "decode_packet_number",
    "decode_transport_parameters",
    "is_gquic_version",
    "is_quic_long_header",
    "quic_version_name",
    "skip_gquic_ack",
]

from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError
from sluice.wire.cursor import Cursor
from sluice.wire.quic_crypto import (
    decode_packet_number,
    initial_protection,
    initial_salt,
    unprotect,
)

MAX_CID_LEN = 20
"""Longest connection ID QUIC v1/v2 allow (RFC 9000 §17.2)."""
CLIENT_HELLO_MAX_BYTES = 64 * 1024
"""Default bound of :class:`QuicClientHelloAssembler`'s buffer."""


class QuicVersion(IntEnum):
    """Well-known values of the long-header version field."""

    NEGOTIATION = 0x00000000
    V1 = 0x00000001
    V2 = 0x6B3343CF
    DRAFT_27 = 0xFF00001B
    DRAFT_29 = 0xFF00001D
    DRAFT_34 = 0xFF000022
    MVFST_22 = 0xFACEB001
    MVFST_27 = 0xFACEB002
    MVFST_EXP = 0xFACEB00E
    Q043 = 0x51303433
    Q046 = 0x51303436
    Q050 = 0x51303530
    T050 = 0x54303530
    T051 = 0x54303531


class LongPacketType(IntEnum):
    """Long-header packet types, numbered as in QUIC v1 (RFC 9000 §17.2; v2 rotates the bits)."""

    INITIAL = 0
    ZERO_RTT = 1
    HANDSHAKE = 2
    RETRY = 3


@dataclass(frozen=True, slots=True)
class QuicInitial:
    """One decrypted Initial packet."""

    version: int
    """The long-header version field."""
    dcid: bytes
    """Destination Connection ID."""
    scid: bytes
    """Source Connection ID."""
    token: bytes
    """Address-validation token (empty unless the client echoes a Retry/NEW_TOKEN token)."""
    packet_number: int
    """The decoded packet number."""
    crypto: tuple[tuple[int, bytes], ...]
    """The CRYPTO frames as (stream offset, data), in packet order."""
    from_client: bool
    """True when it opened with the client's keys, False with the server's."""


@dataclass(frozen=True, slots=True)
class QuicLongHeader:
    """The clear fields of the first long-header packet of a datagram."""

    version: int
    """The version field (0 for version negotiation)."""
    packet_type: LongPacketType | None
    """Initial/0-RTT/Handshake/Retry in v1 numbering; None when the version is not known."""
    dcid: bytes
    """Destination Connection ID."""
    scid: bytes
    """Source Connection ID."""


_GQUIC_PREFIXES = frozenset({0x51303200, 0x51303300, 0x51303400, 0x51303500, 0x54303500})
_VERSION_NAMES: dict[int, str] = {
    QuicVersion.V1: "V-1",
    QuicVersion.V2: "V-2",
    QuicVersion.MVFST_22: "MVFST-22",
    QuicVersion.MVFST_27: "MVFST-27",
    QuicVersion.MVFST_EXP: "MVFST-EXP",
}


def _packet_type(first: int, version: int) -> LongPacketType:
    bits = (first >> 4) & 3
    return LongPacketType((bits - 1) & 3 if version == QuicVersion.V2 else bits)


def _is_gquic(version: int) -> bool:
    return version & 0xFFFFFF00 in _GQUIC_PREFIXES and 0x30 <= version & 0xFF <= 0x39


def is_gquic_version(version: int) -> bool:
    """True for Google QUIC versions with their own handshake (Qxxx; T05x use TLS)."""
    return _is_gquic(version) and version >> 24 == 0x51


def quic_version_name(version: int) -> str:
    """Name a version the way nDPI prints it (``V-1``, ``V-2``, ``Draft-29``, ``Q046``, ``T051``).

    Args:
        version: the 32-bit version field.

    Returns:
        The name; ``Ver-Negotiation`` for the 0x?a?a?a?a versions that force version
        negotiation, ``Unknown (XXXX)`` for the rest.
    """
    name = _VERSION_NAMES.get(version)
    if name is not None:
        return name
    if _is_gquic(version):
        return version.to_bytes(4, "big").decode("ascii")
    if version & 0x0F0F0F0F == 0x0A0A0A0A:
        return "Ver-Negotiation"
    if version >> 8 == 0xFF0000:
        return f"Draft-{version & 0xFF}"
    return f"Unknown ({version:04X})"


def is_quic_long_header(datagram: bytes | memoryview) -> bool:
    """Whether ``datagram`` starts with a long header of a known QUIC or gQUIC version.

    A cheap test before :func:`decode_initials` or :func:`decode_gquic`; it decrypts nothing.
    Version negotiation packets (version 0) count.
    """
    if len(datagram) < 7 or not datagram[0] & 0x80:
        return False
    version = int.from_bytes(datagram[1:5], "big")
    if version != 0 and quic_version_name(version).startswith("Unknown"):
        return False
    if _is_gquic(version) and version <= QuicVersion.Q046:
        return True  # gQUIC's own long header (4-bit CID lengths)
    dcil = datagram[5]
    if dcil > MAX_CID_LEN or 7 + dcil > len(datagram):
        return False
    return datagram[6 + dcil] <= MAX_CID_LEN


def decode_long_header(datagram: bytes | memoryview) -> QuicLongHeader:
    """Read the clear header fields of the datagram's first packet (RFC 8999 §5.1, RFC 9000 §17.2).

    Enough to follow a connection without decrypting: the client's first DCID (the key of
    every Initial), and Retry packets (after which the client's next DCID is the new key).

    Raises:
        DecodeError: ``quic.bad_header`` (short header), ``quic.truncated``,
            ``quic.unsupported_version`` for gQUIC's own long header (Q046 and older).
    """
    cur = Cursor(datagram, "quic")
    first = cur.u8()
    if not first & 0x80:
        raise DecodeError("quic.bad_header", 0, "short header packet")
    version = cur.u32()
    if _is_gquic(version) and version <= QuicVersion.Q046:
        raise DecodeError("quic.unsupported_version", 1, quic_version_name(version))
    dcid = cur.vec8()
    scid = cur.vec8()
    ptype = _packet_type(first, version) if initial_salt(version) is not None else None
    return QuicLongHeader(version, ptype, dcid, scid)


@dataclass(slots=True)
class _LongHeader:
    start: int
    version: int
    dcid: bytes
    scid: bytes
    ptype: LongPacketType
    token: bytes
    pn_offset: int
    end: int


def _parse_long_header(data: bytes, pos: int) -> _LongHeader:
    """Read the header of the long-header packet at ``pos`` (RFC 9000 §17.2, RFC 9369 §3.2)."""
    cur = Cursor(data, "quic", pos)
    first = cur.u8()
    version = cur.u32()
    if initial_salt(version) is None:
        raise DecodeError("quic.unsupported_version", pos + 1, quic_version_name(version))
    dcid = cur.vec8()
    scid = cur.vec8()
    if len(dcid) > MAX_CID_LEN or len(scid) > MAX_CID_LEN:
        raise DecodeError("quic.bad_header", pos + 5, "connection ID longer than 20 bytes")
    ptype = _packet_type(first, version)
    token = b""
    if ptype is LongPacketType.RETRY:
        return _LongHeader(pos, version, dcid, scid, ptype, token, cur.pos, cur.end)
    if ptype is LongPacketType.INITIAL:
        token = cur.take(cur.varint())
    length = cur.varint()
    if length > cur.remaining:
        raise DecodeError("quic.truncated", cur.pos, f"length {length} > {cur.remaining} left")
    return _LongHeader(pos, version, dcid, scid, ptype, token, cur.pos, cur.pos + length)


# Frames whose body is only varints: type -> how many (RFC 9000 §19).
_VARINT_FRAMES = {
    0x01: 0,  # PING
    0x04: 3,  # RESET_STREAM
    0x05: 2,  # STOP_SENDING
    0x10: 1,  # MAX_DATA
    0x11: 2,  # MAX_STREAM_DATA
    0x12: 1,  # MAX_STREAMS (bidi)
    0x13: 1,  # MAX_STREAMS (uni)
    0x14: 1,  # DATA_BLOCKED
    0x15: 2,  # STREAM_DATA_BLOCKED
    0x16: 1,  # STREAMS_BLOCKED (bidi)
    0x17: 1,  # STREAMS_BLOCKED (uni)
    0x19: 1,  # RETIRE_CONNECTION_ID
    0x1E: 0,  # HANDSHAKE_DONE
}


def _skip_padding(cur: Cursor) -> None:
    rest = bytes(cur.data[cur.pos : cur.end])
    cur.skip(len(rest) - len(rest.lstrip(b"\x00")))


def _ietf_frames(payload: bytes) -> tuple[tuple[int, bytes], ...]:
    """Walk the frames of a decrypted payload (RFC 9000 §19); return the CRYPTO frames."""
    cur = Cursor(payload, "quic")
    crypto: list[tuple[int, bytes]] = []
    while cur.remaining:
        start = cur.pos
        ftype = cur.varint()
        if ftype == 0x00:  # PADDING
            _skip_padding(cur)
        elif ftype in _VARINT_FRAMES:
            for _ in range(_VARINT_FRAMES[ftype]):
                cur.varint()
        elif ftype == 0x06:  # CRYPTO
            offset = cur.varint()
            crypto.append((offset, cur.take(cur.varint())))
        elif ftype in (0x02, 0x03):  # ACK, ACK_ECN
            cur.varint()
            cur.varint()
            ranges = cur.varint()
            cur.varint()
            for _ in range(ranges):
                cur.varint()
                cur.varint()
            if ftype == 0x03:
                for _ in range(3):
                    cur.varint()
        elif ftype == 0x07:  # NEW_TOKEN
            cur.skip(cur.varint())
        elif 0x08 <= ftype <= 0x0F:  # STREAM
            cur.varint()
            if ftype & 0x04:
                cur.varint()
            cur.skip(cur.varint() if ftype & 0x02 else cur.remaining)
        elif ftype == 0x18:  # NEW_CONNECTION_ID
            cur.varint()
            cur.varint()
            cur.skip(cur.u8())
            cur.skip(16)
        elif ftype in (0x1A, 0x1B):  # PATH_CHALLENGE, PATH_RESPONSE
            cur.skip(8)
        elif ftype in (0x1C, 0x1D):  # CONNECTION_CLOSE (transport, application)
            cur.varint()
            if ftype == 0x1C:
                cur.varint()
            cur.skip(cur.varint())
        elif ftype in (0x30, 0x31):  # DATAGRAM (RFC 9221)
            cur.skip(cur.varint() if ftype == 0x31 else cur.remaining)
        else:
            raise DecodeError("quic.unknown_frame", start, f"frame type 0x{ftype:x}")
    return tuple(crypto)


def _payload_crypto(version: int, payload: bytes) -> tuple[tuple[int, bytes], ...]:
    if _is_gquic(version):
        return _gquic_crypto_frames(payload)
    return _ietf_frames(payload)


def _open_initial(data: bytes, hdr: _LongHeader, client_dcid: bytes | None, largest_pn: int) -> QuicInitial:
    key_dcid = hdr.dcid if client_dcid is None else client_dcid
    for server in (False, True) if client_dcid is not None else (False,):
        prot = initial_protection(hdr.version, key_dcid, server)
        opened = unprotect(data, hdr.start, hdr.pn_offset, hdr.end, prot, largest_pn)
        if opened is not None:
            pn, payload = opened
            crypto = _payload_crypto(hdr.version, payload)
            return QuicInitial(hdr.version, hdr.dcid, hdr.scid, hdr.token, pn, crypto, from_client=not server)
    raise DecodeError("quic.decrypt_failed", hdr.start, f"DCID {key_dcid.hex()}")


def decode_initials(
    datagram: bytes | memoryview, *, client_dcid: bytes | None = None, largest_pn: int = -1
) -> list[QuicInitial]:
    """Decrypt the Initial packets of one UDP datagram (RFC 9000 §12.2, §17.2; RFC 9001 §5).

    Args:
        datagram: the UDP payload.
        client_dcid: the DCID of the client's first Initial of the connection. Without it the
            keys come from each packet's own DCID, which is right for the client's first
            flight only; with it the client's keys are tried first, then the server's.
        largest_pn: the largest Initial packet number seen so far in this direction (-1: none),
            to expand truncated packet numbers.

    Returns:
        The decrypted Initial packets in datagram order; empty when the datagram holds none
        (only 0-RTT/Handshake packets, a Retry, a version negotiation packet).

    Raises:
        DecodeError: ``quic.bad_header`` (short header first, oversized CID),
            ``quic.unsupported_version``, ``quic.truncated``, ``quic.decrypt_failed``,
            ``quic.unknown_frame``. A failure in a later coalesced packet only ends the walk
            when an Initial was already decoded.
    """
    data = bytes(datagram)
    if not data:
        raise DecodeError("quic.truncated", 0, "empty datagram")
    out: list[QuicInitial] = []
    pos = 0
    first: _LongHeader | None = None
    while pos < len(data):
        if not data[pos] & 0x80:
            if first is None:
                raise DecodeError("quic.bad_header", 0, "short header packet")
            break  # a short-header packet or padding ends the coalesced packets
        if len(data) - pos >= 5 and data[pos + 1 : pos + 5] == b"\x00\x00\x00\x00":
            break  # version negotiation: no Initial in it
        try:
            hdr = _parse_long_header(data, pos)
            if first is None:
                first = hdr
            elif hdr.dcid != first.dcid or hdr.version != first.version:
                break  # §12.2: ignore packets for another connection
            if hdr.ptype is LongPacketType.INITIAL:
                out.append(_open_initial(data, hdr, client_dcid, largest_pn))
        except DecodeError:
            if out:
                break
            raise
        if hdr.ptype is LongPacketType.RETRY:
            break
        pos = hdr.end
    return out


class TransportParameter(IntEnum):
    """Some transport parameter IDs (RFC 9000 §18.2, RFC 9221, RFC 9368, Chromium)."""

    ORIGINAL_DESTINATION_CONNECTION_ID = 0x00
    MAX_IDLE_TIMEOUT = 0x01
    MAX_UDP_PAYLOAD_SIZE = 0x03
    INITIAL_MAX_DATA = 0x04
    INITIAL_SOURCE_CONNECTION_ID = 0x0F
    VERSION_INFORMATION = 0x11
    MAX_DATAGRAM_FRAME_SIZE = 0x20
    GOOGLE_USER_AGENT = 0x3129
    GOOGLE_VERSION = 0x4752


def decode_transport_parameters(data: bytes, version: int = QuicVersion.V1) -> tuple[tuple[int, bytes], ...]:
    """Split the body of the TLS ``quic_transport_parameters`` extension (RFC 9000 §18).

    The extension is 57 (0x39) for QUIC v1/v2 and 0xffa5 for the drafts. From draft-27 (and in
    mvfst and T051) each parameter is (varint ID, varint length, value); before, the list had a
    16-bit length and each parameter a 16-bit ID and length.

    Args:
        data: the extension body.
        version: the QUIC version of the connection (selects the encoding).

    Returns:
        (parameter ID, value) pairs in order; :class:`TransportParameter` names some IDs.

    Raises:
        DecodeError: ``quic.truncated``.
    """
    old = (version >> 8 == 0xFF0000 and version & 0xFF < 27) or version in (
        QuicVersion.MVFST_22,
        QuicVersion.T050,
    )
    cur = Cursor(data, "quic")
    if old:
        cur = cur.sub(cur.u16())
    params: list[tuple[int, bytes]] = []
    while cur.remaining:
        if old:
            pid = cur.u16()
            params.append((pid, cur.vec16()))
        else:
            pid = cur.varint()
            params.append((pid, cur.take(cur.varint())))
    return tuple(params)


# --- gQUIC frames inside IETF-protected Initials (Q050, T050, T051) ------------------------------
# gQUIC has no RFC; the layouts follow Chromium's wire-format notes (see sluice.wire.gquic, which
# reads the clear CHLOs of older versions with the same ACK layout).

GQUIC_PN_LENGTHS = (1, 2, 4, 6)
"""Packet-number (and ACK block) lengths a gQUIC 2-bit code selects."""


def skip_gquic_ack(cur: Cursor, ftype: int, little: bool) -> None:
    """Skip a gQUIC ACK frame (type 0b01nullmm, Q034 and later).

    Args:
        cur: positioned after the frame type byte.
        ftype: the frame type byte (its bits give the field lengths).
        little: multi-byte fields are little-endian (before Q039); only lengths are read here.

    Raises:
        DecodeError: ``quic.truncated``.
    """
    cur.skip(GQUIC_PN_LENGTHS[(ftype >> 2) & 3] + 2)  # largest acked, ack delay
    blocks = cur.u8() if ftype & 0x20 else 0
    block_len = GQUIC_PN_LENGTHS[ftype & 3]
    cur.skip(block_len + blocks * (1 + block_len))
    timestamps = cur.u8()
    if timestamps:
        cur.skip(5 + 3 * (timestamps - 1))


def _gquic_crypto_frames(payload: bytes) -> tuple[tuple[int, bytes], ...]:
    """Walk the gQUIC frames of a decrypted Q050/T05x Initial; return its CRYPTO frames."""
    cur = Cursor(payload, "quic")
    crypto: list[tuple[int, bytes]] = []
    while cur.remaining:
        start = cur.pos
        ftype = cur.u8()
        if ftype == 0x00:  # PADDING runs to the end of the packet
            break
        if ftype == 0x08:  # CRYPTO
            offset = cur.varint()
            crypto.append((offset, cur.take(cur.varint())))
        elif ftype & 0xC0 == 0x40:
            skip_gquic_ack(cur, ftype, little=False)
        elif ftype != 0x07:  # PING
            raise DecodeError("quic.unknown_frame", start, f"gQUIC frame type 0x{ftype:x}")
    return tuple(crypto)


class QuicClientHelloAssembler:
    """Collects a client's CRYPTO data until its TLS ClientHello is complete.

    Feed it the client's decrypted Initials in any order (the server's are ignored); the data is
    kept by offset in one bounded buffer.

    Args:
        max_bytes: the largest CRYPTO offset accepted (the buffer bound).
    """

    __slots__ = ("_buf", "_max", "_ranges")

    def __init__(self, max_bytes: int = CLIENT_HELLO_MAX_BYTES) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._ranges: list[tuple[int, int]] = []  # sorted, disjoint, non-adjacent [start, end)

    def add(self, initial: QuicInitial) -> bytes | None:
        """Add the CRYPTO frames of one Initial; return :meth:`client_hello_bytes`.

        Raises:
            DecodeError: ``quic.crypto_too_large`` past ``max_bytes``;
                ``quic.not_client_hello`` when the data does not start a ClientHello.
        """
        if initial.from_client:
            for offset, data in initial.crypto:
                self.add_crypto(offset, data)
        return self.client_hello_bytes()

    def add_crypto(self, offset: int, data: bytes) -> None:
        """Add one CRYPTO frame's data at ``offset`` (overlaps overwrite).

        Raises:
            DecodeError: ``quic.crypto_too_large``, ``quic.not_client_hello``.
        """
        if not data:
            return
        end = offset + len(data)
        if end > self._max:
            raise DecodeError("quic.crypto_too_large", 0, f"CRYPTO data up to {end}")
        if end > len(self._buf):
            self._buf.extend(bytes(end - len(self._buf)))
        self._buf[offset:end] = data
        merged: list[tuple[int, int]] = []
        for s, e in sorted([*self._ranges, (offset, end)]):
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self._ranges = merged
        if merged[0][0] == 0:
            if self._buf[0] != 1:
                raise DecodeError("quic.not_client_hello", 0, f"handshake type {self._buf[0]}")
            if merged[0][1] >= 4 and 4 + self._length() > self._max:
                raise DecodeError("quic.crypto_too_large", 1, f"ClientHello of {self._length()}")

    def _length(self) -> int:
        return int.from_bytes(self._buf[1:4], "big")

    def client_hello_bytes(self) -> bytes | None:
        """The whole ClientHello message (type, 3-byte length, body) once contiguous, else None."""
        if not self._ranges or self._ranges[0][0] != 0 or self._ranges[0][1] < 4:
            return None
        total = 4 + self._length()
        if self._ranges[0][1] < total:
            return None
        return bytes(self._buf[:total])
