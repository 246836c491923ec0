"""Crypto assets: wallet addresses, the exchanges and wallets catalogue, page scoring.

Traffic fingerprints of node and mining protocols live in :mod:`sluice.detect._crypto` (on the
dissectors of :mod:`sluice.wire.bitcoin`, :mod:`sluice.wire.levin`, :mod:`sluice.wire.stratum` …).
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
