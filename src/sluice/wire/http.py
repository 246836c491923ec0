"""HTTP/1.x request and response heads, from the first bytes of a connection.

Theory of operation
-------------------
These functions run on the first payload of many TCP flows, so they reject anything that does
not start like HTTP with a few byte comparisons: a request must start with a known method token
followed by a space, a response with ``HTTP/``. Such payloads give ``None``, as does a start line
that has not fully arrived yet (more bytes needed). Once the start line is complete, anything
malformed raises :class:`~sluice.errors.DecodeError` (``http.bad_request_line``,
``http.bad_status_line``, ``http.bad_header``, ``http.too_many_headers``,
``http.headers_too_long``, ``http.request_line_too_long``).

The head (RFC 9112 §2.1) is parsed line by line: ``name: value`` fields (§5), with obsolete line
folding (§5.2) joined by a space and bare-LF line ends tolerated (§2.2). The request line is
split on runs of whitespace, as §3 allows recipients to do. Each leniency that a strict parser
would refuse is noted in ``anomalies`` (evasion attempts look like this), as are a second Host
field and a Host field that disagrees with an absolute-form target. Header bytes are decoded as
latin-1, so every byte maps to one character. A head cut short by the end of the segment
gives a record with ``complete=False`` holding the fields of the complete lines only — a
half-received ``Host`` line is dropped rather than reported truncated. The head is bounded to
:data:`MAX_HEAD_BYTES` and :data:`MAX_HEADERS`.

The authority of a request is its absolute-form target's (RFC 9112 §3.2.2, the Host field is then
ignored), a CONNECT request's target (§3.2.3), else the Host field (RFC 9110 §7.2).
"""

from __future__ import annotations

__all__ = [
    "ANOMALY_BARE_LF",
    "ANOMALY_DUPLICATE_HOST",
    "ANOMALY_HOST_MISMATCH",
    "ANOMALY_LOOSE_REQUEST_LINE",
    "ANOMALY_OBS_FOLD",
    "HTTP_METHODS",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "HttpRequest",
    "HttpResponse",
    "split_authority",
    "try_decode_http_request",
    "try_decode_http_response",
]

import re
from dataclasses import dataclass

from sluice.errors import DecodeError

MAX_HEAD_BYTES = 64 * 1024
"""Largest head (start line, fields and blank line) parsed, in bytes."""
MAX_HEADERS = 100
"""Most header fields parsed in one head."""

HTTP_METHODS = frozenset(
    {
        # RFC 9110 §9
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
        "PATCH",  # RFC 5789
        # WebDAV (RFC 4918, RFC 3253, RFC 3744, RFC 4791, RFC 5323, RFC 5842)
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH",
        "REPORT", "CHECKOUT", "CHECKIN", "UNCHECKOUT", "MKWORKSPACE", "UPDATE", "LABEL",
        "MERGE", "MKACTIVITY", "BASELINE-CONTROL", "VERSION-CONTROL", "ACL", "ORDERPATCH",
        "MKCALENDAR", "MKREDIRECTREF", "UPDATEREDIRECTREF", "BIND", "UNBIND", "REBIND",
        "LINK", "UNLINK",
        "PURGE",  # caches (Squid, Varnish)
        "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE",  # SSDP/UPnP (HTTPU) and GENA
        "QUERY",  # draft-ietf-httpbis-safe-method-w-body
    }
)  # fmt: skip
"""Request methods recognised at the start of a payload."""

_METHODS_B = frozenset(m.encode("ascii") for m in HTTP_METHODS)
_MAX_METHOD = max(len(m) for m in HTTP_METHODS)
_VERSION_RE = re.compile(rb"HTTP/[0-9]\.[0-9]")
_STATUS_RE = re.compile(rb"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: (.*))?")
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CTL = bytes([*range(0x20), 0x7F])
_VALUE_CTL = bytes(b for b in _CTL if b != 0x09)

