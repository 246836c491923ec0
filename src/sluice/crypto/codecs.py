"""Address encodings of the chains sluice recognises, written from their specifications.

Theory of operation: every decoder takes the text of one candidate and returns the payload it
carries, or raises :class:`AddressError` (a ``ValueError``) with a stable reason code. Nothing here
guesses: a decoder accepts a string only when its checksum verifies. Sources:

* Base58 and Base58Check: Bitcoin Core ``base58.cpp`` (alphabet, leading ``1`` = zero byte),
  checksum = first 4 bytes of SHA-256(SHA-256(payload)); XRP uses the same scheme with its own
  alphabet (``rpshnaf39w…``, xrpl.org "Base58 Encodings").
* Bech32 / Bech32m: BIP-173 §"Bech32" and BIP-350 (constant ``0x2bc830a3`` for witness v1+);
  a witness v0 program must use Bech32, v1–16 must use Bech32m — the trap a library that knows
  only BIP-173 falls into.
* CashAddr: Bitcoin Cash "cashaddr.md" spec (40-bit BCH checksum over the prefix, a 0 separator
  and the payload; version byte = type << 3 | size code).
* CryptoNote Base58 (Monero): 8-byte blocks encoded as 11 characters, the last block shorter
  (sizes 0, 2, 3, 5, 6, 7, 9, 10, 11); checksum = first 4 bytes of **Keccak-256** (the original
  Keccak padding, not NIST SHA3-256 as ``hashlib.sha3_256`` computes).
* EIP-55 (Ethereum): the i-th hex letter is upper case iff the i-th nibble of
  Keccak-256(lower-case hex) is ≥ 8.
* TON "user-friendly" addresses: 36 bytes (flags, workchain, 32-byte account id, CRC16-XMODEM)
  in base64 or base64url.
"""

from __future__ import annotations

__all__ = [
    "B58_BTC",
    "B58_XRP",
    "AddressError",
    "b58check_decode",
    "b58check_encode",
    "b58decode",
    "b58encode",
    "bech32_decode",
    "bech32_encode",
    "cashaddr_decode",
    "cashaddr_encode",
    "eip55",
    "keccak256",
    "monero_b58decode",
    "monero_b58encode",
    "read_varint",
    "segwit_decode",
    "segwit_encode",
    "ton_decode",
    "ton_encode",
    "write_varint",
]

import base64
import binascii
import hashlib
from typing import Literal

from Crypto.Hash import keccak as _keccak

B58_BTC = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
"""Bitcoin's Base58 alphabet (no 0, O, I, l)."""
B58_XRP = "rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz"
"""The XRP Ledger's Base58 alphabet."""
_B58_INDEX = {alpha: {c: i for i, c in enumerate(alpha)} for alpha in (B58_BTC, B58_XRP)}


class AddressError(ValueError):
    """A string is not a valid encoding; ``reason`` is a stable dotted code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def keccak256(data: bytes) -> bytes:
    """Keccak-256 (Ethereum's and Monero's hash; differs from SHA3-256 in its padding)."""
    h = _keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def _dsha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


# -- Base58 ------------------------------------------------------------------------------------------


def b58decode(text: str, alphabet: str = B58_BTC) -> bytes:
    """Bytes of a Base58 string (each leading zero digit is one zero byte).

    Raises:
        AddressError: ``base58.bad_char``.
    """
    index = _B58_INDEX[alphabet]
    n = 0
    try:
        for c in text:
            n = n * 58 + index[c]
    except KeyError:
        raise AddressError("base58.bad_char", text) from None
    zero = alphabet[0]
    pad = len(text) - len(text.lstrip(zero))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return bytes(pad) + body


def b58encode(data: bytes, alphabet: str = B58_BTC) -> str:
    """Base58 text of ``data``."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(alphabet[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return alphabet[0] * pad + "".join(reversed(out))


def b58check_decode(text: str, alphabet: str = B58_BTC) -> bytes:
    """Payload (version byte included) of a Base58Check string.

    Raises:
        AddressError: ``base58.bad_char``, ``base58check.short``, ``base58check.checksum``.
    """
    raw = b58decode(text, alphabet)
    if len(raw) < 5:
        raise AddressError("base58check.short", text)
    payload, check = raw[:-4], raw[-4:]
    if _dsha256(payload)[:4] != check:
        raise AddressError("base58check.checksum", text)
    return payload


def b58check_encode(payload: bytes, alphabet: str = B58_BTC) -> str:
    """Base58Check text of ``payload`` (version byte included)."""
    return b58encode(payload + _dsha256(payload)[:4], alphabet)


