"""The popular-names guard: names of the operator's popularity list are flagged and never proposed.

A list the test writes itself runs everywhere; the real Tranco and Radar lists are read from
``../shared/domain-lists`` when present (skipped with a message when not).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.errors import ConfigError
from sluice.mirrors.discover import find_candidates
from sluice.mirrors.popular import load_popular
from sluice.mirrors.propose import proposals_for
from sluice.registry.proposals import list_proposals
from sluice.registry.stores import open_store
from tests.mirrors.sites import blocked_register

SHARED = Path(__file__).resolve().parents[3] / "shared" / "domain-lists"
TRANCO = SHARED / "tranco_top100k.csv"
RADAR = SHARED / "cloudflare_radar_top100k_2026-04-27.csv"

# fonbet-11.win stands for a popular name that shares the blocked site's address
OBSERVED = """fonbet.ru 203.0.113.5
fonbet-11.win 203.0.113.5
www.fonbet-11.win 203.0.113.5
10fonbet-zerkalo.ru 203.0.113.5
"""


def test_formats_top_and_registrable(tmp_path: Path) -> None:
    ranked = tmp_path / "tranco.csv"
    ranked.write_text("1,google.com\n2,fonbet-11.win\n3,x.blogspot.com\n4,example.org\n")
    p = load_popular(ranked, top=3)
    assert p.match("www.google.com") == ("google.com", 1) and p.match("google.com") == ("google.com", 1)
    assert p.match("a.b.fonbet-11.win") == ("fonbet-11.win", 2)
    assert p.match("example.org") is None  # rank 4 > top 3
    assert p.match("y.blogspot.com") is None  # a private suffix: each blog is its own
    assert "rank 2 in tranco.csv (top 3)" in p.reason("fonbet-11.win")
    radar = tmp_path / "radar.csv"
    radar.write_text("domain\nfonbet-11.win\ngoogle.com\n")
    assert set(load_popular(radar).ranks) == {"fonbet-11.win", "google.com"}
    plain = tmp_path / "plain.txt"
    plain.write_text("# popular\nwww.Google.com\n\nmail.yandex.ru\n")
    assert set(load_popular(plain).ranks) == {"google.com", "yandex.ru"}
    empty = tmp_path / "empty.txt"
    empty.write_text("domain\n\n")
    with pytest.raises(ConfigError, match="no domain names"):
        load_popular(empty)
    with pytest.raises(ConfigError, match="at least 1"):
        load_popular(plain, top=0)


def test_popular_candidate_is_flagged_and_refused(tmp_path: Path) -> None:
    lst = tmp_path / "top.csv"
    lst.write_text("1,fonbet-11.win\n")
    obs = {n.split()[0]: set(n.split()[1:]) for n in OBSERVED.splitlines()}
    # without the guard it would be proposed: the evidence is there
    found = find_candidates(["fonbet.ru"], obs)
    assert not any(c.popular for c in found)
    plain = proposals_for(found, min_score=0.5)
    assert "fonbet-11.win" in {p.indicator for p in plain.proposed} and not plain.refused
    # the list given to proposals_for alone refuses them, with the reason
    guarded = proposals_for(found, min_score=0.5, popular=load_popular(lst))
    got = {p.indicator for p in guarded.proposed}
    assert "fonbet-11.win" not in got and "www.fonbet-11.win" not in got and "10fonbet-zerkalo.ru" in got
    refused = {r.domain: r for r in guarded.refused}
    assert set(refused) == {"fonbet-11.win", "www.fonbet-11.win"}
    assert "popular: fonbet-11.win is rank 1" in refused["www.fonbet-11.win"].reason
    # flagged by find_candidates: refused even when proposals_for is not given the list
    flagged = find_candidates(["fonbet.ru"], obs, popular=load_popular(lst))
    by = {c.domain: c for c in flagged}
    assert by["fonbet-11.win"].popular and by["www.fonbet-11.win"].popular
    assert not by["10fonbet-zerkalo.ru"].popular
    again = proposals_for(flagged, min_score=0.5)
    assert {r.domain for r in again.refused} == set(refused)
    assert {p.indicator for p in again.proposed} == got


def test_cli_propose_refuses_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = blocked_register(tmp_path, "fonbet.ru")
    obs = tmp_path / "obs.txt"
    obs.write_text(OBSERVED)
    lst = tmp_path / "top.txt"
    lst.write_text("fonbet-11.win\n")
    args = ["mirrors", "propose", "fonbet.ru", "--observed", str(obs), "--register", str(db)]
    args += ["--propose-min-score", "0.5", "--json"]
    monkeypatch.setenv("SLUICE_POPULAR_LIST", str(lst))  # the env var stands for --popular
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert {p["indicator"] for p in doc["proposed"]} == {"10fonbet-zerkalo.ru"}
    assert {x["domain"] for x in doc["refused"]} == {"fonbet-11.win", "www.fonbet-11.win"}
    assert all(x["reason"].startswith("popular: fonbet-11.win is rank 1 in top.txt") for x in doc["refused"])
    store = open_store(db)
    try:
        assert {p.indicator for p in list_proposals(store)} == {"10fonbet-zerkalo.ru"}
    finally:
        store.close()
    monkeypatch.delenv("SLUICE_POPULAR_LIST")
    r = CliRunner().invoke(cli, ["mirrors", "candidates", "fonbet.ru", "--observed", str(obs)])
    assert r.exit_code == 0 and "POPULAR" not in r.output
    r = CliRunner().invoke(
        cli, ["mirrors", "candidates", "fonbet.ru", "--observed", str(obs), "--popular", str(lst)]
    )
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if " fonbet-11.win " in x + " ")
    assert "POPULAR (never proposed)" in line
    bad = tmp_path / "bad.txt"
    bad.write_text("nothing here\n")
    r = CliRunner().invoke(cli, [*args[:-1], "--popular", str(bad)])
    assert r.exit_code == 2 and "no domain names" in r.output


@pytest.mark.skipif(not TRANCO.exists() or not RADAR.exists(), reason=f"popularity lists not in {SHARED}")
def test_real_tranco_and_radar_names_are_refused(tmp_path: Path) -> None:
    tranco = load_popular(TRANCO)
    assert len(tranco) > 9000 and tranco.match("www.google.com") == ("google.com", 1)
    radar = load_popular(RADAR, top=100_000)
    assert radar.match("www.google.com") is not None
    # booking.com is a Tranco top-10k name; a "booking" seed's look-alike on the blocked address
    db = blocked_register(tmp_path, "booking-zerkalo.ru")
    obs = tmp_path / "obs.txt"
    obs.write_text("booking-zerkalo.ru 203.0.113.9\nwww.booking.com 203.0.113.9\nbooking-1.win 203.0.113.9\n")
    args = ["mirrors", "propose", "booking-zerkalo.ru", "--observed", str(obs), "--register", str(db)]
    args += ["--propose-min-score", "0.3", "--dry-run", "--json"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "www.booking.com" in {p["indicator"] for p in json.loads(r.output)["proposed"]}  # unguarded
    r = CliRunner().invoke(cli, [*args, "--popular", str(TRANCO)])
    doc = json.loads(r.output)
    assert "www.booking.com" not in {p["indicator"] for p in doc["proposed"]}
    (ref,) = [x for x in doc["refused"] if x["domain"] == "www.booking.com"]
    assert ref["reason"].startswith("popular: booking.com is rank ") and "tranco_top100k.csv" in ref["reason"]


def test_a_popular_copy_by_pages_is_refused_too(tmp_path: Path) -> None:
    from sluice.mirrors.discover import Candidate
    from sluice.mirrors.traits import Trait

    lst = tmp_path / "top.txt"
    lst.write_text("google.com\n")
    c = Candidate("fonbet.ru", "www.google.com", fetched=True)
    c.traits.function = Trait(1.0, True, {"redirect_from_blocked": True})  # the legal test holds
    assert c.copy
    assert [p.indicator for p in proposals_for([c]).proposed] == ["www.google.com"]
    review = proposals_for([c], popular=load_popular(lst))
    assert review.proposed == [] and [r.domain for r in review.refused] == ["www.google.com"]