ANOMALY_BARE_LF = "http.bare_lf"
"""A line ended with LF alone (RFC 9112 §2.2)."""
ANOMALY_OBS_FOLD = "http.obs_fold"
"""A field value continued on a folded line (RFC 9112 §5.2)."""
ANOMALY_LOOSE_REQUEST_LINE = "http.loose_request_line"
"""The request line was not separated by single spaces (RFC 9112 §3)."""
ANOMALY_DUPLICATE_HOST = "http.duplicate_host"
"""More than one Host field (RFC 9112 §3.2: a server must answer 400)."""
ANOMALY_HOST_MISMATCH = "http.host_mismatch"
"""The Host field differs from the authority of an absolute-form target (RFC 9112 §3.2.2)."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The head of an HTTP/1.x request (RFC 9112 §3)."""

    method: str
    """Request method (``GET``)."""
    target: str
    """Request target as sent: origin-, absolute-, authority- or asterisk-form."""
    version: str
    """Protocol version (``HTTP/1.1``)."""
    host: str | None
    """Host name or address of the authority, without port or IPv6 brackets."""
    authority: str | None
    """The authority as sent (``example.com:8080``): absolute target's, CONNECT target or Host."""
    user_agent: str | None
    """First User-Agent field value."""
    headers: tuple[tuple[str, str], ...]
    """Header fields in order, names as sent, values without surrounding whitespace."""
    url: str
    """``http://authority/path`` for origin-form, the target itself when absolute-form,
    CONNECT or asterisk-form, or when no authority is known."""
    connect_target: str | None
    """``host:port`` of a CONNECT request, else None."""
    complete: bool
    """True when the blank line ending the head was seen."""
    head_length: int
    """Bytes parsed: the whole head if complete, else up to the last complete line."""
    anomalies: tuple[str, ...] = ()
    """Leniencies and oddities seen, as stable ``http.*`` codes, each at most once."""

    def header(self, name: str) -> str | None:
        """First value of field ``name`` (case-insensitive), or None."""
        return _first(self.headers, name.lower())


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The head of an HTTP/1.x response (RFC 9112 §4)."""

    version: str
    """Protocol version (``HTTP/1.1``)."""
    status: int
    """Three-digit status code."""
    reason: str
    """Reason phrase (may be empty)."""
    server: str | None
    """First Server field value."""
    content_type: str | None
    """First Content-Type field value."""
    headers: tuple[tuple[str, str], ...]
    """Header fields in order, names as sent, values without surrounding whitespace."""
    complete: bool
    """True when the blank line ending the head was seen."""
    head_length: int
    """Bytes parsed: the whole head if complete, else up to the last complete line."""
    anomalies: tuple[str, ...] = ()
    """Leniencies and oddities seen, as stable ``http.*`` codes, each at most once."""

    def header(self, name: str) -> str | None:
        """First value of field ``name`` (case-insensitive), or None."""
        return _first(self.headers, name.lower())


def _first(headers: tuple[tuple[str, str], ...], lname: str) -> str | None:
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


def _parse_fields(
    data: bytes, pos: int, layer: str, anomalies: list[str]
) -> tuple[tuple[tuple[str, str], ...], bool, int]:
    """Parse header lines from ``pos``; return (fields, complete, head_length)."""
    fields: list[tuple[str, str]] = []
    n = len(data)
    while True:
        eol = data.find(b"\n", pos, MAX_HEAD_BYTES)
        if eol < 0:
            if n >= MAX_HEAD_BYTES:
                raise DecodeError(f"{layer}.headers_too_long", pos, f"over {MAX_HEAD_BYTES}")
            return tuple(fields), False, pos
        end = eol - 1 if eol > pos and data[eol - 1] == 0x0D else eol
        if end == eol:
            _note(anomalies, ANOMALY_BARE_LF)
        if end == pos:
            return tuple(fields), True, eol + 1
        line = data[pos:end]
        if line.translate(None, _VALUE_CTL) != line:
            raise DecodeError(f"{layer}.bad_header", pos, "control character in field line")
        if line[0] in b" \t":
            if not fields:
                raise DecodeError(f"{layer}.bad_header", pos, "folded line without a field")
            _note(anomalies, ANOMALY_OBS_FOLD)
            name, value = fields[-1]
            more = line.strip(b" \t").decode("latin-1")
            fields[-1] = (name, f"{value} {more}" if value else more)
        else:
            colon = line.find(b":")
            if colon <= 0 or line[:colon].translate(None, _TCHAR):
                raise DecodeError(f"{layer}.bad_header", pos, "bad field name")
            if len(fields) >= MAX_HEADERS:
                raise DecodeError(f"{layer}.too_many_headers", pos, f"over {MAX_HEADERS}")
            fields.append((line[:colon].decode("ascii"), line[colon + 1 :].strip(b" \t").decode("latin-1")))
        pos = eol + 1


def _note(anomalies: list[str], code: str) -> None:
    if code not in anomalies:
        anomalies.append(code)


def split_authority(authority: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (RFC 3986 §3.2.2) into the host and the port.

    IPv6 brackets are removed; a port that is not a decimal number is left in the host.

    Args:
        authority: ``example.com``, ``example.com:8080``, ``[2001:db8::1]:443`` ...

    Returns:
        ``(host, port or None)``.
    """
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    if authority.startswith("["):
        close = authority.find("]")
        if close > 0:
            rest = authority[close + 1 :]
            digits = rest[1:]
            ok = rest[:1] == ":" and digits.isascii() and digits.isdigit()
            return authority[1:close], int(digits) if ok else None
        return authority, None
    host, sep, port_text = authority.rpartition(":")
    if sep and ":" not in host and port_text.isascii() and port_text.isdigit():
        return host, int(port_text)
    if sep and not port_text and ":" not in host:
        return host, None
    return authority, None


