"""The decision log: rotation, torn lines, a writer killed with SIGKILL, queries across segments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from sluice.decisions import (
    DecisionFilter,
    DecisionLog,
    FsyncPolicy,
    ReadStats,
    parse_since,
    read_decisions,
    segments,
)
from sluice.errors import ConfigError
from sluice.policy import Action, Decision, Mode, RegisterRef

T0 = 1_720_000_000.0


def _decision(
    i: int, action: Action = Action.BLOCK, rule: str = "register-block", mode: Mode = Mode.ENFORCE
) -> Decision:
    return Decision(
        time=T0 + i,
        flow_id=i,
        flow_key=f"tcp 10.0.0.1:{1000 + i % 60000} > 10.0.0.2:443",
        server_name="psiphon.ca",
        app="tls",
        rule=rule,
        rule_index=0,
        action=action,
        mode=mode,
        enforced=mode is Mode.ENFORCE,
        verdict_class="circumvention",
        family="psiphon",
        confidence=0.9,
        detector="fingerprint",
        evidence=("known.server_name: server_name=psiphon.ca",),
        register=(
            RegisterRef(
                "psiphon.ca",
                "domain.exact",
                "rkn",
                "domain",
                "psiphon.ca",
                ("суд / 2-1687/2013 / 2013-05-23",),
            ),
        ),
    )


def test_records_round_trip_and_queries_filter(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "log") as log:
        for i in range(30):
            action = (Action.BLOCK, Action.LOG, Action.ALLOW)[i % 3]
            log.write(
                _decision(i, action, rule=f"r{i % 3}", mode=Mode.SHADOW if i % 5 == 0 else Mode.ENFORCE)
            )
    got = list(read_decisions(tmp_path / "log"))
    assert got == [
        _decision(
            i,
            (Action.BLOCK, Action.LOG, Action.ALLOW)[i % 3],
            f"r{i % 3}",
            Mode.SHADOW if i % 5 == 0 else Mode.ENFORCE,
        )
        for i in range(30)
    ]
    blocks = list(read_decisions(tmp_path / "log", DecisionFilter(action="block", since=T0 + 10)))
    assert [d.flow_id for d in blocks] == [12, 15, 18, 21, 24, 27]
    shadow = list(read_decisions(tmp_path / "log", DecisionFilter(mode="shadow", rule="r0")))
    assert [d.flow_id for d in shadow] == [0, 15]


def test_rotation_by_size_keeps_n_newest_segments(tmp_path: Path) -> None:
    line = len(orjson.dumps(_decision(0).to_dict())) + 1
    with DecisionLog(tmp_path, max_bytes=4096, keep=3, fsync="never") as log:
        for i in range(200):
            log.write(_decision(i))
        assert log.rotations > 3
    segs = segments(tmp_path)
    assert len(segs) == 3
    assert all(s.stat().st_size <= 4096 for s in segs)
    assert all(s.stat().st_size > 4096 - line for s in segs[:-1])
    ids = [d.flow_id for d in read_decisions(tmp_path)]
    assert ids == list(range(ids[0], 200))  # the newest records, none missing in between
    # reopening continues the newest segment, then rotates on
    with DecisionLog(tmp_path, max_bytes=4096, keep=3) as log:
        log.write(_decision(200))
    assert [d.flow_id for d in read_decisions(tmp_path)][-1] == 200


def test_a_torn_last_line_is_skipped_counted_and_never_swallows_the_next_record(tmp_path: Path) -> None:
    with DecisionLog(tmp_path) as log:
        for i in range(5):
            log.write(_decision(i))
    full = orjson.dumps(_decision(5).to_dict())
    with open(segments(tmp_path)[-1], "ab") as fh:
        fh.write(full[: len(full) // 2])  # what a crash in the middle of a write leaves
    stats = ReadStats()
    assert [d.flow_id for d in read_decisions(tmp_path, stats=stats)] == [0, 1, 2, 3, 4]
    assert stats.skipped == 1
    with DecisionLog(tmp_path) as log:
        log.write(_decision(6))
    stats = ReadStats()
    assert [d.flow_id for d in read_decisions(tmp_path, stats=stats)] == [0, 1, 2, 3, 4, 6]
    assert (stats.skipped, stats.lines) == (1, 7)


_WRITER = textwrap.dedent(
    """
    import sys
    from sluice.decisions import DecisionLog
    from sluice.policy import Action, Decision, Mode

    log = DecisionLog(sys.argv[1], max_bytes=16384, keep=1000, fsync="always")
    i = 0
    while True:
        log.write(Decision(time=1.0 + i, flow_id=i, flow_key="udp 10.0.0.1:5 > 10.0.0.2:53",
                           server_name="x" * (i % 300), app="dns", rule="r", rule_index=0,
                           action=Action.BLOCK, mode=Mode.ENFORCE, enforced=True))
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_sigkill_loses_no_acknowledged_record(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path / "log")], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 400:
            break
    proc.send_signal(signal.SIGKILL)  # mid-stream: the writer never gets to close anything
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    stats = ReadStats()
    ids = [d.flow_id for d in read_decisions(tmp_path / "log", stats=stats)]
    assert len(segments(tmp_path / "log")) > 1  # it rotated on the way
    assert ids[: acked + 1] == list(range(acked + 1))  # every acknowledged record, in order
    assert ids == list(range(len(ids)))
    assert stats.skipped == 0  # whole-line writes: a killed process leaves no torn line
    for seg in segments(tmp_path / "log"):
        for raw in seg.read_bytes().splitlines():
            orjson.loads(raw)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with DecisionLog(tmp_path), pytest.raises(ConfigError, match="another process"):
        DecisionLog(tmp_path)
    DecisionLog(tmp_path).close()  # free again once closed


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("always", FsyncPolicy("always")),
        ("never", FsyncPolicy("never")),
        ("5", FsyncPolicy("interval", 5.0)),
        ("interval:0.5", FsyncPolicy("interval", 0.5)),
        ("2s", FsyncPolicy("interval", 2.0)),
    ],
)
def test_fsync_policy_parse(text: str, want: FsyncPolicy) -> None:
    assert FsyncPolicy.parse(text) == want


