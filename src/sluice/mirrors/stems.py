"""Name evidence: stems, homoglyphs, counters, mirror words, abbreviations and distances.

Theory of operation
-------------------
A mirror's name is the blocked name dressed up: a counter (``10fonbet``, ``fonbet-11``), a
mirror word (``zerkalo``, ``mirror``, ``рабочее-зеркало``), a rotated TLD, a random subdomain, a
homoglyph (``fonbеt`` with a Cyrillic ``е``), a typo, or an abbreviation (``bbsport`` for
Baltbet).  :func:`core` undresses one label: lower case, Cyrillic and digit look-alikes folded
to Latin letters (:data:`HOMOGLYPHS`, digits in the middle of letters only: a leading or trailing
run of digits is a counter), everything but letters dropped.  :func:`name_parts` splits a host
name with the public suffix list into its subdomain labels, its registrable label and its suffix.

Distances are on cores: optimal string alignment (Damerau-Levenshtein with adjacent
transpositions), and a keyboard distance in which a substitution of neighbouring keys costs half.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sluice.registry.names import public_suffixes

__all__ = [
    "FILLER_WORDS",
    "HOMOGLYPHS",
    "MIRROR_WORDS",
    "NameParts",
    "abbreviations",
    "core",
    "explained",
    "fold",
    "keyboard_distance",
    "name_parts",
    "osa_distance",
    "segment",
]

HOMOGLYPHS: dict[str, str] = {
    # Cyrillic letters that look like Latin ones (lower case after casefold)
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "һ": "h", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ɡ": "g", "ı": "i", "ο": "o", "ν": "v", "α": "a", "ε": "e", "ι": "i",
    "κ": "k", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
}  # fmt: skip
"""Confusable characters folded to the Latin letter they imitate (Unicode TR39 subset)."""

DIGIT_LOOKALIKE = {"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"}
"""Digits used as letters *inside* a word (``f0nbet``); leading/trailing digit runs are counters."""

MIRROR_WORDS: tuple[str, ...] = (
    "zerkalo", "zerkala", "zerkal", "mirror", "mirrors", "official", "oficial", "ofitsialnyj",
    "oficialnyj", "rabochee", "rabocheye", "rabochii", "actual", "aktualnoe", "access", "dostup",
    "vhod", "enter", "new", "novoe", "site", "sait", "sayt", "online", "onlain", "www", "mobile",
    "mobi", "mob", "go", "goto", "get", "my", "link", "ssylka", "alt", "alternative", "now",
    "today", "login", "lk", "portal", "start", "main", "bk",
)  # fmt: skip
"""Words that say "this is a copy" (transliterated Russian and English): stripped from both ends
of a name before its stem is taken."""

FILLER_WORDS: tuple[str, ...] = (
    *MIRROR_WORDS,
    "m", "bk", "club", "best", "top", "vip", "ru", "com", "net", "win", "live", "play", "bet",
    "bets", "sport", "casino", "kazino", "cazino", "slots", "vulkan", "app", "web", "pro", "ok",
    "good", "cool", "like", "free", "real", "info", "rus", "russia", "pc", "en", "a", "b", "c", "x",
)  # fmt: skip
"""Words mirror operators add around a brand: the mirror words and the trade's own words
(``bet``, ``casino``); they explain what is left of a name besides the brand, but are never
stripped from a brand (``fonbet`` stays ``fonbet``).  :meth:`NameModel.fit` adds the residues it
learns from the register's own families."""

CYR_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
        "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
        "с": "s", "т": "t", "у": "u", "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh",
        "щ": "sch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya",
    }
)  # fmt: skip
"""Transliteration of a whole Cyrillic label (``рабочее-зеркало`` -> ``rabochee-zerkalo``)."""

_LETTERS = re.compile(r"[^a-z]+")
_EDGE_DIGITS = re.compile(r"^[0-9-]+|[0-9-]+$")
_CYR = re.compile(r"[а-яё]")
_ANY_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True, slots=True)
class NameParts:
    """A host name split by the public suffix list."""

    subdomains: tuple[str, ...]
    """Labels left of the registrable label (``0ckqa5qr6k``, ``www``), outermost first."""
    label: str
    """The registrable label (``fonbet`` of ``m.fonbet.co.uk``); "" when the name is a suffix."""
    suffix: str
    """The public suffix (``co.uk``)."""

    @property
    def registrable(self) -> str:
        """``label.suffix`` ("" when there is no label)."""
        return f"{self.label}.{self.suffix}" if self.label else ""


@functools.lru_cache(maxsize=1 << 16)
def name_parts(name: str) -> NameParts:
    """Split a (Unicode or punycode) host name: subdomains, registrable label, public suffix.

    Args:
        name: a host name (``xn--`` labels are decoded).

    Returns:
        The parts; a bare suffix gives an empty ``label``.
    """
    n = name.strip().rstrip(".").lower()
    labels = [_unpuny(x) for x in n.split(".") if x]
    if not labels:
        return NameParts((), "", "")
    text = ".".join(labels)
    suffix = str(public_suffixes().publicsuffix(text) or labels[-1])
    n_suf = suffix.count(".") + 1
    if len(labels) <= n_suf:
        return NameParts((), "", suffix)
    return NameParts(tuple(labels[: -n_suf - 1]), labels[-n_suf - 1], suffix)


def _unpuny(label: str) -> str:
    if label.startswith("xn--"):
        try:
            return label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            return label
    return label


