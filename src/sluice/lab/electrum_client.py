"""Run Debian's Electrum (4.3.4, Bitcoin-only) on Litecoin's regtest chain, for the lab's Electrum scenario.

Run as a script with the system Python that has Debian's ``python3-electrum`` (not sluice's
virtualenv): ``/usr/bin/python3 electrum_client.py --regtest -D DIR <electrum arguments>``.

Electrum's ``--regtest`` network is Bitcoin's regtest. The only server software packaged within
reach (ElectrumX's maintained fork ``e-x`` on PyPI) needs a full node, and the only full nodes
packaged in Debian bookworm are Litecoin Core and monerod (no ``bitcoind``). Litecoin's block
headers have Bitcoin's layout and its block hash is Bitcoin's double SHA-256 (scrypt is only its
proof of work, which Electrum does not check on a test network), so Electrum follows a Litecoin
regtest chain once it is told three network constants: the genesis block hash, the bech32 prefix
(``rltc``) and the P2SH version byte (0x3a). Nothing else of Electrum is changed: the protocol,
wallet, signing and broadcast are Electrum's own. BIP-143 signatures are the same on Litecoin.
"""

from __future__ import annotations

import runpy
import sys

LITECOIN_REGTEST_GENESIS = "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9"
"""Litecoin regtest's genesis block hash (``litecoin-cli -regtest getblockhash 0``)."""
ELECTRUM_SCRIPT = "/usr/bin/electrum"


def main() -> None:
    import electrum.constants as constants  # type: ignore[import-not-found]  # Debian's python3-electrum

    net = constants.BitcoinRegtest
    net.GENESIS = LITECOIN_REGTEST_GENESIS
    net.SEGWIT_HRP = "rltc"
    net.ADDRTYPE_P2SH = 0x3A
    sys.argv[0] = ELECTRUM_SCRIPT
    runpy.run_path(ELECTRUM_SCRIPT, run_name="__main__")


if __name__ == "__main__":
    main()
