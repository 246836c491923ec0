"""What a lookup in the register returns: :class:`Match` (the entry and the rule that applied)
and :class:`MatchReason`, shared by the compiled matcher (:mod:`sluice.registry.matcher`) and
the indexed store lookups of ``registry check`` (:mod:`sluice.registry.check`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sluice.registry.model import Entry

__all__ = ["Match", "MatchReason"]


class MatchReason(enum.IntEnum):
    """Which rule made an entry apply."""

    DOMAIN = 1
    """The host is the entry's domain."""
    DOMAIN_WWW = 2
    """The host is ``www.`` + the entry's domain."""
    MASK = 3
    """The host is the mask's domain or below it."""
    URL = 4
    """The URL is the entry's URL."""
    IP = 5
    """The address is the entry's address."""
    SUBNET = 6
    """The address is in the entry's subnet."""
    WALLET = 7
    """The wallet address is the entry's (same chain, canonical form)."""

    @property
    def code(self) -> str:
        """Stable dotted reason code (public output)."""
        return _REASON_CODES[self]


_REASON_CODES = {
    MatchReason.DOMAIN: "domain.exact",
    MatchReason.DOMAIN_WWW: "domain.www",
    MatchReason.MASK: "domain.mask",
    MatchReason.URL: "url.exact",
    MatchReason.IP: "ip.exact",
    MatchReason.SUBNET: "ip.subnet",
    MatchReason.WALLET: "wallet.exact",
}


@dataclass(frozen=True, slots=True)
class Match:
    """One entry that applies to one query."""

    query: str
    """The host, URL or address asked about, as given."""
    reason: MatchReason
    """Which rule applied."""
    entry: Entry
    """The entry, with its source and legal basis."""
