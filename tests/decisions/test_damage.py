"""Damaged decision logs: every bad line is skipped and counted by reason, never a crash; log files
are private from creation and never followed through a symlink."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.cli.main import cli
from sluice.decisions import DecisionLog, ReadStats, read_decisions
from sluice.errors import ConfigError
from tests.decisions.test_log import _decision


def _log_with(tmp_path: Path, lines: list[bytes]) -> Path:
    d = tmp_path / "log"
    with DecisionLog(d) as log:
        log.write(_decision(1))
        seg = log.current
    with seg.open("ab") as f:
        for line in lines:
            f.write(line + b"\n")
    with DecisionLog(d) as log:
        log.write(_decision(2))
    return d


BAD_TIMES = [b"1e300", b'"nan"', b'"inf"', b'"-Infinity"', b"-1e18", b"-0.5"]
"""JSON of ``ts`` values that parse as floats no clock can show (the issue's crashes)."""


@pytest.mark.parametrize("ts", BAD_TIMES)
def test_bad_timestamps_are_skipped_and_counted(tmp_path: Path, ts: bytes) -> None:
    d = _decision(5).to_dict()
    line = orjson.dumps(d).replace(orjson.dumps(d["ts"]), ts, 1)
    assert ts in line
    log = _log_with(tmp_path, [line])
    stats = ReadStats()
    got = list(read_decisions(log, stats=stats))
    assert [x.flow_id for x in got] == [1, 2]
    assert stats.skipped == 1 and stats.reasons == {"decisions.bad_time": 1}
    json_res = CliRunner().invoke(cli, ["decisions", "--json", "--log", str(log)])
    assert json_res.exit_code == 0, json_res.output
    res = CliRunner().invoke(cli, ["decisions", "--log", str(log)])
    assert res.exit_code == 0, res.output
    assert "decisions.bad_time=1" in res.output


def test_reasons_are_counted_separately(tmp_path: Path) -> None:
    d = _decision(5).to_dict()
    lines = [
        b"{not json",
        b'{"ts": NaN}',
        b"[1, 2]",
        orjson.dumps({**d, "flow_id": "x"}),
        orjson.dumps({**d, "ts": 1e300}),
    ]
    log = _log_with(tmp_path, lines)
    stats = ReadStats()
    assert len(list(read_decisions(log, stats=stats))) == 2
    assert stats.reasons == {
        "decisions.bad_json": 2,
        "decisions.not_a_decision": 2,
        "decisions.bad_time": 1,
    }
    assert stats.skipped == 5


def test_a_huge_line_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from sluice.decisions.query import MAX_LINE_BYTES

    log = _log_with(tmp_path, [b'{"x":"' + b"a" * (16 * MAX_LINE_BYTES) + b'"}'])
    stats = ReadStats()
    tracemalloc.start()
    try:
        got = list(read_decisions(log, stats=stats))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [x.flow_id for x in got] == [1, 2]
    assert stats.reasons == {"decisions.line_too_long": 1}
    assert peak < 4 * MAX_LINE_BYTES  # the line is 16 times that


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
FIELDS = list(_decision(0).to_dict())


@st.composite
def mutated_decisions(draw: st.DrawFn) -> bytes:
    d = _decision(draw(st.integers(0, 10**6))).to_dict()
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        if draw(st.booleans()):
            d[key] = draw(json_values)
        else:
            d.pop(key, None)
    try:
        return orjson.dumps(d)
    except (TypeError, orjson.JSONEncodeError):
        return b"{}"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(lines=st.lists(st.binary(max_size=200) | mutated_decisions(), max_size=6))
@example(lines=[b'{"ts": 1e300}'])
@example(lines=[orjson.dumps({**_decision(0).to_dict(), "flow_id": 1e300})])
@example(lines=[orjson.dumps({**_decision(0).to_dict(), "register": [{"query": 1}]})])
def test_random_lines_never_raise(tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    with (d / "decisions.000001.jsonl").open("wb") as f:
        f.write(b"\n".join(lines))
    stats = ReadStats()
    for dec in read_decisions(d, stats=stats):
        assert dec.iso_time  # every decision yielded can be printed
        json.dumps(dec.to_dict())  # as sluice decisions --json prints it
    assert stats.skipped == sum(stats.reasons.values())


def test_log_files_are_private_from_creation(tmp_path: Path) -> None:
    old = os.umask(0)  # the writer must not depend on the caller's umask
    try:
        with DecisionLog(tmp_path / "log") as log:
            log.write(_decision(1))
            seg = log.current
    finally:
        os.umask(old)
    assert stat.S_IMODE(seg.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "log" / ".lock").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o750


@pytest.mark.parametrize("which", ["segment", "lock"])
def test_a_symlink_is_refused(tmp_path: Path, which: str) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    d = tmp_path / "log"
    d.mkdir()
    name = "decisions.000001.jsonl" if which == "segment" else ".lock"
    (d / name).symlink_to(target)
    with pytest.raises(ConfigError, match="symlink"), DecisionLog(d) as log:
        log.write(_decision(1))
    assert target.read_bytes() == b""
