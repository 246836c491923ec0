"""Collateral-impact preview: what else an entry would hit in real traffic, before it is entered.

Theory of operation
-------------------
In 2018 a register entry for a messenger's addresses named whole /15 networks of a cloud
provider and cut games, voice apps, shops and OS updates that lived there too.  The preview
answers, for each proposed entry and the traffic at hand (:func:`read_traffic`: sluice flow logs
or captures), "what would this cut besides what it is meant to cut?":

1. The entries are loaded into a :class:`~sluice.registry.matcher.Matcher` (the register's own
   matching rules).  Every address of the traffic (flow servers and DNS answers) is matched
   against the ip/subnet entries, every name against the domain/mask/url entries.
2. An entry's *addresses* are the traffic addresses it covers (ip, subnet), or, for a domain or
   mask, the addresses its names were seen on (flows are passive DNS: SNI, Host and DNS answers
   link names to addresses) - what blocking it by address would cut.
3. The *names seen* on those addresses are listed with their flows, distinct clients and bytes.
   A name is the entry's *own* when an entry of the same preview (a domain, mask or URL host)
   or an ``own`` pattern names it; every other name is collateral.  A flow with a name is own or
   collateral by its name; a flow without one (no SNI or Host) by its address: own when only
   own names were seen there, collateral when other names were, *unnamed* when none was (these
   count as collateral: nothing says they are the entry's).
4. The *collateral share* is collateral flows over all flows to the entry's addresses (and the
   same over bytes).
5. *Shared infrastructure* (CDN, cloud, hoster): every address concerned (and a subnet's
   first address) is looked up in the service catalogue (:func:`shared_lookup`); an ip or
   subnet entry that lies in one gets the advice "propose at the name level only".

The catalogue lives in a package above the register (:mod:`sluice.services.catalogue`), so it
is imported lazily and passed in as a plain function; without it the flag is simply absent.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.registry._traffic import Traffic, TrafficCert, read_traffic
from sluice.registry.choices import MAX_NAMES
from sluice.registry.matcher import Matcher
from sluice.registry.model import Kind, RegistryError
from sluice.registry.names import BadIndicator, canon_host, canon_ip, canon_mask, canon_url, split_url

__all__ = [
    "NAME_LEVEL_ADVICE",
    "EntryImpact",
    "ImpactReport",
    "NameSeen",
    "SharedLookup",
    "Traffic",
    "TrafficCert",
    "parse_entry",
    "preview_impact",
    "read_traffic",
    "shared_lookup",
]

NAME_LEVEL_ADVICE = "shared infrastructure: propose at the name level only"
"""The advice an ip or subnet entry in a CDN, cloud or hoster range gets (stable text)."""


class SharedInfraLike(Protocol):
    """What the preview reads of the catalogue's ``SharedInfra``."""

    @property
    def operator(self) -> str: ...

    @property
    def cidr(self) -> str: ...

    @property
    def source(self) -> str: ...


SharedLookup = Callable[[str], SharedInfraLike | None]
"""Address -> the shared infrastructure it lies in (None when none)."""


def shared_lookup() -> SharedLookup | None:
    """The catalogue's ``shared(ip)``, or None when :mod:`sluice.services.catalogue` is absent.

    Raises:
        ConfigError: the catalogue exists but is invalid (a broken catalogue is an error, not an
            absent flag).
    """
    try:
        from sluice.services.catalogue_toml import load_catalogue
    except ImportError:
        return None
    cat = load_catalogue()
    lookup: SharedLookup = cat.shared
    return lookup


@dataclass(frozen=True, slots=True)
class NameSeen:
    """A name seen on an entry's addresses."""

    name: str
    """Canonical name."""
    own: bool
    """True when the preview's own names include it."""
    flows: int
    """Flows to the entry's addresses with this name."""
    clients: int
    """Distinct clients of those flows."""
    bytes: int
    """Bytes of those flows."""
    addresses: tuple[str, ...]
    """The entry's addresses it was seen on (at most 5)."""


