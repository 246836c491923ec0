"""Host names are IDNA 2008 with the UTS #46 mapping (non-transitional), not IDNA 2003."""

from __future__ import annotations

import encodings.idna
import random

import idna
import pytest

from sluice.registry.matcher import Matcher
from sluice.registry.names import BadIndicator, canon_host, display_host


def _idna2003(name: str) -> str:
    """What registry.names stored before issue 18 (the standard library's IDNA 2003)."""
    labels = name.split(".")
    return ".".join(
        lab.lower() if lab.isascii() else encodings.idna.ToASCII(lab).decode("ascii") for lab in labels
    )


def test_deviation_characters_are_kept() -> None:
    assert canon_host("faß.de") == "xn--fa-hia.de"  # IDNA 2003 gave fass.de
    assert _idna2003("faß.de") == "fass.de"
    assert display_host("xn--fa-hia.de") == "faß.de"
    assert canon_host("FAß.DE") == canon_host("faß.de")
    assert canon_host("ς.gr") == "xn--3xa.gr"  # final sigma: not σ (xn--4xa)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("testא.com", "a label of left-to-right and right-to-left letters (Bidi rule)"),
        ("☃.net", "a symbol IDNA 2008 disallows (IDNA 2003 allowed xn--n3h)"),
        ("-тест.рф", "a hyphen first"),
        ("те--ст.рф", "hyphens in positions 3 and 4"),
        ("a\u200db.com", "ZWJ outside the CONTEXTJ rule"),
    ],
)
def test_invalid_labels_refused(name: str, why: str) -> None:
    with pytest.raises(BadIndicator) as err:
        canon_host(name)
    assert err.value.reason == "name.bad_idna", why


def test_mixed_script_label_is_valid_idna2008() -> None:
    """Latin 'a' among Cyrillic letters: valid IDNA 2008, kept as registers list it."""
    assert canon_host("рaypal.com") == idna.encode("рaypal.com", uts46=True).decode()


def test_names_stored_before_compare_the_same() -> None:
    """Every name without a deviation character gives the A-label IDNA 2003 stored."""
    names = [
        "пример.рф",
        "ПРИМЕР.РФ",
        "76автобар.рф",
        "bücher.example",
        "münchen.de",
        "日本語.jp",
        "xn--e1afmkfd.xn--p1ai",
        "www.ёлка.рф",
        "example.com",
        "кто-то.рф",
    ]
    rng = random.Random(18)
    letters = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ0123456789"
    names += ["".join(rng.choice(letters) for _ in range(rng.randint(1, 20))) + ".рф" for _ in range(2000)]
    for n in names:
        assert canon_host(n) == _idna2003(n), n
    # and a register stored then still matches the names traffic carries
    stored = [("old", "domain", _idna2003(n), "[]") for n in names[:10]]
    m = Matcher(stored)
    for n in names[:10]:
        assert m.match_host(canon_host(n)), n
