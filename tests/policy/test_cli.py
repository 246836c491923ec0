"""``sluice policy check|test`` and ``sluice decisions`` through click, on the demo capture."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sluice.cli.decisions import decisions
from sluice.cli.policy import policy
from sluice.policy import default_policy_text

from .conftest import DEMO
from .test_loader import BAD


def test_check_prints_errors_with_lines_and_exits_2(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(BAD)
    res = CliRunner().invoke(policy, ["check", str(p)])
    assert res.exit_code == 2
    assert f"{p}:17: rule #3 'c': action 'explode' is not one of" in res.output
    assert res.output.count("\n") == 14
    good = tmp_path / "good.toml"
    good.write_text(default_policy_text())
    res = CliRunner().invoke(policy, ["check", str(good), "--json"])
    assert res.exit_code == 0
    out = json.loads(res.stdout)  # stdout only: another thread's stderr may land in res.output
    assert out["ok"] and [r["name"] for r in out["rules"]] == ["register-block", "findings-log"]


def test_dry_run_on_the_demo_then_query_the_log(tmp_path: Path, register_db: str) -> None:
    pol = tmp_path / "p.toml"
    pol.write_text(default_policy_text().replace('action = "block"', 'action = "block"\nmode = "shadow"'))
    log = tmp_path / "log"
    args = [
        "test",
        str(pol),
        str(DEMO),
        "--register",
        register_db,
        "--no-model",
        "--format",
        "jsonl",
        "--log",
        str(log),
        "--summary-json",
        str(tmp_path / "summary.json"),
    ]
    res = CliRunner().invoke(policy, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["flows"] == len(rows) == 50
    blocked = sorted(r["server_name"] for r in rows if r["action"] == "block")
    assert blocked == ["psiphon.ca", "thepiratebay.org"]
    assert all(not r["enforced"] for r in rows)
    assert summary["by_action"]["block/shadow"] == 2
    assert summary["rules"][0] == {
        "index": 0,
        "rule": "register-block",
        "action": "block",
        "mode": "shadow",
        "decided": 2,
        "matched": 2,
    }
    res = CliRunner().invoke(decisions, ["--log", str(log), "--action", "block", "--since", "2024-07-01"])
    assert res.exit_code == 0, res.output
    assert "2 decisions in 1 files, 0 damaged lines skipped" in res.output
    assert "register:testlist:psiphon.ca basis:testlist" in res.output
    wall = ["--log", str(log), "--rule", "(default)", "--json", "--since", "1h", "--clock", "wall"]
    res = CliRunner().invoke(decisions, wall)
    assert res.exit_code == 0 and "{" not in res.stdout  # the demo is from 2024
    assert "0 decisions in 1 files" in res.stderr
    res = CliRunner().invoke(decisions, ["--log", str(log), "--since", "last tuesday"])
    assert res.exit_code == 2


def test_test_refuses_a_bad_policy_with_lines(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(BAD)
    res = CliRunner().invoke(policy, ["test", str(p), str(DEMO), "--no-model"])
    assert res.exit_code == 2 and f"{p}:8:" in res.output
