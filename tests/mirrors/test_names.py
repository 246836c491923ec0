"""Name evidence and the name index."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.mirrors.brand import brand_stem
from sluice.mirrors.index import NameIndex
from sluice.mirrors.namescore import FEATURES, NameModel, default_model
from sluice.mirrors.permute import fuzz_dnstwist, fuzz_operator
from sluice.mirrors.stems import (
    abbreviations,
    core,
    fold,
    keyboard_distance,
    name_parts,
    osa_distance,
    vocabulary,
)

SEEDS = ["fonbet.ru", "baltbet.ru", "marathonbet.com", "joycasino.com", "grani.ru"]


def test_core_folds_counters_homoglyphs_and_translit() -> None:
    assert core("10-f0nbet-11") == "fonbet"
    assert core("fonbеt") == "fonbet"  # Cyrillic е
    assert fold("рабочее-зеркало") == "rabochee-zerkalo"
    assert brand_stem("10fonbet-zerkalo.ru") == "fonbet"
    assert brand_stem("bk-fonbet.ru") == "fonbet"
    assert brand_stem("joycasino.com") == "joycasino"  # trade words are never stripped from a brand


def test_name_parts_uses_the_public_suffix_list() -> None:
    p = name_parts("m.fonbet.co.uk")
    assert (p.subdomains, p.label, p.suffix) == (("m",), "fonbet", "co.uk")
    assert name_parts("co.uk").label == ""


def test_distances() -> None:
    assert osa_distance("fonbet", "fnobet") == 1
    assert osa_distance("fonbet", "fonbet") == 0
    assert keyboard_distance("fonbet", "fonbwt") == 0.5
    assert abbreviations("baltbet", vocabulary()) == ["bb", "bbet"]


@pytest.mark.parametrize(
    ("name", "stem", "how"),
    [
        ("10fonbet-zerkalo.ru", "fonbet", "substring"),
        ("fonbet.win", "fonbet", "stem"),
        ("fonbte.com", "fonbet", "typo"),
        ("xn--fonbt-2we.ru", "fonbet", "stem"),  # fonbеt with a Cyrillic е, as punycode
        ("bbsport.win", "baltbet", "abbreviation"),
        ("1betwinmbet.win", "marathonbet", "abbreviation"),
        ("joycasino-official.top", "joycasino", "substring"),
    ],
)
def test_index_finds(name: str, stem: str, how: str) -> None:
    hits = NameIndex(SEEDS).query([name])
    assert (stem, how) in {(h.stem, h.how) for h in hits}


def test_index_ignores_unrelated() -> None:
    assert NameIndex(SEEDS).query(["google.com", "wikipedia.org", "example.net"]) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.from_regex(r"[a-z0-9-]{1,20}\.(ru|com|win)", fullmatch=True), min_size=1, max_size=30))
def test_substring_hits_equal_brute_force(names: list[str]) -> None:
    stems = ["fonbet", "baltbet", "grani", "casinox"]
    index = NameIndex([f"{s}.ru" for s in stems])
    got = {
        (h.observed, h.stem)
        for h in index.query(names)
        if h.how in ("stem", "substring") and h.in_registrable
    }
    want = {(n, s) for n in names for s in stems if s in core(name_parts(n).label)}
    assert got == want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_parsers_never_raise_on_any_text(text: str) -> None:
    core(text)
    fold(text)
    name_parts(text)
    NameIndex(SEEDS).query([text])


def test_permutations() -> None:
    ops = set(fuzz_operator("fonbet.ru"))
    assert {"10fonbet.ru", "fonbet-11.win", "fonbet-zerkalo.top", "fonbet-рабочее-зеркало.ru"} <= ops
    tw = set(fuzz_dnstwist("fonbet.ru"))
    assert {"fnobet.ru", "fonbt.ru", "fon-bet.ru", "fonbet.com"} <= tw
    assert "fonbet.ru" not in tw


def test_model_fit_save_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seeds = ["fonbet.ru", "joycasino.com", "baltbet.ru"]
    members = [
        [f"{i}fonbet.ru" for i in range(10)] + ["fonbet-zerkalo.win"],
        [f"{i}joycasino.com" for i in range(10)],
        [f"baltbet{i}.club" for i in range(10)] + ["bbsport.win"],
    ]
    neg = ["fonbetmusic.com", "joy.com", "casino.org", "google.com", "baltic.news", "betterhelp.com"]
    m = NameModel().fit(seeds, members, neg)
    assert m.coef_.shape == (len(FEATURES),)
    m.save(tmp_path / "m.json")
    m2 = NameModel.load(tmp_path / "m.json")
    hits = m2.index(seeds).query(["77fonbet.ru", "fonbetmusic.com"])
    p = dict(zip([h.observed for h in hits], m2.score_hits(hits).tolist(), strict=True))
    assert p["77fonbet.ru"] > p["fonbetmusic.com"]


def test_default_model_loads() -> None:
    m = default_model()
    assert len(m.words_) > 0 and m.n_train_[0] > 1000
