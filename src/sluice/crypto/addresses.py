"""Wallet addresses in text: find candidates fast, report only those whose checksum verifies.

Theory of operation
-------------------
One regular-expression pass finds *tokens*: maximal runs of 25 or more characters of the union of
the address alphabets (letters, digits, ``+/=_:-``). Each token is then split into *pieces*,
maximal alphanumeric runs of 25 or more, so that an address inside a URL path, after ``0x`` or
between punctuation is a piece of its own and an address glued inside a longer alphanumeric run is
not (an address has word boundaries). A 48-character token is first tried as a TON address, whose
base64 alphabet includes ``-_+/``. Each piece is dispatched by its length and first characters to at
most two decoders of :mod:`sluice.crypto.codecs`, which verify the chain's checksum:

================  =========================================  ==================================
chain             encoding                                   checksum
================  =========================================  ==================================
bitcoin           Base58Check P2PKH/P2SH; Bech32 v0, Bech32m  4 bytes double SHA-256; BCH code
litecoin          Base58Check (L, M, Q); Bech32(m) ``ltc1``   same
dogecoin          Base58Check (D, 9, A)                       4 bytes double SHA-256
tron              Base58Check version 0x41 (T)                4 bytes double SHA-256
xrp               Base58Check, XRP alphabet (r)               4 bytes double SHA-256
bitcoin-cash      CashAddr (``bitcoincash:`` optional)        40-bit BCH code
ethereum          ``0x`` + 40 hex, EIP-55                     Keccak-256 case pattern
monero            CryptoNote Base58 (95 / 106 characters)     4 bytes Keccak-256
ton               48 characters base64(url), flags 0x11/0x51  CRC16-XMODEM
solana            Base58 of 32 bytes                          none: only next to the word
================  =========================================  ==================================

A string whose checksum fails is never reported. Two cases have no checksum to verify and are
reported with what they are: an Ethereum address written all lower- or all upper-case
(``checksum="unchecksummed"``: 40 hex digits after ``0x`` are all it is, so a random 0x-prefixed
160-bit hex value is indistinguishable from one), and a Solana address (``checksum="none"``), which
is reported only when "solana" (or "SOL") appears within :data:`CONTEXT_CHARS` characters before it.
"""

from __future__ import annotations

__all__ = [
    "CHAINS",
    "CONTEXT_CHARS",
    "Address",
    "AddressHit",
    "find_addresses",
    "validate",
]

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sluice.crypto.codecs import (
    B58_BTC,
    B58_XRP,
    AddressError,
    b58check_decode,
    b58decode,
    cashaddr_decode,
    eip55,
    keccak256,
    monero_b58decode,
    read_varint,
    segwit_decode,
    ton_decode,
)

CHAINS = (
    "bitcoin",
    "litecoin",
    "dogecoin",
    "tron",
    "xrp",
    "bitcoin-cash",
    "ethereum",
    "monero",
    "ton",
    "solana",
)
"""Chains whose addresses :func:`validate` and :func:`find_addresses` know."""
CONTEXT_CHARS = 80
"""How far before a Solana-shaped string the word "solana" (or "SOL") must appear."""


@dataclass(frozen=True, slots=True)
class Address:
    """A validated address."""

    chain: str
    """One of :data:`CHAINS`."""
    address: str
    """The address as written."""
    kind: str
    """Address type: ``p2pkh``, ``p2sh``, ``p2wpkh``, ``p2wsh``, ``p2tr``, ``witness-v<n>``,
    ``account``, ``standard``, ``subaddress``, ``integrated``, ``bounceable`` ..."""
    network: str
    """``mainnet``, ``testnet``, ``regtest`` or ``stagenet``."""
    checksum: str
    """``verified`` (the chain's checksum holds), ``unchecksummed`` (a format with an optional
    checksum written without it: all-lower/upper EIP-55) or ``none`` (the chain has none: Solana)."""
    confidence: float
    """How sure the extractor is that this is an address (0–1)."""

    def to_dict(self) -> dict[str, str | float]:
        """JSON-friendly form."""
        return {
            "chain": self.chain,
            "address": self.address,
            "type": self.kind,
            "network": self.network,
            "checksum": self.checksum,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, slots=True)
class AddressHit:
    """An address found in a text, at a character offset."""

    offset: int
    """Offset of the first character (bytes input: byte offset)."""
    address: Address
    """What was found."""


