"""Crypto assets: wallet addresses, the exchanges and wallets catalogue, page scoring.

Traffic fingerprints of node and mining protocols (Bitcoin-family messages, Monero's levin,
Stratum, Electrum, RLPx) live in :mod:`sluice.detect._crypto` (Stratum in :mod:`sluice.detect._mining`).
"""

__all__ = [
    "addresses",
    "catalogue",
    "codecs",
    "devp2p",
    "pageset",
    "scan",
    "synth",
]
