"""Bulk name preparation and the columnar index agree with the one-name-at-a-time functions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.mirrors.brand import counter_shape, strip_fillers, strip_fillers_column
from sluice.mirrors.columns import split_names
from sluice.mirrors.index import HitTable, NameIndex
from sluice.mirrors.namescore import default_model
from sluice.mirrors.stems import MIRROR_WORDS, core, name_parts

ODD = [
    "xn--fonbt-2we.ru",
    "фонбет.рф",
    "a..b.com",
    ".x.com",
    "",
    "co.uk",
    "m.fonbet.co.uk",
    "WWW.Example.COM.",
    "foo.city.kawasaki.jp",
    "x.www.ck",
    "a.b.c.d.e.f",
    " sp ace.com",
    "1-x-bet.com",
    "f0nb3t.ru",
    "123.com",
    "-a-.ru",
    "ec2-1-2-3-4.compute-1.amazonaws.com",
]


def _reference(names: list[str]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for n in names:
        p = name_parts(n)
        labels = [(core(x), j == len(p.subdomains)) for j, x in enumerate((*p.subdomains, p.label))]
        out.append((p.label, p.suffix, len(p.subdomains) if p.label else 0, labels if p.label else []))
    return out


def _columns(names: list[str]) -> list[tuple[object, ...]]:
    c = split_names(names)
    labels: dict[int, list[tuple[str, bool]]] = {}
    for i, o in enumerate(c.owner.tolist()):
        labels.setdefault(o, []).append((c.core(i), bool(c.registrable[i])))
    lab, suf = c.label.to_pylist(), c.suffix.to_pylist()
    return [(lab[i], suf[i], int(c.n_sub[i]), labels.get(i, [])) for i in range(len(names))]


def test_split_names_agrees_on_odd_names() -> None:
    assert _columns(ODD) == _reference(ODD)


_label = st.from_regex(r"[a-z0-9-]{1,12}|xn--[a-z0-9]{2,8}|[а-я0-9-]{1,6}", fullmatch=True)
_name = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_label, min_size=0, max_size=3),
    st.sampled_from(["ru", "com", "co.uk", "win", "рф", "jp", "kawasaki.jp", "ck", "xn--p1ai", "Com."]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_name, st.text(max_size=30)), min_size=1, max_size=20))
def test_split_names_agrees_with_name_parts_and_core(names: list[str]) -> None:
    assert _columns(names) == _reference(names)


_word = st.sampled_from([*MIRROR_WORDS, "fonbet", "bal", "x", "zerk", "a"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_word, max_size=5).map("".join), min_size=1, max_size=20))
def test_strip_fillers_column_agrees(texts: list[str]) -> None:
    got = strip_fillers_column(pa.array(texts, pa.large_string())).to_pylist()
    assert got == [strip_fillers(t) for t in texts]


def test_counter_shapes() -> None:
    assert counter_shape("bet1-7") == "bet#-#"
    assert counter_shape("pm-001") == ""  # two letters: would match every numbered name
    assert counter_shape("fonbet") == ""  # no counter
    index = NameIndex(["bet1-7.win", "fonbet.ru"])
    hits = index.query(["bet2-15.top", "bet2-15x.top", "bet.top", "fonbet11.win"])
    got = {(h.observed, h.stem, h.how) for h in hits}
    assert ("bet2-15.top", "bet", "counter") in got  # the short stem "bet" is not indexed, its series is
    assert not any(h.observed in ("bet2-15x.top", "bet.top") for h in hits)
    assert ("fonbet11.win", "fonbet", "stem") in got


@pytest.mark.parametrize("seeds", [["fonbet.ru", "baltbet.ru", "marathonbet.com", "bet1-7.win"], []])
def test_table_scores_equal_record_scores(seeds: list[str]) -> None:
    model = default_model()
    names = ["10fonbet-zerkalo.ru", "bbsport.win", "fonbte.com", "bet3-3.win", "google.com", "m.mbet.win"]
    table = model.index(seeds).query_table(names)
    records = table.hits()
    assert len(records) == len(table)
    a = model.score_hits(table)
    b = model.score_hits(records)
    assert np.allclose(np.sort(a), np.sort(b))
    assert np.allclose(model.features(HitTable.from_hits(records)), model.features(records))
