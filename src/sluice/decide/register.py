"""The one register lookup of the decision path: a flow's server name and address, cached.

Theory of operation: the gateway, the dry runs (``sluice policy test``, ``sluice analyze
--decisions``) and ``sluice analyze`` all ask the same question of a flow: which register entries
name its server name (SNI, HTTP Host, DNS query) or its server address. :class:`RegisterLookup`
answers it from the register's :class:`~sluice.registry.matcher.Matcher` and, when given, the
matcher of the entries under review (:func:`~sluice.registry.proposals.proposed_matcher`), whose
matches say ``entry.proposed`` and only ``register = "proposed"`` rules act on. Answers are
remembered per name and per address (servers repeat) up to :data:`MATCH_CACHE` keys, then
forgotten all at once; a new register is a new lookup.
"""

from __future__ import annotations

__all__ = ["MATCH_CACHE", "RegisterLookup", "open_register"]

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluice.flows.record import FlowRecord
    from sluice.registry.matcher import Match, Matcher

MATCH_CACHE = 65536
"""Server names and addresses whose matches are remembered (the cache is cleared when full)."""


def _canon(name: str) -> str:
    return name.lower().rstrip(".")


class RegisterLookup:
    """Register matches of flows' server names and addresses, remembered per name and address.

    Args:
        matcher: the register's entries (None: none).
        proposed: the entries under review (None: none); their matches come after the
            register's for the same name or address.
    """

    def __init__(self, matcher: Matcher | None = None, proposed: Matcher | None = None) -> None:
        self.matcher = matcher
        self.proposed = proposed
        self._cache: dict[str, list[Match]] = {}
        self._sources: list[Matcher] = [m for m in (matcher, proposed) if m is not None]

    def __len__(self) -> int:
        """Register entries (proposals not counted)."""
        return len(self.matcher) if self.matcher is not None else 0

    @property
    def proposals(self) -> int:
        """Entries under review."""
        return len(self.proposed) if self.proposed is not None else 0

    def for_flow(self, rec: FlowRecord) -> list[Match]:
        """Entries naming the flow's server name, then those naming its server address.

        Within each, register entries come before proposed ones (most specific first, as the
        matcher orders them).
        """
        if not self._sources:
            return []
        out: list[Match] = []
        name = rec.meta.server_name
        if name:
            out.extend(self._lookup("n" + name, name, _host, canon=True))
        if rec.server:
            out.extend(self._lookup("a" + rec.server, rec.server, _ip))
        return out

    def entries_for_flow(self, rec: FlowRecord) -> list[Match]:
        """:meth:`for_flow` without the entries under review (what ``sluice analyze`` lists)."""
        return [m for m in self.for_flow(rec) if not m.entry.proposed]

    def _lookup(
        self, key: str, query: str, fn: Callable[[Matcher, str], list[Match]], *, canon: bool = False
    ) -> list[Match]:
        cache = self._cache
        hit = cache.get(key)
        if hit is None:
            if len(cache) >= MATCH_CACHE:
                cache.clear()
            if canon:
                query = _canon(query)
            hit = []
            for m in self._sources:
                hit.extend(fn(m, query))
            cache[key] = hit
        return hit


def _host(m: Matcher, name: str) -> list[Match]:
    return m.match_host(name)


def _ip(m: Matcher, addr: str) -> list[Match]:
    return m.match_ip(addr)


def open_register(url: str, *, proposals: bool = True) -> RegisterLookup:
    """The lookup of a register store (SQLite file or ``postgresql://`` URL), read once.

    Args:
        url: the store.
        proposals: also load the entries under review (for ``register = "proposed"`` rules).

    Raises:
        SluiceError: the store cannot be opened or read.
    """
    from sluice.registry import Matcher, open_store
    from sluice.registry.proposals import proposed_matcher

    store = open_store(url)
    try:
        return RegisterLookup(Matcher.from_store(store), proposed_matcher(store) if proposals else None)
    finally:
        store.close()
