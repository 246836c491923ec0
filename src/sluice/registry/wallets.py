"""Wallet entries: the canonical ``chain:address`` form of a crypto wallet address.

Theory of operation
-------------------
A ``wallet`` entry names one address on one chain.  Its indicator is ``prefix:address`` where
``prefix`` is the chain's ticker below (each one :func:`sluice.crypto.addresses.canon_chain`
resolves) and ``address`` is the address in one canonical spelling, so that the register, the
content matcher and ``registry check`` agree whatever case or variant a source or a page wrote:

==============  ======  ==================================================================
chain           prefix  canonical address
==============  ======  ==================================================================
bitcoin         btc     Base58Check as written (case-sensitive); Bech32/Bech32m lower case
litecoin        ltc     same
dogecoin        doge    Base58Check as written
tron            trx     Base58Check as written
xrp             xrp     XRP Base58Check as written
bitcoin-cash    bch     CashAddr lower case; the mainnet ``bitcoincash:`` prefix dropped,
                        a testnet/regtest prefix kept (``bch:bchtest:qq…``)
ethereum        eth     ``0x`` + the EIP-55 mixed-case form
monero          xmr     CryptoNote Base58 as written
ton             ton     re-encoded bounceable base64url (the non-bounceable and base64
                        spellings of one account are one entry); the testnet flag kept
solana          sol     Base58 as written
==============  ======  ==================================================================

Every address is validated by :func:`sluice.crypto.addresses.validate` (the chain's checksum
must hold); a checksum-invalid string never becomes an entry.  Two cases carry no checksum and
are accepted only when the chain is named explicitly (``explicit=True``, what both importers
require): a Solana address (the chain has none: ``checksum="none"``) and an Ethereum address
written all lower- or all upper-case (the optional EIP-55 checksum left out:
``checksum="unchecksummed"``).  Such an entry is marked in its display form
(:data:`MARK_UNCHECKSUMMED`, :data:`MARK_NO_CHECKSUM`), which ``registry check`` and
``registry history`` show.
"""

from __future__ import annotations

__all__ = [
    "CHAIN_PREFIX",
    "MARK_NO_CHECKSUM",
    "MARK_UNCHECKSUMMED",
    "PREFIX_CHAIN",
    "WalletAddress",
    "canon_wallet",
    "entry_checksum",
    "looks_like_wallet",
    "wallet_display",
]

from dataclasses import dataclass

from sluice.crypto.addresses import Address, canon_chain, validate
from sluice.crypto.codecs import AddressError, eip55, ton_decode, ton_encode
from sluice.registry.names import BadIndicator

CHAIN_PREFIX = {
    "bitcoin": "btc",
    "litecoin": "ltc",
    "dogecoin": "doge",
    "tron": "trx",
    "xrp": "xrp",
    "bitcoin-cash": "bch",
    "ethereum": "eth",
    "monero": "xmr",
    "ton": "ton",
    "solana": "sol",
}
"""Chain (as :mod:`sluice.crypto.addresses` names it) -> the prefix of its wallet indicators."""
PREFIX_CHAIN = {v: k for k, v in CHAIN_PREFIX.items()}
"""Indicator prefix -> chain."""
MARK_UNCHECKSUMMED = " (unchecksummed)"
"""Appended to the display form of an address written without its optional checksum."""
MARK_NO_CHECKSUM = " (no checksum)"
"""Appended to the display form of an address of a chain without checksum (Solana)."""
MAX_WALLET_CHARS = 200
"""Longest text looked at as a wallet address (the longest address, a CashAddr with prefix of a
64-byte hash, is about 125 characters)."""
_CASH_NAMES = frozenset({"bitcoincash", "bchtest", "bchreg"})


@dataclass(frozen=True, slots=True)
class WalletAddress:
    """A validated address in its register form."""

    indicator: str
    """``prefix:address``, canonical."""
    chain: str
    """The chain (``bitcoin`` ...)."""
    address: Address
    """What the validator said of the text as written (type, network, checksum)."""

    @property
    def checksum(self) -> str:
        """``verified``, ``unchecksummed`` (Ethereum without EIP-55 case) or ``none`` (Solana)."""
        return self.address.checksum

    @property
    def display(self) -> str:
        """The display form stored with an entry ("" when it is the indicator)."""
        return wallet_display(self.indicator, self.checksum)


