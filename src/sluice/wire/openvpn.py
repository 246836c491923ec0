"""OpenVPN packets: opcode, key id, session id and the layout of a control packet (sans-IO).

Theory of operation
-------------------
An OpenVPN packet (``ssl_pkt.h``) opens with one byte, ``opcode << 3 | key_id``; a control
packet follows it with the sender's 8-byte session id. Over TCP every packet is preceded by a
2-byte big-endian length (``reliable.c``: the stream framing); over UDP the datagram is the
packet. :func:`decode_openvpn` reads that much, and keeps the bytes after the session id
(``body``), which is all a middlebox sees of the first payload.

Where the packet id sits in ``body`` tells the control channel's protection
(:func:`control_layout`): ``tls-crypt`` puts the replay packet id (1 for a hard reset) and its
Unix time right after the session id; ``tls-auth`` puts an HMAC (16, 20, 32 or 48 bytes) first;
without either, a client's hard reset carries an empty ack array and message packet id 0, and a
server's reset acknowledges the client (1-8 ack ids, then the client's session id).
``tls-crypt-v2``'s client reset (opcode 10) wraps its key after the packet id. A reset whose
bytes are cut before the packet id still gives the layout away by its length
(:func:`hmac_size_by_length`).

Nothing in an OpenVPN packet distinguishes it from random bytes but these structures, so a
payload that does not have them is not an OpenVPN packet, not a malformed one:
:func:`try_decode_openvpn` returns ``None`` for it and never raises. :func:`decode_openvpn`
raises :class:`~sluice.errors.DecodeError` (``openvpn.truncated``, ``openvpn.bad_length``).
"""

from __future__ import annotations

__all__ = [
    "CLIENT_HARD_RESETS",
    "HMAC_SIZES",
    "SERVER_HARD_RESETS",
    "OpenVpnOpcode",
    "OpenVpnPacket",
    "control_layout",
    "decode_openvpn",
    "first_byte_is_hard_reset",
    "hmac_size_by_length",
    "try_decode_openvpn",
]

from dataclasses import dataclass
from enum import IntEnum

from sluice.wire.cursor import Cursor


class OpenVpnOpcode(IntEnum):
    """Packet opcodes (``ssl_pkt.h``)."""

    P_CONTROL_HARD_RESET_CLIENT_V1 = 1
    P_CONTROL_HARD_RESET_SERVER_V1 = 2
    P_CONTROL_SOFT_RESET_V1 = 3
    P_CONTROL_V1 = 4
    P_ACK_V1 = 5
    P_DATA_V1 = 6
    P_CONTROL_HARD_RESET_CLIENT_V2 = 7
    P_CONTROL_HARD_RESET_SERVER_V2 = 8
    P_DATA_V2 = 9
    P_CONTROL_HARD_RESET_CLIENT_V3 = 10
    P_CONTROL_WKC_V1 = 11


CLIENT_HARD_RESETS = frozenset(
    {
        OpenVpnOpcode.P_CONTROL_HARD_RESET_CLIENT_V1,
        OpenVpnOpcode.P_CONTROL_HARD_RESET_CLIENT_V2,
        OpenVpnOpcode.P_CONTROL_HARD_RESET_CLIENT_V3,
    }
)
"""Opcodes a client opens a session with."""
SERVER_HARD_RESETS = frozenset(
    {OpenVpnOpcode.P_CONTROL_HARD_RESET_SERVER_V1, OpenVpnOpcode.P_CONTROL_HARD_RESET_SERVER_V2}
)
"""Opcodes a server answers a client's hard reset with."""
HMAC_SIZES = (20, 32, 16, 48)
"""tls-auth HMAC sizes (SHA-1, SHA-256, MD5, SHA-384), in the order they are tried."""
MIN_TCP_LENGTH, MAX_TCP_LENGTH = 14, 1700
"""The TCP length prefix of a control packet: an opcode and a session id at least, one MTU at most."""
_PID1 = b"\x00\x00\x00\x01"
_T_MIN, _T_MAX = 946684800, 4102444800  # 2000-01-01 .. 2100-01-01, the packet-id timestamp
_SID = 8
_TLS_CRYPT_V2_MIN = 49
"""Bytes a tls-crypt-v2 client reset has at least (opcode, session id, packet id, wrapped key)."""
_HARD_RESET_BYTES = frozenset(op << 3 for op in (*CLIENT_HARD_RESETS, *SERVER_HARD_RESETS))
"""First packet byte (opcode << 3 | key id 0) of a hard reset."""


