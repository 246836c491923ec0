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

:func:`load_catalogue` validates the whole file and refuses it with a
:class:`~sluice.errors.ConfigError` naming the entry and field at fault (``catalogue.service
[nordvpn].ranges[2].cidr``); it never lets a ``KeyError`` or ``TypeError`` escape.

Lookups are indexed. Names are canonicalised with :func:`sluice.registry.names.canon_host` and
looked up suffix by suffix (``a.b.example.com``, ``b.example.com``, ``example.com``, ``com``) in
a dict of domains, and of glob patterns keyed by their literal suffix (``derp*.tailscale.com`` is
tried only for names under ``tailscale.com``): a lookup costs one dict probe per label, whatever
the number of patterns. Addresses use the register's interval index
(:class:`sluice.registry.ipindex.IpIndex`), longest prefix first.
"""

from __future__ import annotations

__all__ = [
    "CATALOGUE_VERSION",
    "DEFAULT_PATH",
    "MATCH_KINDS",
    "AsnRef",
    "Catalogue",
    "RangeRef",
    "Service",
    "ServiceMatch",
    "SharedEntry",
    "SharedInfra",
    "build_catalogue",
    "default_catalogue",
    "load_catalogue",
    "loads_catalogue",
]

import functools
import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.errors import ConfigError
from sluice.registry.ipindex import IpIndex
from sluice.registry.names import BadIndicator, canon_host

CATALOGUE_VERSION = 1
"""The ``[catalogue] version`` this loader reads."""
DEFAULT_PATH = Path(__file__).with_name("catalogue.toml")
"""The catalogue shipped in the package."""
MATCH_KINDS = ("sni", "http", "dns", "cert", "address")
"""What a :class:`ServiceMatch` can have matched: a TLS/QUIC server name, an HTTP Host, a DNS name,
a certificate's names or organisation, or the server address."""

SERVICE_CLASSES = ("vpn", "proxy", "circumvention")
"""Classes a service can have (``TAXONOMY.md``)."""
TAXONOMY_FAMILIES: Mapping[str, frozenset[str]] = {
    "vpn": frozenset(
        "openvpn wireguard ipsec anyconnect softether tinc nebula pptp l2tp fortinet".split()  # noqa: SIM905
    ),
    "proxy": frozenset({"socks", "http-proxy", "relay"}),
    "circumvention": frozenset(
        "tor obfs4 meek snowflake shadowsocks vmess vless trojan psiphon ultrasurf".split()  # noqa: SIM905
    ),
    "tunnel": frozenset(
        "ssh dns-tunnel icmp-tunnel http-tunnel kcp stunnel gre vxlan ip-in-ip teredo".split()  # noqa: SIM905
    ),
}
"""Protocol family words of ``TAXONOMY.md`` per class (what ``protocols`` may name)."""
ADDRESS_CACHE = 1 << 16
"""Addresses whose lookups a catalogue remembers (per lookup kind)."""
SHARED_KINDS = ("cdn", "cloud", "hosting")
"""Kinds of shared infrastructure."""

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_GLOB = re.compile(r"[a-z0-9_.*-]+")
_NUMERIC = re.compile(r"[0-9.]+")
_CERT_ATTR = re.compile(r"(?:^|,)\s*(O|CN)\s*=\s*((?:\\,|[^,])+)")
_MAX_TEXT = 1000
_SERVICE_KEYS = frozenset(
    "id brand class family homepage protocols domains names cert_orgs name_source asns ranges note".split()  # noqa: SIM905
)
_SHARED_KEYS = frozenset(["id", "operator", "kind", "asns", "ranges", "note"])


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


def _glob_key(pattern: str) -> str:
    """The literal suffix of a glob: the labels after the last one holding a ``*``."""
    labels = pattern.split(".")
    last = max((i for i, lab in enumerate(labels) if "*" in lab), default=-1)
    return ".".join(labels[last + 1 :])


def _glob_re(pattern: str) -> re.Pattern[str]:
    return re.compile("[a-z0-9_.-]*".join(re.escape(part) for part in pattern.split("*")))


