"""Wallet lists: a simple CSV, and sanctions-list lines ("Digital Currency Address - XBT …").

Both give ``wallet`` entries (:mod:`sluice.registry.wallets`); every address must pass its
chain's checksum, and the chain is always named explicitly (a column, a ticker), so a Solana
address (no checksum) or an Ethereum address written without its EIP-55 case is accepted and
marked (``(no checksum)``, ``(unchecksummed)`` in its display form).

``wallets`` (CSV, UTF-8, RFC 4180 quoting within a line, ``#`` comment lines)
    The first line that is not a comment is the header.  It starts with ``chain,address``;
    the columns ``authority``, ``number`` and ``date`` may follow, in any order (any other
    column refuses the file, ``registry.bad_format``)::

        chain,address,authority,number,date
        btc,bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4,OFAC,SDN-12345,2024-01-31
        eth,0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed,,,

    ``chain`` is a chain name or ticker (``bitcoin``, ``btc``, ``XBT``, ``eth``, ``xmr``,
    ``trx``, ``bch``, ``doge``, ``ltc``, ``xrp``, ``ton``, ``sol`` ...); an empty ``authority``
    is the source name (like the other lists).  A row with the wrong number of fields, an
    unknown chain or an address that does not validate on its chain is rejected with the reason
    (``wallets.fields``, ``wallets.chain.unknown``, ``wallets.base58check.checksum`` ...).

``sdn`` (sanctions-list lines, UTF-8 or Latin-1)
    Every ``Digital Currency Address - TICKER ADDRESS`` in a line is one row (the OFAC SDN
    list's remarks: ``...; Digital Currency Address - XBT 1A1z...; alt. Digital Currency Address
    - ETH 0x...;``); lines without one are not rows.  A line that starts with a number and a
    comma (``sdn.csv``'s ``ent_num``) gives the decisions' number; the authority is the source
    name.  Tickers (:data:`SDN_TICKERS`): XBT and BTC → bitcoin, ETH → ethereum, XMR → monero,
    LTC → litecoin, TRX → tron, USDT → tron or ethereum (the list writes USDT for both TRC-20
    and ERC-20 addresses: the address's own checksum decides), USDC → ethereum or tron, BCH →
    bitcoin-cash, XRP → xrp, DOGE → dogecoin, TON → ton, SOL → solana.  Tickers of chains sluice
    does not validate (:data:`SDN_UNSUPPORTED`: ZEC, DASH, BTG, BSV, XVG; ETC, ARB, BSC and other
    EVM chains, which the register does not fold into Ethereum) are rejected with
    ``sdn.unsupported_chain`` (a deliberate leave-out: it holds back no removal); any other
    ticker is ``sdn.unknown_ticker``.

Both follow the register's rules: rejected rows are counted, more than 5 % rejected refuses the
file (``registry.damaged``), a last line cut without its newline that does not parse refuses it
(``registry.truncated``), and nothing changes when a file is refused.
"""

from __future__ import annotations

import csv
import re

from sluice.registry.choices import WALLET_FORMATS
from sluice.registry.importers._common import ParseResult, Progress
from sluice.registry.importers._input import check_tail, decode_text, iter_lines
from sluice.registry.model import Kind, LegalBasis, RegistryError
from sluice.registry.names import BadIndicator
from sluice.registry.wallets import canon_wallet

__all__ = [
    "SDN_PHRASE",
    "SDN_TICKERS",
    "SDN_UNSUPPORTED",
    "WALLET_COLUMNS",
    "WALLET_FORMATS",
    "parse_sdn",
    "parse_wallets_csv",
]

WALLET_COLUMNS = ("chain", "address", "authority", "number", "date")
"""Columns a ``wallets`` CSV may have (``chain,address`` first)."""
SDN_TICKERS: dict[str, tuple[str, ...]] = {
    "XBT": ("bitcoin",),
    "BTC": ("bitcoin",),
    "ETH": ("ethereum",),
    "XMR": ("monero",),
    "LTC": ("litecoin",),
    "TRX": ("tron",),
    "USDT": ("tron", "ethereum"),
    "USDC": ("ethereum", "tron"),
    "BCH": ("bitcoin-cash",),
    "XRP": ("xrp",),
    "DOGE": ("dogecoin",),
    "TON": ("ton",),
    "SOL": ("solana",),
}
"""Sanctions-list ticker -> the chains its addresses may be on (the first that validates)."""
SDN_UNSUPPORTED = frozenset({"ZEC", "DASH", "BTG", "BSV", "XVG", "ETC", "ARB", "BSC", "BNB", "MATIC", "POL"})
"""Tickers the lists use for chains sluice does not validate: rejected, deliberately."""

