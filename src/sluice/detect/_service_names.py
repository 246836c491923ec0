"""Verdicts that name the service: a flow's names and address looked up in the service catalogue.

Theory of operation: after the combiner has judged a flow, its server name (SNI, HTTP Host), DNS
query and answers, certificate names and organisation, and server address are looked up in the
catalogue (:mod:`sluice.services.catalogue`). Then:

1. a verdict whose family already is ``commercial:<id>`` of a catalogue service (a fingerprint
   that knows the product) gets that service, nothing else changes;
2. a **finding** (vpn, proxy, circumvention, tunnel) and a service match that **agree** (the
   verdict's family is one of the service's protocols, or its class is the service's with no
   family or the service's own) is named: family ``commercial:<id>`` (or the service's
   circumvention family), the protocol evidence kept first and the service evidence added; a
   service whose protocols do not include the verdict's family adds its evidence at 0 and names
   nothing;
3. a flow with **no finding** whose names match a service becomes a finding of that service on
   the name alone, with a confidence below any protocol fingerprint (:data:`NAME_CONFIDENCE`): a
   flow to a VPN's API or website is the VPN app's (or its user's) traffic;
4. an **address** match names a service only when the address is in no shared infrastructure
   (CDN, cloud, hoster): an address in Cloudflare's or AWS's ranges names a service only beside a
   finding whose protocol the service offers (rule 2), never alone.

Evidence codes ``service.name`` and ``service.address`` are public output; their reference gives
the catalogue pattern or range **and its source**.
"""

from __future__ import annotations

__all__ = ["ADDRESS_CONFIDENCE", "AGREEMENT_BONUS", "NAME_CONFIDENCE", "flow_service_matches", "name_service"]

import functools
import ipaddress
from dataclasses import replace

from sluice.detect.verdict import DETECTABLE_CLASSES, Evidence, Verdict
from sluice.flows.record import FlowRecord
from sluice.services.catalogue import Catalogue, Service, ServiceMatch

NAME_CONFIDENCE = {"sni": 0.7, "cert": 0.7, "http": 0.65, "dns": 0.6}
"""Confidence of a verdict made on a name match alone, by what matched (a fingerprint says 0.8+)."""
ADDRESS_CONFIDENCE = 0.6
"""Confidence of a verdict made on an address match alone (outside shared infrastructure)."""
AGREEMENT_BONUS = 0.05
"""Confidence added to a finding when a service offering its protocol matches the flow too."""

_FEATURE = {"sni": "sni", "http": "http_host", "dns": "dns", "cert": "cert", "address": "server"}
"""The record field each kind of match read (``dns``: the query or an answer; ``cert``: CN, SAN or O=)."""


_ADDRESS_CHARS = frozenset("0123456789abcdefABCDEF.:%")


@functools.lru_cache(maxsize=65536)
def _is_address(text: str) -> bool:
    # a host name has a letter beyond a-f or a hyphen: most never reach the (slow) parser
    if not text or ("%" not in text and not _ADDRESS_CHARS.issuperset(text)):
        return False  # (an IPv6 scope after % may be any interface name)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def flow_service_matches(rec: FlowRecord, cat: Catalogue) -> tuple[ServiceMatch | None, ServiceMatch | None]:
    """The first name match and the address match of a flow.

    Names are tried in this order: SNI, HTTP Host, certificate (CN, SAN, O=), DNS query, DNS
    answers (names; answer addresses count as address matches, never in shared infrastructure).

    Returns:
        (name match, address match); either may be None. An address match may lie in shared
        infrastructure (its ``shared`` is set).
    """
    m = rec.meta
    name: ServiceMatch | None = None
    if m.sni:
        name = cat.match_name(m.sni, "sni")
    if name is None and m.http_host:
        host = m.http_host.rsplit(":", 1)[0] if m.http_host.count(":") == 1 else m.http_host
        name = cat.match_name(host, "http")
    if name is None and (m.cert_subject or m.cert_san):
        name = cat.match_cert(m.cert_subject, m.cert_san)
    if name is None and m.dns_query:
        name = cat.match_name(m.dns_query, "dns")
    addr = cat.match_address(rec.server)
    for answer in m.dns_answers[:16]:
        if name is not None and addr is not None:
            break
        if _is_address(answer):
            hit = cat.match_address(answer)
            if addr is None and hit is not None and hit.shared is None:
                addr = hit
        elif name is None:
            name = cat.match_name(answer, "dns")
    return name, addr


