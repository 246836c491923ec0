"""The four traits of the legal test (name, design, content, function) and the verdict.

Russian law calls a site a copy of a blocked one when it is "confusingly similar": at least three
of four traits -- name, design, content, function -- or when the blocked site redirects to it.
:func:`compare_pages` measures design, content and function between the blocked site's page and
a candidate's; :class:`Traits` holds every trait's value, whether it holds and the evidence
behind it; :func:`legal_test` applies the rule.

Thresholds (``*_HOLDS``) were set on the project's own clone fixtures (exact, re-skinned, 5 %
of words changed, unrelated look-alike), documented in ``docs/mirrors-notes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluice.mirrors.page import PageEvidence, simhash_similarity, tlsh_distance
from sluice.mirrors.screenshot import phash_distance

__all__ = ["TRAITS", "Trait", "Traits", "compare_pages", "infrastructure_score", "legal_test"]

TRAITS = ("name", "design", "content", "function")
"""The traits, in the order the law lists them."""
NAME_HOLDS = 0.5
"""Name score from which the name trait holds."""
DESIGN_HOLDS = 0.8
"""Design score from which the design trait holds."""
CONTENT_HOLDS = 0.75
"""Content score from which the content trait holds."""
FUNCTION_HOLDS = 0.5
"""Function score from which the function trait holds."""
CERT_SHARED = 0.7
"""Function score of a certificate shared with the blocked site (same SAN set, same issuer and
subject, or its SANs name the blocked site); with a shared address too: 1 - 0.4 x 0.3 = 0.88."""
ADDRESS_SHARED = 0.6
"""Function score of an address shared with the blocked site."""
TLSH_NEAR = 100
"""TLSH distance under which two texts are near copies."""


@dataclass(slots=True)
class Trait:
    """One trait: score 0-1, whether it holds, and the values behind it."""

    score: float = 0.0
    """How strongly it holds."""
    holds: bool = False
    """Score at or above the trait's threshold."""
    values: dict[str, object] = field(default_factory=dict)
    """The measurements (JSON-ready)."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"score": round(self.score, 3), "holds": self.holds, **self.values}


@dataclass(slots=True)
class Traits:
    """All four traits of one candidate against one blocked name."""

    name: Trait = field(default_factory=Trait)
    design: Trait = field(default_factory=Trait)
    content: Trait = field(default_factory=Trait)
    function: Trait = field(default_factory=Trait)

    @property
    def held(self) -> list[str]:
        """Names of the traits that hold."""
        return [t for t in TRAITS if getattr(self, t).holds]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {t: getattr(self, t).to_dict() for t in TRAITS}


def legal_test(t: Traits) -> tuple[bool, str]:
    """(is a copy, why): three of four traits, or a redirect from the blocked site."""
    if t.function.values.get("redirect_from_blocked"):
        return True, "the blocked site redirects to it"
    held = t.held
    if len(held) >= 3:
        return True, f"{len(held)} of 4 traits hold ({', '.join(held)})"
    return False, f"{len(held)} of 4 traits hold ({', '.join(held) or 'none'}); 3 are needed"


def _trait(score: float, threshold: float, values: dict[str, object]) -> Trait:
    return Trait(score, score >= threshold, values)


def design_trait(a: PageEvidence, b: PageEvidence) -> Trait:
    """Favicon hash, DOM shape and screenshot hash."""
    dom = simhash_similarity(a.dom_simhash, b.dom_simhash) if a.tags and b.tags else 0.0
    fav = a.favicon_mmh3 is not None and a.favicon_mmh3 == b.favicon_mmh3
    shot: float | None = None
    if a.screenshot_phash is not None and b.screenshot_phash is not None:
        shot = 1.0 - phash_distance(a.screenshot_phash, b.screenshot_phash) / 64.0
    parts = [dom] + ([shot] if shot is not None else [])
    score = max(1.0 if fav else 0.0, sum(parts) / len(parts))
    return _trait(
        score,
        DESIGN_HOLDS,
        {"favicon_same": fav, "favicon_mmh3": b.favicon_mmh3, "dom_similarity": round(dom, 3),
         "screenshot_similarity": None if shot is None else round(shot, 3)},
    )  # fmt: skip


def content_trait(a: PageEvidence, b: PageEvidence) -> Trait:
    """Text SimHash and TLSH, shared tracker IDs, identical title and description."""
    sim = simhash_similarity(a.text_simhash, b.text_simhash) if a.text and b.text else 0.0
    td = tlsh_distance(a.text_tlsh, b.text_tlsh)
    hd = tlsh_distance(a.html_tlsh, b.html_tlsh)
    shared = sorted(set(a.analytics) & set(b.analytics))
    title = bool(a.title) and a.title == b.title
    meta = bool(a.description) and a.description == b.description
    tl = 0.0 if td is None else max(0.0, 1.0 - td / (2 * TLSH_NEAR))
    score = max(sim if sim >= 0.8 else sim * 0.5, tl, 1.0 if shared else 0.0)
    if title and meta:
        score = max(score, 0.6)
    return _trait(
        score,
        CONTENT_HOLDS,
        {"text_simhash_similarity": round(sim, 3), "text_tlsh_distance": td, "html_tlsh_distance": hd,
         "shared_analytics": shared, "same_title": title, "same_description": meta},
    )  # fmt: skip


def function_trait(
    a: PageEvidence,
    b: PageEvidence | None,
    *,
    redirect_from_blocked: bool = False,
    shared_addresses: tuple[str, ...] = (),
    shared_certificates: tuple[object, ...] = (),
    shared_asn: tuple[object, ...] = (),
) -> Trait:
    """Same login form, same URL paths, a redirect from the blocked site, shared addresses and
    certificates (the ASN is recorded, never enough alone)."""
    login_same = False
    paths = 0.0
    if b is not None:
        la = {_form_key(f) for f in a.login_forms}
        lb = {_form_key(f) for f in b.login_forms}
        login_same = bool(la & lb)
        pa, pb = a.paths, b.paths
        paths = len(pa & pb) / len(pa | pb) if pa and pb else 0.0
    score = max(
        1.0 if redirect_from_blocked else 0.0,
        0.8 if login_same else 0.0,
        paths,
        infrastructure_score(ADDRESS_SHARED if shared_addresses else 0.0, bool(shared_certificates)),
    )
    return _trait(
        score,
        FUNCTION_HOLDS,
        {"redirect_from_blocked": redirect_from_blocked, "same_login_form": login_same,
         "path_overlap": round(paths, 3), "shared_addresses": list(shared_addresses),
         "shared_certificates": list(shared_certificates), "shared_asn": list(shared_asn)},
    )  # fmt: skip


def infrastructure_score(address: float, certificate: bool) -> float:
    """Function score of shared infrastructure: an address (its score) and/or a certificate."""
    return 1.0 - (1.0 - address) * (1.0 - (CERT_SHARED if certificate else 0.0))


def _form_key(f: dict[str, object]) -> tuple[str, tuple[str, ...]]:
    fields = f.get("fields")
    return str(f.get("action", "")), tuple(str(x) for x in fields) if isinstance(fields, list) else ()


def compare_pages(a: PageEvidence, b: PageEvidence) -> tuple[Trait, Trait]:
    """(design, content) of candidate page ``b`` against blocked page ``a``."""
    return design_trait(a, b), content_trait(a, b)
