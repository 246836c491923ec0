"""Google QUIC client hellos (CHLO) before QUIC v1: Q043 and older, Q046, Q050 (sans-IO).

Theory of operation
-------------------
gQUIC has no RFC; the layouts follow Chromium's wire-format notes (see the module docstring of
nDPI's quic.c for the links). A client's first packet carries its CHLO, a tag-value handshake
message, in the crypto stream (stream 1):

* Q043 and older: a public header (flags, 8-byte connection ID, version, packet number), the
  null encryption's 12-byte hash, then clear frames (:func:`decode_gquic` finds stream 1);
* Q046: gQUIC's own long header (4-bit connection ID lengths), then the same clear frames;
* Q050: the IETF long header and Initial protection with Google's salt
  (:func:`sluice.wire.quic.decode_initials` opens it), the CHLO in CRYPTO frames.

T050/T051 carry TLS instead of a CHLO: :mod:`sluice.wire.quic` reads them. Multi-byte frame
fields are little-endian before Q039, big-endian from Q039 on; CHLO tag tables are always
little-endian. :func:`decode_gquic` returns the SNI and UAID tags and every tag in order.

Error reasons (public, stable): ``quic.unsupported_version``, ``quic.not_chlo``,
``quic.bad_chlo``, ``quic.bad_header``, ``quic.truncated``, ``quic.unknown_frame``,
``quic.decrypt_failed``.
"""

from __future__ import annotations

__all__ = ["GQuicHello", "decode_gquic"]

import struct
from dataclasses import dataclass

from sluice.errors import DecodeError
from sluice.wire.cursor import Cursor
from sluice.wire.quic import (
    GQUIC_PN_LENGTHS,
    LongPacketType,
    QuicVersion,
    decode_initials,
    is_gquic_version,
    quic_version_name,
    skip_gquic_ack,
)


@dataclass(frozen=True, slots=True)
class GQuicHello:
    """What a Google QUIC client hello (CHLO) says about its destination and client."""

    version: str
    """The version as nDPI names it (``Q046``)."""
    sni: str | None
    """The ``SNI`` tag: the server name."""
    uaid: str | None
    """The ``UAID`` tag: the user agent."""
    tags: tuple[tuple[str, bytes], ...] = ()
    """Every tag of the CHLO as (name, value), in message order."""


def decode_gquic(datagram: bytes | memoryview) -> GQuicHello:
    """Read the client hello (CHLO) of a Google QUIC client packet.

    Q043 and older (public header) and Q046 (gQUIC long header) carry the CHLO in clear; Q050
    protects it like an IETF Initial with its own salt. T050/T051 carry TLS: use
    :func:`sluice.wire.quic.decode_initials` for them.

    Args:
        datagram: the UDP payload of the client's first packet.

    Returns:
        The CHLO's SNI, UAID and tags.

    Raises:
        DecodeError: ``quic.unsupported_version``, ``quic.not_chlo``, ``quic.bad_chlo``,
            ``quic.truncated``, ``quic.unknown_frame``, ``quic.decrypt_failed`` ...
    """
    data = bytes(datagram)
    cur = Cursor(data, "quic")
    first = cur.u8()
    if first & 0x80:
        version = cur.u32()
        if version == QuicVersion.Q050:
            crypto = [c for i in decode_initials(data) for c in i.crypto]
            chlo = b"".join(d for o, d in sorted(crypto) if o == 0)
            if not chlo:
                raise DecodeError("quic.not_chlo", 0, "no CRYPTO data at offset 0")
        elif version == QuicVersion.Q046:
            chlo = _q046_stream_data(data)
        else:
            raise DecodeError("quic.unsupported_version", 1, quic_version_name(version))
    else:
        version, chlo = _public_header_stream_data(data)
    return GQuicHello(quic_version_name(version), *_parse_chlo(chlo))


def _gquic_number(version: int) -> int:
    """43 for Q043: the decimal number of a gQUIC version."""
    return int(version.to_bytes(4, "big")[1:].decode("ascii"))


def _uint(cur: Cursor, n: int, little: bool) -> int:
    return int.from_bytes(cur.take(n), "little" if little else "big")


