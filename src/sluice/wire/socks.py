"""SOCKS4/4a and SOCKS5 handshake messages (SOCKS 4 protocol, SOCKS 4A, RFC 1928, RFC 1929).

Theory of operation
-------------------
A SOCKS handshake is a few short messages without framing; which one a payload holds depends on
the direction and on what came before. :func:`try_decode_socks` looks at one direction's bytes
without history and decides by structure:

* client, first byte 4: SOCKS4 request ``VN CD DSTPORT DSTIP USERID NUL`` (4a: DSTIP 0.0.0.x with
  x != 0, then ``DOMAIN NUL``);
* client, first byte 5: the greeting ``VER NMETHODS METHODS`` (RFC 1928 §3) or the request
  ``VER CMD RSV ATYP DST.ADDR DST.PORT`` (§4). Both can start ``05 01 00``; the one whose length
  matches the payload exactly wins, then a greeting followed by a pipelined request (``05``) or
  username/password authentication (``01``, if method 2 was offered), then a request followed by
  early data;
* server, first byte 0: SOCKS4 reply ``VN CD DSTPORT DSTIP``;
* server, first byte 5: method selection ``VER METHOD`` (§3) or the reply ``VER REP RSV ATYP
  BND.ADDR BND.PORT`` (§6).

A payload whose fixed header does not fit these shapes gives ``None``, as does a message that has
not fully arrived. Once the fixed header fits, a bad variable part raises
:class:`~sluice.errors.DecodeError` (``socks.user_id_too_long``, ``socks.bad_domain`` ...).
Every record has ``size``, the bytes it used, so pipelined messages can be walked.
:func:`socks_target` walks a client's first payloads in order (greeting, optional RFC 1929
authentication, request) and returns the requested ``host:port``. :func:`socks_opening` tells
how each side's first payload opens the handshake (version, a greeting alone, the method the
proxy chose) without raising, for readers of a flow's first bytes.
"""

from __future__ import annotations

__all__ = [
    "MAX_SOCKS4_FIELD_BYTES",
    "Socks4Reply",
    "Socks4ReplyCode",
    "Socks4Request",
    "Socks5Greeting",
    "Socks5MethodSelection",
    "Socks5Reply",
    "Socks5ReplyCode",
    "Socks5Request",
    "Socks5UserPassAuth",
    "SocksAddressType",
    "SocksAuthMethod",
    "SocksCommand",
    "SocksMessage",
    "SocksOpening",
    "opens_like_socks5",
    "socks_opening",
    "socks_target",
    "socks_tunnel_offsets",
    "try_decode_socks",
]

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError

MAX_SOCKS4_FIELD_BYTES = 255
"""Longest SOCKS4 user ID or SOCKS4a domain accepted before its NUL."""
MAX_CLIENT_BYTES = 4096
"""Most client bytes :func:`socks_target` looks at."""


class SocksCommand(IntEnum):
    """Request commands (SOCKS 4 CD, RFC 1928 §4 CMD)."""

    CONNECT = 1
    BIND = 2
    UDP_ASSOCIATE = 3


class SocksAddressType(IntEnum):
    """Address types of SOCKS5 requests and replies (RFC 1928 §5)."""

    IPV4 = 1
    DOMAIN = 3
    IPV6 = 4


class SocksAuthMethod(IntEnum):
    """SOCKS5 authentication methods (RFC 1928 §3, IANA SOCKS methods)."""

    NO_AUTH = 0
    GSSAPI = 1
    USERNAME_PASSWORD = 2
    CHAP = 3
    CHALLENGE_RESPONSE = 5
    SSL = 6
    NDS = 7
    MULTI_AUTH = 8
    JSON = 9
    NO_ACCEPTABLE = 0xFF


