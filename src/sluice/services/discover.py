"""Service discovery: from per-flow verdicts to server endpoints, grouped into candidate services.

Input is what ``sluice analyze`` judged (captures are judged here; its ``jsonl``/``parquet`` output
is read as is). One pass folds the flows into **endpoints** (server address, port, transport):
flows, findings, distinct clients, protocol families, the names seen on it (SNI, HTTP host, and
the DNS answers of the same traffic: the flow log is passive DNS), its certificate, first and last
seen. Endpoints with enough findings are **candidates**; candidates are linked into one service
when they share

- a certificate (subject, issuer and names: one provider's servers reuse one),
- a registrable domain among their names (``nl1.acme-vpn.test`` and ``de2.acme-vpn.test``),
- a catalogue service the verdicts named (``vpn/commercial:protonvpn``),
- a network (/24, /48) *and* a protocol family (a provider's WireGuard servers side by side).

Every link is kept as evidence, in words, so a reviewer sees why two endpoints are one service.
Nothing here writes the register: :func:`proposals` turns a group into the entries it would
propose, and the review queue decides.
"""

from __future__ import annotations

__all__ = [
    "Candidate",
    "DiscoveryInput",
    "Endpoint",
    "discover",
    "pair_agreement",
    "proposals_for",
    "read_flows",
]

import ipaddress
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.detect.verdict import DETECTABLE_CLASSES
from sluice.errors import ConfigError
from sluice.registry.names import public_suffixes

if TYPE_CHECKING:
    from sluice.registry.model import Proposal

COLUMNS = (
    "server",
    "server_port",
    "proto",
    "client",
    "class",
    "family",
    "confidence",
    "server_name",
    "sni",
    "http_host",
    "cert_subject",
    "cert_issuer",
    "cert_san",
    "dns_query",
    "dns_answers",
    "first_ts",
    "last_ts",
    "evidence",
)
"""The columns of an analysis row that discovery reads."""
_TRANSPORT = {6: "tcp", 17: "udp"}
MIN_FINDINGS = 2
"""Finding flows a candidate service needs (over all its endpoints): one flow is a guess."""
MIN_SHARE = 0.5
"""Share of an endpoint's flows that must be findings for it to be a candidate."""
PULL_LIMIT = 10
"""Endpoints without findings one certificate or domain may join to a service (beyond its size)."""


@dataclass
class Endpoint:
    """One server endpoint and what the traffic to it showed."""

    server: str
    port: int
    transport: str
    """``tcp``, ``udp`` or the IP protocol number."""
    flows: int = 0
    findings: int = 0
    clients: set[str] = field(default_factory=set)
    families: Counter[str] = field(default_factory=Counter)
    """``class/family`` of the finding flows."""
    names: set[str] = field(default_factory=set)
    """Names seen on it: SNI, HTTP host, its certificate's names, and DNS answers that pointed at
    its address."""
    certs: set[str] = field(default_factory=set)
    """Certificate identities (subject | issuer | names) its TLS flows showed."""
    evidence: Counter[str] = field(default_factory=Counter)
    """Evidence codes of its finding flows."""
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    linked_only: bool = False
    """Joined to a service by its certificate or names alone, without (enough) findings."""

    @property
    def key(self) -> str:
        """``address:port/transport`` (``[v6]:port/udp``)."""
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}/{self.transport}"

    @property
    def share(self) -> float:
        """Fraction of its flows that are findings."""
        return self.findings / self.flows if self.flows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "endpoint": self.key,
            "flows": self.flows,
            "findings": self.findings,
            "clients": len(self.clients),
            "families": dict(self.families.most_common()),
            "names": sorted(self.names),
            "certificates": sorted(self.certs),
            "evidence": dict(self.evidence.most_common(5)),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "linked_only": self.linked_only,
        }


