"""Mirror discovery as an operator runs it: blocked names in, ranked candidates with evidence out.

Theory of operation
-------------------
1. *Candidates*: names seen in traffic (a plain file of ``name [address...]`` lines, or sluice
   flow logs and captures: SNI, HTTP Host, DNS queries and answers), permutations of the seeds
   (``fuzz``), names from files (certificate SANs, CT exports, newly registered domains), and,
   with a fetcher, the redirects and links of the blocked site's page.
2. *Name*: the seeds go into a :class:`~sluice.mirrors.index.NameIndex`; every candidate hit is
   scored by the :class:`~sluice.mirrors.namescore.NameModel`.
3. *Function (infrastructure)*: a candidate that resolved to an address of the seed, or of a
   candidate already found by name, shares hosting with it; one whose server certificate (from
   the captures and flow logs) is the seed's, or names the seed, shares its keys
   (:mod:`sluice.mirrors.infra`); the same ASN (an operator's table) is recorded beside.
4. *Pages* (``fetcher``): the seed's and each candidate's page give design, content and function
   (:mod:`sluice.mirrors.traits`); the legal test says whether it is a copy.
5. *Proposals* (:mod:`sluice.mirrors.propose`): the good ones become review-queue proposals
   citing the blocked entry they copy, and every name of the operator's popularity list
   (:mod:`sluice.mirrors.popular`) is refused, with the reason, whatever its evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sluice.mirrors.brand import brand_stem
from sluice.mirrors.fetch import Fetcher
from sluice.mirrors.infra import AsnTable, CertIndex
from sluice.mirrors.namescore import NameModel, default_model
from sluice.mirrors.page import PageEvidence, favicon_hash, parse_page
from sluice.mirrors.permute import fuzz as fuzz_names
from sluice.mirrors.popular import PopularList
from sluice.mirrors.screenshot import page_phash
from sluice.mirrors.stems import name_parts
from sluice.mirrors.traits import (
    FUNCTION_HOLDS,
    NAME_HOLDS,
    Trait,
    Traits,
    content_trait,
    design_trait,
    function_trait,
    infrastructure_score,
    legal_test,
)
from sluice.registry.impact import Traffic, TrafficCert, read_traffic
from sluice.registry.model import Kind, basis_from_json
from sluice.registry.names import BadIndicator, canon_host, split_url
from sluice.registry.stores import RegistryStore

__all__ = [
    "Candidate",
    "decision_siblings",
    "find_candidates",
    "read_observed",
    "read_observed_traffic",
]

MAX_FETCH = 200
"""Candidates fetched at most per run."""


@dataclass(slots=True)
class Candidate:
    """A name that may be a copy of a blocked one."""

    seed: str
    """The blocked name it resembles."""
    domain: str
    """The candidate."""
    traits: Traits = field(default_factory=Traits)
    """Name, design, content, function."""
    sources: set[str] = field(default_factory=set)
    """Where the name came from: ``observed``, ``permutation``, ``file``, ``redirect``, ``link``."""
    how: str = ""
    """How the name resembles the seed (``substring``, ``abbreviation`` ...)."""
    addresses: tuple[str, ...] = ()
    """Addresses it was seen on."""
    fetched: bool = False
    """Its page was fetched and compared."""
    popular: str = ""
    """Why it is in the operator's popularity list ("" when it is not): never proposed."""

    @property
    def score(self) -> float:
        """0-1: mean of the four trait scores once pages were compared; else name and function."""
        t = self.traits
        if self.fetched:
            s = (t.name.score + t.design.score + t.content.score + t.function.score) / 4
            return max(s, 0.9) if legal_test(t)[0] else s
        return 1.0 - (1.0 - t.name.score) * (1.0 - 0.7 * t.function.score)

    @property
    def copy(self) -> bool:
        """The legal test holds."""
        return legal_test(self.traits)[0]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (one JSONL line of ``sluice mirrors candidates``)."""
        ok, why = legal_test(self.traits)
        return {
            "seed": self.seed,
            "domain": self.domain,
            "score": round(self.score, 4),
            "traits": self.traits.to_dict(),
            "traits_held": self.traits.held,
            "copy": ok,
            "legal_test": why,
            "how": self.how,
            "sources": sorted(self.sources),
            "addresses": list(self.addresses),
            "fetched": self.fetched,
            "popular": self.popular or None,
        }


def read_observed(paths: Sequence[str | Path]) -> dict[str, set[str]]:
    """Observed names and the addresses they resolved to.

    Args:
        paths: plain files (one name per line, optionally followed by addresses; ``#`` comments),
            or sluice flow logs / captures (told apart by their content).

    Returns:
        Canonical name -> addresses.

    Raises:
        RegistryError: an unreadable flow log or capture.
    """
    return read_observed_traffic(paths)[0]


def read_observed_traffic(paths: Sequence[str | Path]) -> tuple[dict[str, set[str]], Traffic]:
    """:func:`read_observed`, and the traffic itself for the collateral-impact preview: the flows
    of the flow logs and captures, and every name-address link (a plain file's too).

    Raises:
        RegistryError: an unreadable flow log or capture.
    """
    out: dict[str, set[str]] = {}
    traffic: list[Path] = []
    for p in map(Path, paths):
        head = p.read_bytes()[:4096]
        if _is_plain(head):
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                toks = line.split("#", 1)[0].replace(",", " ").split()
                if not toks:
                    continue
                name = _canon(toks[0])
                if name:
                    out.setdefault(name, set()).update(toks[1:])
        else:
            traffic.append(p)
    t = read_traffic(traffic) if traffic else Traffic()
    for addr, names in t.names_by_addr.items():
        for n in names:
            out.setdefault(n, set()).add(addr)
    for f in t.flows:
        for n in (f.name, f.query):
            if n:
                out.setdefault(n, set())
    known = {(a, n) for a, ns in t.names_by_addr.items() for n in ns}
    for n, addrs in sorted(out.items()):
        for a in sorted(addrs):
            if (a, n) not in known:
                t.link(a, n)
    return out, t


def _is_plain(head: bytes) -> bool:
    if head.startswith((b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b", b"PAR1")):
        return False
    text = head.decode("utf-8", "replace").lstrip()
    return not text.startswith(("{", "[")) and "," not in text.split("\n", 1)[0][:200].replace(", ", "")


def _canon(text: str) -> str:
    try:
        return canon_host(text.strip().removeprefix("*.").rstrip("."))
    except (BadIndicator, ValueError):
        return ""


def find_candidates(
    seeds: Sequence[str],
    observed: Mapping[str, Iterable[str]] | None = None,
    *,
    fuzz: bool = False,
    extra: Iterable[str] = (),
    model: NameModel | None = None,
    fetcher: Fetcher | None = None,
    seed_addresses: Mapping[str, Iterable[str]] | None = None,
    min_score: float = 0.0,
    max_fetch: int = MAX_FETCH,
    screenshots: int = 0,
    certs: Mapping[str, Iterable[TrafficCert]] | None = None,
    asn: AsnTable | None = None,
    popular: PopularList | None = None,
) -> list[Candidate]:
    """Ranked candidates for the seeds.

    Args:
        seeds: blocked host names.
        observed: names seen in traffic -> addresses (:func:`read_observed`).
        fuzz: add permutations of every seed.
        extra: more names (certificate SANs, CT exports ...).
        model: the name model (default: the shipped one).
        fetcher: fetch pages and compare them (None: name and infrastructure only).
        seed_addresses: addresses of the seeds (default: what ``observed`` says of them).
        min_score: drop candidates scoring less.
        max_fetch: fetch at most this many candidates (the best by name first).
        screenshots: with a fetcher, render the seed's page and the first this many fetched
            candidates per seed with headless Chromium and compare their perceptual hashes (the
            design trait); 0 for none (each rendering takes seconds).
        certs: server certificates seen in traffic, by the name asked for
            (:attr:`Traffic.certs <sluice.registry.impact.Traffic.certs>`): their SANs are
            candidates, and sharing the seed's certificate is infrastructure (function).
        asn: prefix -> ASN table: the same ASN as the seed is recorded in the function values.
        popular: the operator's popularity list: candidates in it are flagged (``popular``) and
            :func:`~sluice.mirrors.propose.proposals_for` refuses them.

    Returns:
        Candidates, best first.
    """
    model = model or default_model()
    seeds = [s for s in dict.fromkeys(_canon(s) for s in seeds) if s]
    obs = {n: set(a) for n, a in (observed or {}).items()}
    sources: dict[str, set[str]] = {n: {"observed"} for n in obs}
    for n in extra:
        cn = _canon(n)
        if cn:
            sources.setdefault(cn, set()).add("file")
    cert_map = {n: set(cs) for n, cs in (certs or {}).items()}
    for seen in cert_map.values():
        for cert in seen:
            for san in cert.san:
                cn = _canon(san)
                if cn:
                    sources.setdefault(cn, set()).add("certificate")
    if fuzz:
        for s in seeds:
            for n in fuzz_names(s):
                cn = _canon(n)
                if cn:
                    sources.setdefault(cn, set()).add("permutation")
    seed_set = set(seeds)
    seed_addr = {s: set((seed_addresses or {}).get(s, ())) | obs.get(s, set()) for s in seeds}
    by_stem: dict[str, list[str]] = {}
    for s in seeds:
        by_stem.setdefault(brand_stem(s), []).append(s)
    cands: dict[tuple[str, str], Candidate] = {}
    index = model.index(seeds)
    names = [n for n in sources if n not in seed_set]
    hits = index.query(names)
    for h, p in zip(hits, model.score_hits(hits).tolist(), strict=True):
        for seed in by_stem.get(h.stem, ()):
            c = cands.get((seed, h.observed))
            if c is None:
                c = cands[(seed, h.observed)] = Candidate(seed, h.observed, sources=set(sources[h.observed]))
            if p > c.traits.name.score:
                c.how = h.how
                c.traits.name = Trait(
                    p, p >= NAME_HOLDS,
                    {"how": h.how, "stem": h.stem, "matched": h.label, "residue": h.residue,
                     "edit_distance": h.distance, "registrable": name_parts(h.observed).registrable},
                )  # fmt: skip
    _infrastructure(cands, seeds, obs, seed_addr, sources)
    if cert_map:
        _certificates(cands, seeds, cert_map, sources)
    for c in cands.values():
        c.addresses = tuple(sorted(obs.get(c.domain, ())))
    if asn is not None:
        _asn(cands, seed_addr, asn)
    out = list(cands.values())
    if fetcher is not None:
        out = _with_pages(out, seeds, fetcher, max_fetch, screenshots)
    if popular is not None:
        for c in out:
            c.popular = popular.reason(c.domain)
    out = [c for c in out if c.score >= min_score]
    out.sort(key=lambda c: (-c.score, c.seed, c.domain))
    return out


def _infrastructure(
    cands: dict[tuple[str, str], Candidate],
    seeds: Sequence[str],
    obs: Mapping[str, set[str]],
    seed_addr: Mapping[str, set[str]],
    sources: Mapping[str, set[str]],
) -> None:
    """Shared addresses: with the seed, or with a candidate found by name (one hop)."""
    by_addr: dict[str, set[str]] = {}
    for n, addrs in obs.items():
        for a in addrs:
            by_addr.setdefault(a, set()).add(n)
    for s in seeds:
        strong = sorted(c.domain for c in cands.values() if c.seed == s and c.traits.name.holds)
        anchors: dict[str, list[str]] = {a: ["the blocked site"] for a in seed_addr.get(s, ())}
        for d in strong:  # every strong name on an address vouches for the others there
            for a in obs.get(d, ()):
                anchors.setdefault(a, []).append(d)
        for a, vias in anchors.items():
            names = by_addr.get(a, set())
            if len(names) > 50:
                continue  # shared hosting or a CDN: says nothing
            for n in sorted(names - {s}):
                others = [v for v in vias if v != n]
                if not others:
                    continue
                via = others[0]
                c = cands.get((s, n))
                if c is None:
                    c = cands[(s, n)] = Candidate(
                        s, n, sources=set(sources.get(n, {"observed"})), how="address"
                    )
                f = c.traits.function
                shared = [*map(str, _listed(f.values.get("shared_addresses"))), f"{a} (with {via})"]
                score = max(f.score, 0.6 if via == "the blocked site" else 0.45)
                c.traits.function = Trait(
                    score, score >= FUNCTION_HOLDS, {**f.values, "shared_addresses": sorted(set(shared))}
                )
        for c in cands.values():
            if c.seed == s:
                c.addresses = tuple(sorted(obs.get(c.domain, ())))


def _certificates(
    cands: dict[tuple[str, str], Candidate],
    seeds: Sequence[str],
    certs: Mapping[str, set[TrafficCert]],
    sources: Mapping[str, set[str]],
) -> None:
    """Certificates shared with the seed: same SAN set, same issuer and subject, or naming it.
    A name listed in the seed's own certificate is tied to it too."""
    index = CertIndex(certs)
    for s in seeds:
        mine = certs.get(s, set())
        links: dict[str, list[dict[str, object]]] = {
            n: [{**link.as_dict(), "seen_for": n} for link in ls] for n, ls in index.links(s).items()
        }
        for sc in sorted(mine - index.crowded, key=lambda c: c.san):
            for san in sc.san:
                n = _canon(san)
                if n and n != s and name_parts(n).registrable != name_parts(s).registrable:
                    links.setdefault(n, []).append(
                        {"match": "listed in the blocked site's certificate", "subject": sc.subject,
                         "issuer": sc.issuer, "san": list(sc.san), "seen_for": s}
                    )  # fmt: skip
        for n, ev in sorted(links.items()):
            c = cands.get((s, n))
            if c is None:
                c = cands[(s, n)] = Candidate(
                    s, n, sources=set(sources.get(n, {"certificate"})), how="certificate"
                )
            f = c.traits.function
            address = f.score if _listed(f.values.get("shared_addresses")) else 0.0
            score = max(f.score, infrastructure_score(address, True))
            c.traits.function = Trait(score, score >= FUNCTION_HOLDS, {**f.values, "shared_certificates": ev})


def _asn(cands: dict[tuple[str, str], Candidate], seed_addr: Mapping[str, set[str]], asn: AsnTable) -> None:
    """The seed's ASNs on the candidates that resolved into them (a value, never a holding trait)."""
    for c in cands.values():
        theirs = {asn.lookup(a) for a in seed_addr.get(c.seed, ())} - {None}
        shared = sorted(x for x in {asn.lookup(a) for a in c.addresses} & theirs if x is not None)
        if shared:
            c.traits.function.values["shared_asn"] = [f"AS{x}" for x in shared]


def _page(fetcher: Fetcher, url: str) -> tuple[PageEvidence | None, tuple[str, ...], str]:
    r = fetcher.fetch(url)
    if not r.ok:
        return None, r.redirects, r.error
    ev = parse_page(r.body, r.final_url or url)
    if ev.favicon_url:
        icon = fetcher.fetch(ev.favicon_url)
        if icon.ok and icon.status == 200 and icon.body:
            ev.favicon_mmh3 = favicon_hash(icon.body)
    return ev, r.redirects, r.address


def _shoot(ev: PageEvidence | None, url: str, address: str) -> str:
    """Fill ``ev.screenshot_phash``; returns the error ("" when none)."""
    if ev is None:
        return ""
    try:
        ev.screenshot_phash = page_phash(url, address)
    except OSError as exc:
        return str(exc)
    return ""


def _with_pages(
    cands: list[Candidate], seeds: Sequence[str], fetcher: Fetcher, max_fetch: int, screenshots: int
) -> list[Candidate]:
    by_key = {(c.seed, c.domain): c for c in cands}
    for s in seeds:
        seed_page, redirects, seed_addr = _page(fetcher, f"http://{s}/")
        if seed_page is None:
            continue
        seed_shot_error = _shoot(seed_page, seed_page.url, seed_addr) if screenshots else ""
        hosts = [urlsplit(u).hostname or "" for u in redirects]
        hosts += [urlsplit(u).hostname or "" for u in seed_page.links]
        for i, h in enumerate(hosts):
            d = _canon(h) if h else ""
            if not d or d == s or name_parts(d).registrable == name_parts(s).registrable:
                continue
            c = by_key.get((s, d)) or Candidate(s, d)
            by_key[(s, d)] = c
            c.sources.add("redirect" if i < len(redirects) else "link")
            if i < len(redirects):
                c.traits.function.values["redirect_from_blocked"] = True
        mine = sorted((c for c in by_key.values() if c.seed == s), key=lambda c: -c.score)[:max_fetch]
        pages = fetcher.fetch_many([f"http://{c.domain}/" for c in mine])
        shots = screenshots if seed_page.screenshot_phash is not None else 0
        for c, r in zip(mine, pages, strict=True):
            ev: PageEvidence | None = None
            shot_error = seed_shot_error
            if r.ok:
                ev = parse_page(r.body, r.final_url)
                if ev.favicon_url:
                    icon = fetcher.fetch(ev.favicon_url)
                    if icon.ok and icon.status == 200 and icon.body:
                        ev.favicon_mmh3 = favicon_hash(icon.body)
                if shots > 0:
                    shots -= 1
                    shot_error = _shoot(ev, ev.url or r.final_url, r.address)
            c.fetched = ev is not None
            f = c.traits.function
            redirect = bool(f.values.get("redirect_from_blocked"))
            shared = tuple(str(x) for x in _listed(f.values.get("shared_addresses")))
            certs = tuple(_listed(f.values.get("shared_certificates")))
            asns = tuple(_listed(f.values.get("shared_asn")))
            if ev is not None:
                c.traits.design = design_trait(seed_page, ev)
                c.traits.content = content_trait(seed_page, ev)
                if shot_error:
                    c.traits.design.values["screenshot_error"] = shot_error
            c.traits.function = function_trait(
                seed_page, ev, redirect_from_blocked=redirect, shared_addresses=shared,
                shared_certificates=certs, shared_asn=asns,
            )  # fmt: skip
    return list(by_key.values())


def _listed(v: object) -> list[object]:
    return list(v) if isinstance(v, (list, tuple)) else []


MAX_SIBLINGS = 5000
"""Names taken at most from one seed's decisions (a decision of a whole blocklist says nothing)."""


def decision_siblings(store: RegistryStore, seeds: Sequence[str], *, limit: int = MAX_SIBLINGS) -> list[str]:
    """Host names the register lists under the same decision as a seed: shared decision numbers
    are the register's own record of one operator's mirrors (``fonbet`` x 642 under one decision).
    Searching for copies of these too finds the mirrors whose names share nothing with the seed
    (``pm-001.info`` and ``parimatch-go1.com``).  Only decisions with a number count.

    Args:
        store: the register.
        seeds: blocked host names.
        limit: a seed whose decisions list more names than this gets none (not one operator's).

    Returns:
        The sibling host names (canonical, sorted), the seeds excluded.
    """
    decisions: dict[tuple[str, str], set[str]] = {}
    for s in seeds:
        for e in store.lookup(_canon(s) or s):
            for b in e.basis:
                if b.number:
                    decisions.setdefault((b.authority, b.number), set()).add(s)
    if not decisions:
        return []
    numbers = {n for _, n in decisions}
    found: dict[tuple[str, str], set[str]] = {d: set() for d in decisions}
    for _, kind, indicator, basis in store.rows():
        if kind == Kind.IP.value or kind == Kind.SUBNET.value or not any(n in basis for n in numbers):
            continue
        host = _row_host(kind, indicator)
        if not host:
            continue
        for b in basis_from_json(basis):
            d = (b.authority, b.number)
            if d in found:
                found[d].add(host)
    out: set[str] = set()
    for hosts in found.values():
        if len(hosts) <= limit:
            out |= hosts
    return sorted(out - set(seeds))


def _row_host(kind: str, indicator: str) -> str:
    if kind == Kind.URL.value:
        try:
            return _canon(split_url(indicator)[1])
        except (BadIndicator, ValueError):
            return ""
    if kind in (Kind.DOMAIN.value, Kind.DOMAIN_MASK.value):
        return _canon(indicator.removeprefix("*."))
    return ""