class Socks5ReplyCode(IntEnum):
    """SOCKS5 reply codes (RFC 1928 §6)."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6
    COMMAND_NOT_SUPPORTED = 7
    ADDRESS_TYPE_NOT_SUPPORTED = 8


class Socks4ReplyCode(IntEnum):
    """SOCKS4 reply codes (SOCKS 4 protocol, CD field)."""

    GRANTED = 90
    REJECTED = 91
    NO_IDENTD = 92
    IDENTD_MISMATCH = 93


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Socks4Request:
    """A SOCKS4 or SOCKS4a CONNECT/BIND request."""

    command: int
    """:class:`SocksCommand` value (CONNECT or BIND)."""
    port: int
    """Destination port."""
    address: str
    """Destination IPv4 address (``0.0.0.x`` for SOCKS4a)."""
    user_id: str
    """User ID (ASCII, other bytes backslash-escaped)."""
    domain: str | None
    """SOCKS4a destination name, else None."""
    size: int
    """Bytes used, both NULs included."""

    @property
    def target(self) -> str:
        """``host:port`` requested: the 4a domain if any, else the address."""
        return _host_port(self.domain or self.address, self.port)


@dataclass(frozen=True, slots=True)
class Socks4Reply:
    """A SOCKS4 reply."""

    code: int
    """:class:`Socks4ReplyCode` value."""
    port: int
    """Port (meaningful for BIND)."""
    address: str
    """IPv4 address (meaningful for BIND)."""
    size: int
    """Bytes used (8)."""


@dataclass(frozen=True, slots=True)
class Socks5Greeting:
    """A SOCKS5 client greeting (RFC 1928 §3)."""

    methods: tuple[int, ...]
    """Offered :class:`SocksAuthMethod` values, in order."""
    size: int
    """Bytes used."""


@dataclass(frozen=True, slots=True)
class Socks5MethodSelection:
    """A SOCKS5 server's method selection (RFC 1928 §3)."""

    method: int
    """Chosen :class:`SocksAuthMethod` value (0xFF: none acceptable)."""
    size: int
    """Bytes used (2)."""


@dataclass(frozen=True, slots=True)
class Socks5UserPassAuth:
    """A username/password authentication request (RFC 1929 §2); the password is not kept."""

    username: str
    """User name (ASCII, other bytes backslash-escaped)."""
    password_length: int
    """Length of the password in bytes."""
    size: int
    """Bytes used."""


@dataclass(frozen=True, slots=True)
class Socks5Request:
    """A SOCKS5 request (RFC 1928 §4)."""

    command: int
    """:class:`SocksCommand` value."""
    address_type: int
    """:class:`SocksAddressType` value."""
    host: str
    """Destination IPv4/IPv6 address text or domain name."""
    port: int
    """Destination port."""
    size: int
    """Bytes used."""

    @property
    def target(self) -> str:
        """``host:port`` requested (IPv6 in brackets)."""
        return _host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class Socks5Reply:
    """A SOCKS5 reply (RFC 1928 §6)."""

    code: int
    """:class:`Socks5ReplyCode` value."""
    address_type: int
    """:class:`SocksAddressType` value."""
    host: str
    """Bound address text or domain name."""
    port: int
    """Bound port."""
    size: int
    """Bytes used."""


SocksMessage = (
    Socks4Request
    | Socks4Reply
    | Socks5Greeting
    | Socks5MethodSelection
    | Socks5UserPassAuth
    | Socks5Request
    | Socks5Reply
)
"""Any SOCKS handshake message."""

_ATYPS = (1, 3, 4)


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "backslashreplace")


def _cstring(data: bytes, pos: int, what: str) -> tuple[bytes, int] | None:
    """NUL-terminated field at ``pos``: (bytes, offset after the NUL), or None if unfinished."""
    nul = data.find(b"\x00", pos, pos + MAX_SOCKS4_FIELD_BYTES + 1)
    if nul < 0:
        if len(data) > pos + MAX_SOCKS4_FIELD_BYTES:
            raise DecodeError(f"socks.{what}_too_long", pos, f"over {MAX_SOCKS4_FIELD_BYTES}")
        return None
    return data[pos:nul], nul + 1


def _socks4_request(data: bytes, pos: int) -> Socks4Request | None:
    if len(data) < pos + 9:
        return None
    port = (data[pos + 2] << 8) | data[pos + 3]
    ip = data[pos + 4 : pos + 8]
    user = _cstring(data, pos + 8, "user_id")
    if user is None:
        return None
    domain: str | None = None
    end = user[1]
    if ip[:3] == b"\x00\x00\x00" and ip[3]:
        name = _cstring(data, end, "domain")
        if name is None:
            return None
        if not name[0]:
            raise DecodeError("socks.bad_domain", end, "empty SOCKS4a domain")
        domain, end = _text(name[0]), name[1]
    address = ".".join([str(b) for b in ip])
    return Socks4Request(data[pos + 1], port, address, _text(user[0]), domain, end - pos)


def _address(data: bytes, pos: int) -> tuple[str, int, int] | None:
    """ATYP, address and port at ``pos``: (host, port, offset after), or None if unfinished."""
    atyp = data[pos]
    if atyp == SocksAddressType.IPV4:
        end = pos + 5
        if len(data) < end + 2:
            return None
        host = ".".join([str(b) for b in data[pos + 1 : end]])
    elif atyp == SocksAddressType.IPV6:
        end = pos + 17
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv6Address(data[pos + 1 : end]))
    elif atyp == SocksAddressType.DOMAIN:
        if len(data) < pos + 2:
            return None
        end = pos + 2 + data[pos + 1]
        if end == pos + 2:
            raise DecodeError("socks.bad_domain", pos, "empty domain")
        if len(data) < end + 2:
            return None
        host = _text(data[pos + 2 : end])
    else:
        raise DecodeError("socks.bad_address_type", pos, f"ATYP {atyp}")
    return host, (data[end] << 8) | data[end + 1], end + 2