@dataclass
class Candidate:
    """Endpoints that look like one service, with the links that joined them."""

    endpoints: list[Endpoint]
    links: list[str]
    """Why endpoints were joined, one sentence each (empty for a single endpoint)."""

    @property
    def findings(self) -> int:
        return sum(e.findings for e in self.endpoints)

    @property
    def flows(self) -> int:
        return sum(e.flows for e in self.endpoints)

    @property
    def clients(self) -> int:
        return len(set().union(*(e.clients for e in self.endpoints)))

    @property
    def families(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for e in self.endpoints:
            out.update(e.families)
        return out

    @property
    def domains(self) -> list[str]:
        """Registrable domains of the names seen on its endpoints, most endpoints first."""
        seen: Counter[str] = Counter()
        for e in self.endpoints:
            seen.update({d for n in e.names if (d := registrable(n))})
        return [d for d, _ in seen.most_common()]

    @property
    def service(self) -> str:
        """The catalogue service its verdicts named (``protonvpn``), else ``""``."""
        named = Counter(f.split("commercial:", 1)[1] for f in self.families.elements() if "commercial:" in f)
        return named.most_common(1)[0][0] if named else ""

    @property
    def score(self) -> float:
        """Ranking: distinct clients and endpoints count more than flows."""
        return self.findings + 5.0 * self.clients + 3.0 * len(self.endpoints)

    def label(self) -> str:
        """A name for people: the catalogue service, the first domain, or the first endpoint."""
        return self.service or (self.domains[0] if self.domains else self.endpoints[0].key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "service": self.label(),
            "catalogue": self.service,
            "score": round(self.score, 1),
            "endpoints": [e.to_dict() for e in self.endpoints],
            "domains": self.domains,
            "families": dict(self.families.most_common()),
            "flows": self.flows,
            "findings": self.findings,
            "clients": self.clients,
            "first_seen": min(e.first_seen for e in self.endpoints),
            "last_seen": max(e.last_seen for e in self.endpoints),
            "links": self.links,
        }


def registrable(name: str) -> str:
    """The registrable domain of a host name (public suffix list); ``""`` for an address or a
    bare suffix."""
    n = name.strip().rstrip(".").lower()
    if not n or "." not in n:
        return ""
    try:
        ipaddress.ip_address(n)
        return ""
    except ValueError:
        pass
    return str(public_suffixes().privatesuffix(n) or "")


def _network(addr: str) -> str:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return ""
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


@dataclass
class DiscoveryInput:
    """Analysis rows as columns (see :data:`COLUMNS`); :func:`read_flows` makes one."""

    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.columns["server"])


