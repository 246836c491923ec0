"""Exports of the register for the tools that enforce it.

Each target gets what it can express; what it cannot is counted in ``skipped`` (never silently
widened into something broader):

========  ===========================================  =======================================
target    domains / masks                              addresses                  URLs
========  ===========================================  =======================================
nft       skipped                                      interval sets v4 + v6, rule  skipped
rpz       ``d CNAME .`` / ``d`` + ``*.d CNAME .``      ``rpz-ip`` triggers          skipped
unbound   ``local-data`` A/AAAA / ``always_nxdomain``  skipped                      skipped
dnsmasq   ``host-record`` / ``address=/d/``            skipped                      skipped
squid     ``dstdomain d`` / ``.d``                     ``dst`` ACL                  ``url_regex``
hosts     ``0.0.0.0 d`` (masks: the name only)         skipped                      skipped
========  ===========================================  =======================================

Wallet entries (``chain:address``) are not network indicators: every target leaves them out,
counted as ``wallet.not_network_indicator`` (they are matched in content, see
:meth:`~sluice.registry.matcher.Matcher.find_wallets`).

Names below a mask are dropped (the mask covers them, and unbound, squid and dnsmasq would
otherwise either warn or let the more specific name *un*-block its subtree); overlapping networks
are merged (``nft`` interval sets refuse overlaps).  Every output is checked by the real tool in
the tests: ``nft -c -f``, ``named-checkzone``, ``unbound-checkconf``, ``dnsmasq --test``,
``squid -k parse``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sluice.registry.model import Entry, Kind, RegistryError

__all__ = ["EXPORT_TARGETS", "ExportResult", "export_entries"]

EXPORT_TARGETS = ("nft", "rpz", "unbound", "dnsmasq", "squid", "hosts")
"""Formats :func:`export_entries` writes."""

SQUID_MAX_LINE = 2000
"""Squid reads configuration lines of at most 2048 bytes."""
_ERE_SPECIAL = re.compile(r"([.\[\]()*+?{}|^$\\])")

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class ExportResult:
    """An export's text and what went into it."""

    target: str
    """The format written."""
    text: str = ""
    """The file's content."""
    written: dict[str, int] = field(default_factory=dict)
    """Entries written, by kind."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Entries left out, by why (``url.not_expressible``, ``domain.covered_by_mask`` ...)."""


class _Sets:
    """The register reduced to what exports need, deduplicated over sources."""

    def __init__(self, entries: Iterable[Entry], res: ExportResult) -> None:
        self.masks: set[str] = set()
        self.domains: set[str] = set()
        self.urls: set[str] = set()
        nets: list[Net] = []
        wallets = 0
        for e in entries:
            if e.kind is Kind.DOMAIN_MASK:
                self.masks.add(e.indicator[2:])
            elif e.kind is Kind.DOMAIN:
                self.domains.add(e.indicator)
            elif e.kind is Kind.URL:
                self.urls.add(e.indicator)
            elif e.kind is Kind.WALLET:
                wallets += 1
            elif e.kind in (Kind.IP, Kind.SUBNET):
                nets.append(ipaddress.ip_network(e.indicator))
            else:  # a kind this module does not know is never written as something else
                _count(res.skipped, f"{e.kind.value}.not_expressible")
        _count(res.skipped, "wallet.not_network_indicator", wallets)
        self.masks = {m for m in self.masks if not self._under_mask(m, proper=True)}
        covered = {d for d in self.domains if self._under_mask(d, proper=False)}
        if covered:
            _count(res.skipped, "domain.covered_by_mask", len(covered))
        self.domains -= covered
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
        self.v4: list[Net] = list(ipaddress.collapse_addresses(v4))
        self.v6: list[Net] = list(ipaddress.collapse_addresses(v6))

    def _under_mask(self, name: str, *, proper: bool) -> bool:
        if not proper and name in self.masks:
            return True
        rest = name
        while "." in rest:
            rest = rest.split(".", 1)[1]
            if rest in self.masks:
                return True
        return False


def _count(d: dict[str, int], key: str, n: int = 1) -> None:
    if n:
        d[key] = d.get(key, 0) + n


