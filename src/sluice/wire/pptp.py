"""PPTP: the control connection's message header and PPP frames in enhanced GRE (sans-IO).

Theory of operation
-------------------
Every PPTP control message (RFC 2637 §2) opens with a 2-byte length, a 2-byte PPTP message type
(1: control message), the magic cookie 0x1A2B3C4D and a 2-byte control message type
(1 Start-Control-Connection-Request ...). The data channel is PPP in enhanced GRE (§4.1), whose
payload opens with PPP's HDLC-like framing: address 0xFF, control 0x03 (RFC 1662 §3.1).

:func:`try_decode_pptp` returns the header of a control message, or ``None`` (never raising) for
bytes without the message type and the cookie, which are not PPTP. :func:`starts_ppp_frame`
tells whether a GRE payload opens a PPP frame.
"""

from __future__ import annotations

__all__ = ["CONTROL_MESSAGE", "MAGIC_COOKIE", "PptpHeader", "starts_ppp_frame", "try_decode_pptp"]

from dataclasses import dataclass

MAGIC_COOKIE = 0x1A2B3C4D
"""The constant every PPTP control message carries (RFC 2637 §1.4)."""
CONTROL_MESSAGE = 1
"""PPTP message type of control messages (2, management, is not used)."""
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")
_CONTROL = CONTROL_MESSAGE.to_bytes(2, "big")
_PPP_ADDRESS_CONTROL = b"\xff\x03"


@dataclass(frozen=True, slots=True)
class PptpHeader:
    """The start of a PPTP control message."""

    length: int
    """Length of the whole message."""
    message_type: int
    """PPTP message type (1: control)."""
    control_type: int | None
    """Control message type (1 Start-Control-Connection-Request ...); None when cut before it."""


def try_decode_pptp(data: bytes) -> PptpHeader | None:
    """The header of the PPTP control message at the start of ``data``, or None; never raises.

    None unless ``data`` has the control message type and the magic cookie (8 bytes).
    """
    if len(data) < 8 or data[2:4] != _CONTROL or data[4:8] != _COOKIE:
        return None
    control = int.from_bytes(data[8:10], "big") if len(data) >= 10 else None
    return PptpHeader(int.from_bytes(data[:2], "big"), CONTROL_MESSAGE, control)


def starts_ppp_frame(data: bytes) -> bool:
    """``data`` (a GRE payload) opens with PPP's address and control bytes (0xFF 0x03)."""
    return data[:2] == _PPP_ADDRESS_CONTROL
