"""The service catalogue: which VPN, proxy and circumvention services exist, and how to recognise them.

Theory of operation
-------------------
The catalogue is a TOML file shipped in the package (``catalogue.toml``, reviewed like code) with
two kinds of entries:

* ``[[service]]``: one service (NordVPN, Psiphon ...) with its class and family (``TAXONOMY.md``),
  the names its apps, APIs and servers use (``domains``: a domain and every name under it;
  ``names``: glob patterns over a whole name), the organisation names of its servers'
  certificates (``cert_orgs``), the protocols it offers, and its ASNs and address ranges, each
  with the public ``source`` it came from;
* ``[[shared]]``: CDNs, clouds and hosters (Cloudflare, AWS, M247 ...) that carry many services
  and sites at once. An address in one of their ranges never names a service on its own, and
  never justifies blocking by address.

The file is read and validated by :mod:`sluice.services.catalogue_toml` (:func:`load_catalogue
<sluice.services.catalogue_toml.load_catalogue>`, :func:`~sluice.services.catalogue_toml.default_catalogue`);
this module holds the records and the lookup structure they are indexed in.

Lookups are indexed. Names are canonicalised with :func:`sluice.registry.names.canon_host` and
looked up suffix by suffix (``a.b.example.com``, ``b.example.com``, ``example.com``, ``com``) in
a dict of domains, and of glob patterns keyed by their literal suffix (``derp*.tailscale.com`` is
tried only for names under ``tailscale.com``): a lookup costs one dict probe per label, whatever
the number of patterns. Addresses use the register's interval index
(:class:`sluice.registry.ipindex.IpIndex`), longest prefix first.
"""

from __future__ import annotations

__all__ = [
    "ADDRESS_CACHE",
    "MATCH_KINDS",
    "AsnRef",
    "Catalogue",
    "RangeRef",
    "Service",
    "ServiceMatch",
    "SharedEntry",
    "SharedInfra",
    "glob_key",
]

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sluice.registry.ipindex import IpIndex
from sluice.registry.names import BadIndicator, canon_host

MATCH_KINDS = ("sni", "http", "dns", "cert", "address")
"""What a :class:`ServiceMatch` can have matched: a TLS/QUIC server name, an HTTP Host, a DNS name,
a certificate's names or organisation, or the server address."""

ADDRESS_CACHE = 1 << 16
"""Addresses whose lookups a catalogue remembers (per lookup kind)."""

_CERT_ATTR = re.compile(r"(?:^|,)\s*(O|CN)\s*=\s*((?:\\,|[^,])+)")


@dataclass(frozen=True, slots=True)
class AsnRef:
    """An autonomous system a service or operator announces its addresses from."""

    asn: int
    """The AS number."""
    source: str
    """Where the fact comes from (a public list, document or registry record)."""


@dataclass(frozen=True, slots=True)
class RangeRef:
    """An address range of a service or operator."""

    cidr: str
    """The network (``162.159.192.0/24``, ``2606:4700:d0::/48``)."""
    source: str
    """Where the fact comes from (a public list, document or registry record)."""


