"""Candidate names by permutation of a blocked name: the fuzzers dnstwist is known for, and what
the register shows mirror operators do.

dnstwist-style (on the registrable label): addition, omission, transposition, replacement
(QWERTY neighbours), repetition, vowel swap, hyphenation, bitsquatting, homoglyphs (Latin and
Cyrillic, emitted as punycode-able Unicode), TLD swap, dictionary words, subdomain insertion.
Operator patterns (``fuzz_operator``): counters before and after (``10fonbet``, ``fonbet-11``),
mirror words (``zerkalo``, ``mirror``, ``official``, ``рабочее-зеркало``), brand + random-looking
subdomain, rotating TLDs.  Every generator is bounded (:data:`MAX_CANDIDATES`).
"""

from __future__ import annotations

from collections.abc import Iterator

from sluice.mirrors.stems import HOMOGLYPHS, name_parts

__all__ = ["MAX_CANDIDATES", "ROTATING_TLDS", "fuzz", "fuzz_dnstwist", "fuzz_operator"]

MAX_CANDIDATES = 20_000
"""Most names one seed's permutations give."""
ROTATING_TLDS = (
    "com", "net", "org", "ru", "su", "info", "biz", "win", "top", "xyz", "site", "online", "club",
    "pro", "space", "website", "life", "live", "today", "bid", "pw", "me", "cc", "co", "io", "bet",
)  # fmt: skip
"""Suffixes mirrors rotate through (from the register's dumps)."""
_DICTIONARY = ("login", "secure", "account", "online", "official", "mobile", "app", "bet", "vip", "bk")
_MIRROR_WORDS = ("zerkalo", "mirror", "official", "rabochee-zerkalo", "access", "dostup", "vhod", "new", "bk")
_CYRILLIC_MIRROR = ("рабочее-зеркало", "зеркало")
_KEYS = {
    "q": "wa", "w": "qeas", "e": "wrds", "r": "etdf", "t": "ryfg", "y": "tugh", "u": "yihj",
    "i": "uojk", "o": "ipkl", "p": "ol", "a": "qwsz", "s": "weadzx", "d": "erfcxs", "f": "rtgvcd",
    "g": "tyhbvf", "h": "yujnbg", "j": "uikmnh", "k": "iolmj", "l": "opk", "z": "asx", "x": "zsdc",
    "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk", "1": "2q", "2": "13wq",
    "3": "24ew", "4": "35re", "5": "46tr", "6": "57yt", "7": "68uy", "8": "79iu", "9": "80oi",
    "0": "9po",
}  # fmt: skip
_LOOKALIKE: dict[str, list[str]] = {}
for _cyr, _lat in HOMOGLYPHS.items():
    _LOOKALIKE.setdefault(_lat, []).append(_cyr)
for _lat, _alts in (("o", ["0"]), ("l", ["1", "i"]), ("i", ["1", "l"]), ("m", ["rn"]), ("w", ["vv"])):
    _LOOKALIKE.setdefault(_lat, []).extend(_alts)
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"


def _label_fuzz(w: str) -> Iterator[str]:
    n = len(w)
    for i in range(n + 1):  # addition (insertion of any character)
        for c in _CHARS:
            yield w[:i] + c + w[i:]
    for i in range(n):
        yield w[:i] + w[i + 1 :]  # omission
        yield w[:i] + w[i] + w[i:]  # repetition
        for c in _KEYS.get(w[i], ""):
            yield w[:i] + c + w[i + 1 :]  # replacement
        for alt in _LOOKALIKE.get(w[i], ()):
            yield w[:i] + alt + w[i + 1 :]  # homoglyph
        for bit in range(8):  # bitsquatting
            c = chr(ord(w[i]) ^ (1 << bit))
            if c in _CHARS:
                yield w[:i] + c + w[i + 1 :]
        if w[i] in "aeiou":
            for v in "aeiou":
                yield w[:i] + v + w[i + 1 :]  # vowel swap
    for i in range(n - 1):
        yield w[:i] + w[i + 1] + w[i] + w[i + 2 :]  # transposition
    for i in range(1, n):
        yield w[:i] + "-" + w[i:]  # hyphenation
        yield w[:i] + "." + w[i:]  # subdomain insertion
    for d in _DICTIONARY:
        yield f"{w}{d}"
        yield f"{w}-{d}"
        yield f"{d}{w}"
        yield f"{d}-{w}"


def _valid(label: str) -> bool:
    return (
        bool(label)
        and not label.startswith(("-", "."))
        and not label.endswith(("-", "."))
        and ".." not in label
    )


def fuzz_dnstwist(seed: str, tlds: tuple[str, ...] = ("com", "net", "org", "ru")) -> list[str]:
    """dnstwist-style permutations of a name's registrable label (and TLD swaps).

    Args:
        seed: the blocked host name.
        tlds: suffixes for the TLD swap.

    Returns:
        Distinct names (the seed excluded), at most :data:`MAX_CANDIDATES`.
    """
    parts = name_parts(seed)
    if not parts.label:
        return []
    out: dict[str, None] = {}
    for lab in _label_fuzz(parts.label):
        if _valid(lab):
            out.setdefault(f"{lab}.{parts.suffix}")
        if len(out) >= MAX_CANDIDATES:
            break
    for t in tlds:
        out.setdefault(f"{parts.label}.{t}")
    out.pop(parts.registrable, None)
    return list(out)[:MAX_CANDIDATES]


def fuzz_operator(seed: str, *, counters: int = 30, tlds: tuple[str, ...] = ROTATING_TLDS) -> list[str]:
    """What mirror operators do: counters, mirror words, rotating TLDs, Cyrillic mirror words.

    Args:
        seed: the blocked host name.
        counters: counters 1..N before and after the brand.
        tlds: the suffixes rotated through.

    Returns:
        Distinct names (the seed excluded), at most :data:`MAX_CANDIDATES`.
    """
    parts = name_parts(seed)
    if not parts.label:
        return []
    b = parts.label
    labels: dict[str, None] = {b: None}
    for k in range(1, counters + 1):
        for lab in (f"{k}{b}", f"{b}{k}", f"{b}-{k}", f"{k}-{b}"):
            labels.setdefault(lab)
    for m in _MIRROR_WORDS:
        for lab in (f"{b}-{m}", f"{m}-{b}", f"{b}{m.replace('-', '')}", f"{m.replace('-', '')}{b}"):
            labels.setdefault(lab)
    for m in _CYRILLIC_MIRROR:
        labels.setdefault(f"{b}-{m}")
    out: dict[str, None] = {}
    for lab in labels:
        for t in (parts.suffix, *tlds):
            out.setdefault(f"{lab}.{t}")
    for m in ("m", "www1", "mirror", "zerkalo"):
        out.setdefault(f"{m}.{parts.registrable}")
    out.pop(parts.registrable, None)
    return list(out)[:MAX_CANDIDATES]


def fuzz(seed: str) -> list[str]:
    """Both generators, operator patterns first."""
    out = dict.fromkeys(fuzz_operator(seed))
    for n in fuzz_dnstwist(seed):
        out.setdefault(n)
    return list(out)[:MAX_CANDIDATES]