def wallet_display(indicator: str, checksum: str) -> str:
    """Display form of a wallet entry: the indicator marked when no checksum was verified."""
    if checksum == "none":
        return indicator + MARK_NO_CHECKSUM
    if checksum == "unchecksummed":
        return indicator + MARK_UNCHECKSUMMED
    return ""


def entry_checksum(indicator: str, display: str = "") -> str:
    """The checksum status of a stored wallet entry (from its chain and display mark)."""
    if indicator.startswith("sol:"):
        return "none"
    if display.endswith(MARK_UNCHECKSUMMED):
        return "unchecksummed"
    return "verified"


def _split_prefix(text: str, strict: bool = False) -> tuple[str | None, str]:
    """(chain named before a ``:``, rest) — (None, text) when there is no chain prefix.

    ``strict``: a word before the ``:`` that names no chain (and is no CashAddr prefix) raises
    ``chain.unknown`` instead.
    """
    head, sep, rest = text.partition(":")
    if not sep or head.lower() in _CASH_NAMES:
        return None, text
    try:
        return canon_chain(head), rest
    except AddressError:
        if strict and head.replace("-", "").isalnum():
            raise
        return None, text


def looks_like_wallet(text: str) -> bool:
    """True when ``text`` is worth trying as a wallet (a chain prefix, or no dot and 25+ chars).

    Cheap: a host name, URL or IP address answers False (they hold dots, or are short).
    """
    t = text.strip()
    if not t or len(t) > MAX_WALLET_CHARS:
        return False
    if _split_prefix(t)[0] is not None:
        return True
    return "." not in t and "/" not in t and len(t) >= 25


def _canon_address(a: Address, text: str) -> str:
    chain = a.chain
    if chain in ("bitcoin", "litecoin") and a.kind.startswith(("p2w", "p2tr", "witness")):
        return text.lower()
    if chain == "bitcoin-cash":
        low = text.lower()
        return low.split(":", 1)[1] if low.startswith("bitcoincash:") else low
    if chain == "ethereum":
        return "0x" + eip55(text[2:])
    if chain == "ton":
        flags, workchain, account = ton_decode(text)
        return ton_encode(workchain, account, bounceable=True, testnet=bool(flags & 0x80))
    return text


def canon_wallet(text: str, chain: str | None = None, *, explicit: bool = True) -> WalletAddress:
    """The register form of a wallet address.

    Args:
        text: ``address`` or ``chain:address`` (``btc:``, ``bitcoin:``, ``XBT:`` ... any name
            :func:`~sluice.crypto.addresses.canon_chain` knows).
        chain: the chain, when given apart (a CSV column, a sanctions-list ticker); it must agree
            with a prefix in ``text``.
        explicit: require the chain to be named (by ``chain`` or a prefix) for an address whose
            checksum cannot be verified (Solana; Ethereum all lower/upper case).  Importers
            require it; a query (``registry check``) need not.

    Returns:
        The canonical indicator and what the validator said.

    Raises:
        BadIndicator: ``chain.unknown``, ``chain.mismatch``, ``wallet.needs_chain``,
            ``wallet.too_long``, or the validator's reason (``base58check.checksum``,
            ``ethereum.eip55``, ``segwit.wrong_variant`` ...).
    """
    t = text.strip()
    if len(t) > MAX_WALLET_CHARS:
        raise BadIndicator("wallet.too_long", text)
    try:
        named, addr = _split_prefix(t, strict=True)
        want = canon_chain(chain) if chain is not None else None
        if named is not None and want is not None and named != want:
            raise AddressError("chain.mismatch", f"{t} names {named}, not {want}")
        want = want or named
        a = validate(addr, want)
        if a.checksum != "verified" and explicit and want is None:
            raise AddressError("wallet.needs_chain", f"{addr} has no checksum: name its chain")
        canon = _canon_address(a, addr.strip())
    except AddressError as exc:
        raise BadIndicator(exc.reason, text) from None
    return WalletAddress(f"{CHAIN_PREFIX[a.chain]}:{canon}", a.chain, a)
