"""Page evidence: what a fetched page says about design, content and function.

Theory of operation
-------------------
:func:`parse_page` reads HTML with the standard library's tolerant parser (never raises on
markup) and keeps title, meta description and keywords, the favicon link, analytics and tracker
IDs (Google Analytics ``UA-``/``G-``, Tag Manager ``GTM-``, Yandex Metrika counters, Facebook
pixels), the tag sequence (the DOM's shape), visible text, forms (a login form has a password
field) and links.  Content hashes are locality-sensitive, so near copies give near hashes:

* SimHash (64 bits) of the distinct word 2-shingles of the normalised text, and of the distinct
  tag 4-shingles of the DOM;
  similarity is ``1 - hamming/64``;
* TLSH of the normalised text and of the HTML (``py-tlsh``; TLSH needs 50+ bytes of varied
  input, else the hash is ``""``); a distance below ~100 is a near copy.

The favicon hash follows the convention of Shodan and others: MurmurHash3 (32-bit, signed) of
the base64 encoding of the icon bytes with a newline every 76 characters, so values compare
with theirs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import mmh3
import tlsh  # type: ignore[import-not-found]

__all__ = [
    "PageEvidence",
    "analytics_ids",
    "favicon_hash",
    "normalise_text",
    "parse_page",
    "simhash",
    "simhash_similarity",
    "tlsh_distance",
    "tlsh_hash",
]

MAX_PARSE_CHARS = 2_000_000
"""HTML characters parsed at most."""
_ANALYTICS = (
    ("ga", re.compile(r"\bUA-\d{4,10}-\d{1,4}\b")),
    ("ga4", re.compile(r"\bG-[A-Z0-9]{8,12}\b")),
    ("gtm", re.compile(r"\bGTM-[A-Z0-9]{4,9}\b")),
    ("metrika", re.compile(r"(?:mc\.yandex\.ru/watch/|yaCounter|\bym\(\s*)(\d{5,10})")),
    ("fbpixel", re.compile(r"fbq\(\s*['\"]init['\"]\s*,\s*['\"](\d{10,20})['\"]")),
)
_WORD = re.compile(r"\w+", re.UNICODE)
_SKIP = frozenset({"script", "style", "noscript", "template"})
_VOID = frozenset(
    {"br", "img", "input", "meta", "link", "hr", "source", "area", "base", "col", "wbr", "embed"}
)


@dataclass(slots=True)
class PageEvidence:
    """What one page shows."""

    url: str = ""
    """Where it came from."""
    title: str = ""
    """``<title>`` text, whitespace-normalised."""
    description: str = ""
    """``<meta name=description>``."""
    keywords: str = ""
    """``<meta name=keywords>``."""
    favicon_url: str = ""
    """The icon link (absolute), default ``/favicon.ico``."""
    favicon_mmh3: int | None = None
    """Favicon hash (set once the icon is fetched)."""
    analytics: tuple[str, ...] = ()
    """Tracker IDs, ``kind:id``."""
    tags: list[str] = field(default_factory=list)
    """Start tags in document order (the DOM's shape)."""
    text: str = ""
    """Normalised visible text."""
    forms: list[dict[str, object]] = field(default_factory=list)
    """Forms: ``action`` (path), ``method``, ``fields`` (sorted names), ``password`` (bool)."""
    links: list[str] = field(default_factory=list)
    """Absolute link targets."""
    html_tlsh: str = ""
    """TLSH of the HTML ("" when too short)."""
    text_tlsh: str = ""
    """TLSH of the normalised text."""
    text_simhash: int = 0
    """SimHash of the text's word 2-shingles."""
    dom_simhash: int = 0
    """SimHash of the tag sequence's 4-shingles."""
    screenshot_phash: int | None = None
    """Perceptual hash of a screenshot (set by :mod:`sluice.mirrors.screenshot`)."""

    @property
    def paths(self) -> set[str]:
        """Paths of same-host links."""
        host = urlsplit(self.url).hostname
        return {urlsplit(u).path or "/" for u in self.links if urlsplit(u).hostname == host}

    @property
    def login_forms(self) -> list[dict[str, object]]:
        """Forms with a password field."""
        return [f for f in self.forms if f.get("password")]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (no text or tag list)."""
        return {
            "url": self.url,
            "title": self.title,
            "description": self.description,
            "favicon_mmh3": self.favicon_mmh3,
            "analytics": list(self.analytics),
            "html_tlsh": self.html_tlsh,
            "text_tlsh": self.text_tlsh,
            "text_simhash": f"{self.text_simhash:016x}",
            "dom_simhash": f"{self.dom_simhash:016x}",
            "screenshot_phash": None if self.screenshot_phash is None else f"{self.screenshot_phash:016x}",
            "forms": self.forms,
            "tags": len(self.tags),
            "words": len(self.text.split()),
        }


class _Parser(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.ev = PageEvidence(url=base)
        self._skip = 0
        self._in_title = False
        self._title: list[str] = []
        self._text: list[str] = []
        self._form: dict[str, object] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        self.ev.tags.append(tag)
        if tag in _SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "meta":
            name = (a.get("name") or a.get("property") or "").lower()
            if name in ("description", "og:description"):
                self.ev.description = self.ev.description or " ".join(a.get("content", "").split())
            elif name == "keywords":
                self.ev.keywords = " ".join(a.get("content", "").split())
        elif tag == "link" and "icon" in a.get("rel", "").lower() and a.get("href"):
            self.ev.favicon_url = self.ev.favicon_url or _join(self.base, a["href"])
        elif tag == "a" and a.get("href"):
            self.ev.links.append(_join(self.base, a["href"]))
        elif tag == "form":
            action = urlsplit(_join(self.base, a.get("action", "") or self.base)).path or "/"
            self._form = {
                "action": action,
                "method": a.get("method", "get").lower(),
                "fields": [],
                "password": False,
            }
            self.ev.forms.append(self._form)
        elif tag in ("input", "select", "textarea") and self._form is not None:
            fields = self._form["fields"]
            assert isinstance(fields, list)
            if a.get("name"):
                fields.append(a["name"])
            if a.get("type", "").lower() == "password":
                self._form["password"] = True
        if tag in _VOID and tag in _SKIP:
            self._skip -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        elif tag == "form" and self._form is not None:
            fields = self._form["fields"]
            assert isinstance(fields, list)
            self._form["fields"] = sorted(set(fields))
            self._form = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
        elif not self._skip:
            self._text.append(data)


def _join(base: str, href: str) -> str:
    try:
        return urljoin(base, href.strip())
    except ValueError:
        return ""


def normalise_text(text: str) -> str:
    """Lower case, words only, digits kept, one space between words."""
    return " ".join(_WORD.findall(text.lower()))


def analytics_ids(html: str) -> tuple[str, ...]:
    """Tracker IDs found in the page's source, ``kind:id``, sorted."""
    out = set()
    for kind, rx in _ANALYTICS:
        for m in rx.finditer(html):
            out.add(f"{kind}:{m.group(1) if m.groups() else m.group(0)}")
    return tuple(sorted(out))


def _h64(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8", "replace"), digest_size=8).digest(), "big")


def simhash(tokens: list[str], shingle: int = 3) -> int:
    """64-bit SimHash of the distinct ``shingle``-grams of a token sequence (0 when empty).

    Distinct grams: a page of twenty ``<p>`` would otherwise be the hash of ``p p p p``.
    """
    if not tokens:
        return 0
    grams = {" ".join(tokens[i : i + shingle]) for i in range(max(1, len(tokens) - shingle + 1))}
    acc = [0] * 64
    for g in grams:
        h = _h64(g)
        for b in range(64):
            acc[b] += 1 if (h >> b) & 1 else -1
    return sum(1 << b for b in range(64) if acc[b] > 0)


def simhash_similarity(a: int, b: int) -> float:
    """``1 - hamming(a, b) / 64``."""
    return 1.0 - bin(a ^ b).count("1") / 64.0


def tlsh_hash(data: bytes) -> str:
    """TLSH digest, or "" when the input is too short or too uniform."""
    if len(data) < 50:
        return ""
    h = str(tlsh.hash(data))
    return "" if h in ("TNULL", "") else h


def tlsh_distance(a: str, b: str) -> int | None:
    """TLSH distance (0 = same; under ~100 near copies), None when either hash is missing."""
    if not a or not b:
        return None
    return int(tlsh.diff(a, b))


def favicon_hash(icon: bytes) -> int:
    """MurmurHash3 of the base64 of the icon (76-character lines), as Shodan computes it."""
    return int(mmh3.hash(base64.encodebytes(icon)))


def parse_page(html: bytes | str, url: str = "") -> PageEvidence:
    """Evidence of one HTML page (never raises on bad markup).

    Args:
        html: the body (bytes are decoded as UTF-8, falling back to cp1251).
        url: where it came from (resolves relative links).

    Returns:
        The evidence; favicon and screenshot hashes are filled in by the caller.
    """
    if isinstance(html, bytes):
        try:
            text = html.decode("utf-8")
        except UnicodeDecodeError:
            text = html.decode("cp1251", "replace")
    else:
        text = html
    text = text[:MAX_PARSE_CHARS]
    p = _Parser(url)
    try:
        p.feed(text)
        p.close()
    except (AssertionError, ValueError):  # html.parser's rare internal failures on hostile input
        pass
    ev = p.ev
    ev.title = " ".join("".join(p._title).split())
    ev.text = normalise_text(" ".join(p._text))
    ev.analytics = analytics_ids(text)
    if not ev.favicon_url and url:
        ev.favicon_url = _join(url, "/favicon.ico")
    words = ev.text.split()
    ev.text_simhash = simhash(words, 2)
    ev.dom_simhash = simhash(ev.tags, 4)
    ev.text_tlsh = tlsh_hash(ev.text.encode())
    ev.html_tlsh = tlsh_hash(text.encode("utf-8", "replace"))
    return ev