def _socks5_request_header_ok(data: bytes) -> bool:
    """VER 5, CMD 1..3, RSV 0 and a known ATYP at the start of ``data``."""
    return len(data) >= 4 and 1 <= data[1] <= 3 and data[2] == 0 and data[3] in _ATYPS


def _socks5_request(data: bytes, pos: int) -> Socks5Request | None:
    if len(data) < pos + 4:
        return None
    if data[pos] != 5 or not 1 <= data[pos + 1] <= 3:
        raise DecodeError("socks.bad_command", pos, f"{data[pos : pos + 2].hex()}")
    if data[pos + 2] != 0:
        raise DecodeError("socks.bad_reserved", pos + 2)
    addr = _address(data, pos + 3)
    if addr is None:
        return None
    return Socks5Request(data[pos + 1], data[pos + 3], addr[0], addr[1], addr[2] - pos)


def _socks5_greeting(data: bytes, pos: int) -> Socks5Greeting | None:
    count = data[pos + 1] if len(data) > pos + 1 else 0
    if count == 0:
        raise DecodeError("socks.no_methods", pos)
    if len(data) < pos + 2 + count:
        return None
    return Socks5Greeting(tuple(data[pos + 2 : pos + 2 + count]), 2 + count)


def _socks5_userpass(data: bytes, pos: int) -> Socks5UserPassAuth | None:
    if len(data) < pos + 2:
        return None
    ulen = data[pos + 1]
    if ulen == 0:
        raise DecodeError("socks.bad_username", pos, "empty user name")
    plen_at = pos + 2 + ulen
    if len(data) <= plen_at or len(data) < plen_at + 1 + data[plen_at]:
        return None
    plen = data[plen_at]
    return Socks5UserPassAuth(_text(data[pos + 2 : plen_at]), plen, 3 + ulen + plen)


def _client_message(data: bytes) -> SocksMessage | None:
    if data[0] == 4:
        if len(data) < 2 or data[1] not in (1, 2):
            return None
        return _socks4_request(data, 0)
    if len(data) < 3 or data[1] == 0:
        return None
    count = data[1]
    greet_end = 2 + count
    methods = data[2:greet_end]
    is_request = _socks5_request_header_ok(data)
    if len(data) == greet_end:
        return Socks5Greeting(tuple(methods), greet_end)
    request = _socks5_request(data, 0) if is_request else None
    if request is not None and request.size == len(data):
        return request
    if len(data) > greet_end:
        after = data[greet_end]
        if after == 5 or (after == 1 and SocksAuthMethod.USERNAME_PASSWORD in methods):
            return Socks5Greeting(tuple(methods), greet_end)
    return request


def _server_message(data: bytes) -> SocksMessage | None:
    if data[0] == 0:
        if len(data) < 8 or not 90 <= data[1] <= 93:
            return None
        address = ".".join([str(b) for b in data[4:8]])
        return Socks4Reply(data[1], (data[2] << 8) | data[3], address, 8)
    if len(data) < 2:
        return None
    if len(data) == 2 or data[2] in (1, 5):
        return Socks5MethodSelection(data[1], 2)
    if len(data) < 4 or data[2] != 0 or data[3] not in _ATYPS:
        return None
    addr = _address(data, 3)
    if addr is None:
        return None
    return Socks5Reply(data[1], data[3], addr[0], addr[1], addr[2])


def try_decode_socks(data: bytes | bytearray | memoryview, from_client: bool) -> SocksMessage | None:
    """Decode the SOCKS message at the start of ``data``.

    Args:
        data: bytes of one direction, starting at a message boundary.
        from_client: True for client-to-proxy bytes, False for proxy-to-client bytes.

    Returns:
        A SOCKS4 request or SOCKS5 greeting/request (client), a SOCKS4 reply or SOCKS5 method
        selection/reply (server); None if the bytes do not have that shape or the message is
        incomplete. ``size`` tells where a pipelined next message starts.

    Raises:
        DecodeError: ``socks.user_id_too_long``, ``socks.domain_too_long``, ``socks.bad_domain``.
    """
    if not data or data[0] not in ((4, 5) if from_client else (0, 5)):
        return None
    raw = bytes(data[:MAX_CLIENT_BYTES])
    return _client_message(raw) if from_client else _server_message(raw)


