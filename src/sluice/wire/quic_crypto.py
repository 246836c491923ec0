"""Initial-packet protection for QUIC (RFC 9001 §5, RFC 9369 §3.3).

Theory of operation
-------------------
Initial packets are encrypted, but with keys anyone can compute: HKDF-Extract of a
version-specific public salt and the Destination Connection ID of the client's first Initial
gives an initial secret; HKDF-Expand-Label (RFC 8446 §7.1) with the labels ``client in`` /
``server in`` gives one secret per direction, and from each secret the labels ``quic key``,
``quic iv`` and ``quic hp`` (``quicv2 ...`` for QUIC v2) give the AES-128-GCM key, the nonce
base and the AES-ECB header-protection key.

Deriving the keys costs a dozen HMAC-SHA256 calls, and all the Initials of one connection share
them, so :func:`initial_protection` keeps the ready cipher objects of recent
(version, DCID, direction) triples in a small LRU cache.

The salt depends on the version: QUIC v1 and drafts 33-34 share one, drafts 29-32 another,
drafts 23-28 another, draft 22 another; QUIC v2 has its own, and Google's QUIC-over-IETF-header
versions Q050, T050 and T051 each have one (these three use the v1 labels).
"""

from __future__ import annotations

__all__ = [
    "AEAD_TAG_LEN",
    "InitialKeys",
    "InitialProtection",
    "decode_packet_number",
    "derive_initial_keys",
    "hkdf_expand_label",
    "initial_protection",
    "initial_salt",
    "unprotect",
]

import functools
import hmac
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sluice.errors import DecodeError

AEAD_TAG_LEN = 16
"""Bytes of the AES-128-GCM authentication tag that ends every protected payload."""
_SAMPLE_LEN = 16

_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
_SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
_SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
_SALT_Q050 = bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45")
_SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
_SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")

_V2 = 0x6B3343CF
_SPECIAL_SALTS = {
    0x00000001: _SALT_V1,
    _V2: _SALT_V2,
    0x51303530: _SALT_Q050,  # Q050
    0x54303530: _SALT_T050,  # T050
    0x54303531: _SALT_T051,  # T051
    0xFACEB001: _SALT_DRAFT_22,  # mvfst draft-22
    0xFACEB002: _SALT_DRAFT_23,  # mvfst draft-27
    0xFACEB00E: _SALT_DRAFT_23,  # mvfst experimental (draft-27 based)
}


def initial_salt(version: int) -> bytes | None:
    """The Initial salt of ``version``, or ``None`` when its Initials cannot be decrypted.

    Args:
        version: the 32-bit version field of a long header.

    Returns:
        The 20-byte salt (RFC 9001 §5.2, RFC 9369 §3.3.1, the IETF drafts, Google's Q050/T05x).
    """
    salt = _SPECIAL_SALTS.get(version)
    if salt is not None:
        return salt
    if version >> 8 == 0xFF0000:
        draft = version & 0xFF
        if 33 <= draft <= 34:
            return _SALT_V1
        if 29 <= draft <= 32:
            return _SALT_DRAFT_29
        if 23 <= draft <= 28:
            return _SALT_DRAFT_23
        if draft == 22:
            return _SALT_DRAFT_22
    return None


def hkdf_expand_label(secret: bytes, label: bytes, length: int, context: bytes = b"") -> bytes:
    """HKDF-Expand-Label with SHA-256 (RFC 8446 §7.1).

    Args:
        secret: the pseudorandom key (32 bytes).
        label: the label without the ``tls13 `` prefix (``b"quic key"``).
        length: output length in bytes (at most 255 * 32).
        context: the context value (empty for every QUIC Initial label).

    Returns:
        ``length`` bytes of key material.
    """
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes([counter]), sha256)
        out += block
        counter += 1
    return out[:length]


@dataclass(frozen=True, slots=True)
class InitialKeys:
    """The packet-protection keys of one direction of a connection's Initial packets."""

    key: bytes
    """AES-128-GCM key (16 bytes)."""
    iv: bytes
    """Nonce base, XORed with the packet number (12 bytes)."""
    hp: bytes
    """AES-128 header-protection key (16 bytes)."""