# Base58Check version bytes (payload of 21 bytes): chain, kind, network.
_B58_VERSIONS: dict[int, tuple[str, str, str]] = {
    0x00: ("bitcoin", "p2pkh", "mainnet"),
    0x05: ("bitcoin", "p2sh", "mainnet"),  # also Litecoin's legacy P2SH: the same string on both
    0x6F: ("bitcoin", "p2pkh", "testnet"),  # also Litecoin testnet / regtest P2PKH
    0xC4: ("bitcoin", "p2sh", "testnet"),
    0x30: ("litecoin", "p2pkh", "mainnet"),
    0x32: ("litecoin", "p2sh", "mainnet"),
    0x3A: ("litecoin", "p2sh", "testnet"),
    0x1E: ("dogecoin", "p2pkh", "mainnet"),
    0x16: ("dogecoin", "p2sh", "mainnet"),
    0x71: ("dogecoin", "p2pkh", "testnet"),
    0x41: ("tron", "account", "mainnet"),
}
_B58_FIRST = frozenset("123LMQDA9Tmn2")
_BECH32_HRPS: dict[str, tuple[str, str]] = {
    "bc": ("bitcoin", "mainnet"),
    "tb": ("bitcoin", "testnet"),
    "bcrt": ("bitcoin", "regtest"),
    "ltc": ("litecoin", "mainnet"),
    "tltc": ("litecoin", "testnet"),
    "rltc": ("litecoin", "regtest"),
}
_CASH_PREFIXES = {"bitcoincash": "mainnet", "bchtest": "testnet", "bchreg": "regtest"}
# Monero address prefixes (cryptonote_config.h): varint tag -> kind, network.
_XMR_PREFIXES: dict[int, tuple[str, str]] = {
    18: ("standard", "mainnet"),
    19: ("integrated", "mainnet"),
    42: ("subaddress", "mainnet"),
    53: ("standard", "testnet"),
    54: ("integrated", "testnet"),
    63: ("subaddress", "testnet"),
    24: ("standard", "stagenet"),
    25: ("integrated", "stagenet"),
    36: ("subaddress", "stagenet"),
}
_B58_SET = frozenset(B58_BTC)
_XRP_SET = frozenset(B58_XRP)
_HEX = frozenset("0123456789abcdefABCDEF")
_PIECE = re.compile(r"[0-9A-Za-z]{25,}")
_PIECE_URL = re.compile(r"[0-9A-Za-z_-]{25,}")
_ALNUM = re.compile(r"[0-9A-Za-z]+\Z")
_SOL_CONTEXT = re.compile(r"solana|\bsol\b|\bspl\b", re.IGNORECASE)


def _segwit(text: str) -> Address:
    hrp, version, prog = segwit_decode(text)
    chain, network = _BECH32_HRPS.get(hrp, ("", ""))
    if not chain:
        raise AddressError("segwit.unknown_hrp", text)
    if version == 0:
        kind = "p2wpkh" if len(prog) == 20 else "p2wsh"
    elif version == 1 and len(prog) == 32:
        kind = "p2tr"
    else:
        kind = f"witness-v{version}"
    return Address(chain, text, kind, network, "verified", 0.99)


def _base58check(text: str) -> Address:
    if text[0] == "r" and _XRP_SET.issuperset(text):
        payload = b58check_decode(text, B58_XRP)
        if len(payload) == 21 and payload[0] == 0:
            return Address("xrp", text, "account", "mainnet", "verified", 0.99)
        raise AddressError("xrp.version", text)
    payload = b58check_decode(text)
    if len(payload) != 21 or payload[0] not in _B58_VERSIONS:
        raise AddressError("base58check.version", text)
    chain, kind, network = _B58_VERSIONS[payload[0]]
    return Address(chain, text, kind, network, "verified", 0.99)


def _ethereum(text: str) -> Address:
    body = text[2:]
    if len(text) != 42 or text[:2] != "0x" or not _HEX.issuperset(body):
        raise AddressError("ethereum.format", text)
    if body == body.lower() or body == body.upper():
        if len(set(body.lower())) < 8:  # 0x000…0, 0xfff…f and the like: constants, not accounts
            raise AddressError("ethereum.degenerate", text)
        return Address("ethereum", text, "account", "mainnet", "unchecksummed", 0.7)
    if eip55(body) != body:
        raise AddressError("ethereum.eip55", text)
    return Address("ethereum", text, "account", "mainnet", "verified", 0.99)


def _monero(text: str) -> Address:
    raw = monero_b58decode(text)
    tag, used = read_varint(raw)
    kind, network = _XMR_PREFIXES.get(tag, ("", ""))
    want = used + 64 + (8 if kind == "integrated" else 0) + 4
    if not kind or len(raw) != want:
        raise AddressError("monero.prefix", text)
    if keccak256(raw[:-4])[:4] != raw[-4:]:
        raise AddressError("monero.checksum", text)
    return Address("monero", text, kind, network, "verified", 0.99)