def export_entries(
    entries: Iterable[Entry],
    target: str,
    *,
    origin: str = "rpz.sluice",
    table: str = "sluice_registry",
    now: datetime | None = None,
) -> ExportResult:
    """Write the register for one enforcing tool.

    Args:
        entries: the entries to export (any sources; duplicates are merged).
        target: one of :data:`EXPORT_TARGETS`.
        origin: the RPZ zone's origin.
        table: the nftables table name.
        now: time stamp for headers and the RPZ serial (default: the clock, UTC).

    Returns:
        The text and counts.

    Raises:
        RegistryError: ``registry.bad_export_target``.
    """
    if target not in EXPORT_TARGETS:
        raise RegistryError("registry.bad_export_target", f"unknown export target {target!r}")
    res = ExportResult(target)
    sets = _Sets(entries, res)
    ts = now or datetime.now(UTC)
    head = f"sluice register export ({target}), {ts.isoformat(timespec='seconds')}"
    lines = _WRITERS[target](sets, res, head, origin=origin, table=table, ts=ts)
    res.text = "\n".join(lines) + "\n"
    return res


def _skip_names(sets: _Sets, res: ExportResult) -> None:
    _count(res.skipped, "domain.not_expressible", len(sets.domains))
    _count(res.skipped, "domain-mask.not_expressible", len(sets.masks))


def _skip_urls_ips(sets: _Sets, res: ExportResult, ips: bool = True) -> None:
    _count(res.skipped, "url.not_expressible", len(sets.urls))
    if ips:
        _count(res.skipped, "ip.not_expressible", len(sets.v4) + len(sets.v6))


def _nft(sets: _Sets, res: ExportResult, head: str, **kw: object) -> list[str]:
    table = str(kw["table"])
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", table):
        raise RegistryError("registry.bad_export_option", f"bad nftables table name {table!r}")
    _skip_names(sets, res)
    _skip_urls_ips(sets, res, ips=False)
    out = [f"# {head}", f"table inet {table} {{}}", f"delete table inet {table}", f"table inet {table} {{"]
    for fam, nets in (("ipv4_addr", sets.v4), ("ipv6_addr", sets.v6)):
        name = "registry_v4" if fam == "ipv4_addr" else "registry_v6"
        out.append(f"\tset {name} {{")
        out.append(f"\t\ttype {fam}")
        out.append("\t\tflags interval")
        if nets:
            out.append("\t\telements = {")
            elems = [
                n.with_prefixlen if n.prefixlen < n.max_prefixlen else str(n.network_address) for n in nets
            ]
            for i in range(0, len(elems), 8):
                out.append("\t\t\t" + ", ".join(elems[i : i + 8]) + ",")
            out.append("\t\t}")
        out.append("\t}")
    _count(res.written, "ip/subnet (merged v4)", len(sets.v4))
    _count(res.written, "ip/subnet (merged v6)", len(sets.v6))
    out += [
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        '\t\tip daddr @registry_v4 counter drop comment "sluice register"',
        '\t\tip6 daddr @registry_v6 counter drop comment "sluice register"',
        "\t}",
        "}",
    ]
    return out


def _rpz_ip(net: Net) -> str:
    if net.version == 4:
        return f"{net.prefixlen}." + ".".join(reversed(str(net.network_address).split(".")))
    groups = net.network_address.exploded.split(":")
    words = [g.lstrip("0") or "0" for g in groups]
    # one run of zero words (the longest, as RFC 5952) becomes "zz"
    best, best_len, i = -1, 1, 0
    while i < 8:
        if words[i] == "0":
            j = i
            while j < 8 and words[j] == "0":
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    if best >= 0:
        words = [*words[:best], "zz", *words[best + best_len :]]
    return f"{net.prefixlen}." + ".".join(reversed(words))


