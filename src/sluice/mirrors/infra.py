"""Shared infrastructure beyond addresses: server certificates seen in traffic and the ASN.

Certificates come from flow logs and captures (:class:`~sluice.registry.impact.TrafficCert`: the
subject, issuer and subject alternative names a TLS <= 1.2 server sends in clear).  A candidate
shares the blocked site's certificate when the two carry the *same SAN set*, or the *same issuer
and subject*; a certificate that *names the blocked site* among its SANs ties the name it was
served for to it as well.  A certificate seen for many unrelated registrable domains (a CDN's
shared certificate) says nothing, like a crowded address.

ASNs come from an operator-supplied table (:class:`AsnTable`, pyasn's "ipasn" format:
``prefix<TAB>asn`` lines); sluice ships none (no offline source with a fitting licence, see
``docs/mirrors-notes.md``).  The same ASN is weak evidence (one hoster holds millions of sites):
it is recorded as a value of the function trait and never makes it hold alone.
"""

from __future__ import annotations

__all__ = [
    "MAX_CERT_DOMAINS",
    "AsnTable",
    "CertIndex",
    "CertLink",
    "cert_links",
    "crowded_certs",
    "load_asn_table",
]

import bisect
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sluice.errors import ConfigError
from sluice.registry.impact import TrafficCert
from sluice.services.discover import registrable

MAX_CERT_DOMAINS = 50
"""A certificate seen with (or naming) more registrable domains than this is shared hosting."""


@dataclass(frozen=True, slots=True)
class CertLink:
    """Why a candidate's certificate ties it to the blocked site."""

    match: str
    """``same SAN set``, ``same issuer and subject`` or ``names the blocked site``."""
    cert: TrafficCert
    """The candidate's certificate."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready evidence."""
        c = self.cert
        return {"match": self.match, "subject": c.subject, "issuer": c.issuer, "san": list(c.san)}


def _covers(pattern: str, name: str) -> bool:
    p = pattern.lower().rstrip(".")
    if p.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == p[2:]
    return p == name


def crowded_certs(certs: Mapping[str, Iterable[TrafficCert]]) -> set[TrafficCert]:
    """Certificates seen with, or naming, more than :data:`MAX_CERT_DOMAINS` registrable domains."""
    domains: dict[TrafficCert, set[str]] = {}
    for name, cs in certs.items():
        for c in cs:
            d = domains.get(c)
            if d is None:
                d = domains[c] = {registrable(s.removeprefix("*.")) for s in c.san}
            d.add(registrable(name))
    return {c for c, d in domains.items() if len(d - {""}) > MAX_CERT_DOMAINS}


def cert_links(
    seed: str, seed_certs: Iterable[TrafficCert], certs: Iterable[TrafficCert], crowded: set[TrafficCert]
) -> list[CertLink]:
    """How a candidate's certificates (``certs``) tie it to the blocked ``seed``.

    Args:
        seed: the blocked name.
        seed_certs: certificates seen for the seed.
        certs: certificates seen for the candidate.
        crowded: certificates that say nothing (:func:`crowded_certs`).

    Returns:
        One link per tying certificate (strongest match first), none when nothing ties.
    """
    mine = [s for s in seed_certs if s not in crowded]
    out: list[CertLink] = []
    for c in sorted(set(certs) - crowded, key=lambda c: (c.subject, c.issuer, c.san)):
        if any(c.san and c.san == s.san for s in mine):
            out.append(CertLink("same SAN set", c))
        elif any(c.subject and c.subject == s.subject and c.issuer == s.issuer for s in mine):
            out.append(CertLink("same issuer and subject", c))
        elif any(_covers(p, seed) for p in c.san):
            out.append(CertLink("names the blocked site", c))
    return out