def _listish(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        if v.startswith("["):
            try:
                return [str(x) for x in json.loads(v)]
            except json.JSONDecodeError:
                return [v]
        return [v] if v else []
    return [str(x) for x in v]


def _codes(v: Any) -> list[str]:
    """The ``code`` of every evidence item; a cell that is not a list of items (JSON text of a
    number, an object, null …) has none."""
    if isinstance(v, str):
        try:
            v = json.loads(v) if v else []
        except json.JSONDecodeError:
            return []
    if not isinstance(v, (list, tuple)):
        return []
    return [str(e.get("code", "")) for e in v if isinstance(e, Mapping)]


def _from_rows(rows: Iterable[Mapping[str, Any]]) -> DiscoveryInput:
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for row in rows:
        for c in COLUMNS:
            cols[c].append(row.get(c))
    return DiscoveryInput(cols)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(str(path), f"line {n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(str(path), f"line {n}: not an analysis row")
            yield row


def read_flows(paths: Sequence[str], judge: Any = None) -> DiscoveryInput:
    """Analysis rows of ``paths``: ``sluice analyze`` output (``.jsonl``, ``.parquet``) is read;
    captures (anything else) are judged with ``judge`` (a combiner; default: the shipped one).

    Raises:
        ConfigError: an analysis file is not one (not JSON lines, missing columns).
        CaptureError: a capture cannot be read.
    """
    parts: list[DiscoveryInput] = []
    captures = []
    for p in map(Path, paths):
        if p.suffix == ".parquet":
            parts.append(_read_parquet(p))
        elif p.suffix in (".jsonl", ".json", ".ndjson"):
            parts.append(_from_rows(_read_jsonl(p)))
        else:
            captures.append(str(p))
    if captures:
        from sluice.detect.combiner import Combiner
        from sluice.detect.service import analyze_captures

        if judge is None:
            from sluice.detect.model import DEFAULT_MODEL_DIR, ModelScorer, load_model

            judge = Combiner(ModelScorer(load_model(DEFAULT_MODEL_DIR)[0]))
        res = analyze_captures(captures, judge)
        parts.append(_from_rows(f.to_dict() for f in res.flows))
    merged: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for part in parts:
        for c in COLUMNS:
            merged[c].extend(part.columns[c])
    return DiscoveryInput(merged)


def _read_parquet(path: Path) -> DiscoveryInput:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ConfigError(str(path), f"not a Parquet file: {exc}") from None
    missing = [c for c in ("server", "server_port", "proto", "class", "family") if c not in schema.names]
    if missing:
        raise ConfigError(str(path), f"not an analysis table: no column {', '.join(missing)}")
    have = [c for c in COLUMNS if c in schema.names]
    table = pq.read_table(path, columns=have)
    n = table.num_rows
    return DiscoveryInput({c: table.column(c).to_pylist() if c in have else [None] * n for c in COLUMNS})


def endpoints(flows: DiscoveryInput) -> dict[tuple[str, int, str], Endpoint]:
    """Fold the flows into endpoints (every endpoint, findings or not)."""
    c = flows.columns
    eps: dict[tuple[str, int, str], Endpoint] = {}
    resolved: dict[str, set[str]] = {}
    for i in range(len(flows)):
        q, answers = c["dns_query"][i], c["dns_answers"][i]
        if q:
            for a in _listish(answers):
                resolved.setdefault(a, set()).add(str(q).rstrip(".").lower())
        server = c["server"][i]
        proto = c["proto"][i]
        key = (server, int(c["server_port"][i] or 0), _TRANSPORT.get(proto, str(proto)))
        ep = eps.get(key)
        if ep is None:
            ep = eps[key] = Endpoint(*key)
        ep.flows += 1
        if q:  # a lookup: its names and verdict are about the answers, not about the resolver
            continue
        cls = c["class"][i] or ""
        if cls in DETECTABLE_CLASSES:
            ep.findings += 1
            ep.families[f"{cls}/{c['family'][i] or ''}"] += 1
            ep.evidence.update(_codes(c["evidence"][i]))
        client = c["client"][i]
        if client:
            ep.clients.add(client)
        for col in ("sni", "server_name", "http_host"):
            v = c[col][i]
            if v:
                ep.names.add(str(v).split(":")[0].rstrip(".").lower())
        subject = c["cert_subject"][i]
        if subject:
            sans = sorted(_listish(c["cert_san"][i]))
            ep.certs.add(f"{subject} | {c['cert_issuer'][i] or ''} | {','.join(sans)}")
            ep.names.update(n.removeprefix("*.").rstrip(".").lower() for n in sans if n)
        t0, t1 = c["first_ts"][i], c["last_ts"][i]
        if t0 is not None:
            ep.first_seen = min(ep.first_seen, float(t0))
        if t1 is not None:
            ep.last_seen = max(ep.last_seen, float(t1))
    for (server, _, _), ep in eps.items():
        ep.names |= resolved.get(server, set())
    return eps


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def _link_keys(ep: Endpoint) -> Iterator[tuple[str, str]]:
    """What an endpoint can share with another, as (kind, value)."""
    for cert in ep.certs:
        yield "certificate", cert
    for name in ep.names:
        if d := registrable(name):
            yield "domain", d
    for fam in ep.families:
        if "commercial:" in fam:
            yield "service", fam.split("commercial:", 1)[1]
        if net := _network(ep.server):
            yield "network", f"{net} {fam}"


_LINK_WORDS = {
    "certificate": "share the certificate {v}",
    "domain": "carry names under {v}",
    "service": "were named {v} by the detectors",
    "network": "sit in {v} (same network, same protocol)",
}


def discover(
    flows: DiscoveryInput,
    *,
    min_findings: int = MIN_FINDINGS,
    min_share: float = MIN_SHARE,
    ignore_domains: Iterable[str] = (),
) -> list[Candidate]:
    """Candidate services, best first.

    Args:
        flows: the analysis rows.
        min_findings: finding flows a candidate needs in all.
        min_share: share of an endpoint's flows that must be findings for it to take part.
        ignore_domains: registrable domains that never link endpoints (popular sites that
            domain fronting or a captive portal can put on anything).
    """
    skip = {d.lower() for d in ignore_domains}
    every = endpoints(flows)
    cands = [e for e in every.values() if e.findings and e.share >= min_share]
    cands.sort(key=lambda e: (e.server, e.port, e.transport))
    union = _Union(len(cands))
    first: dict[tuple[str, str], int] = {}
    reasons: list[tuple[int, int, str]] = []
    for i, ep in enumerate(cands):
        for kind, value in _link_keys(ep):
            if kind == "domain" and value in skip:
                continue
            j = first.setdefault((kind, value), i)
            if j != i and union.join(i, j):
                reasons.append((j, i, _LINK_WORDS[kind].format(v=value)))
    groups: dict[int, list[int]] = {}
    for i in range(len(cands)):
        groups.setdefault(union.find(i), []).append(i)
    out = []
    for root, members in groups.items():
        links = [f"{cands[a].key} and {cands[b].key} {why}" for a, b, why in reasons if union.find(a) == root]
        cand = Candidate([cands[i] for i in members], links)
        if cand.findings >= min_findings:
            out.append(cand)
    out.sort(key=lambda c: -c.score)
    _pull_in(out, [e for e in every.values() if not (e.findings and e.share >= min_share)], skip)
    return out


def _pull_in(groups: list[Candidate], others: list[Endpoint], skip: set[str]) -> None:
    """Add to each group the endpoints without (enough) findings that carry its certificate or
    its names: a provider's server whose protocol no detector recognised is still its server.

    They are marked :attr:`Endpoint.linked_only` (their addresses are not proposed: the group's
    name entries cover them). A certificate or domain that would pull in more than
    :data:`PULL_LIMIT` endpoints besides the group's size is too common to be one service's own
    (a CDN, a popular site put in an SNI) and pulls nothing.
    """
    index: dict[tuple[str, str], list[Endpoint]] = {}
    for ep in others:
        if ep.transport not in ("tcp", "udp"):
            continue  # an ICMP error about a server is not a server
        for kind, value in _link_keys(ep):
            if kind in ("certificate", "domain") and value not in skip:
                index.setdefault((kind, value), []).append(ep)
    taken: set[int] = set()
    for g in groups:
        keys = {k for e in g.endpoints for k in _link_keys(e) if k[0] in ("certificate", "domain")}
        for kind, value in sorted(keys):
            hits = [e for e in index.get((kind, value), []) if id(e) not in taken]
            if not hits or len(hits) > PULL_LIMIT + len(g.endpoints):
                continue
            for e in hits:
                e.linked_only = True
                taken.add(id(e))
                g.endpoints.append(e)
                g.links.append(
                    f"{e.key} {_LINK_WORDS[kind].format(v=value)} ({e.findings}/{e.flows} of its flows "
                    "were findings: joined by that alone)"
                )


def pair_agreement(groups: Sequence[Sequence[str]], truth: Mapping[str, str]) -> tuple[int, int]:
    """How many pairs of the ground truth's endpoints the grouping gets right, of how many.

    A pair is right when both endpoints are in one group exactly when the truth puts them in one
    service (the Rand index over the truth's endpoints; an endpoint no group holds is alone).
    """
    where = {ep: gi for gi, g in enumerate(groups) for ep in g}
    keys = sorted(truth)
    right = total = 0
    for a_i, a in enumerate(keys):
        for b in keys[a_i + 1 :]:
            same_truth = truth[a] == truth[b]
            ga, gb = where.get(a), where.get(b)
            same_found = ga is not None and ga == gb
            right += same_truth == same_found
            total += 1
    return right, total


DETECTOR = "vpn-services"
"""The detector name proposals carry (accepted entries go to the source ``proposals:vpn-services``)."""


def proposals_for(
    cand: Candidate, shared: Callable[[str], Any] | None = None, *, detector: str = DETECTOR
) -> list[Proposal]:
    """The register entries a candidate service would need: its registrable domains (as masks:
    the service's servers and APIs are names below them) and the addresses of its endpoints with
    findings, except an address in shared infrastructure (``shared(ip)`` not None), which is
    proposed at the name level only and says so in the evidence.
    """
    from sluice.registry.model import Kind, Proposal

    fams = ", ".join(f"{f} ×{n}" for f, n in cand.families.most_common(3))
    reason = (
        f"{cand.findings} finding flows ({fams}) from {cand.clients} clients "
        f"at {len(cand.endpoints)} endpoints of {cand.label()}"
    )
    evidence: dict[str, object] = {"candidate": cand.to_dict()}
    withheld = {}
    for server in sorted({e.server for e in cand.endpoints}):
        infra = shared(server) if shared is not None else None
        if infra is not None:
            withheld[server] = (
                f"{infra.operator} {infra.cidr} ({infra.source}): propose at the name level only"
            )
    if withheld:
        evidence["addresses_not_proposed"] = withheld
    out = [Proposal(Kind.DOMAIN_MASK, f"*.{d}", detector, reason, evidence) for d in cand.domains]
    for server in sorted({e.server for e in cand.endpoints if not e.linked_only} - set(withheld)):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            continue
        out.append(Proposal(Kind.IP, server, detector, reason, evidence))
    return out