def fold(label: str) -> str:
    """Lower case, NFKC, homoglyphs folded; an all-Cyrillic word is transliterated instead.

    ``fonbеt`` (one Cyrillic ``е``) becomes ``fonbet`` (a homoglyph attack); ``зеркало``
    (a Russian word) becomes ``zerkalo``.
    """
    t = unicodedata.normalize("NFKC", label).lower()
    if not _ANY_NON_ASCII.search(t):
        return t
    letters = [c for c in t if c.isalpha()]
    cyr = sum(1 for c in letters if _CYR.match(c))
    if letters and cyr == len(letters):
        return t.translate(CYR_TRANSLIT)
    return "".join(HOMOGLYPHS.get(c, c) for c in t)


def core(label: str) -> str:
    """The letters of a label after folding: counters and hyphens gone, inner digit look-alikes
    read as letters (``10-f0nbet-11`` -> ``fonbet``)."""
    t = _EDGE_DIGITS.sub("", fold(label))
    if any(c.isdigit() for c in t):
        t = "".join(
            DIGIT_LOOKALIKE.get(c, c) if c.isdigit() and _letter_between(t, i) else c for i, c in enumerate(t)
        )
    return _LETTERS.sub("", t)


def _letter_between(t: str, i: int) -> bool:
    return 0 < i < len(t) - 1 and t[i - 1].isalpha() and t[i + 1].isalpha()


def segment(text: str, words: frozenset[str], max_word: int = 16) -> list[str] | None:
    """Split ``text`` into words of ``words`` (fewest pieces), or None when it cannot be.

    Args:
        text: letters only.
        words: the vocabulary.
        max_word: longest word tried.

    Returns:
        The pieces, or None.
    """
    n = len(text)
    best: list[list[str] | None] = [None] * (n + 1)
    best[0] = []
    for i in range(n):
        cur = best[i]
        if cur is None:
            continue
        for j in range(i + 1, min(n, i + max_word) + 1):
            w = text[i:j]
            if w in words:
                prev = best[j]
                if prev is None or len(prev) > len(cur) + 1:
                    best[j] = [*cur, w]
    return best[n]


def explained(residue: str, words: frozenset[str]) -> bool:
    """True when ``residue`` (letters) is empty or made only of ``words``."""
    return not residue or segment(residue, words) is not None


def abbreviations(stem: str, words: frozenset[str], heads: Iterable[int] | None = None) -> list[str]:
    """Short forms of a brand that operators use: initials of its parts, and initials plus the
    last part (``baltbet`` = ``balt``+``bet`` -> ``bb``, ``bbet``; ``marathonbet`` -> ``mb``,
    ``mbet``).  Only stems that split into two or more parts have any.

    Args:
        stem: the brand's core.
        words: vocabulary the stem may be split with (besides its own leading part).

        heads: the lengths of leading part to try (default: 3 to ``len(stem) - 2``; a caller that
            knows which tails split into words passes only those).

    Returns:
        The abbreviations of 2+ letters (none equal to the stem).
    """
    out: list[str] = []
    for k in range(3, len(stem) - 1) if heads is None else heads:
        head, rest = stem[:k], stem[k:]
        tail = segment(rest, words)
        if tail:
            parts = [head, *tail]
            initials = "".join(p[0] for p in parts)
            for a in (initials, initials[:-1] + parts[-1]):
                if len(a) >= 2 and a != stem and a not in out:
                    out.append(a)
    return out


def osa_distance(a: str, b: str, limit: int = 64) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap neighbours: 1 each).

    Args:
        a: first string.
        b: second string.
        limit: strings longer than this are cut (the distance is a name feature, not a diff).

    Returns:
        The distance.
    """
    a, b = a[:limit], b[:limit]
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        prev2, prev = prev, cur
    return prev[len(b)]


_ROWS = ("1234567890-", "qwertyuiop", "asdfghjkl", "zxcvbnm")
_POS = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}


def _near(x: str, y: str) -> bool:
    px, py = _POS.get(x), _POS.get(y)
    return px is not None and py is not None and abs(px[0] - py[0]) <= 1 and abs(px[1] - py[1]) <= 1


def keyboard_distance(a: str, b: str) -> float:
    """Like :func:`osa_distance`, but substituting a neighbouring QWERTY key costs 0.5."""
    prev = [float(j) for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        cur = [float(i)] + [0.0] * len(b)
        for j in range(1, len(b) + 1):
            x, y = a[i - 1], b[j - 1]
            cost = 0.0 if x == y else (0.5 if _near(x, y) else 1.0)
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        prev = cur
    return prev[len(b)]


def vocabulary(extra: Iterable[str] = ()) -> frozenset[str]:
    """The filler words plus ``extra`` (learned residues)."""
    return frozenset((*FILLER_WORDS, *extra))


def longest_common_substring(a: str, b: str) -> int:
    """Length of the longest common substring of ``a`` and ``b``."""
    best = 0
    prev = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        cur = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def strip_words(text: str, words: Sequence[str]) -> str:
    """``text`` with leading and trailing filler words removed (longest first), repeatedly."""
    ordered = sorted(set(words), key=len, reverse=True)
    changed = True
    while changed and text:
        changed = False
        for w in ordered:
            if len(w) >= 2 and len(text) > len(w) + 2:
                if text.startswith(w):
                    text, changed = text[len(w) :], True
                elif text.endswith(w):
                    text, changed = text[: -len(w)], True
    return text
