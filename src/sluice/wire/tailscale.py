"""Tailscale's disco messages: the magic that opens them (sans-IO).

Theory of operation
-------------------
Tailscale sends its discovery ("disco") messages in the same UDP flows as WireGuard. Each opens
with the 6-byte magic ``TS💬`` (``"TS"`` and U+1F4AC in UTF-8), then the sender's 32-byte disco
public key and a 24-byte nonce, then the sealed message (Tailscale's ``disco`` package).
:func:`try_decode_disco` returns what the start of a datagram holds of that header, or ``None``
(never raising) without the magic.
"""

from __future__ import annotations

__all__ = ["DISCO_MAGIC", "DiscoHeader", "try_decode_disco"]

from dataclasses import dataclass

DISCO_MAGIC = "TS\N{SPEECH BALLOON}".encode()
"""The 6 bytes that open every disco message."""
_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class DiscoHeader:
    """The clear start of a disco message."""

    sender_key: bytes | None
    """The sender's disco public key (32 bytes); None when the bytes at hand end before it."""


def try_decode_disco(data: bytes) -> DiscoHeader | None:
    """The disco header opening ``data``, or None without the magic; never raises."""
    if not data.startswith(DISCO_MAGIC):
        return None
    end = len(DISCO_MAGIC) + _KEY_BYTES
    return DiscoHeader(data[len(DISCO_MAGIC) : end] if len(data) >= end else None)
