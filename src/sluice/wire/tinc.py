"""tinc's meta protocol: the ID request that opens a meta connection (sans-IO).

Theory of operation
-------------------
Both tinc peers open the TCP meta connection with an ID request, one text line
``0 <name> <major>.<minor>\n`` (tinc's ``protocol.c``, ``protocol_auth.c``): request number 0
(ID), the node's name (letters, digits and underscores), and the protocol version, 17 for tinc
1.0 and 1.1. :func:`try_decode_tinc_id` returns it, or ``None`` (never raising) for any other
start, including a line cut before its newline.
"""

from __future__ import annotations

__all__ = ["PROTOCOL_MAJOR", "TincIdRequest", "try_decode_tinc_id"]

import re
from dataclasses import dataclass

PROTOCOL_MAJOR = 17
"""The meta protocol version of tinc 1.0 and 1.1."""
_ID = re.compile(rb"^0 ([A-Za-z0-9_]{1,64}) (17)(?:\.(\d+))?\n")


@dataclass(frozen=True, slots=True)
class TincIdRequest:
    """A tinc ID request."""

    name: str
    """The sender's node name."""
    major: int
    """Protocol major version (17)."""
    minor: int | None
    """Protocol minor version, when given."""


def try_decode_tinc_id(data: bytes) -> TincIdRequest | None:
    """The ID request opening ``data``, or None; never raises."""
    if not data.startswith(b"0 "):
        return None
    m = _ID.match(data)
    if m is None:
        return None
    minor = m.group(3)
    return TincIdRequest(m.group(1).decode("ascii"), int(m.group(2)), None if minor is None else int(minor))