# -- Bech32 / Bech32m (BIP-173, BIP-350) --------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_INDEX = {c: i for i, c in enumerate(_CHARSET)}
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
Bech32Variant = Literal["bech32", "bech32m"]


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (b >> i) & 1:
                chk ^= gen[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_decode(text: str) -> tuple[str, list[int], Bech32Variant]:
    """(human-readable part, 5-bit data without checksum, variant) of a Bech32/Bech32m string.

    Raises:
        AddressError: ``bech32.mixed_case``, ``bech32.length``, ``bech32.bad_char``,
            ``bech32.checksum``.
    """
    if text.lower() != text and text.upper() != text:
        raise AddressError("bech32.mixed_case", text)
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or len(text) > 90:
        raise AddressError("bech32.length", text)
    hrp = text[:pos]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise AddressError("bech32.bad_char", text)
    try:
        data = [_CHARSET_INDEX[c] for c in text[pos + 1 :]]
    except KeyError:
        raise AddressError("bech32.bad_char", text) from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const == _BECH32_CONST:
        return hrp, data[:-6], "bech32"
    if const == _BECH32M_CONST:
        return hrp, data[:-6], "bech32m"
    raise AddressError("bech32.checksum", text)


def bech32_encode(hrp: str, data: list[int], variant: Bech32Variant) -> str:
    """Bech32 (or Bech32m) text of 5-bit ``data`` under ``hrp``."""
    const = _BECH32_CONST if variant == "bech32" else _BECH32M_CONST
    poly = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ const
    check = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + check)


def _convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value >> frombits:
            raise AddressError("bits.range")
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or (acc << (tobits - bits)) & maxv:
        raise AddressError("bits.padding")
    return out


def segwit_decode(text: str) -> tuple[str, int, bytes]:
    """(hrp, witness version, witness program) of a segwit address (BIP-173 + BIP-350 rules).

    Raises:
        AddressError: the Bech32 reasons, ``segwit.version``, ``segwit.program_length``,
            ``segwit.wrong_variant`` (v0 must be Bech32, v1+ Bech32m), ``bits.padding``.
    """
    hrp, data, variant = bech32_decode(text)
    if not data or data[0] > 16:
        raise AddressError("segwit.version", text)
    version = data[0]
    prog = bytes(_convertbits(data[1:], 5, 8, False))
    if not 2 <= len(prog) <= 40 or (version == 0 and len(prog) not in (20, 32)):
        raise AddressError("segwit.program_length", text)
    if (version == 0) != (variant == "bech32"):
        raise AddressError("segwit.wrong_variant", text)
    return hrp, version, prog


def segwit_encode(hrp: str, version: int, program: bytes) -> str:
    """Segwit address of a witness program (Bech32 for v0, Bech32m for v1+)."""
    variant: Bech32Variant = "bech32" if version == 0 else "bech32m"
    return bech32_encode(hrp, [version, *_convertbits(program, 8, 5, True)], variant)


# -- CashAddr (Bitcoin Cash) ------------------------------------------------------------------------


def _cash_polymod(values: list[int]) -> int:
    gen = (0x98F2BC8E61, 0x79B76D99E2, 0xF33E5FB3C4, 0xAE2EABE2A8, 0x1E4F43E470)
    c = 1
    for d in values:
        c0 = c >> 35
        c = ((c & 0x07FFFFFFFF) << 5) ^ d
        for i in range(5):
            if (c0 >> i) & 1:
                c ^= gen[i]
    return c ^ 1


def _cash_prefix(prefix: str) -> list[int]:
    return [ord(c) & 31 for c in prefix] + [0]


_CASH_SIZES = {0: 20, 1: 24, 2: 28, 3: 32, 4: 40, 5: 48, 6: 56, 7: 64}


def cashaddr_decode(text: str, default_prefix: str = "bitcoincash") -> tuple[str, int, bytes]:
    """(prefix, type (0 P2PKH, 1 P2SH), hash) of a CashAddr string, with or without its prefix.

    Raises:
        AddressError: ``cashaddr.mixed_case``, ``cashaddr.bad_char``, ``cashaddr.checksum``,
            ``cashaddr.size``.
    """
    if text.lower() != text and text.upper() != text:
        raise AddressError("cashaddr.mixed_case", text)
    text = text.lower()
    prefix, sep, body = text.rpartition(":")
    if not sep:
        prefix = default_prefix
    try:
        data = [_CHARSET_INDEX[c] for c in body]
    except KeyError:
        raise AddressError("cashaddr.bad_char", text) from None
    if len(data) < 9 or _cash_polymod(_cash_prefix(prefix) + data) != 0:
        raise AddressError("cashaddr.checksum", text)
    raw = bytes(_convertbits(data[:-8], 5, 8, False))
    version = raw[0]
    if version & 0x80 or _CASH_SIZES[version & 7] != len(raw) - 1:
        raise AddressError("cashaddr.size", text)
    return prefix, version >> 3, raw[1:]


