"""One output vocabulary: tables that never cut a name, capture columns, --format/--json, clocks.

Tables are checked in both forms: plain (what a pipe or file gets, which these tests and scripts
parse) and drawn by rich for a terminal (a stream that says it is one).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sluice.cli._output import Col, print_table, progress, render_plain
from sluice.cli.main import cli
from sluice.decisions import DecisionLog, read_decisions
from sluice.policy import check_policy, default_policy_text

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.pcapng"
LONG = "www.q4cyamnc6mtokjurvdclt-and-a-much-longer-label-than-any-column-would-hold.example.co"
V6 = "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535"


class _Terminal(io.StringIO):
    """A stream that says it is a terminal (rich then draws)."""

    def isatty(self) -> bool:
        return True


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_plain_table_keeps_every_name_whole_and_columns_aligned() -> None:
    cols = [Col("flow"), Col("server"), Col("server_name"), Col("bytes", right=True), Col("note")]
    rows = [[1, "10.0.0.1:443", "a.example", 12, ""], [2, V6, LONG, 123456, "x y"]]
    lines = render_plain(cols, rows).splitlines()
    assert len(lines) == 3
    assert LONG in lines[2] and V6 in lines[2]
    starts = [[m.start() for m in re.finditer(r"(?<=  )\S", line)] for line in lines]
    assert starts[0][:2] == starts[1][:2] == starts[2][:2]  # the columns line up, IPv6 included
    assert lines[1].split() == ["1", "10.0.0.1:443", "a.example", "12", "-"]  # empty cell: "-"
    assert all(line == line.rstrip() for line in lines)


def test_terminal_table_folds_a_long_name_and_never_cuts_it() -> None:
    out = _Terminal()
    print_table([Col("flow"), Col("class"), Col("server_name")], [[7, "circumvention", LONG]], out)
    text = out.getvalue()
    assert "\x1b[" in text or "─" in text  # drawn by rich, not the plain form
    squeezed = re.sub(r"\x1b\[[0-9;]*m|[\s│─━┃]", "", text)
    assert LONG in squeezed and "…" not in text
    assert max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in text.splitlines()) <= 80


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = io.StringIO()
    monkeypatch.setattr("sys.stderr", quiet)
    with progress("work", 3) as bar:
        bar.update(1, text="step")
        bar.advance()
    assert quiet.getvalue() == ""
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    with progress("work", 3) as bar:
        bar.update(2, text="step two")
    assert "step two" in term.getvalue()
    with progress("work", 3, enabled=False) as bar:  # --no-progress
        bar.update(3, text="never drawn")
    assert "never drawn" not in term.getvalue()


def test_flows_and_analyze_name_the_capture_when_several_are_given(tmp_path: Path) -> None:
    twin = tmp_path / "twin.pcapng"
    twin.write_bytes(DEMO.read_bytes())
    res = run("flows", "--no-progress", str(DEMO), str(twin))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["capture", "flow_id"]
    assert {line.split()[0] for line in lines[1:]} == {"demo.pcapng", "twin.pcapng"}
    res = run("analyze", "--no-model", "--no-progress", str(DEMO), str(twin))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["capture", "flow"]
    assert sum(line.startswith("twin.pcapng ") for line in lines) == 50


@pytest.mark.parametrize("command", ["flows", "analyze"])
def test_an_unreadable_capture_is_said_and_the_others_still_run(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all" * 10)
    twin = tmp_path / "twin.pcapng"
    twin.write_bytes(DEMO.read_bytes())
    extra = ["--no-model"] if command == "analyze" else []
    res = run(command, *extra, "--no-progress", str(DEMO), str(bad), str(twin))
    assert res.exit_code == 3, res.output  # input failure, not "findings" (1)
    err = res.stderr.strip().splitlines()
    assert any(line.startswith(f"sluice {command}: error:") and "bad.pcap" in line for line in err), err
    rows = res.stdout.splitlines()
    for name in ("demo.pcapng", "twin.pcapng"):
        assert sum(line.startswith(f"{name} ") for line in rows) >= 50, name
    assert not any(line.startswith("bad.pcap") for line in rows)


def test_parquet_without_pyarrow_is_refused_before_any_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else find_spec(name, *a)
    )
    out = tmp_path / "flows.parquet"
    res = run("flows", "--no-progress", "--format", "parquet", "--out", str(out), str(DEMO))
    assert res.exit_code == 2 and "pip install 'sluice[parquet]'" in res.stderr, res.output
    assert not out.exists()


def test_analyze_csv_holds_the_jsonl_rows() -> None:
    got = run("analyze", "--no-model", "--no-progress", "--format", "csv", str(DEMO))
    assert got.exit_code == 0, got.output
    rows = list(csv.DictReader(io.StringIO(got.stdout)))
    ref = [json.loads(x) for x in run("analyze", "--no-model", "--json", str(DEMO)).stdout.splitlines()]
    assert len(rows) == len(ref) == 50
    for r, want in zip(rows, ref, strict=True):
        assert (r["class"], r["server_name"], int(r["flow_id"])) == (
            want["class"],
            want["server_name"] or "",
            want["flow_id"],
        )
        assert json.loads(r["evidence"]) == want["evidence"]  # lists as JSON arrays
    assert "50 flows" in got.stderr and "50 flows" not in got.stdout  # the summary beside the rows


def test_json_is_format_jsonl_and_refuses_another_format() -> None:
    for args in (["analyze", "--no-model", str(DEMO)], ["decisions", "--log", str(ROOT)]):
        res = run(*args, "--json", "--format", "csv")
        assert res.exit_code == 2 and "--json is --format jsonl" in res.stderr, args


def test_show_default_prints_the_shipped_policy() -> None:
    res = run("policy", "show-default")
    assert res.exit_code == 0
    assert res.stdout == default_policy_text()
    pol, issues = check_policy(res.stdout, "<show-default>")
    assert pol is not None and not issues and pol.rules


def _replayed_log(tmp_path: Path) -> Path:
    pol = tmp_path / "policy.toml"
    pol.write_text(default_policy_text())
    log = tmp_path / "log"
    res = run("policy", "test", str(pol), str(DEMO), "--no-model", "--no-progress", "--log", str(log))
    assert res.exit_code == 0, res.output
    return log


def _count(res: Result) -> int:
    assert res.exit_code == 0, res.output
    m = re.search(r"^(\d+) decisions in", res.stderr + res.stdout, re.M)
    assert m, res.output
    return int(m.group(1))


def test_decisions_since_counts_back_on_the_capture_clock_for_replays(tmp_path: Path) -> None:
    log = _replayed_log(tmp_path)
    every = list(read_decisions(log))
    assert len(every) == 50 and max(d.time for d in every) < time.time() - 86400  # the demo is 2024
    # the README recipe: the replay's last hour is the capture's, so all of it
    res = run("decisions", "--log", str(log), "--since", "1h")
    assert _count(res) == 50 and "newest decision" in res.stderr and "--clock auto" in res.stderr
    assert _count(run("decisions", "--log", str(log), "--since", "1h", "--clock", "capture")) == 50
    assert _count(run("decisions", "--log", str(log), "--since", "1h", "--clock", "wall")) == 0
    newest = max(d.time for d in every)
    recent = sum(1 for d in every if d.time >= newest - 1.0)
    assert 0 < recent < 50
    assert _count(run("decisions", "--log", str(log), "--since", "1s", "--clock", "capture")) == recent
    iso = run("decisions", "--log", str(log), "--since", "2024-07-01", "--clock", "wall")
    assert _count(iso) == 50 and "newest decision" not in iso.stderr  # a time is a time on both clocks


def test_decisions_auto_clock_is_wall_once_a_gateway_wrote_to_the_log(tmp_path: Path) -> None:
    log = _replayed_log(tmp_path)
    first = next(iter(read_decisions(log)))
    live = dataclasses.replace(first, capture="nfqueue:0", time=time.time() - 60)
    with DecisionLog(log, fsync="never") as w:
        w.write(live)
    res = run("decisions", "--log", str(log), "--since", "1h", "--json")
    assert _count(res) == 1 and "newest decision" not in res.stderr
    rows: list[dict[str, Any]] = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["capture"] for r in rows] == ["nfqueue:0"]
    assert _count(run("decisions", "--log", str(log), "--since", "1h", "--clock", "capture")) == 1


def test_decisions_csv_eve_and_table(tmp_path: Path) -> None:
    log = _replayed_log(tmp_path)
    res = run("decisions", "--log", str(log), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert _count(res) == len(rows) == 50 and "decisions in" not in res.stdout
    assert {r["capture"] for r in rows} == {"demo.pcapng"} and json.loads(rows[0]["evidence"])
    eve = run("decisions", "--log", str(log), "--format", "eve", "--action", "log")
    assert {json.loads(x)["event_type"] for x in eve.stdout.splitlines()} == {"alert"}
    table = run("decisions", "--log", str(log), "--format", "text")  # the old name of table
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "time",
        "action",
        "mode",
        "rule",
        "flow_key",
        "server_name",
        "class",
        "register",
    ]
    assert lines[51].startswith("50 decisions in 1 files")  # the table's 50 rows, then the counts
    assert [line.split()[0] for line in lines[52:]] == ["rule", "(default)", "findings-log"]
    assert any("www.torproject.org" in line for line in lines)


def test_model_evaluate_never_prints_none(tmp_path: Path) -> None:
    """A dataset without positives has no recall: the command says so instead of "None"."""
    from tests.detect.test_model import _write_dataset

    ds = tmp_path / "tiny.parquet"
    _write_dataset(ds)
    import pyarrow.parquet as pq

    table = pq.read_table(ds)
    benign = table.filter(pq.read_table(ds).column("label_class").to_numpy(zero_copy_only=False) == "benign")
    assert 0 < benign.num_rows < table.num_rows
    only = tmp_path / "benign.parquet"
    pq.write_table(benign, only)
    res = run("model", "evaluate", str(only), "--report", str(tmp_path / "r"), "--cv", "0", "--no-leave-out")
    assert res.exit_code == 0, res.output
    assert "recall n/a (no positives)" in res.stdout and "None" not in res.stdout
    doc = json.loads(run("model", "evaluate", str(only), "--report", str(tmp_path / "r"), "--cv", "0",
                         "--no-leave-out", "--json").stdout)  # fmt: skip
    assert all(r["recall_combined"] is None for r in doc["results"].values())  # JSON keeps null


def test_registry_export_counts_are_words_not_a_dict(tmp_path: Path) -> None:
    reg = str(tmp_path / "r.db")
    lst = ROOT / "examples" / "demo-blocklist.txt"
    res = run("registry", "import", "--register", reg, "--source", "demo", "--format", "domains", str(lst))
    assert res.exit_code == 0, res.output
    assert "reading" not in res.stderr  # the progress bar is for terminals only
    res = run("registry", "export", "--register", reg, "--to", "hosts", "--out", str(tmp_path / "hosts"))
    assert res.exit_code == 0, res.output
    assert re.search(r"hosts: written 4 \(domain 4\); skipped", res.stderr), res.stderr
    assert "{" not in res.stderr


def test_long_tables_are_plain_even_on_a_terminal() -> None:
    from sluice.cli._output import RICH_MAX_ROWS

    rows = [[i, f"name{i}.{LONG}"] for i in range(RICH_MAX_ROWS + 1)]
    out = _Terminal()
    print_table([Col("flow"), Col("server_name")], rows, out)
    assert out.getvalue() == render_plain([Col("flow"), Col("server_name")], rows)


def test_policy_test_speaks_csv_and_eve(tmp_path: Path) -> None:
    pol = tmp_path / "policy.toml"
    pol.write_text(default_policy_text())
    base = ["policy", "test", str(pol), str(DEMO), "--no-model", "--no-progress"]
    res = run(*base, "--format", "csv", "--summary-json", str(tmp_path / "s.json"))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == json.loads((tmp_path / "s.json").read_text())["decided"] == 50
    assert "50 flows (dry run" in res.stderr
    eve = run(*base, "--format", "eve")
    events = [json.loads(x) for x in eve.stdout.splitlines()]
    assert {e["event_type"] for e in events} == {"alert"} and len(events) == 50
    help_text = run("decisions", "--help").stdout
    assert "--clock" in help_text and "capture's time" in help_text


def test_replay_reports_progress_per_capture() -> None:
    from sluice.decide import replay_captures
    from sluice.detect.combiner import Combiner
    from sluice.policy import default_policy

    seen: list[tuple[int, str]] = []
    res = replay_captures(
        default_policy(), [str(DEMO), str(DEMO)], Combiner(), progress=lambda i, p: seen.append((i, p))
    )
    assert seen == [(0, str(DEMO)), (1, str(DEMO))] and len(res.outcomes) == 100


def test_decisions_name_the_capture_when_the_log_holds_several(tmp_path: Path) -> None:
    log = _replayed_log(tmp_path)
    first = next(iter(read_decisions(log)))
    with DecisionLog(log, fsync="never") as w:
        w.write(dataclasses.replace(first, capture="other.pcap"))
    lines = run("decisions", "--log", str(log)).stdout.splitlines()
    assert lines[0].split()[:2] == ["capture", "time"]
    assert {line.split()[0] for line in lines[1:52]} == {"demo.pcapng", "other.pcap"}