def _stream1_data(cur: Cursor, version: int, pn_len: int) -> bytes:
    """Find the crypto stream's (stream 1) data in clear gQUIC frames, which must start it."""
    number = _gquic_number(version)
    little = number < 39
    while cur.remaining:
        start = cur.pos
        ftype = cur.u8()
        if ftype & 0x80:  # STREAM: 1fdooossB
            stream_id = _uint(cur, (ftype & 3) + 1, little)
            off_code = (ftype >> 2) & 7
            offset = _uint(cur, off_code + 1, little) if off_code else 0
            length = _uint(cur, 2, little) if ftype & 0x20 else cur.remaining
            data = cur.take(length)
            if stream_id == 1:
                if offset:
                    raise DecodeError("quic.not_chlo", start, f"stream 1 data at offset {offset}")
                return data
        elif ftype & 0xC0 == 0x40 and number >= 34:  # ACK (older layouts unsupported)
            skip_gquic_ack(cur, ftype, little)
        elif ftype == 0x06:  # STOP_WAITING (entropy byte before Q034)
            cur.skip(pn_len + (number < 34))
        elif ftype == 0x00:  # PADDING runs to the end of the packet
            break
        elif ftype != 0x07:  # PING
            raise DecodeError("quic.unknown_frame", start, f"gQUIC frame type 0x{ftype:x}")
    raise DecodeError("quic.not_chlo", cur.pos, "no crypto stream frame")


def _q046_stream_data(data: bytes) -> bytes:
    """Q046 long header: flags, version, 4-bit CID lengths, DCID, SCID, PN, then frames."""
    cur = Cursor(data, "quic")
    first = cur.u8()
    cur.skip(4)
    if (first >> 4) & 3 != LongPacketType.INITIAL:
        raise DecodeError("quic.not_chlo", 0, "not an Initial packet")
    lengths = cur.u8()
    for nibble in (lengths >> 4, lengths & 15):
        cur.skip(nibble + 3 if nibble else 0)
    pn_len = (first & 3) + 1
    cur.skip(pn_len + 12)  # packet number, then the null encryption's 12-byte hash
    return _stream1_data(cur, QuicVersion.Q046, pn_len)


def _public_header_stream_data(data: bytes) -> tuple[int, bytes]:
    """Q043 and older: public flags, 8-byte CID, version, PN, hash, [private flags], frames.

    The diversification nonce (flag 0x04 from Q033) only appears in server packets; clients
    keep setting 0x04 as part of the old 8-byte connection-ID flags.
    """
    cur = Cursor(data, "quic")
    flags = cur.u8()
    if not flags & 0x01 or flags & 0x02:
        raise DecodeError("quic.bad_header", 0, "no version (not a client hello) or reset")
    cur.skip(8 if flags & 0x08 else 0)  # clients set 0x0C (old and new 8-byte CID flags)
    version = cur.u32()
    if not is_gquic_version(version) or _gquic_number(version) > 43:
        raise DecodeError("quic.unsupported_version", cur.pos - 4, f"version 0x{version:08x}")
    number = _gquic_number(version)
    pn_len = GQUIC_PN_LENGTHS[(flags >> 4) & 3]
    cur.skip(pn_len + 12)
    if number < 34:  # private flags, before Q034
        cur.skip(1)
    return version, _stream1_data(cur, version, pn_len)


def _parse_chlo(
    chlo: bytes,
) -> tuple[str | None, str | None, tuple[tuple[str, bytes], ...]]:
    """Read a CHLO handshake message: tag, count, then (tag, end offset) pairs and values."""
    cur = Cursor(chlo, "quic")
    if cur.take(4) != b"CHLO":
        raise DecodeError("quic.not_chlo", 0, "no CHLO tag")
    count = _uint(cur, 2, little=True)
    cur.skip(2)
    index = struct.iter_unpack("<4sI", cur.take(8 * count))
    values = cur.pos
    tags: list[tuple[str, bytes]] = []
    prev = 0
    for tag, end in index:
        if end < prev:
            raise DecodeError("quic.bad_chlo", values, f"tag offsets go back at {tag!r}")
        if values + end > len(chlo):
            raise DecodeError("quic.truncated", len(chlo), f"CHLO value of {tag!r} past the end")
        name = tag.rstrip(b"\x00").decode("ascii", "backslashreplace")
        tags.append((name, chlo[values + prev : values + end]))
        prev = end
    found = dict(tags)
    sni, uaid = found.get("SNI"), found.get("UAID")
    return (
        None if sni is None else sni.decode("utf-8", "replace"),
        None if uaid is None else uaid.decode("utf-8", "replace"),
        tuple(tags),
    )