def _cashaddr(text: str) -> Address:
    prefix, kind, _digest = cashaddr_decode(text)
    network = _CASH_PREFIXES.get(prefix)
    if network is None:
        raise AddressError("cashaddr.prefix", text)
    return Address(
        "bitcoin-cash", text, ("p2pkh", "p2sh")[kind] if kind < 2 else "other", network, "verified", 0.99
    )


def _ton(text: str) -> Address:
    flags, workchain, _account = ton_decode(text)
    if workchain not in (0, -1):
        raise AddressError("ton.workchain", text)
    kind = "non-bounceable" if flags & 0x40 else "bounceable"
    return Address("ton", text, kind, "testnet" if flags & 0x80 else "mainnet", "verified", 0.99)


def _solana(text: str) -> Address:
    if not 32 <= len(text) <= 44 or len(b58decode(text)) != 32:
        raise AddressError("solana.format", text)
    return Address("solana", text, "account", "mainnet", "none", 0.5)


_VALIDATORS = {
    "bitcoin": (_base58check, _segwit),
    "litecoin": (_base58check, _segwit),
    "dogecoin": (_base58check,),
    "tron": (_base58check,),
    "xrp": (_base58check,),
    "bitcoin-cash": (_cashaddr,),
    "ethereum": (_ethereum,),
    "monero": (_monero,),
    "ton": (_ton,),
    "solana": (_solana,),
}
_ALIASES = {
    "btc": "bitcoin", "xbt": "bitcoin", "ltc": "litecoin", "doge": "dogecoin", "trx": "tron",
    "usdt-trc20": "tron", "bch": "bitcoin-cash", "eth": "ethereum", "xmr": "monero", "sol": "solana",
    "bitcoincash": "bitcoin-cash", "ripple": "xrp",
}  # fmt: skip


def canon_chain(name: str) -> str:
    """The chain a name or ticker means (``XBT`` → ``bitcoin``).

    Raises:
        AddressError: ``chain.unknown`` — an unknown ticker is never "valid".
    """
    key = name.strip().lower()
    chain = _ALIASES.get(key, key)
    if chain not in _VALIDATORS:
        raise AddressError("chain.unknown", name)
    return chain


def validate(text: str, chain: str | None = None) -> Address:
    """The address ``text`` is, checked by its chain's rules (all chains when ``chain`` is None).

    Args:
        text: the address (a CashAddr may carry its prefix).
        chain: a chain name or ticker to require (``bitcoin``, ``XBT``, ``eth`` ...).

    Returns:
        The validated address. Solana validates on its format alone (it has no checksum).

    Raises:
        AddressError: the string is no valid address (of ``chain``), or ``chain`` is unknown.
    """
    text = text.strip()
    want = canon_chain(chain) if chain is not None else ""
    if not text:
        raise AddressError("address.empty", "")
    candidates = _VALIDATORS[want] if want else _by_shape(text)
    errors: list[AddressError] = []
    for check in candidates:
        try:
            got = check(text)
        except AddressError as exc:
            errors.append(exc)
            continue
        if want and got.chain != want:
            errors.append(AddressError("chain.mismatch", f"{text} is {got.chain}, not {want}"))
            continue
        return got
    raise errors[0] if errors else AddressError("address.unknown_format", text)


def _by_shape(text: str) -> tuple[Callable[[str], Address], ...]:
    """Validators for the formats ``text`` is shaped like, most specific first."""
    low = text[:5].lower()
    if text[:2] == "0x":
        return (_ethereum,)
    if ":" in text:
        return (_cashaddr,)
    if low[:3] in ("bc1", "tb1") or low[:4] in ("ltc1", "bcrt") or low in ("tltc1", "rltc1"):
        return (_segwit, _base58check) if len(text) <= 35 else (_segwit,)  # TB1…: a TRON address
    if len(text) == 48:
        return (_ton,)
    if len(text) in (95, 106):
        return (_monero,)
    if len(text) in (42, 61) and text[0] in "qpQP":
        return (_cashaddr,)
    if len(text) <= 35:
        return (_base58check, _solana) if len(text) >= 32 else (_base58check,)
    return (_solana,)