class Catalogue:
    """Services and shared infrastructure, indexed for name and address lookups.

    Build one with :func:`load_catalogue` (or :func:`build_catalogue`), which validate first.

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
                self._globs.setdefault(_glob_key(g), []).append((_glob_re(g), i, g))
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
        attrs = [(k, v.strip().replace("\\,", ",")) for k, v in _CERT_ATTR.findall(subject[:4096])]
        for name in [v for k, v in attrs if k == "CN"] + list(sans[:64]):
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


# --- loading and validation -----------------------------------------------------------------------


class _Reader:
    """Typed access to one table of the file; every failure is a ConfigError naming the field."""

    def __init__(self, table: object, where: str, keys: frozenset[str]) -> None:
        if not isinstance(table, dict):
            raise ConfigError(where, f"must be a table, not {type(table).__name__}")
        unknown = sorted(str(k) for k in table if k not in keys)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(keys))})")
        self.t: dict[str, object] = table
        self.where = where

    def text(self, key: str, *, required: bool = True) -> str:
        v = self.t.get(key)
        if v is None:
            if required:
                raise ConfigError(f"{self.where}.{key}", "missing")
            return ""
        if not isinstance(v, str):
            raise ConfigError(f"{self.where}.{key}", f"must be a string, not {type(v).__name__}")
        v = v.strip()
        if required and not v:
            raise ConfigError(f"{self.where}.{key}", "empty")
        if len(v) > _MAX_TEXT:
            raise ConfigError(f"{self.where}.{key}", f"longer than {_MAX_TEXT} characters")
        return v

    def items(self, key: str) -> list[object]:
        v = self.t.get(key, [])
        if not isinstance(v, list):
            raise ConfigError(f"{self.where}.{key}", f"must be a list, not {type(v).__name__}")
        return v

    def texts(self, key: str) -> list[tuple[str, str]]:
        """(option, text) of a list of strings."""
        out = []
        for n, v in enumerate(self.items(key)):
            opt = f"{self.where}.{key}[{n}]"
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(opt, f"must be a non-empty string, not {v!r:.60}")
            out.append((opt, v.strip()))
        return out


def _asns(r: _Reader) -> tuple[AsnRef, ...]:
    out = []
    for n, item in enumerate(r.items("asns")):
        e = _Reader(item, f"{r.where}.asns[{n}]", frozenset({"asn", "source"}))
        asn = e.t.get("asn")
        if isinstance(asn, bool) or not isinstance(asn, int) or not 0 < asn < 1 << 32:
            raise ConfigError(f"{e.where}.asn", f"{asn!r:.60} is not an AS number (1 to 4294967295)")
        out.append(AsnRef(asn, e.text("source")))
    return tuple(out)


def _ranges(r: _Reader) -> tuple[RangeRef, ...]:
    out = []
    for n, item in enumerate(r.items("ranges")):
        e = _Reader(item, f"{r.where}.ranges[{n}]", frozenset({"cidr", "source"}))
        cidr = e.text("cidr")
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise ConfigError(f"{e.where}.cidr", f"{cidr!r:.60} is not a network: {exc}") from None
        out.append(RangeRef(str(net), e.text("source")))
    return tuple(out)


def _domain(opt: str, text: str) -> str:
    try:
        d = canon_host(text)
    except BadIndicator as exc:
        raise ConfigError(opt, f"{text!r:.60} is not a domain ({exc.reason})") from None
    if d.count(".") < 1 or _NUMERIC.fullmatch(d):
        raise ConfigError(opt, f"{text!r:.60} is not a domain of two labels or more")
    return d


def _glob(opt: str, text: str) -> str:
    g = text.lower()
    if _GLOB.fullmatch(g) is None:
        raise ConfigError(opt, f"{text!r:.60}: a pattern holds letters, digits, '-', '_', '.' and '*' only")
    if _glob_key(g).count(".") < 1:
        raise ConfigError(opt, f"{text!r:.60} must end in a literal domain of two labels or more")
    try:
        canon_host(g.replace("*", "x"))
    except BadIndicator as exc:
        raise ConfigError(opt, f"{text!r:.60} is not a name pattern ({exc.reason})") from None
    return g


def _service(item: object, n: int) -> Service:
    where = f"catalogue.service[#{n}]"
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        where = f"catalogue.service[{item['id'][:40]}]"
    r = _Reader(item, where, _SERVICE_KEYS)
    sid = r.text("id")
    if _ID.fullmatch(sid) is None:
        raise ConfigError(f"{where}.id", f"{sid!r:.60}: lower-case letters, digits and '-' only")
    label = r.text("class")
    if label not in SERVICE_CLASSES:
        raise ConfigError(f"{where}.class", f"{label!r:.60} is not one of {', '.join(SERVICE_CLASSES)}")
    family = r.text("family")
    allowed = {f"commercial:{sid}"} if label == "vpn" else {*TAXONOMY_FAMILIES[label], sid}
    if label == "proxy":
        allowed.add(f"commercial:{sid}")
    if family not in allowed:
        raise ConfigError(
            f"{where}.family",
            f"{family!r:.60} is not valid for class {label} (expected: {', '.join(sorted(allowed)[:6])})",
        )
    homepage = r.text("homepage")
    if not homepage.startswith(("https://", "http://")):
        raise ConfigError(f"{where}.homepage", f"{homepage!r:.60} is not an http(s) URL")
    known = set().union(*TAXONOMY_FAMILIES.values())
    protocols = []
    for opt, p in r.texts("protocols"):
        if p not in known:
            raise ConfigError(opt, f"{p!r:.60} is not a taxonomy family (TAXONOMY.md)")
        protocols.append(p)
    domains = tuple(_domain(opt, d) for opt, d in r.texts("domains"))
    names = tuple(_glob(opt, g) for opt, g in r.texts("names"))
    orgs = tuple(o for _, o in r.texts("cert_orgs"))
    name_source = r.text("name_source", required=bool(domains or names or orgs))
    return Service(
        sid, r.text("brand"), label, family, homepage, tuple(protocols), domains, names, orgs,
        name_source, _asns(r), _ranges(r), r.text("note", required=False),
    )  # fmt: skip


def _shared_entry(item: object, n: int) -> SharedEntry:
    where = f"catalogue.shared[#{n}]"
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        where = f"catalogue.shared[{item['id'][:40]}]"
    r = _Reader(item, where, _SHARED_KEYS)
    sid = r.text("id")
    if _ID.fullmatch(sid) is None:
        raise ConfigError(f"{where}.id", f"{sid!r:.60}: lower-case letters, digits and '-' only")
    kind = r.text("kind")
    if kind not in SHARED_KINDS:
        raise ConfigError(f"{where}.kind", f"{kind!r:.60} is not one of {', '.join(SHARED_KINDS)}")
    return SharedEntry(sid, r.text("operator"), kind, _asns(r), _ranges(r), r.text("note", required=False))


def _unique(entries: Sequence[Service | SharedEntry]) -> None:
    seen: dict[str, str] = {}
    owner: dict[str, str] = {}
    for e in entries:
        section = "service" if isinstance(e, Service) else "shared"
        if e.id in seen:
            raise ConfigError(f"catalogue.{section}[{e.id}].id", f"duplicate id (also a {seen[e.id]} entry)")
        seen[e.id] = section
        if isinstance(e, Service):
            for d in (*e.domains, *e.names):
                if owner.setdefault(d, e.id) != e.id:
                    raise ConfigError(f"catalogue.service[{e.id}].domains", f"{d} is also {owner[d]}'s")


def build_catalogue(data: Mapping[str, object], origin: str = "<data>") -> Catalogue:
    """A validated catalogue from a parsed document.

    Args:
        data: the parsed TOML document.
        origin: where it came from (for messages).

    Returns:
        The catalogue.

    Raises:
        ConfigError: the first problem, with the entry and field (``catalogue.service[x].ranges[0].cidr``).
    """
    top = _Reader(dict(data), "catalogue", frozenset({"catalogue", "service", "shared"}))
    meta = _Reader(top.t.get("catalogue"), "catalogue.catalogue", frozenset({"version", "reviewed"}))
    version = meta.t.get("version")
    if version != CATALOGUE_VERSION or isinstance(version, bool):
        raise ConfigError(
            "catalogue.catalogue.version", f"{version!r:.40}: this sluice reads version {CATALOGUE_VERSION}"
        )
    services = [_service(item, n) for n, item in enumerate(top.items("service"))]
    shared = [_shared_entry(item, n) for n, item in enumerate(top.items("shared"))]
    _unique([*services, *shared])
    return Catalogue(services, shared, origin=origin, reviewed=meta.text("reviewed", required=False))


def loads_catalogue(text: str, origin: str = "<string>") -> Catalogue:
    """A validated catalogue from TOML text.

    Raises:
        ConfigError: not TOML, or not a valid catalogue (entry and field named).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("catalogue", f"{origin}: not TOML: {exc}") from None
    return build_catalogue(data, origin)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and validate a catalogue file.

    Args:
        path: a TOML file; None for the catalogue shipped in the package.

    Returns:
        The catalogue, indexed for lookups.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or is not a valid catalogue (the
            message names the entry and field).
    """
    p = DEFAULT_PATH if path is None else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("catalogue.path", f"{p}: {exc}") from None
    return loads_catalogue(text, str(p))


@functools.cache
def default_catalogue() -> Catalogue:
    """The packaged catalogue, loaded once per process."""
    return load_catalogue()