@dataclass(slots=True)
class EntryImpact:
    """What one entry would hit."""

    kind: Kind
    """The entry's kind."""
    indicator: str
    """Canonical indicator."""
    addresses: int = 0
    """Traffic addresses it covers (ip/subnet) or its names were seen on (domain/mask)."""
    flows: int = 0
    """Flows to those addresses."""
    clients: int = 0
    """Distinct clients of those flows."""
    bytes: int = 0
    """Bytes of those flows."""
    own_flows: int = 0
    """Flows of the entry's own names."""
    collateral_flows: int = 0
    """Flows that are not the entry's own names (unnamed ones included)."""
    unnamed_flows: int = 0
    """Flows without a name on addresses where no name was seen."""
    collateral_clients: int = 0
    """Distinct clients with at least one collateral flow."""
    collateral_bytes: int = 0
    """Bytes of collateral flows."""
    name_flows: int = 0
    """Flows whose name (SNI, Host, DNS query) the entry matches: what a block by name hits
    (0 for ip/subnet)."""
    names_total: int = 0
    """Distinct names seen on its addresses."""
    collateral_names: int = 0
    """Of those, names that are not its own."""
    names: list[NameSeen] = field(default_factory=list)
    """The names, most flows first (at most the preview's ``max_names``)."""
    shared: list[dict[str, str]] = field(default_factory=list)
    """Shared-infrastructure ranges its addresses lie in: operator, cidr, source."""
    advice: str = ""
    """What to do about it, in words."""

    @property
    def collateral_share(self) -> float:
        """Collateral flows / flows (0 when no flow)."""
        return self.collateral_flows / self.flows if self.flows else 0.0

    @property
    def collateral_byte_share(self) -> float:
        """Collateral bytes / bytes (0 when no byte)."""
        return self.collateral_bytes / self.bytes if self.bytes else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind.value,
            "indicator": self.indicator,
            "addresses": self.addresses,
            "flows": self.flows,
            "clients": self.clients,
            "bytes": self.bytes,
            "own_flows": self.own_flows,
            "collateral_flows": self.collateral_flows,
            "unnamed_flows": self.unnamed_flows,
            "collateral_clients": self.collateral_clients,
            "collateral_bytes": self.collateral_bytes,
            "collateral_share": round(self.collateral_share, 4),
            "collateral_byte_share": round(self.collateral_byte_share, 4),
            "name_flows": self.name_flows,
            "names_total": self.names_total,
            "collateral_names": self.collateral_names,
            "names": [
                {
                    "name": n.name,
                    "own": n.own,
                    "flows": n.flows,
                    "clients": n.clients,
                    "bytes": n.bytes,
                    "addresses": list(n.addresses),
                }
                for n in self.names
            ],
            "shared_infrastructure": self.shared,
            "advice": self.advice,
        }


