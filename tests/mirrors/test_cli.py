"""sluice mirrors candidates / propose: JSONL shape, review queue, accepted entries cite the blocked one."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.registry.proposals import accept, list_proposals
from sluice.registry.stores import open_store
from sluice.registry.sync import import_files
from tests.mirrors.sites import blocked_register

OBSERVED = """# name [addresses]
10fonbet-zerkalo.ru 203.0.113.5
fonbet-11.win 203.0.113.5
google.com 142.250.1.1
wikipedia.org
bbsport.win 198.51.100.7
"""


def _observed(tmp_path: Path) -> Path:
    p = tmp_path / "observed.txt"
    p.write_text(OBSERVED)
    return p


def test_candidates_jsonl(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli,
        [
            "mirrors",
            "candidates",
            "fonbet.ru",
            "baltbet.ru",
            "--observed",
            str(_observed(tmp_path)),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.output.splitlines()]
    by = {x["domain"]: x for x in rows}
    assert {"10fonbet-zerkalo.ru", "fonbet-11.win", "bbsport.win"} <= set(by)
    assert "google.com" not in by and "wikipedia.org" not in by
    for x in rows:
        assert 0.0 <= x["score"] <= 1.0
        assert set(x["traits"]) == {"name", "design", "content", "function"}
    # same address: the stronger name vouches for the other (which one is stronger is the model's call)
    pair = ("fonbet-11.win", "10fonbet-zerkalo.ru")
    assert any(by[d]["traits"]["function"].get("shared_addresses") for d in pair)
    assert [x["score"] for x in rows] == sorted((x["score"] for x in rows), reverse=True)


def test_propose_then_accept_cites_blocked_entry(tmp_path: Path) -> None:
    db = blocked_register(tmp_path, "fonbet.ru")
    seeds_addr = tmp_path / "obs2.txt"
    seeds_addr.write_text(OBSERVED + "fonbet.ru 203.0.113.5\n")
    args = ["mirrors", "propose", "fonbet.ru", "--observed", str(seeds_addr), "--register", str(db)]
    r = CliRunner().invoke(cli, [*args, "--propose-min-score", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    got = {p["indicator"] for p in doc["proposed"]}
    assert "fonbet-11.win" in got and "google.com" not in got
    store = open_store(db)
    try:
        props = list_proposals(store)
        assert all(p.detector == "mirrors" and "fonbet.ru" in p.reason for p in props)
        assert all(p.evidence["blocked_entry"] == "fonbet.ru" for p in props)
        assert "rkn-test" in str(props[0].evidence["blocked_basis"])
        accept(store, [p.id for p in props], reviewer="tester", reason="same operator")
        entries = {e.indicator: e for e in store.entries("proposals:mirrors")}
        assert "fonbet-11.win" in entries
    finally:
        store.close()
    again = CliRunner().invoke(cli, [*args, "--propose-min-score", "0.5", "--json"])
    assert again.exit_code == 0  # idempotent: the accepted proposals' ids come back


def test_propose_carries_the_collateral_impact_preview(tmp_path: Path) -> None:
    """A proposed mirror's preview counts what else its address carries in the traffic given:
    an unrelated shop on the mirror's host is collateral; a sibling mirror proposed with it is not."""
    db = blocked_register(tmp_path, "fonbet.ru")

    def flow(server: str, sni: str, client: str) -> dict[str, object]:
        return {"server": server, "server_port": 443, "proto": 6, "client": client, "sni": sni,
                "class": "benign", "family": "tls", "first_ts": 100.0, "last_ts": 101.0}  # fmt: skip

    rows = [flow("203.0.113.5", "fonbet-11.win", f"10.0.0.{i}") for i in range(3)]
    rows += [flow("203.0.113.5", "10fonbet-zerkalo.ru", "10.0.0.9")]
    rows += [flow("203.0.113.5", "flowers-shop.ru", f"10.0.1.{i}") for i in range(2)]
    rows += [flow("203.0.113.5", "fonbet.ru", "10.0.0.1")]  # the blocked site on the same host
    log = tmp_path / "flows.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["mirrors", "propose", "fonbet.ru", "--observed", str(log), "--register", str(db)]
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    doc = {p["indicator"]: p for p in json.loads(r.output)["proposed"]}
    assert "flowers-shop.ru" not in doc and "fonbet-11.win" in doc  # an address alone proposes nothing
    impact = doc["fonbet-11.win"]["impact"]
    assert impact["addresses"] == 1 and impact["flows"] == 7 and impact["own_flows"] == 3
    shop = [n for n in impact["names"] if n["name"] == "flowers-shop.ru"]
    assert shop and shop[0]["flows"] == 2 and not shop[0]["own"]
    # collateral: the shop, the blocked site itself, and the look-alike unless it is proposed too
    sibling = 0 if "10fonbet-zerkalo.ru" in doc else 1
    assert impact["collateral_flows"] == 3 + sibling
    store = open_store(db)
    try:
        stored = {p.indicator: p for p in list_proposals(store)}
        assert stored["fonbet-11.win"].impact == impact  # kept in the review queue with the proposal
    finally:
        store.close()


DUMP = """Updated: 2016-06-13 12:04:00 +0000
203.0.113.5;pm-001.info;;ФНС;2-6-27/111;2016-01-01
203.0.113.6;parimatch-go1.com;;ФНС;2-6-27/111;2016-01-01
198.51.100.1;flowers-shop.ru;;суд;2-1/2013;2013-05-23
"""


def test_decision_siblings_find_mirrors_that_share_no_name_with_the_seed(tmp_path: Path) -> None:
    """pm-001.info shares no name with parimatch-go7.com; the register lists parimatch-go1.com under
    the same decision, so with --siblings-from the copy is found, against that sibling."""
    db = tmp_path / "reg.sqlite"
    dump = tmp_path / "dump.csv"
    dump.write_bytes(DUMP.encode("cp1251"))
    store = open_store(db, create=True)
    import_files(store, [dump], "rkn-csv", source="rkn")
    store.close()
    obs = tmp_path / "observed.txt"
    obs.write_text("parimatch-go7.com\nflowers-shop2.ru\ngoogle.com\n")
    args = ["mirrors", "candidates", "pm-001.info", "--observed", str(obs), "--json"]
    alone = CliRunner().invoke(cli, args)
    assert alone.exit_code == 0, alone.output
    assert "parimatch-go7.com" not in alone.output
    r = CliRunner().invoke(cli, [*args, "--siblings-from", str(db)])
    assert r.exit_code == 0, r.output
    rows = {x["domain"]: x for x in map(json.loads, r.output.splitlines())}
    assert rows["parimatch-go7.com"]["seed"] == "parimatch-go1.com"
    assert "flowers-shop2.ru" not in rows  # another decision's names are not the seed's siblings
    missing = CliRunner().invoke(cli, [*args, "--siblings-from", str(tmp_path / "nope.sqlite")])
    assert missing.exit_code in (2, 3) and "Traceback" not in missing.output