@dataclass(frozen=True, slots=True)
class Service:
    """One VPN, proxy or circumvention service of the catalogue."""

    id: str
    """Short stable id (``nordvpn``); the family of a VPN service is ``commercial:<id>``."""
    brand: str
    """The name people know it by."""
    label: str
    """Class (``vpn``, ``proxy``, ``circumvention``)."""
    family: str
    """Family a verdict naming the service gives (``commercial:nordvpn``, ``psiphon``)."""
    homepage: str
    """The service's website."""
    protocols: tuple[str, ...]
    """Taxonomy families of the protocols it offers (``openvpn``, ``wireguard`` ...)."""
    domains: tuple[str, ...]
    """Domains whose every name is the service's (canonical: ``nordvpn.com``)."""
    names: tuple[str, ...]
    """Glob patterns over whole names (``derp*.tailscale.com``)."""
    cert_orgs: tuple[str, ...]
    """Organisation names (O=) of its servers' certificates."""
    name_source: str
    """Where its names and certificate organisations come from."""
    asns: tuple[AsnRef, ...]
    """Its own autonomous systems."""
    ranges: tuple[RangeRef, ...]
    """Its address ranges."""
    note: str
    """Anything a reviewer should know (proprietary protocols, why a name is left out)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``class`` for the label)."""
        return {
            "id": self.id,
            "brand": self.brand,
            "class": self.label,
            "family": self.family,
            "homepage": self.homepage,
            "protocols": list(self.protocols),
            "domains": list(self.domains),
            "names": list(self.names),
            "cert_orgs": list(self.cert_orgs),
            "name_source": self.name_source,
            "asns": [{"asn": a.asn, "source": a.source} for a in self.asns],
            "ranges": [{"cidr": r.cidr, "source": r.source} for r in self.ranges],
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """A CDN, cloud or hoster whose addresses carry many services and sites."""

    id: str
    """Short stable id (``cloudflare``)."""
    operator: str
    """Who runs it."""
    kind: str
    """``cdn``, ``cloud`` or ``hosting``."""
    asns: tuple[AsnRef, ...]
    """Its autonomous systems."""
    ranges: tuple[RangeRef, ...]
    """Published ranges (a handful; the operator's full list is its own)."""
    note: str
    """Anything a reviewer should know."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "id": self.id,
            "operator": self.operator,
            "kind": self.kind,
            "asns": [{"asn": a.asn, "source": a.source} for a in self.asns],
            "ranges": [{"cidr": r.cidr, "source": r.source} for r in self.ranges],
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class SharedInfra:
    """An address found in shared infrastructure: which operator, and the range's source."""

    id: str
    """The shared entry's id (``cloudflare``)."""
    operator: str
    """Who runs it."""
    kind: str
    """``cdn``, ``cloud`` or ``hosting``."""
    cidr: str
    """The range the address lies in."""
    source: str
    """Where that range comes from."""

    def to_dict(self) -> dict[str, str]:
        """JSON-friendly form."""
        return {
            "id": self.id,
            "operator": self.operator,
            "kind": self.kind,
            "cidr": self.cidr,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class ServiceMatch:
    """Why a name or address belongs to a service: enough for a verdict to say exactly why."""

    service: str
    """The service's id."""
    brand: str
    """The service's brand."""
    label: str
    """The service's class."""
    family: str
    """The family a verdict naming it gives."""
    what: str
    """What matched: one of :data:`MATCH_KINDS`."""
    observed: str
    """The name or address looked up (canonical)."""
    pattern: str
    """The catalogue's domain, glob, organisation or range that matched."""
    source: str
    """Where that pattern or range comes from."""
    shared: SharedInfra | None = None
    """For an address: the shared infrastructure it also lies in (then it never names alone)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "service": self.service,
            "brand": self.brand,
            "class": self.label,
            "family": self.family,
            "what": self.what,
            "observed": self.observed,
            "pattern": self.pattern,
            "source": self.source,
            "shared": self.shared.to_dict() if self.shared else None,
        }


def glob_key(pattern: str) -> str:
    """The literal suffix of a glob: the labels after the last one holding a ``*``."""
    labels = pattern.split(".")
    last = max((i for i, lab in enumerate(labels) if "*" in lab), default=-1)
    return ".".join(labels[last + 1 :])


def _glob_re(pattern: str) -> re.Pattern[str]:
    return re.compile("[a-z0-9_.-]*".join(re.escape(part) for part in pattern.split("*")))


class Catalogue:
    """Services and shared infrastructure, indexed for name and address lookups.

    Build one with :func:`~sluice.services.catalogue_toml.load_catalogue` (or
    :func:`~sluice.services.catalogue_toml.build_catalogue`), which validate first.

    Args:
        services: the services, ids unique.
        shared: the shared infrastructure entries.
        origin: where the catalogue was read from (for messages).
        reviewed: the file's ``reviewed`` date, as written.
    """

    def __init__(
        self,
        services: Sequence[Service],
        shared: Sequence[SharedEntry] = (),
        *,
        origin: str = "",
        reviewed: str = "",
    ) -> None:
        self.services: tuple[Service, ...] = tuple(services)
        """Every service, in file order."""
        self.shared_infra: tuple[SharedEntry, ...] = tuple(shared)
        """Every shared infrastructure entry, in file order."""
        self.origin = origin
        """Where the catalogue was read from."""
        self.reviewed = reviewed
        """The file's ``reviewed`` date."""
        self._by_id = {s.id: s for s in self.services}
        self._domains: dict[str, tuple[int, str]] = {}
        self._globs: dict[str, list[tuple[re.Pattern[str], int, str]]] = {}
        self._orgs: dict[str, tuple[int, str]] = {}
        svc_rows: list[tuple[str, int]] = []
        self._svc_ranges: list[tuple[int, RangeRef]] = []
        for i, s in enumerate(self.services):
            for d in s.domains:
                self._domains.setdefault(d, (i, d))
            for g in s.names:
                self._globs.setdefault(glob_key(g), []).append((_glob_re(g), i, g))
            for o in s.cert_orgs:
                self._orgs.setdefault(o.casefold(), (i, o))
            for r in s.ranges:
                svc_rows.append((r.cidr, len(self._svc_ranges)))
                self._svc_ranges.append((i, r))
        shared_rows: list[tuple[str, int]] = []
        self._shared_ranges: list[tuple[int, RangeRef]] = []
        for i, e in enumerate(self.shared_infra):
            for r in e.ranges:
                shared_rows.append((r.cidr, len(self._shared_ranges)))
                self._shared_ranges.append((i, r))
        self._svc_index = IpIndex(svc_rows)
        self._shared_index = IpIndex(shared_rows)
        # servers repeat: one index search per distinct address (bounded)
        self._address_match = functools.lru_cache(maxsize=ADDRESS_CACHE)(self._address_match_uncached)
        self._shared_text = functools.lru_cache(maxsize=ADDRESS_CACHE)(self._shared_text_uncached)
        self._name_match = functools.lru_cache(maxsize=ADDRESS_CACHE)(self._name_match_uncached)
        # certificates repeat as servers do; parsing a subject is the costly part (~0.1 ms)
        self._cert_match = functools.lru_cache(maxsize=ADDRESS_CACHE)(self._cert_match_uncached)

    def __len__(self) -> int:
        return len(self.services)

    def get(self, service_id: str) -> Service:
        """The service with this id.

        Raises:
            KeyError: no such service.
        """
        return self._by_id[service_id]

    def find(self, text: str) -> Service | None:
        """A service by id, brand (any case) or one of its names (``www.nordvpn.com``)."""
        t = text.strip()
        if t in self._by_id:
            return self._by_id[t]
        folded = t.casefold()
        for s in self.services:
            if folded in (s.id, s.brand.casefold()):
                return s
        m = self.match_name(t)
        return self._by_id[m.service] if m is not None else None

    def _match(self, i: int, what: str, observed: str, pattern: str, source: str) -> ServiceMatch:
        s = self.services[i]
        return ServiceMatch(
            s.id, s.brand, s.label, s.family, what, observed, pattern, source or s.name_source
        )

    def match_name(self, name: str, what: str = "sni") -> ServiceMatch | None:
        """The service a host name belongs to (most specific pattern first).

        Args:
            name: a name as traffic gives it (any case, trailing dot, Unicode or punycode).
            what: what the name was (``sni``, ``http``, ``dns``, ``cert``), copied to the match.

        Returns:
            The match, or None (also for text that is not a host name: traffic is never an error).
        """
        return self._name_match(name, what)

    def _name_match_uncached(self, name: str, what: str) -> ServiceMatch | None:
        try:
            canon = canon_host(name)
        except BadIndicator:
            return None
        labels = canon.split(".")
        for k in range(len(labels) - 1):
            suffix = canon if k == 0 else ".".join(labels[k:])
            for rx, i, g in self._globs.get(suffix, ()):
                if rx.fullmatch(canon):
                    return self._match(i, what, canon, g, "")
            hit = self._domains.get(suffix)
            if hit is not None:
                return self._match(hit[0], what, canon, hit[1], "")
        return None

    def match_cert(self, subject: str, sans: Sequence[str] = ()) -> ServiceMatch | None:
        """The service a server certificate belongs to: by its names (CN, SAN) or organisation (O=).

        Args:
            subject: the subject as text (``C=US, O=Private Internet Access, CN=newjersey402``).
            sans: the subject alternative names (``*.`` wildcards are looked up without it).

        Returns:
            The match (``what`` is ``cert``), or None.
        """
        return self._cert_match(subject, tuple(sans[:64]))

    def _cert_match_uncached(self, subject: str, sans: tuple[str, ...]) -> ServiceMatch | None:
        attrs = [(k, v.strip().replace("\\,", ",")) for k, v in _CERT_ATTR.findall(subject[:4096])]
        for name in [v for k, v in attrs if k == "CN"] + list(sans):
            m = self.match_name(name.removeprefix("*."), "cert")
            if m is not None:
                return m
        for k, v in attrs:
            if k == "O" and (hit := self._orgs.get(v.casefold())) is not None:
                return self._match(hit[0], "cert", f"O={v}", f"O={hit[1]}", "")
        return None

    def match_address(self, ip: str) -> ServiceMatch | None:
        """The service whose listed range holds an address (longest prefix first).

        The match's ``shared`` says when the address also lies in shared infrastructure: such a
        match must never name a service on its own.

        Args:
            ip: an IPv4 or IPv6 address as text.

        Returns:
            The match (``what`` is ``address``), or None (also for text that is not an address).
        """
        return self._address_match(ip.strip())

    def _address_match_uncached(self, ip: str) -> ServiceMatch | None:
        addr = _address(ip)
        if addr is None or not self._svc_ranges:
            return None
        _, ents = self._svc_index.match([addr])
        if ents.shape[0] == 0:
            return None
        i, r = self._svc_ranges[int(ents[0])]
        s = self.services[i]
        return ServiceMatch(
            s.id, s.brand, s.label, s.family, "address", str(addr), r.cidr, r.source, self._shared(addr)
        )

    def shared(self, ip: str) -> SharedInfra | None:
        """The shared infrastructure (CDN, cloud, hoster) an address lies in, with the range's source.

        Args:
            ip: an IPv4 or IPv6 address as text.

        Returns:
            The operator and range, or None (also for text that is not an address).
        """
        return self._shared_text(ip.strip())

    def _shared_text_uncached(self, ip: str) -> SharedInfra | None:
        addr = _address(ip)
        return None if addr is None else self._shared(addr)

    def _shared(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> SharedInfra | None:
        if not self._shared_ranges:
            return None
        _, ents = self._shared_index.match([addr])
        if ents.shape[0] == 0:
            return None
        i, r = self._shared_ranges[int(ents[0])]
        e = self.shared_infra[i]
        return SharedInfra(e.id, e.operator, e.kind, r.cidr, r.source)


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