def _classify(piece: str, buf: bytes, start: int) -> Address | None:
    """The address ``piece`` (at byte ``start`` of ``buf``) is, or None."""
    n = len(piece)
    c0 = piece[0]
    try:
        if n == 42 and c0 == "0" and piece[1] == "x":
            return _ethereum(piece)
        if n <= 35 and c0 in _B58_FIRST and _B58_SET.issuperset(piece):
            return _base58check(piece)
        if n <= 35 and c0 == "r" and _XRP_SET.issuperset(piece):
            return _base58check(piece)
        if n in (95, 106) and c0 in "4859A7B" and _B58_SET.issuperset(piece):
            return _monero(piece)
        low = piece[:5].lower()
        if low[:3] in ("bc1", "tb1") or low[:4] in ("ltc1", "bcrt") or low in ("tltc1", "rltc1"):
            return _segwit(piece)
        if n in (42, 61) and c0 in "qpQP":
            before = buf[max(0, start - 12) : start].decode("latin-1").lower()
            for prefix in _CASH_PREFIXES:
                if before.endswith(prefix + ":"):
                    return _cashaddr(prefix + ":" + piece)
            return _cashaddr(piece)
        if 32 <= n <= 44 and _B58_SET.issuperset(piece):
            context = buf[max(0, start - CONTEXT_CHARS) : start].decode("latin-1")
            if _SOL_CONTEXT.search(context):
                return _solana(piece)
    except AddressError:
        return None
    return None


_TOKEN_BYTES = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/=_:-"
_MASK = bytes(0x61 if i in _TOKEN_BYTES else 0x20 for i in range(256))
_RUN = re.compile(b"a+")
_NEEDLE = b"a" * 25


def _tokens(buf: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of 25+ token bytes: the buffer is mapped to ``a`` (token byte) and
    space, and ``bytes.find`` looks for 25 ``a`` (the leftmost hit is where a run starts) — about
    three times the speed of the equivalent regular expression in CPython's ``re``."""
    mask = buf.translate(_MASK)
    i = mask.find(_NEEDLE)
    while i >= 0:
        m = _RUN.match(mask, i)
        end = m.end() if m else i + 25
        yield i, end
        i = mask.find(_NEEDLE, end)


def _ton_shaped(tok: str) -> bool:
    """48 characters starting like flags 0x11/0x51 (±testnet) and workchain 0 or -1 in base64."""
    return len(tok) == 48 and tok[0] in "EUk0" and tok[1] in "Qf"


def _pieces(buf: bytes) -> Iterator[tuple[int, str, Address | None]]:
    """(offset, piece, the TON address a piece is, if it is one) of each candidate."""
    for start, end in _tokens(buf):
        tok = buf[start:end].decode("ascii")
        if _ALNUM.match(tok):
            yield start, tok, _try_ton(tok)
            continue
        if _ton_shaped(tok) and (ton := _try_ton(tok)) is not None:  # standard base64: + and /
            yield start, tok, ton
            continue
        for p in _PIECE_URL.finditer(tok):
            sub = p.group()
            at = start + p.start()
            if _ton_shaped(sub) and (ton := _try_ton(sub)) is not None:
                yield at, sub, ton
            elif _ALNUM.match(sub):
                yield at, sub, None
            else:
                for q in _PIECE.finditer(sub):
                    yield at + q.start(), q.group(), None


def _try_ton(tok: str) -> Address | None:
    if not _ton_shaped(tok):
        return None
    try:
        return _ton(tok)
    except AddressError:
        return None


def find_addresses(data: str | bytes) -> list[AddressHit]:
    """Every checksum-valid address in a text.

    Args:
        data: page text, an HTTP payload, a file's content. Bytes are scanned as they are (any
            ASCII-compatible encoding: UTF-8, cp1251, Latin-1); text is scanned as UTF-8.

    Returns:
        The addresses in order of offset (bytes: byte offsets; text: character offsets). A Solana
        address is reported only next to "solana"/"SOL".
    """
    buf = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    out = []
    for at, piece, ton in _pieces(buf):
        got = ton if ton is not None else _classify(piece, buf, at)
        if got is not None:
            if got.chain == "bitcoin-cash" and ":" in got.address:
                at -= got.address.index(":") + 1  # the hit starts at its prefix
            out.append(AddressHit(at, got))
    if isinstance(data, str) and out and not data.isascii():
        out = _char_offsets(buf, out)
    return out


def _char_offsets(buf: bytes, hits: list[AddressHit]) -> list[AddressHit]:
    """Hits with UTF-8 byte offsets turned into character offsets (hits are in order)."""
    fixed = []
    prev_b = prev_c = 0
    for h in hits:
        prev_c += len(buf[prev_b : h.offset].decode("utf-8", "surrogatepass"))
        prev_b = h.offset
        fixed.append(AddressHit(prev_c, h.address))
    return fixed