def _absolute_authority(target: str) -> str | None:
    scheme, sep, rest = target.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha():
        return None
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    return rest[:end]


def try_decode_http_request(data: bytes | bytearray | memoryview) -> HttpRequest | None:
    """Decode the head of an HTTP/1.x request from the start of a client's byte stream.

    Args:
        data: the first bytes the client sent (one segment or more).

    Returns:
        The request head (``complete=False`` if the head continues past ``data``), or None if
        ``data`` does not start with a known method and a space, or the request line has not
        fully arrived yet.

    Raises:
        DecodeError: ``http.bad_request_line``, ``http.request_line_too_long``,
            ``http.bad_header``, ``http.too_many_headers`` or ``http.headers_too_long``.
    """
    if not data or not 0x41 <= data[0] <= 0x5A:
        return None
    start = bytes(data[: _MAX_METHOD + 1])
    sp = start.find(b" ")
    if sp < 0 or start[:sp] not in _METHODS_B:
        return None
    data = bytes(data[:MAX_HEAD_BYTES])
    eol = data.find(b"\n", sp)
    if eol < 0:
        if len(data) >= MAX_HEAD_BYTES:
            raise DecodeError("http.request_line_too_long", 0, f"over {MAX_HEAD_BYTES} bytes")
        return None
    anomalies: list[str] = []
    line = data[: eol - 1] if eol and data[eol - 1] == 0x0D else data[:eol]
    if len(line) == eol:
        _note(anomalies, ANOMALY_BARE_LF)
    parts = line.split()
    if len(parts) != 3 or parts[1].translate(None, _CTL) != parts[1] or not _VERSION_RE.fullmatch(parts[2]):
        raise DecodeError("http.bad_request_line", 0, repr(line[:80]))
    if len(line) != sum(map(len, parts)) + 2:
        _note(anomalies, ANOMALY_LOOSE_REQUEST_LINE)
    headers, complete, head_length = _parse_fields(data, eol + 1, "http", anomalies)
    method = parts[0].decode("ascii")
    target = parts[1].decode("latin-1")
    connect_target = target if method == "CONNECT" else None
    hosts = [value for name, value in headers if name.lower() == "host"]
    if len(hosts) > 1:
        _note(anomalies, ANOMALY_DUPLICATE_HOST)
    absolute = _absolute_authority(target)
    if absolute is not None and hosts and hosts[0].lower() != absolute.lower():
        _note(anomalies, ANOMALY_HOST_MISMATCH)
    authority = connect_target or absolute or (hosts[0] if hosts else None) or None
    if authority and method != "CONNECT" and target[:1] == "/":
        url = f"http://{authority}{target}"
    else:
        url = target
    return HttpRequest(
        method=method,
        target=target,
        version=parts[2].decode("ascii"),
        host=split_authority(authority)[0] if authority else None,
        authority=authority,
        user_agent=_first(headers, "user-agent"),
        headers=headers,
        url=url,
        connect_target=connect_target,
        complete=complete,
        head_length=head_length,
        anomalies=tuple(anomalies),
    )


def try_decode_http_response(data: bytes | bytearray | memoryview) -> HttpResponse | None:
    """Decode the head of an HTTP/1.x response from the start of a server's byte stream.

    Args:
        data: the first bytes the server sent.

    Returns:
        The response head (``complete=False`` if the head continues past ``data``), or None if
        ``data`` does not start with ``HTTP/`` or the status line has not fully arrived yet.

    Raises:
        DecodeError: ``http.bad_status_line``, ``http.bad_header``, ``http.too_many_headers``
            or ``http.headers_too_long``.
    """
    if data[:5] != b"HTTP/":
        return None
    data = bytes(data[:MAX_HEAD_BYTES])
    eol = data.find(b"\n")
    if eol < 0:
        if len(data) >= MAX_HEAD_BYTES:
            raise DecodeError("http.bad_status_line", 0, f"over {MAX_HEAD_BYTES} bytes")
        return None
    anomalies: list[str] = []
    line = data[: eol - 1] if eol and data[eol - 1] == 0x0D else data[:eol]
    if len(line) == eol:
        _note(anomalies, ANOMALY_BARE_LF)
    match = _STATUS_RE.fullmatch(line)
    if match is None or line.translate(None, _VALUE_CTL) != line:
        raise DecodeError("http.bad_status_line", 0, repr(line[:80]))
    headers, complete, head_length = _parse_fields(data, eol + 1, "http", anomalies)
    return HttpResponse(
        version=match.group(1).decode("ascii"),
        status=int(match.group(2)),
        reason=(match.group(3) or b"").decode("latin-1"),
        server=_first(headers, "server"),
        content_type=_first(headers, "content-type"),
        headers=headers,
        complete=complete,
        head_length=head_length,
        anomalies=tuple(anomalies),
    )