def _evidence(match: ServiceMatch, svc: Service, contribution: float, packet: int) -> Evidence:
    if match.what == "address":
        code, reason = "service.address", f"the address lies in a range listed for {svc.brand}"
    else:
        code, reason = "service.name", f"the name is one of {svc.brand}'s (its apps, API, servers or site)"
    return Evidence(
        code,
        _FEATURE[match.what],
        match.observed,
        f"{match.pattern} (catalogue {svc.id}; source: {match.source})",
        contribution,
        reason,
        packet,
    )


def _agrees(v: Verdict, svc: Service) -> bool:
    if v.family and v.family in svc.protocols:
        return True
    return v.label == svc.label and v.family in ("", svc.family)


def _own_family(v: Verdict, cat: Catalogue) -> Service | None:
    """The catalogue service a verdict's family already names (``commercial:<id>``, ``psiphon``)."""
    sid = v.family.removeprefix("commercial:")
    try:
        svc = cat.get(sid)
    except KeyError:
        return None
    return svc if svc.family == v.family and svc.label == v.label else None


def name_service(v: Verdict, rec: FlowRecord, cat: Catalogue) -> Verdict:
    """The verdict with the service it belongs to named (see the module's rules), or unchanged.

    Args:
        v: the combiner's verdict of the flow.
        rec: the flow's final record (its names and server address are looked up).
        cat: the service catalogue.

    Returns:
        A verdict with ``service`` set (and class, family, confidence and evidence as the rules
        say), or ``v`` itself.
    """
    name, addr = flow_service_matches(rec, cat)
    own = _own_family(v, cat)
    if name is None and addr is None:
        return replace(v, service=own.id) if own is not None else v
    packet = max(v.decided_at, 0)
    if v.label in DETECTABLE_CLASSES:
        for match in (name, addr):
            if match is None:
                continue
            svc = cat.get(match.service)
            if own is not None and own.id != svc.id:
                continue
            if match.shared is not None and not (v.family and v.family in svc.protocols) and own is None:
                continue  # shared infrastructure: only a protocol the service offers may name it
            if own is not None or _agrees(v, svc):
                conf = v.confidence if own is not None else min(1.0, v.confidence + AGREEMENT_BONUS)
                at = packet if match.what != "address" else 0
                ev = _evidence(match, svc, conf - v.confidence, at)
                return replace(
                    v,
                    label=svc.label,
                    family=svc.family,
                    confidence=conf,
                    evidence=(*v.evidence, ev),
                    service=svc.id,
                )
            ev = _evidence(match, svc, 0.0, packet)
            note = replace(
                ev, reason=f"{ev.reason}, but {svc.brand} is not known to offer {v.family or v.label}"
            )
            return replace(v, evidence=(*v.evidence, note), service=own.id if own is not None else "")
        return replace(v, service=own.id) if own is not None else v
    match = name if name is not None else (addr if addr is not None and addr.shared is None else None)
    if match is None:
        return v
    svc = cat.get(match.service)
    conf = NAME_CONFIDENCE[match.what] if match is name else ADDRESS_CONFIDENCE
    ev = _evidence(match, svc, conf, packet if match is name else 0)
    return Verdict(
        v.flow_id,
        v.flow_key,
        svc.label,
        svc.family,
        conf,
        ev.packet,
        "combiner:service",
        v.version,
        score=conf,
        threshold=v.threshold,
        model_digest=v.model_digest,
        evidence=(ev, *v.evidence),
        service=svc.id,
    )
