"""``registry check``: the entries that apply to a few names, URLs, addresses or wallets, answered
by indexed store lookups instead of loading the whole register into the matcher.

Theory of operation
-------------------
The compiled matcher (:class:`~sluice.registry.matcher.Matcher`) is built for millions of
lookups: it reads every entry and its kernels need numba (start-up ~0.8 s before the first
answer).  A person checking a handful of items needs a few dozen primary-key lookups instead:
each rule of the matcher names the keys that can apply to a query, and
:meth:`~sluice.registry.stores.RegistryStore.entries_of` fetches the current entries among them.

=================  ===========================================================  ===============
query              keys asked (kind, canonical indicator)                       reason
=================  ===========================================================  ===============
host name ``n``    (domain, ``n``)                                              domain.exact
                   (domain, ``n`` without ``www.``) when ``n`` starts with it   domain.www
                   (domain-mask, ``*.s``) for ``n`` and each parent suffix ``s``  domain.mask
URL                (url, the canonical URL), then its host's keys as above      url.exact, ...
address ``a``      (ip, ``a``), (subnet, ``a/p``) for every prefix length       ip.exact,
                   ``p`` (host bits cleared: the canonical form)                ip.subnet
wallet             (wallet, the canonical ``chain:address``)                    wallet.exact
=================  ===========================================================  ===============

Matches are ordered as the matcher orders them (host: by reason, then the longer indicator;
address: the longer prefix first; ties by source), and each entry is shown as the matcher shows
it, so both give the same answer (a test compares them on a real register).  This module
imports neither numpy nor numba.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from sluice.registry.display import display_indicator
from sluice.registry.matches import Match, MatchReason
from sluice.registry.model import Entry, Kind
from sluice.registry.names import BadIndicator, canon_host, split_url
from sluice.registry.stores import RegistryStore, open_store
from sluice.registry.wallets import canon_wallet, entry_checksum, looks_like_wallet

__all__ = ["check", "match_dict", "store_matches"]

Key = tuple[Kind, str]


def check(db: str, items: Sequence[str], *, source: str | None = None) -> list[dict[str, Any]]:
    """Entries that apply to each host, URL, IP address or wallet address (``chain:address``).

    Returns:
        One dict per item: ``{"query", "matches": [{reason, kind, indicator, shown, source,
        basis, basis_text}]}`` (wallet matches also give ``checksum``: verified,
        unchecksummed or none).

    Raises:
        RegisterNotFound: no register at ``db``.
        RegistryError: store failure.
    """
    store = open_store(db)
    try:
        out = []
        for it in items:
            got = [match_dict(m, stored) for m, stored in store_matches(store, it, source)]
            out.append({"query": it, "matches": got})
    finally:
        store.close()
    return out


def match_dict(m: Match, shown: str = "") -> dict[str, Any]:
    """One match as ``registry check`` gives it (JSON-ready).

    ``shown``: the entry's stored display form, when the caller looked it up (wallets: it carries
    the ``(unchecksummed)`` mark of an address a source wrote without its checksum).
    """
    e = m.entry
    out = {
        "reason": m.reason.code,
        "kind": e.kind.value,
        "indicator": e.indicator,
        "shown": shown or e.shown,
        "source": e.source,
        "basis": [{"authority": b.authority, "number": b.number, "date": b.date} for b in e.basis],
        "basis_text": [str(b) for b in e.basis],
    }
    if e.kind is Kind.WALLET:
        out["checksum"] = entry_checksum(e.indicator, shown or e.display)
    return out


def store_matches(store: RegistryStore, item: str, source: str | None = None) -> list[tuple[Match, str]]:
    """The matches of one item, as :meth:`Matcher.match <sluice.registry.matcher.Matcher.match>`
    gives them for the same register, each with the entry's stored display form for wallets
    ("" for other kinds, which are shown as the matcher shows them)."""
    if "://" in item:
        return _url(store, item, source)
    if _ip(item.strip()) is not None:
        return _address(store, item.strip(), item.strip(), source)
    if looks_like_wallet(item):
        try:
            w = canon_wallet(item, explicit=False)
        except BadIndicator:
            pass
        else:
            return [
                (Match(item, MatchReason.WALLET, _shown(e)), e.display)
                for e in store.entries_of([(Kind.WALLET, w.indicator)], source)
            ]
    return _host(store, item, item, source)


def _shown(e: Entry) -> Entry:
    """The entry as the matcher builds it (display computed from the indicator, no import time)."""
    return Entry(e.kind, e.indicator, e.source, e.basis, display_indicator(e.kind, e.indicator))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _host(store: RegistryStore, query: str, name: str, source: str | None) -> list[tuple[Match, str]]:
    try:
        canon = canon_host(name)
    except BadIndicator:
        return []
    labels = canon.split(".")
    keys: dict[Key, MatchReason] = {(Kind.DOMAIN, canon): MatchReason.DOMAIN}
    if len(canon) > 4 and canon.startswith("www."):
        keys[(Kind.DOMAIN, canon[4:])] = MatchReason.DOMAIN_WWW
    for i in range(len(labels)):
        keys[(Kind.DOMAIN_MASK, "*." + ".".join(labels[i:]))] = MatchReason.MASK
    out = [(Match(query, keys[(e.kind, e.indicator)], _shown(e)), "") for e in store.entries_of(keys, source)]
    out.sort(key=lambda x: (x[0].reason, -len(x[0].entry.indicator)))  # stable: ties by source
    return out


def _address(store: RegistryStore, query: str, text: str, source: str | None) -> list[tuple[Match, str]]:
    a = _ip(text)
    if a is None:
        return []
    plain = type(a)(int(a))  # an IPv6 scope (``%eth0``) is no part of the address
    keys: list[Key] = [(Kind.IP, str(plain))]
    for p in range(a.max_prefixlen + 1):
        keys.append((Kind.SUBNET, str(ipaddress.ip_network((plain, p), strict=False))))
    got = store.entries_of(keys, source)
    got.sort(key=lambda e: -_prefix_len(e.indicator, a.max_prefixlen))  # stable: ties by source
    reason = {Kind.IP: MatchReason.IP, Kind.SUBNET: MatchReason.SUBNET}
    return [(Match(query, reason[e.kind], _shown(e)), "") for e in got]


def _prefix_len(indicator: str, full: int) -> int:
    _, slash, p = indicator.partition("/")
    return int(p) if slash else full


def _url(store: RegistryStore, url: str, source: str | None) -> list[tuple[Match, str]]:
    try:
        _, host, canon = split_url(url)
    except BadIndicator:
        return []
    urls = store.entries_of([(Kind.URL, canon)], source)
    out = [(Match(url, MatchReason.URL, _shown(e)), "") for e in urls]
    if _ip(host) is not None:
        return out + _address(store, url, host, source)
    return out + _host(store, url, host, source)