@pytest.mark.parametrize("text", ["sometimes", "0", "-1", "nan", "inf", ""])
def test_fsync_policy_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        FsyncPolicy.parse(text)


def test_limits_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_bytes"):
        DecisionLog(tmp_path, max_bytes=10)
    with pytest.raises(ConfigError, match="keep"):
        DecisionLog(tmp_path, keep=0)


def test_interval_policy_syncs_on_the_clock(tmp_path: Path) -> None:
    now = [0.0]
    with DecisionLog(tmp_path, fsync="interval:10", clock=lambda: now[0]) as log:
        log.write(_decision(0))
        assert log._last_sync == 0.0
        now[0] = 11.0
        log.write(_decision(1))
        assert log._last_sync == 11.0
        now[0] = 15.0
        log.write(_decision(2))
        assert log._last_sync == 11.0


def test_parse_since() -> None:
    now = 1_000_000.0
    assert parse_since("90s", now) == now - 90
    assert parse_since("1h30m", now) == now - 5400
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2024-07-03T09:46:40Z", now) == 1_720_000_000.0
    assert parse_since("2024-07-03", now) == 1_719_964_800.0
    with pytest.raises(ConfigError):
        parse_since("yesterday", now)


def test_worker_logs_are_read_as_one_merged_by_time(tmp_path: Path) -> None:
    """The gateway's workers write DIR/worker-i each (own lock and rotation); a reader of DIR
    gets them all, merged by time, with DIR's own segments (a run with one worker)."""
    from sluice.decisions import log_dirs, worker_dir

    with DecisionLog(tmp_path, max_bytes=2048, keep=100) as own:
        own.write(_decision(0))
    w0 = DecisionLog(worker_dir(tmp_path, 0), max_bytes=2048, keep=100)
    w1 = DecisionLog(worker_dir(tmp_path, 1), max_bytes=2048, keep=100)
    with w0, w1:
        for i in range(1, 40):
            (w0 if i % 3 else w1).write(_decision(i))
        with pytest.raises(ConfigError, match="another process"):
            DecisionLog(worker_dir(tmp_path, 1))
    (tmp_path / "worker-x").mkdir()  # not a worker's: ignored
    assert log_dirs(tmp_path) == [tmp_path, tmp_path / "worker-0", tmp_path / "worker-1"]
    assert len(segments(tmp_path / "worker-0")) > 1  # each rotated on its own
    stats = ReadStats()
    assert [d.flow_id for d in read_decisions(tmp_path, stats=stats)] == list(range(40))
    assert stats.files == sum(len(segments(d)) for d in log_dirs(tmp_path))
    late = list(read_decisions(tmp_path, DecisionFilter(since=T0 + 30)))
    assert [d.flow_id for d in late] == list(range(30, 40))