@dataclass(frozen=True, slots=True)
class SocksOpening:
    """How a SOCKS handshake opens, as each side's first payload shows it."""

    version: int | None
    """The client's first byte (4 or 5 for SOCKS); None without a client payload."""
    greeting: Socks5Greeting | None
    """The client's first payload, when it is a SOCKS5 greeting and nothing else."""
    selection: Socks5MethodSelection | None
    """The method the proxy chose, when its first payload opens ``05 <method>``."""
    selection_alone: bool
    """The proxy's first payload is that method selection and nothing else (2 bytes)."""


def opens_like_socks5(client: bytes) -> bool:
    """The client's first byte is SOCKS5's version: a cheap test before :func:`socks_opening`."""
    return client[:1] == b"\x05"


def socks_opening(client: bytes, server: bytes) -> SocksOpening:
    """The start of a SOCKS handshake in the first bytes of each direction (RFC 1928 §3).

    Never raises: bytes of another protocol give an opening with no greeting and no selection.

    Args:
        client: the start of the client's first payload.
        server: the start of the proxy's first payload.

    Returns:
        The client's version byte, its greeting when the payload is exactly one, and the proxy's
        method selection.
    """
    greeting = None
    if len(client) >= 3 and client[0] == 5 and client[1] and len(client) == 2 + client[1]:
        greeting = _socks5_greeting(client, 0)
    selection = Socks5MethodSelection(server[1], 2) if len(server) >= 2 and server[0] == 5 else None
    alone = selection is not None and len(server) == 2
    return SocksOpening(client[0] if client else None, greeting, selection, alone)


def socks_target(client_payloads: Sequence[bytes]) -> str | None:
    """The ``host:port`` a SOCKS client asked for, from its first payloads.

    Walks SOCKS4/4a request, or SOCKS5 greeting, optional RFC 1929 authentication and request,
    across payload boundaries.

    Args:
        client_payloads: the client's first TCP payloads, in order.

    Returns:
        ``host:port`` (IPv6 in brackets) of a CONNECT or BIND request; None if the bytes are not
        a SOCKS client handshake, the request has not arrived yet, or it is UDP ASSOCIATE.

    Raises:
        DecodeError: when the handshake starts like SOCKS but is malformed.
    """
    hs = _client_handshake(b"".join(client_payloads)[:MAX_CLIENT_BYTES])
    if hs is None or hs[1] not in (SocksCommand.CONNECT, SocksCommand.BIND):
        return None
    return hs[0]


def _client_handshake(buf: bytes) -> tuple[str, int, int] | None:
    """(target, command, offset after the request) of a complete client handshake."""
    if not buf:
        return None
    if buf[0] == 4:
        msg = _client_message(buf)
        if not isinstance(msg, Socks4Request):
            return None
        return msg.target, msg.command, msg.size
    if buf[0] == 5 and len(buf) >= 2 and buf[1] != 0:
        greeting = _socks5_greeting(buf, 0)
        if greeting is None or len(buf) <= greeting.size:
            return None
        pos = greeting.size
        if buf[pos] == 1 and SocksAuthMethod.USERNAME_PASSWORD in greeting.methods:
            auth = _socks5_userpass(buf, pos)
            if auth is None:
                return None
            pos += auth.size
        elif buf[pos] != 5:
            return None
        request = _socks5_request(buf, pos)
        if request is None:
            return None
        return request.target, request.command, pos + request.size
    return None


def socks_tunnel_offsets(client: bytes, server: bytes) -> tuple[int, int] | None:
    """Where the relayed bytes start in each direction, once a CONNECT was granted.

    Args:
        client: the client's stream from its first byte.
        server: the server's stream from its first byte.

    Returns:
        (client offset, server offset) past the SOCKS handshake (RFC 1928 §6, SOCKS4 reply),
        or None while the handshake is incomplete, refused, or not a CONNECT.

    Raises:
        DecodeError: a handshake that starts like SOCKS but is malformed.
    """
    hs = _client_handshake(client[:MAX_CLIENT_BYTES])
    if hs is None or hs[1] != SocksCommand.CONNECT:
        return None
    if client[0] == 4:
        if len(server) < 8 or server[0] != 0 or server[1] != 90:
            return None
        return hs[2], 8
    if len(server) < 2 or server[0] != 5:
        return None
    pos = 2
    if server[1] == SocksAuthMethod.USERNAME_PASSWORD:
        if len(server) < pos + 2 or server[pos + 1] != 0:
            return None
        pos += 2
    if len(server) < pos + 4 or server[pos] != 5 or server[pos + 1] != 0:
        return None
    addr = _address(server, pos + 3)
    if addr is None:
        return None
    return hs[2], addr[2]
