"""Scoring text for crypto-asset content: an explained lexical scorer, with the addresses it carries.

Theory of operation: a page is scored from the *distinct* evidence it carries, in English and
Russian — crypto terms by topic (exchange and trading, OTC, mining, wallets, coins), tickers
(upper case, whole words), exchange and wallet brands of the crypto catalogue, and checksum-valid
wallet addresses (:func:`sluice.crypto.addresses.find_addresses`). Each distinct item adds its
weight once (a page repeating "bitcoin" 50 times is no more crypto than one saying it 3 times);
the score is ``1 - exp(-sum / SCALE)``, so it is 0 for none, about 0.5 for two strong terms, and
near 1 for many. A page is ``crypto`` at :data:`THRESHOLD` or above. Every item that counted is
listed as evidence with its weight. This is the baseline any learned model has to beat; measured
on the labelled set of ``bench/crypto_pages.py`` (see docs/crypto-notes.md, "Pages: evaluation").
"""

from __future__ import annotations

__all__ = ["SCALE", "THRESHOLD", "PageScore", "score_text"]

import math
import re
from dataclasses import dataclass, field

from sluice.crypto.addresses import AddressHit, find_addresses
from sluice.crypto.catalogue import default_crypto_catalogue

SCALE = 3.0
"""Weight sum that gives a score of 1 - 1/e (≈ 0.63)."""
THRESHOLD = 0.5
"""Score at or above which a page is labelled ``crypto``."""

# (topic, weight, regex over lower-cased text); Russian stems cover the inflections.
_TERMS: tuple[tuple[str, float, str], ...] = (
    ("coin", 1.5, r"bitcoin|биткоин|биткойн|ethereum|эфириум|monero|litecoin|лайткоин|dogecoin|tether"),
    (
        "coin",
        1.5,
        r"криптовалют\w*|cryptocurrenc\w*|crypto-?assets?|цифров\w+ валют\w*"
        r"|стейблкоин\w*|stablecoins?",
    ),
    ("coin", 0.8, r"blockchain|блокчейн\w*|altcoins?|альткоин\w*|tokens?|токен\w*|defi|nft"),
    ("exchange", 1.2, r"криптобирж\w*|crypto exchange|биржа?\w*|exchange rate|обменник\w*|обмен\w* крипт\w*"),
    (
        "trading",
        1.0,
        r"spot trading|futures|фьючерс\w*|leverage|плеч\w*|трейдинг\w*|trading"
        r"|маржин\w*|order book",
    ),
    (
        "otc",
        1.2,
        r"\botc\b|p2p[- ]торгов\w*|p2p trading|внебиржев\w*"
        r"|купить usdt|продать usdt|buy usdt|sell usdt",
    ),
    (
        "mining",
        1.2,
        r"майнинг\w*|майнер\w*|mining pool|\bminers?\b|\bmining\b|hashrate"
        r"|хешрейт\w*|асик\w*|\basic\b",
    ),
    ("wallet", 1.2, r"seed phrase|сид-фраз\w*|мнемони\w+ фраз\w*|private key|приватн\w+ ключ\w*|cold wallet"),
    ("wallet", 0.8, r"wallet address|адрес кошелька|кошел[её]к\w*|\bwallets?\b"),
)
_TERM_RES = tuple((topic, w, re.compile(rf"(?<!\w)(?:{rx})(?!\w)")) for topic, w, rx in _TERMS)
_TICKERS = re.compile(r"(?<![\w$])(BTC|ETH|USDT|USDC|XMR|LTC|TRX|TON|DOGE|BNB|SOL|XRP|BCH)(?![\w])")
_TICKER_WEIGHT = 0.5
_BRAND_WEIGHT = 1.5
_ADDRESS_WEIGHT = 2.0


@dataclass(frozen=True, slots=True)
class PageScore:
    """The crypto-content score of one text and what made it."""

    score: float
    """0–1."""
    label: str
    """``crypto`` or ``other``."""
    evidence: tuple[dict[str, str | float | int], ...]
    """Each item that counted: kind (term, ticker, brand, address), what, weight, count."""
    addresses: tuple[AddressHit, ...] = field(default_factory=tuple)
    """Checksum-valid addresses found (with offsets)."""


def _brands() -> tuple[tuple[str, re.Pattern[str]], ...]:
    out = []
    for e in default_crypto_catalogue().entries:
        if e.kind == "pool":
            continue
        name = re.escape(e.brand.split(" (")[0].lower())
        out.append((e.brand, re.compile(rf"(?<!\w){name}(?!\w)")))
    return tuple(out)


def score_text(text: str) -> PageScore:
    """Score one text (page, post, file) for crypto-asset content.

    Args:
        text: the text (HTML is fine: tags carry no terms).

    Returns:
        The score, the label and the evidence.
    """
    low = text.lower()
    evidence: list[dict[str, str | float | int]] = []
    total = 0.0
    for topic, weight, rx in _TERM_RES:
        found: dict[str, int] = {}
        for m in rx.finditer(low):
            found[m.group()] = found.get(m.group(), 0) + 1
        for term, n in sorted(found.items(), key=lambda kv: -kv[1])[:3]:  # at most 3 terms per pattern
            evidence.append({"kind": "term", "topic": topic, "what": term, "weight": weight, "count": n})
            total += weight
    tickers: dict[str, int] = {}
    for m in _TICKERS.finditer(text):
        tickers[m.group(1)] = tickers.get(m.group(1), 0) + 1
    for t, n in sorted(tickers.items()):
        evidence.append({"kind": "ticker", "what": t, "weight": _TICKER_WEIGHT, "count": n})
        total += _TICKER_WEIGHT
    for brand, rx in _brands():
        n = len(rx.findall(low))
        if n:
            evidence.append({"kind": "brand", "what": brand, "weight": _BRAND_WEIGHT, "count": n})
            total += _BRAND_WEIGHT
    hits = tuple(find_addresses(text))
    chains: dict[str, int] = {}
    for h in hits:
        if h.address.checksum != "none":
            chains[h.address.chain] = chains.get(h.address.chain, 0) + 1
    for chain, n in sorted(chains.items()):
        evidence.append({"kind": "address", "what": chain, "weight": _ADDRESS_WEIGHT, "count": n})
        total += _ADDRESS_WEIGHT
    score = 1.0 - math.exp(-total / SCALE)
    evidence.sort(key=lambda e: -float(e["weight"]))
    return PageScore(round(score, 4), "crypto" if score >= THRESHOLD else "other", tuple(evidence), hits)
