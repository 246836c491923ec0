"""An operator's IP->ASN table (pyasn "ipasn" format): the seed's ASN recorded on candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.errors import ConfigError
from sluice.mirrors.discover import find_candidates
from sluice.mirrors.infra import load_asn_table

IPASN = """; IP-ASN32-DAT file
; Original source: written by the test
203.0.113.0/24\t64500
203.0.113.128/25\t64501
198.51.100.0/24\tAS64502
2001:db8::/32\t64503
"""

OBSERVED = """fonbet.ru 203.0.113.5
10fonbet-zerkalo.ru 203.0.113.60
fonbet-11.win 203.0.113.200
bbsport.win 198.51.100.7
"""


def _table(tmp_path: Path) -> Path:
    p = tmp_path / "ipasn.dat"
    p.write_text(IPASN)
    return p


def test_longest_prefix_and_bad_files(tmp_path: Path) -> None:
    t = load_asn_table(_table(tmp_path))
    assert t.lookup("203.0.113.5") == 64500
    assert t.lookup("203.0.113.200") == 64501  # the /25 inside the /24
    assert t.lookup("198.51.100.255") == 64502
    assert t.lookup("2001:db8::1") == 64503
    assert t.lookup("192.0.2.1") is None and t.lookup("not an address") is None
    bad = tmp_path / "bad.dat"
    bad.write_text("203.0.113.0/24\t64500\n300.1.2.0/24\t1\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_asn_table(bad)
    empty = tmp_path / "empty.dat"
    empty.write_text("; nothing\n")
    with pytest.raises(ConfigError, match="no prefixes"):
        load_asn_table(empty)


def test_shared_asn_is_recorded_never_enough_alone(tmp_path: Path) -> None:
    obs = {n.split()[0]: set(n.split()[1:]) for n in OBSERVED.splitlines()}
    found = {c.domain: c for c in find_candidates(["fonbet.ru"], obs, asn=load_asn_table(_table(tmp_path)))}
    near = found["10fonbet-zerkalo.ru"].traits.function
    assert near.values["shared_asn"] == ["AS64500"]
    assert "shared_addresses" not in near.values and not near.holds  # the ASN alone does not hold
    assert "shared_asn" not in found["fonbet-11.win"].traits.function.values  # AS64501, not the seed's
    without = {c.domain: c for c in find_candidates(["fonbet.ru"], obs)}
    assert "shared_asn" not in without["10fonbet-zerkalo.ru"].traits.function.values


def test_cli_asn_db(tmp_path: Path) -> None:
    obs = tmp_path / "obs.txt"
    obs.write_text(OBSERVED)
    args = ["mirrors", "candidates", "fonbet.ru", "--observed", str(obs), "--json"]
    r = CliRunner().invoke(cli, [*args, "--asn-db", str(_table(tmp_path))])
    assert r.exit_code == 0, r.output
    rows = {x["domain"]: x for x in map(json.loads, r.output.splitlines())}
    assert rows["10fonbet-zerkalo.ru"]["traits"]["function"]["shared_asn"] == ["AS64500"]
    bad = tmp_path / "bad.dat"
    bad.write_text("203.0.113.0/24 many\n")
    r = CliRunner().invoke(cli, [*args, "--asn-db", str(bad)])
    assert r.exit_code == 2 and "line 1" in r.output
