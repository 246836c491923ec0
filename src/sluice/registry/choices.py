"""The choices and defaults the register's commands offer, in one module that imports nothing.

The input format names and the default limits.  The service layer
(:mod:`sluice.registry.service`) and the command line offer them without loading the modules
that implement them (:mod:`~sluice.registry.importers`, :mod:`~sluice.registry.sync`,
:mod:`~sluice.registry.impact`, :mod:`~sluice.registry.fetch`, which need numpy, numba and the
compiled matcher), so that a short command such as ``registry check`` starts fast.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DROP",
    "DEFAULT_MAX_REMOVED",
    "DEFAULT_TIMEOUT_S",
    "FORMATS",
    "LIST_FORMATS",
    "MAX_NAMES",
    "WALLET_FORMATS",
]

LIST_FORMATS = ("hosts", "adblock", "domains", "cidrs", "drop")
"""Formats :mod:`sluice.registry.importers.lists` parses."""
WALLET_FORMATS = ("wallets", "sdn")
"""Formats :mod:`sluice.registry.importers.wallets` parses."""
FORMATS = ("rkn-csv", "rkn-xml", "hosts", "adblock", "rpz", "domains", "cidrs", "drop", *WALLET_FORMATS)
"""Every input format (``auto`` picks one with :func:`~sluice.registry.importers.detect_format`)."""

DEFAULT_MAX_DROP = 0.25
"""Largest share of rows a source may lose in one import without ``force``."""
DEFAULT_MAX_REMOVED = 0.05
"""Largest share of a source's entries one import may remove without ``force``.

The heuristic for a dump cut exactly at a line end when nothing in it says how long it should
be (lists without a ``# Domains:`` count, RKN CSV dumps newer than the previous import): a cut
takes the whole tail away at once, while a real update of a register or list removes a small
share (the audit's cut RKN dump removed 4,063 of 29,270 entries, 13.9 %; importing the 2016
dump over the 2018 one would remove 94 %).  A cut smaller than this share is not seen when no
header tells."""
MAX_NAMES = 50
"""Names listed per entry by default (the most flows first); the counts cover all."""
DEFAULT_MAX_BYTES = 512 * 1024**2
"""Largest download accepted (the RKN dump is ~100 MB)."""
DEFAULT_TIMEOUT_S = 300.0
"""Longest a download may take in all (a stalled server is given up on)."""