SDN_PHRASE = re.compile(r"digital\s+currency\s+address", re.IGNORECASE)
_SDN_ITEM = re.compile(
    r"digital\s+currency\s+address\s*-\s*([A-Za-z0-9]{2,10})\s*:?\s+([^\s;,\"'()<>\[\]]+)",
    re.IGNORECASE,
)
_ENT_NUM = re.compile(r'^\s*"?(\d{1,12})"?\s*,')


def _finish_line(res: ParseResult, lineno: int, raw: str, terminated: bool, cut: bool, bad: bool) -> None:
    if not terminated and (cut or bad):
        why = "cut at 4 KiB" if cut else "is incomplete"
        raise RegistryError("registry.truncated", f"last line {lineno} {why}", res.path)


def parse_wallets_csv(
    data: bytes, path: str = "", *, source: str = "", progress: Progress | None = None
) -> ParseResult:
    """Parse a ``wallets`` CSV (see the module's documentation).

    Raises:
        RegistryError: ``registry.bad_format`` (no or bad header), ``registry.truncated``,
            ``registry.bad_encoding``, ``registry.mojibake``.
    """
    res = ParseResult("wallets", path=path)
    text = decode_text(data, path)
    cut = check_tail(data)
    cols: list[str] | None = None
    for lineno, raw, terminated in iter_lines(text, res, progress):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([line]))]
        except csv.Error:
            fields = []  # a field past csv's size limit: not a row of this format
        if cols is None:
            cols = [f.lower() for f in fields]
            bad = [c for c in cols[2:] if c not in WALLET_COLUMNS[2:]]
            if cols[:2] != ["chain", "address"] or bad or len(set(cols)) != len(cols):
                raise RegistryError(
                    "registry.bad_format",
                    f"line {lineno}: the header must be chain,address[,authority][,number][,date],"
                    f" got {line[:120]!r}",
                    path,
                )
            continue
        res.rows += 1
        reason = ""
        if len(fields) != len(cols):
            reason = "wallets.fields"
        else:
            row = dict(zip(cols, fields, strict=True))
            basis = LegalBasis(row.get("authority") or source, row.get("number", ""), row.get("date", ""))
            try:
                if not row["chain"]:
                    raise BadIndicator("no_chain", line)
                w = canon_wallet(row["address"], row["chain"])
            except BadIndicator as exc:
                reason = f"wallets.{exc.reason}"
            else:
                res.add(Kind.WALLET, w.indicator, w.display, basis)
        _finish_line(res, lineno, raw, terminated, cut, bool(reason))
        if reason:
            res.reject(lineno, reason, raw)
    if cols is None:
        raise RegistryError("registry.empty_input", "no header line chain,address", path)
    return res


def parse_sdn(
    data: bytes, path: str = "", *, source: str = "", progress: Progress | None = None
) -> ParseResult:
    """Parse sanctions-list lines (see the module's documentation).

    Raises:
        RegistryError: ``registry.truncated``, ``registry.mojibake``, ``registry.mixed_encoding``.
    """
    res = ParseResult("sdn", path=path)
    text = decode_text(data, path, fallback="latin-1")
    cut = check_tail(data)
    for lineno, raw, terminated in iter_lines(text, res, progress):
        if not SDN_PHRASE.search(raw):
            _finish_line(res, lineno, raw, terminated, cut, False)
            continue
        m = _ENT_NUM.match(raw)
        basis = LegalBasis(source, m.group(1) if m else "", "")
        items = list(_SDN_ITEM.finditer(raw))
        n_phrases = len(SDN_PHRASE.findall(raw))
        bad = False
        for _ in range(n_phrases - len(items)):  # a phrase with no ticker and address after it
            res.rows += 1
            res.reject(lineno, "sdn.no_address", raw)
            bad = True
        for item in items:
            res.rows += 1
            ticker, addr = item.group(1).upper(), item.group(2).rstrip(".")
            reason = _sdn_item(res, ticker, addr, basis)
            if reason:
                res.reject(lineno, reason, f"{ticker} {addr}")
                bad = bad or reason != "sdn.unsupported_chain"
        _finish_line(res, lineno, raw, terminated, cut, bad)
    return res


def _sdn_item(res: ParseResult, ticker: str, addr: str, basis: LegalBasis) -> str:
    """Add one sanctions-list address; the reject reason, or "" when added."""
    if ticker in SDN_UNSUPPORTED:
        return "sdn.unsupported_chain"
    chains = SDN_TICKERS.get(ticker)
    if chains is None:
        return "sdn.unknown_ticker"
    first = ""
    for chain in chains:
        try:
            w = canon_wallet(addr, chain)
        except BadIndicator as exc:
            first = first or exc.reason
            continue
        res.add(Kind.WALLET, w.indicator, w.display, basis)
        return ""
    return f"sdn.{first}"
