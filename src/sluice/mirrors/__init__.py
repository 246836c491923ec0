"""Mirror discovery: copies of blocked sites found by name, page and infrastructure.

* :mod:`~sluice.mirrors.stems`: name evidence (stems, homoglyphs, counters, distances);
* :mod:`~sluice.mirrors.brand`: brand stems and counter shapes, the keys of the name index;
* :mod:`~sluice.mirrors.index`: the name index (Aho-Corasick, abbreviations, symmetric deletion);
* :mod:`~sluice.mirrors.namescore`: the name trait's learned score;
* :mod:`~sluice.mirrors.permute`: dnstwist-style and operator-style permutations;
* :mod:`~sluice.mirrors.families`: mirror families from the register's dumps (fit and evaluation);
* :mod:`~sluice.mirrors.fetch`: the bounded fetcher; :mod:`~sluice.mirrors.page`: page evidence;
* :mod:`~sluice.mirrors.traits`: the four traits and the legal test;
  :mod:`~sluice.mirrors.discover`: candidates; :mod:`~sluice.mirrors.propose`: the proposals made
  of them (what the CLI calls).
"""

from __future__ import annotations

from sluice.mirrors.brand import brand_stem
from sluice.mirrors.index import NameHit, NameIndex
from sluice.mirrors.namescore import NameModel, default_model
from sluice.mirrors.permute import fuzz, fuzz_dnstwist, fuzz_operator

__all__ = [
    "NameHit",
    "NameIndex",
    "NameModel",
    "brand_stem",
    "default_model",
    "fuzz",
    "fuzz_dnstwist",
    "fuzz_operator",
]