class CertIndex:
    """The certificates seen in traffic, indexed so that each seed's links cost a few look-ups
    (not a pass over every certificate): the same answers as :func:`cert_links` per name.

    Args:
        certs: name asked for -> certificates seen with it.
    """

    def __init__(self, certs: Mapping[str, Iterable[TrafficCert]]) -> None:
        self.certs = {n: set(cs) for n, cs in certs.items()}
        self.crowded = crowded_certs(self.certs)
        self._by_san: dict[tuple[str, ...], set[tuple[str, TrafficCert]]] = {}
        self._by_subject: dict[tuple[str, str], set[tuple[str, TrafficCert]]] = {}
        self._by_covered: dict[str, set[tuple[str, TrafficCert]]] = {}
        for n, cs in self.certs.items():
            for c in cs - self.crowded:
                if c.san:
                    self._by_san.setdefault(c.san, set()).add((n, c))
                if c.subject:
                    self._by_subject.setdefault((c.subject, c.issuer), set()).add((n, c))
                for p in c.san:  # "*.x.y" covers "a.x.y": keyed by what it covers, wildcard as "*.x.y"
                    self._by_covered.setdefault(p.lower().rstrip("."), set()).add((n, c))

    def links(self, seed: str) -> dict[str, list[CertLink]]:
        """Name -> its certificates' links to ``seed`` (the seed itself excluded)."""
        mine = [c for c in self.certs.get(seed, ()) if c not in self.crowded]
        found: set[tuple[str, TrafficCert]] = set()
        for s in mine:
            found |= self._by_san.get(s.san, set()) if s.san else set()
            found |= self._by_subject.get((s.subject, s.issuer), set()) if s.subject else set()
        head, _, rest = seed.partition(".")
        found |= self._by_covered.get(seed, set())
        found |= self._by_covered.get(f"*.{rest}", set()) if head and rest else set()
        by_name: dict[str, set[TrafficCert]] = {}
        for n, c in found:
            if n != seed:
                by_name.setdefault(n, set()).add(c)
        out = {}
        for n, cs in sorted(by_name.items()):
            got = cert_links(seed, mine, cs, self.crowded)
            if got:
                out[n] = got
        return out


@dataclass(frozen=True, slots=True)
class AsnTable:
    """IP prefix -> origin ASN, longest prefix first (pyasn's "ipasn" text format)."""

    by_len: dict[tuple[int, int], tuple[list[int], list[int]]] = field(default_factory=dict)
    """(version, prefix length) -> (sorted network integers, their ASNs)."""
    source: str = ""

    def lookup(self, addr: str) -> int | None:
        """The origin ASN of ``addr`` (longest matching prefix), None when unknown or no address."""
        try:
            ip = ipaddress.ip_address(addr.strip().strip("[]"))
        except ValueError:
            return None
        bits = ip.max_prefixlen
        value = int(ip)
        for (version, plen), (nets, asns) in sorted(self.by_len.items(), key=lambda kv: -kv[0][1]):
            if version != ip.version:
                continue
            key = value >> (bits - plen) << (bits - plen)
            i = bisect.bisect_left(nets, key)
            if i < len(nets) and nets[i] == key:
                return asns[i]
        return None


def load_asn_table(path: str | Path) -> AsnTable:
    """Read ``prefix<TAB>asn`` lines (``;``/``#`` comments; ``AS`` prefix on the number allowed).

    Raises:
        OSError: unreadable file.
        ConfigError: a malformed line (its number named), or no prefix at all.
    """
    rows: dict[tuple[int, int], dict[int, int]] = {}
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text or text.startswith(";"):
                continue
            parts = text.split()
            try:
                if len(parts) != 2:
                    raise ValueError("expected 'prefix<TAB>asn'")
                net = ipaddress.ip_network(parts[0], strict=False)
                asn = int(parts[1].upper().removeprefix("AS"))
            except ValueError as exc:
                raise ConfigError("--asn-db", f"{path} line {n}: {exc}") from exc
            rows.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = asn
    if not rows:
        raise ConfigError("--asn-db", f"{path}: no prefixes")
    by_len = {k: (sorted(v), [v[x] for x in sorted(v)]) for k, v in rows.items()}
    return AsnTable(by_len, str(path))
