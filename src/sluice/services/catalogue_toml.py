"""The service catalogue's TOML file: reading it and validating every entry.

:func:`load_catalogue` validates the whole file and refuses it with a
:class:`~sluice.errors.ConfigError` naming the entry and field at fault (``catalogue.service
[nordvpn].ranges[2].cidr``); it never lets a ``KeyError`` or ``TypeError`` escape. What it builds
is a :class:`~sluice.services.catalogue.Catalogue`, the records indexed for lookups.
"""

from __future__ import annotations

__all__ = [
    "CATALOGUE_VERSION",
    "DEFAULT_PATH",
    "SERVICE_CLASSES",
    "SHARED_KINDS",
    "TAXONOMY_FAMILIES",
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
from pathlib import Path

from sluice.errors import ConfigError
from sluice.registry.names import BadIndicator, canon_host
from sluice.services.catalogue import AsnRef, Catalogue, RangeRef, Service, SharedEntry, glob_key

CATALOGUE_VERSION = 1
"""The ``[catalogue] version`` this loader reads."""
DEFAULT_PATH = Path(__file__).with_name("catalogue.toml")
"""The catalogue shipped in the package."""
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
SHARED_KINDS = ("cdn", "cloud", "hosting")
"""Kinds of shared infrastructure."""

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_GLOB = re.compile(r"[a-z0-9_.*-]+")
_NUMERIC = re.compile(r"[0-9.]+")
_MAX_TEXT = 1000
_SERVICE_KEYS = frozenset(
    "id brand class family homepage protocols domains names cert_orgs name_source asns ranges note".split()  # noqa: SIM905
)
_SHARED_KEYS = frozenset(["id", "operator", "kind", "asns", "ranges", "note"])


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
    if glob_key(g).count(".") < 1:
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