def _rpz(sets: _Sets, res: ExportResult, head: str, **kw: object) -> list[str]:
    origin = str(kw["origin"]).rstrip(".")
    ts = kw["ts"]
    assert isinstance(ts, datetime)
    serial = int(ts.timestamp())
    out = [
        f"; {head}",
        f"$ORIGIN {origin}.",
        "$TTL 300",
        f"@\tIN\tSOA\tlocalhost. hostmaster.localhost. ({serial} 3600 600 604800 300)",
        "\tIN\tNS\tlocalhost.",
    ]
    room = 253 - len(origin) - 1
    for d in sorted(sets.domains):
        if len(d) > room:
            _count(res.skipped, "domain.too_long_for_zone")
            continue
        out.append(f"{d}\tCNAME\t.")
        _count(res.written, "domain")
    for m in sorted(sets.masks):
        if len(m) + 2 > room:
            _count(res.skipped, "domain-mask.too_long_for_zone")
            continue
        out += [f"{m}\tCNAME\t.", f"*.{m}\tCNAME\t."]
        _count(res.written, "domain-mask")
    for net in (*sets.v4, *sets.v6):
        out.append(f"{_rpz_ip(net)}.rpz-ip\tCNAME\t.")
        _count(res.written, "ip/subnet (merged)")
    _skip_urls_ips(sets, res, ips=False)
    return out


def _unbound(sets: _Sets, res: ExportResult, head: str, **kw: object) -> list[str]:
    out = [f"# {head}", "server:"]
    for m in sorted(sets.masks):
        out.append(f'\tlocal-zone: "{m}." always_nxdomain')
        _count(res.written, "domain-mask")
    for d in sorted(sets.domains):
        out += [f'\tlocal-data: "{d}. A 0.0.0.0"', f'\tlocal-data: "{d}. AAAA ::"']
        _count(res.written, "domain")
    _skip_urls_ips(sets, res)
    return out


def _dnsmasq(sets: _Sets, res: ExportResult, head: str, **kw: object) -> list[str]:
    out = [f"# {head}"]
    for m in sorted(sets.masks):
        out.append(f"address=/{m}/")
        _count(res.written, "domain-mask")
    for d in sorted(sets.domains):
        out.append(f"host-record={d},0.0.0.0,::")
        _count(res.written, "domain")
    _skip_urls_ips(sets, res)
    return out


def _squid(sets: _Sets, res: ExportResult, head: str, **kw: object) -> list[str]:
    out = [f"# {head}"]
    acls: list[str] = []
    names = [f".{m}" for m in sorted(sets.masks)] + sorted(sets.domains)
    for n in names:
        out.append(f"acl sluice_domains dstdomain {n}")
    _count(res.written, "domain-mask", len(sets.masks))
    _count(res.written, "domain", len(sets.domains))
    if names:
        acls.append("sluice_domains")
    for net in (*sets.v4, *sets.v6):
        out.append(f"acl sluice_dst dst {net.with_prefixlen}")
        _count(res.written, "ip/subnet (merged)")
    if sets.v4 or sets.v6:
        acls.append("sluice_dst")
    n_urls = 0
    for u in sorted(sets.urls):
        line = "acl sluice_urls url_regex ^" + _ERE_SPECIAL.sub(r"\\\1", u) + "$"
        if len(line) > SQUID_MAX_LINE:
            _count(res.skipped, "url.too_long_for_squid")
            continue
        out.append(line)
        n_urls += 1
    _count(res.written, "url", n_urls)
    if n_urls:
        acls.append("sluice_urls")
    out += [f"http_access deny {a}" for a in acls]
    return out


def _hosts(sets: _Sets, res: ExportResult, head: str, **kw: object) -> list[str]:
    out = [f"# {head}", "# masks (*.d) are written as d alone: hosts files cannot match subdomains"]
    for d in sorted(sets.domains | sets.masks):
        out.append(f"0.0.0.0 {d}")
    _count(res.written, "domain", len(sets.domains))
    _count(res.written, "domain-mask (name only)", len(sets.masks))
    _skip_urls_ips(sets, res)
    return out


_WRITERS = {
    "nft": _nft,
    "rpz": _rpz,
    "unbound": _unbound,
    "dnsmasq": _dnsmasq,
    "squid": _squid,
    "hosts": _hosts,
}