def derive_initial_keys(version: int, dcid: bytes, *, server: bool = False) -> InitialKeys:
    """Derive the Initial keys of one direction (RFC 9001 §5.2, RFC 9369 §3.3).

    Args:
        version: the long-header version.
        dcid: the Destination Connection ID of the client's first Initial packet.
        server: derive the server's keys (label ``server in``) instead of the client's.

    Returns:
        The keys.

    Raises:
        DecodeError: ``quic.unsupported_version`` when no salt is known for ``version``.
    """
    salt = initial_salt(version)
    if salt is None:
        raise DecodeError("quic.unsupported_version", 1, f"version 0x{version:08x}")
    initial_secret = hmac.digest(salt, dcid, sha256)
    secret = hkdf_expand_label(initial_secret, b"server in" if server else b"client in", 32)
    prefix = b"quicv2 " if version == _V2 else b"quic "
    return InitialKeys(
        key=hkdf_expand_label(secret, prefix + b"key", 16),
        iv=hkdf_expand_label(secret, prefix + b"iv", 12),
        hp=hkdf_expand_label(secret, prefix + b"hp", 16),
    )


class InitialProtection:
    """Ready cipher objects for one direction: header-protection mask and AEAD open.

    Args:
        keys: the direction's keys.
    """

    __slots__ = ("_aead", "_hp", "_iv")

    def __init__(self, keys: InitialKeys) -> None:
        self._aead = AESGCM(keys.key)
        # RFC 9001 §5.4.3: header protection is AES-ECB of one 16-byte block.
        ecb = modes.ECB()  # noqa: S305
        self._hp: CipherContext = Cipher(algorithms.AES(keys.hp), ecb).encryptor()
        self._iv = int.from_bytes(keys.iv, "big")

    def mask(self, sample: bytes) -> bytes:
        """The 5-byte header-protection mask for a 16-byte ciphertext ``sample`` (§5.4.3)."""
        return self._hp.update(sample)[:5]

    def open(self, packet_number: int, header: bytes, ciphertext: bytes) -> bytes | None:
        """Decrypt and authenticate a payload (RFC 9001 §5.3).

        Args:
            packet_number: the full (decoded) packet number.
            header: the unprotected header, used as associated data.
            ciphertext: the payload including its 16-byte tag.

        Returns:
            The plaintext, or ``None`` when authentication fails (wrong keys or damaged packet).
        """
        nonce = (self._iv ^ packet_number).to_bytes(12, "big")
        try:
            return self._aead.decrypt(nonce, ciphertext, header)
        except InvalidTag:
            return None


@functools.lru_cache(maxsize=512)
def initial_protection(version: int, dcid: bytes, server: bool) -> InitialProtection:
    """The cached :class:`InitialProtection` of one direction of a connection.

    Args:
        version: the long-header version.
        dcid: the Destination Connection ID of the client's first Initial packet.
        server: ``True`` for the server's direction.

    Raises:
        DecodeError: ``quic.unsupported_version``.
    """
    return InitialProtection(derive_initial_keys(version, dcid, server=server))


def decode_packet_number(largest_pn: int, truncated_pn: int, pn_nbits: int) -> int:
    """Expand a truncated packet number (RFC 9000 Appendix A.3).

    Args:
        largest_pn: the largest packet number received so far in the space (-1 for none).
        truncated_pn: the packet-number field.
        pn_nbits: its size in bits.

    Returns:
        The full packet number closest to ``largest_pn + 1``.
    """
    expected = largest_pn + 1
    win = 1 << pn_nbits
    hwin = win >> 1
    candidate = (expected & ~(win - 1)) | truncated_pn
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate


def unprotect(
    data: bytes, start: int, pn_offset: int, end: int, prot: InitialProtection, largest_pn: int
) -> tuple[int, bytes] | None:
    """Remove header protection and open a long-header packet (RFC 9001 §5.3-5.4).

    Args:
        data: the datagram.
        start: offset of the packet's first byte.
        pn_offset: offset of its packet-number field.
        end: one past its last byte (from the Length field).
        prot: the direction's protection.
        largest_pn: largest packet number seen in the space (-1: none).

    Returns:
        (packet number, plaintext payload), or None when authentication fails.

    Raises:
        DecodeError: ``quic.truncated`` when the packet is too short to sample (§5.4.2).
    """
    if pn_offset + 4 + _SAMPLE_LEN > end:
        raise DecodeError("quic.truncated", pn_offset, "packet too short for the header sample")
    mask = prot.mask(data[pn_offset + 4 : pn_offset + 4 + _SAMPLE_LEN])
    first = data[start] ^ (mask[0] & 0x0F)  # long header: 4 protected bits
    pn_len = (first & 3) + 1
    truncated = int.from_bytes(data[pn_offset : pn_offset + pn_len], "big") ^ int.from_bytes(
        mask[1 : 1 + pn_len], "big"
    )
    header = bytes([first]) + data[start + 1 : pn_offset] + truncated.to_bytes(pn_len, "big")
    pn = decode_packet_number(largest_pn, truncated, 8 * pn_len)
    plain = prot.open(pn, header, data[pn_offset + pn_len : end])
    return None if plain is None else (pn, plain)