@dataclass(frozen=True, slots=True)
class OpenVpnPacket:
    """The start of one OpenVPN packet."""

    opcode: int
    """:class:`OpenVpnOpcode` value (any 5-bit value: data packets have no session id)."""
    key_id: int
    """Key id (low 3 bits of the first byte; 0 on a hard reset)."""
    session_id: bytes
    """The sender's session id (8 bytes; meaningful on control packets)."""
    length: int | None
    """The TCP length prefix; None over UDP, where the datagram's length is the packet's."""
    body: bytes
    """The bytes after the session id that are at hand (the first payload may be cut)."""

    @property
    def size(self) -> int:
        """Bytes of the packet at hand: opcode, session id and ``body``."""
        return 1 + _SID + len(self.body)

    def packet_id_at(self, offset: int) -> bool:
        """A replay packet id of 1 and a plausible Unix time at ``offset`` in ``body``."""
        b = self.body
        if len(b) < offset + 8 or b[offset : offset + 4] != _PID1:
            return False
        return _T_MIN <= int.from_bytes(b[offset + 4 : offset + 8], "big") <= _T_MAX

    def mentions(self, session_id: bytes) -> bool:
        """``session_id`` appears in ``body`` (a server acknowledging the client's session)."""
        return session_id in self.body


def decode_openvpn(cur: Cursor, *, tcp: bool) -> OpenVpnPacket:
    """Read the start of an OpenVPN packet (``ssl_pkt.h``; TCP framing of ``reliable.c``).

    Args:
        cur: the transport payload, from its first byte.
        tcp: the payload is a TCP stream (a 2-byte length precedes the packet).

    Returns:
        The packet's opcode, key id, session id and the bytes after it.

    Raises:
        DecodeError: ``openvpn.truncated`` (no room for the opcode and session id),
            ``openvpn.bad_length`` (a TCP length outside 14..1700).
    """
    length = None
    if tcp:
        length = cur.u16()
        if not MIN_TCP_LENGTH <= length <= MAX_TCP_LENGTH:
            raise cur.error("bad_length", f"TCP length {length}")
    first = cur.u8()
    session_id = cur.take(_SID)
    return OpenVpnPacket(first >> 3, first & 7, session_id, length, cur.rest())


def try_decode_openvpn(data: bytes, *, tcp: bool) -> OpenVpnPacket | None:
    """:func:`decode_openvpn`, or None when ``data`` cannot be the start of an OpenVPN packet.

    Never raises: a payload that is too short, or over TCP a length prefix out of range, is not
    OpenVPN (UDP needs 9 bytes; TCP needs 11 and a length of 14..1700).
    """
    if tcp:
        if len(data) < 2 + 1 + _SID:
            return None
        if not MIN_TCP_LENGTH <= int.from_bytes(data[:2], "big") <= MAX_TCP_LENGTH:
            return None
    elif len(data) < 1 + _SID:
        return None
    return decode_openvpn(Cursor(data, "openvpn"), tcp=tcp)


def first_byte_is_hard_reset(data: bytes, *, tcp: bool) -> bool:
    """The packet's first byte (after the TCP length prefix) is a hard reset with key id 0.

    A cheap test before :func:`try_decode_openvpn`: a flow whose first payloads both fail it
    cannot open an OpenVPN session.
    """
    at = 2 if tcp else 0
    return len(data) > at and data[at] in _HARD_RESET_BYTES


def control_layout(pkt: OpenVpnPacket, *, server: bool, peer_session_id: bytes | None = None) -> str:
    """The control-channel protection a hard reset's layout shows; ``""`` when none fits.

    Client reset: ``op sid [hmac pid time | pid time hmac] acks=0 msg-pid=0``; server reset: the
    same with one or more acks followed by the client's session id.

    Args:
        pkt: a hard reset.
        server: it is the server's reset.
        peer_session_id: the client's session id, when its reset was seen (a plain server reset
            must acknowledge it; without it, any non-zero session id will do).

    Returns:
        ``"tls-crypt"``, ``"tls-auth (HMAC <n> bytes)"``, ``"plain"``, ``"tls-crypt-v2"`` or ``""``.
    """
    if pkt.packet_id_at(0):
        return "tls-crypt"
    for h in HMAC_SIZES:
        if pkt.packet_id_at(h):
            return f"tls-auth (HMAC {h} bytes)"
    b = pkt.body
    if not server:
        if len(b) >= 5 and b[0] == 0 and b[1:5] == bytes(4):
            return "plain"
    else:
        n = b[0] if b else 0
        if 1 <= n <= 8 and len(b) >= 9 + 4 * n:
            sid = b[1 + 4 * n : 9 + 4 * n]
            if (peer_session_id is None and sid != bytes(_SID)) or sid == peer_session_id:
                return "plain"
    if pkt.opcode == OpenVpnOpcode.P_CONTROL_HARD_RESET_CLIENT_V3 and pkt.size >= _TLS_CRYPT_V2_MIN:
        return "tls-crypt-v2"
    return ""


def hmac_size_by_length(length: int, *, server: bool) -> int:
    """HMAC size a tls-auth hard reset of ``length`` bytes implies (0 when none).

    The HMAC may hide the packet id beyond the bytes kept, but the reset's length still gives the
    layout away: 22 bytes (34 for a server's, one ack and the peer's session id) plus the HMAC.
    """
    fixed = 34 if server else 22
    for h in (*HMAC_SIZES, 64):
        if length == fixed + h:
            return h
    return 0