@dataclass(slots=True)
class ImpactReport:
    """The preview of a set of entries over some traffic."""

    entries: list[EntryImpact]
    """One per entry, in the order given."""
    files: list[str]
    """Traffic read."""
    flows: int
    """Flows in the traffic."""
    own: list[str]
    """The own-name patterns given besides the preview's domain entries."""
    shared_checked: bool
    """False when no catalogue was available (the shared-infrastructure flag is then absent)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "files": self.files,
            "flows": self.flows,
            "own": self.own,
            "shared_checked": self.shared_checked,
            "entries": [e.as_dict() for e in self.entries],
        }


def parse_entry(text: str) -> tuple[Kind, str]:
    """An entry as a person writes it: ``*.d`` (mask), URL, address, CIDR or host name.

    Raises:
        RegistryError: ``registry.bad_indicator``.
    """
    t = text.strip()
    try:
        if t.startswith("*."):
            return Kind.DOMAIN_MASK, canon_mask(t)
        if "://" in t:
            return Kind.URL, canon_url(t)
        try:
            return canon_ip(t)
        except BadIndicator:
            return Kind.DOMAIN, canon_host(t)
    except BadIndicator as exc:
        raise RegistryError("registry.bad_indicator", f"{text!r}: {exc}") from exc


def _own_matcher(entries: Sequence[tuple[Kind, str]], own: Sequence[str]) -> Matcher:
    rows: list[tuple[str, str, str, str]] = []
    for kind, ind in entries:
        if kind in (Kind.DOMAIN, Kind.DOMAIN_MASK):
            rows.append(("own", kind.value, ind, "[]"))
        elif kind is Kind.URL:
            _, host, _ = split_url(ind)
            with_host = parse_entry(host)
            if with_host[0] is Kind.DOMAIN:
                rows.append(("own", Kind.DOMAIN.value, with_host[1], "[]"))
    for pattern in own:
        kind, ind = parse_entry(pattern)
        if kind not in (Kind.DOMAIN, Kind.DOMAIN_MASK):
            raise RegistryError("registry.bad_indicator", f"own name {pattern!r} is not a name or *.mask")
        rows.append(("own", kind.value, ind, "[]"))
    return Matcher(rows)


def preview_impact(
    entries: Sequence[tuple[Kind, str]],
    traffic: Traffic,
    *,
    own: Sequence[str] = (),
    shared: SharedLookup | None = None,
    max_names: int = MAX_NAMES,
) -> ImpactReport:
    """What each entry would hit in ``traffic``.

    Args:
        entries: ``(kind, canonical indicator)`` (see :func:`parse_entry`).
        traffic: flows and name-address links (:func:`read_traffic`).
        own: names (``d``) and masks (``*.d``) that are the entries' own besides their domain,
            mask and URL entries (an address entry names no name: say which service it is for).
        shared: the shared-infrastructure lookup (:func:`shared_lookup`), None to skip.
        max_names: names listed per entry.

    Returns:
        The report, one :class:`EntryImpact` per entry.

    Raises:
        RegistryError: ``registry.bad_indicator`` (an ``own`` pattern).
    """
    matcher = Matcher([("preview", k.value, i, "[]") for k, i in entries])
    own_m = _own_matcher(entries, own)
    by_addr: dict[str, list[int]] = {}
    for i, f in enumerate(traffic.flows):
        by_addr.setdefault(f.server, []).append(i)
    addrs = sorted(set(by_addr) | set(traffic.names_by_addr))
    names = sorted(
        {n for d in traffic.names_by_addr.values() for n in d} | {f.name for f in traffic.flows if f.name}
    )
    own_names = {names[q] for q in own_m.match_hosts(names).query.tolist()} if names else set()
    entry_addrs: list[set[str]] = [set() for _ in entries]
    entry_names: list[set[str]] = [set() for _ in entries]
    if addrs:
        got = matcher.match_ips(addrs)
        for q, e in zip(got.query.tolist(), got.entry.tolist(), strict=True):
            entry_addrs[e].add(addrs[q])
    if names:
        got = matcher.match_hosts(names)
        for q, e in zip(got.query.tolist(), got.entry.tolist(), strict=True):
            entry_names[e].add(names[q])
    for e, (kind, ind) in enumerate(entries):
        if kind is Kind.URL:
            _, host, _ = split_url(ind)
            hk = parse_entry(host)
            if hk[0] is Kind.DOMAIN and hk[1] in names:
                entry_names[e].add(hk[1])
    addr_names_of: dict[str, set[str]] = {}
    for a, d in traffic.names_by_addr.items():
        for n in d:
            addr_names_of.setdefault(n, set()).add(a)
    look = functools.cache(shared) if shared is not None else None
    out = []
    for e, (kind, ind) in enumerate(entries):
        hit = set(entry_addrs[e])
        if kind in (Kind.DOMAIN, Kind.DOMAIN_MASK, Kind.URL):
            for n in entry_names[e]:
                hit |= addr_names_of.get(n, set())
        imp = _entry_impact(kind, ind, hit, entry_names[e], own_names, traffic, by_addr, max_names)
        if look is not None:
            _flag_shared(imp, kind, ind, hit, look)
        out.append(imp)
    return ImpactReport(out, list(traffic.files), len(traffic.flows), list(own), shared is not None)


def _entry_impact(
    kind: Kind,
    ind: str,
    hit: set[str],
    matched_names: set[str],
    own_names: set[str],
    traffic: Traffic,
    by_addr: dict[str, list[int]],
    max_names: int,
) -> EntryImpact:
    imp = EntryImpact(kind, ind, addresses=len(hit))
    flows = traffic.flows
    clients: set[str] = set()
    coll_clients: set[str] = set()
    per_name: dict[str, tuple[list[int], set[str], set[str]]] = {}
    for a in sorted(hit):
        seen = traffic.names_by_addr.get(a, {})
        for n in seen:
            per_name.setdefault(n, ([0, 0], set(), set()))[2].add(a)
        addr_own = bool(seen) and all(n in own_names for n in seen)
        for i in by_addr.get(a, ()):
            f = flows[i]
            imp.flows += 1
            imp.bytes += f.bytes
            clients.add(f.client)
            if f.name:
                is_own = f.name in own_names
                slot = per_name.setdefault(f.name, ([0, 0], set(), set()))
                slot[0][0] += 1
                slot[0][1] += f.bytes
                slot[1].add(f.client)
                slot[2].add(a)
            else:
                is_own = addr_own
                imp.unnamed_flows += not seen
            if is_own:
                imp.own_flows += 1
            else:
                imp.collateral_flows += 1
                imp.collateral_bytes += f.bytes
                coll_clients.add(f.client)
    imp.clients = len(clients)
    imp.collateral_clients = len(coll_clients)
    if matched_names:  # a block by name (SNI, Host, DNS) hits these, wherever they go
        imp.name_flows = sum(1 for f in flows if (f.name or f.query) in matched_names)
    seen_list = [
        NameSeen(n, n in own_names, c[0], len(cl), c[1], tuple(sorted(ad)[:5]))
        for n, (c, cl, ad) in per_name.items()
    ]
    seen_list.sort(key=lambda s: (-s.flows, s.own, s.name))
    imp.names_total = len(seen_list)
    imp.collateral_names = sum(1 for s in seen_list if not s.own)
    imp.names = seen_list[:max_names]
    if imp.collateral_flows:
        imp.advice = (
            f"would also cut {imp.collateral_names} other names, {imp.collateral_flows} flows"
            f" ({imp.collateral_share:.0%}) of {imp.collateral_clients} clients"
        )
    else:
        imp.advice = "no collateral seen in this traffic"
    return imp


def _flag_shared(
    imp: EntryImpact, kind: Kind, ind: str, hit: Iterable[str], look: Callable[[str], SharedInfraLike | None]
) -> None:
    probe = sorted(hit)
    if kind is Kind.SUBNET:
        net = ipaddress.ip_network(ind)
        probe = [str(net.network_address), str(net.broadcast_address), *probe]
    elif kind is Kind.IP:
        probe = [ind, *probe]
    found: dict[tuple[str, str], dict[str, str]] = {}
    for a in probe:
        s = look(a)
        if s is not None:
            found.setdefault(
                (s.operator, s.cidr), {"operator": s.operator, "cidr": s.cidr, "source": s.source}
            )
    imp.shared = list(found.values())
    if not imp.shared:
        return
    ops = ", ".join(sorted({s["operator"] for s in imp.shared}))
    if kind in (Kind.IP, Kind.SUBNET):
        imp.advice = f"{NAME_LEVEL_ADVICE} ({ops}); " + imp.advice
    else:
        imp.advice = (
            f"its addresses are shared infrastructure ({ops}): block it by name, never by address; "
            + imp.advice
        )