def cashaddr_encode(prefix: str, kind: int, digest: bytes) -> str:
    """CashAddr text (``prefix:…``) of a hash of ``kind`` 0 (P2PKH) or 1 (P2SH)."""
    size = {v: k for k, v in _CASH_SIZES.items()}[len(digest)]
    data = _convertbits(bytes([kind << 3 | size]) + digest, 8, 5, True)
    poly = _cash_polymod(_cash_prefix(prefix) + data + [0] * 8)
    check = [(poly >> 5 * (7 - i)) & 31 for i in range(8)]
    return prefix + ":" + "".join(_CHARSET[d] for d in data + check)


# -- CryptoNote Base58 (Monero) ---------------------------------------------------------------------

_XMR_FULL_BLOCK = 8
_XMR_ENC_SIZES = (0, 2, 3, 5, 6, 7, 9, 10, 11)
_XMR_DEC_SIZES = {n: i for i, n in enumerate(_XMR_ENC_SIZES)}


def monero_b58decode(text: str) -> bytes:
    """Bytes of a CryptoNote Base58 string (11-character blocks of 8 bytes).

    Raises:
        AddressError: ``base58.bad_char``, ``xmrb58.block_size``, ``xmrb58.overflow``.
    """
    index = _B58_INDEX[B58_BTC]
    out = bytearray()
    for start in range(0, len(text), 11):
        block = text[start : start + 11]
        size = _XMR_DEC_SIZES.get(len(block))
        if not size:
            raise AddressError("xmrb58.block_size", text)
        n = 0
        try:
            for c in block:
                n = n * 58 + index[c]
        except KeyError:
            raise AddressError("base58.bad_char", text) from None
        if n >> (8 * size):
            raise AddressError("xmrb58.overflow", text)
        out += n.to_bytes(size, "big")
    return bytes(out)


def monero_b58encode(data: bytes) -> str:
    """CryptoNote Base58 text of ``data``."""
    out = []
    for start in range(0, len(data), _XMR_FULL_BLOCK):
        block = data[start : start + _XMR_FULL_BLOCK]
        n = int.from_bytes(block, "big")
        chars = []
        for _ in range(_XMR_ENC_SIZES[len(block)]):
            n, r = divmod(n, 58)
            chars.append(B58_BTC[r])
        out.append("".join(reversed(chars)))
    return "".join(out)


def read_varint(data: bytes) -> tuple[int, int]:
    """(value, bytes used) of a little-endian base-128 varint at the start of ``data``.

    Raises:
        AddressError: ``varint.truncated``.
    """
    value = shift = 0
    for i, b in enumerate(data[:10]):
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + 1
        shift += 7
    raise AddressError("varint.truncated")


def write_varint(value: int) -> bytes:
    """Little-endian base-128 varint of ``value``."""
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# -- EIP-55 -----------------------------------------------------------------------------------------


def eip55(hex40: str) -> str:
    """The EIP-55 mixed-case form of a 40-digit hex address (without ``0x``)."""
    low = hex40.lower()
    digest = keccak256(low.encode()).hex()
    return "".join(c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(low))


# -- TON --------------------------------------------------------------------------------------------


def ton_decode(text: str) -> tuple[int, int, bytes]:
    """(flags, workchain, account id) of a 48-character user-friendly TON address.

    Raises:
        AddressError: ``ton.length``, ``ton.base64``, ``ton.checksum``, ``ton.flags``.
    """
    if len(text) != 48:
        raise AddressError("ton.length", text)
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error:
        raise AddressError("ton.base64", text) from None
    if binascii.crc_hqx(raw[:34], 0).to_bytes(2, "big") != raw[34:]:
        raise AddressError("ton.checksum", text)
    flags = raw[0]
    if flags & 0x3F != 0x11:
        raise AddressError("ton.flags", text)
    return flags, int.from_bytes(raw[1:2], "big", signed=True), raw[2:34]


def ton_encode(workchain: int, account: bytes, bounceable: bool = True, testnet: bool = False) -> str:
    """User-friendly (base64url) TON address."""
    flags = (0x11 if bounceable else 0x51) | (0x80 if testnet else 0)
    raw = bytes([flags]) + workchain.to_bytes(1, "big", signed=True) + account
    raw += binascii.crc_hqx(raw, 0).to_bytes(2, "big")
    return base64.urlsafe_b64encode(raw).decode()
