"""SSH protocol version exchange: the identification string (RFC 4253 §4.2).

Theory of operation
-------------------
Each side of an SSH connection first sends one line ``SSH-protoversion-softwareversion
[SP comments] CR LF`` of at most 255 bytes, CR LF included. A server may send other lines
first, which must not start with ``SSH-``. :func:`try_decode_ssh_banner` runs on the first
payload of many flows, so it rejects cheaply: the payload must start with ``SSH-``, or start with
a printable byte and contain ``\\nSSH-`` within :data:`MAX_PREAMBLE_BYTES`, with only text before
it. Anything else, or a banner line that has not fully arrived yet, gives ``None``.

Real software bends the grammar: the software version may contain ``-``
(``SSH-2.0-APACHE-SSHD-2.5.0``) and a bare LF ends the line for OpenSSH; both are accepted. The
protocol version is everything between ``SSH-`` and the next ``-``. A complete line that breaks
the grammar (no second ``-``, control characters, an empty field, over 255 bytes) raises
``ssh.bad_banner`` or ``ssh.banner_too_long``.
"""

from __future__ import annotations

__all__ = ["MAX_BANNER_BYTES", "MAX_PREAMBLE_BYTES", "SshBanner", "try_decode_ssh_banner"]

from dataclasses import dataclass

from sluice.errors import DecodeError

MAX_BANNER_BYTES = 255
"""Longest identification line, CR LF included (RFC 4253 §4.2)."""
MAX_PREAMBLE_BYTES = 8192
"""Most bytes of other lines accepted before the identification line."""

_CTL = bytes([*range(0x20), 0x7F])
_PREAMBLE_CTL = bytes(b for b in _CTL if b not in (0x09, 0x0A, 0x0D))


@dataclass(frozen=True, slots=True)
class SshBanner:
    """An SSH identification string (RFC 4253 §4.2)."""

    proto_version: str
    """Protocol version (``2.0``; ``1.99`` for servers that also speak SSH-1)."""
    software: str
    """Software version (``OpenSSH_9.2p1``)."""
    comments: str | None
    """Text after the first space (``Debian-2+deb12u6``), or None."""
    raw: str
    """The whole identification line without its line end."""
    preamble: tuple[str, ...]
    """Lines sent before the identification line (servers only), without line ends."""
    end_offset: int
    """Offset just after the identification line's LF: where binary packets start."""


def _strip_eol(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def try_decode_ssh_banner(data: bytes | bytearray | memoryview) -> SshBanner | None:
    """Decode the identification string at the start of one direction of an SSH connection.

    Args:
        data: the first bytes sent by the client or the server.

    Returns:
        The banner, or None when ``data`` does not start like SSH or the line is incomplete.

    Raises:
        DecodeError: ``ssh.bad_banner`` or ``ssh.banner_too_long``.
    """
    if data[:4] == b"SSH-":
        start = 0
    elif not data or not 0x20 <= data[0] <= 0x7E:
        return None
    else:
        head = bytes(data[: MAX_PREAMBLE_BYTES + 5])
        at = head.find(b"\nSSH-")
        if at < 0:
            return None
        if head[: at + 1].translate(None, _PREAMBLE_CTL) != head[: at + 1]:
            return None
        start = at + 1
    data = bytes(data[: start + MAX_BANNER_BYTES + 1])
    eol = data.find(b"\n", start)
    if eol < 0:
        if len(data) - start >= MAX_BANNER_BYTES:  # no room left for the LF
            raise DecodeError("ssh.banner_too_long", start, f"no line end in {MAX_BANNER_BYTES}")
        return None
    if eol + 1 - start > MAX_BANNER_BYTES:
        raise DecodeError("ssh.banner_too_long", start, f"{eol + 1 - start} bytes")
    line = _strip_eol(data[start:eol])
    if line.translate(None, _CTL) != line:
        raise DecodeError("ssh.bad_banner", start, "control character")
    text = line.decode("latin-1")
    proto, dash, rest = text[4:].partition("-")
    software, _, comments = rest.partition(" ")
    if not dash or not proto or " " in proto or not software:
        raise DecodeError("ssh.bad_banner", start, repr(text[:80]))
    preamble = (
        tuple(_strip_eol(raw_line).decode("latin-1") for raw_line in data[: start - 1].split(b"\n"))
        if start
        else ()
    )
    return SshBanner(
        proto_version=proto,
        software=software,
        comments=comments if " " in rest else None,
        raw=text,
        preamble=preamble,
        end_offset=eol + 1,
    )
