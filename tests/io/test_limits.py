"""Bounded reads of captures: gzip bombs, zero padding, standard input and pipes.

Memory is asserted (peak RSS of a child process, tracemalloc), never time.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import pytest

from sluice.batch.index import index_capture
from sluice.errors import CaptureError
from sluice.io.capture import open_capture
from sluice.io.limits import GZIP_RATIO_FLOOR_BYTES, ReadLimits
from tests.io.test_capture import read_both

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
SLUICE = [sys.executable, "-m", "sluice"]
PIPE_TIMEOUT_S = 600


def _gzip_stream(path: Path, head: bytes, pattern: bytes, total: int) -> Path:
    """``head`` then ``pattern`` repeated to ``total`` bytes, gzip-compressed without holding it."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = pattern * max(1, (1 << 20) // len(pattern))
    with path.open("wb") as f:
        f.write(comp.compress(head))
        done = 0
        while done < total:
            chunk = block[: total - done]
            f.write(comp.compress(chunk))
            done += len(chunk)
        f.write(comp.flush())
    return path


def zero_bomb(path: Path, zeros: int) -> Path:
    """The issue's bomb: a pcap header and then nothing but zeros."""
    return _gzip_stream(path, PCAP_HEADER, b"\x00", zeros)


def record_bomb(path: Path, size: int) -> Path:
    """A bomb of valid one-byte records (each a different-looking but well-formed packet)."""
    return _gzip_stream(path, PCAP_HEADER, struct.pack("<IIII", 1, 0, 1, 1) + b"\x45", size)


def test_zero_padding_stops_both_readers(tmp_path: Path) -> None:
    """All-zero record headers are padding, not packets: both readers stop there and say so."""
    plain = tmp_path / "padded.pcap"
    rec = struct.pack("<IIII", 7, 5, 3, 3) + b"abc"
    plain.write_bytes(PCAP_HEADER + rec + b"\x00" * (1 << 20))
    pkts, anomalies = read_both(plain)
    assert [p[2] for p in pkts] == [b"abc"]
    assert anomalies == {"capture.zero_padding": 1}


def test_zero_bomb_streams_in_bounded_memory(tmp_path: Path) -> None:
    bomb = zero_bomb(tmp_path / "bomb.pcap.gz", 32 << 20)
    tracemalloc.start()
    try:
        with open_capture(bomb) as reader:
            n = sum(1 for _ in reader)
            anomalies = dict(reader.stats.anomalies)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 0 and anomalies == {"capture.zero_padding": 1}
    assert peak < 16 << 20, peak


def test_ratio_limit_refuses_a_record_bomb_on_both_paths(tmp_path: Path) -> None:
    bomb = record_bomb(tmp_path / "records.pcap.gz", GZIP_RATIO_FLOOR_BYTES + (4 << 20))
    assert bomb.stat().st_size * 100 < GZIP_RATIO_FLOOR_BYTES  # a bomb indeed
    with pytest.raises(CaptureError) as streamed, open_capture(bomb) as reader:
        for _ in reader:
            pass
    assert streamed.value.reason == "capture.gzip_ratio"
    assert "SLUICE_MAX_GZIP_RATIO" in str(streamed.value)
    tracemalloc.start()
    try:
        with pytest.raises(CaptureError) as indexed:
            index_capture(str(bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert indexed.value.reason == "capture.gzip_ratio"
    assert peak < 3 * GZIP_RATIO_FLOOR_BYTES, peak


def test_ratio_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = record_bomb(tmp_path / "records.pcap.gz", GZIP_RATIO_FLOOR_BYTES + (1 << 20))
    monkeypatch.setenv("SLUICE_MAX_GZIP_RATIO", "0")  # no limit
    n_records = (GZIP_RATIO_FLOOR_BYTES + (1 << 20)) // 17
    assert len(index_capture(str(bomb))) == n_records
    with open_capture(bomb, ReadLimits(max_gzip_ratio=10**6)) as reader:
        assert sum(1 for _ in reader) == n_records


def test_capture_size_limit_on_the_batch_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = b"".join(struct.pack("<IIII", i, 0, 60, 60) + os.urandom(60) for i in range(1, 2000))
    plain = tmp_path / "c.pcap"
    plain.write_bytes(PCAP_HEADER + frames)
    packed = tmp_path / "c.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    monkeypatch.setenv("SLUICE_MAX_CAPTURE_BYTES", "65536")
    with pytest.raises(CaptureError) as exc:
        index_capture(str(packed))
    assert exc.value.reason == "capture.too_large" and "SLUICE_MAX_CAPTURE_BYTES" in str(exc.value)
    assert len(index_capture(str(plain))) == 1999  # a mapped file is not held: no limit


def _peak_rss_mib(args: list[str], stdin: Path | None = None) -> tuple[int, int, str]:
    """Exit code, peak RSS (MiB) and stderr of a command run by a fresh interpreter."""
    probe = textwrap.dedent(
        """
        import resource, subprocess, sys
        stdin = open(sys.argv[1], "rb") if sys.argv[1] else subprocess.DEVNULL
        r = subprocess.run(sys.argv[3:], stdin=stdin, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=int(sys.argv[2]))
        sys.stderr.buffer.write(r.stderr)
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, str(stdin or ""), str(PIPE_TIMEOUT_S), *args],
        capture_output=True,
        text=True,
        timeout=PIPE_TIMEOUT_S + 60,
    )
    code, rss = r.stdout.split()
    return int(code), int(rss), r.stderr


@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_issue_bomb_through_the_cli_stays_small(tmp_path: Path, stream: bool) -> None:
    """The issue's 261 KB bomb (256 MiB of zeros) held 2.1 GB on the batch path."""
    bomb = zero_bomb(tmp_path / "bomb.pcap.gz", 256 << 20)
    small = tmp_path / "small.pcap"
    small.write_bytes(PCAP_HEADER + struct.pack("<IIII", 1, 0, 3, 3) + b"abc")
    mode = ["--stream"] if stream else []
    _, base, _ = _peak_rss_mib([*SLUICE, "flows", *mode, "--format", "jsonl", str(small)])
    code, peak, err = _peak_rss_mib([*SLUICE, "flows", *mode, "--format", "jsonl", str(bomb)])
    assert peak < base + 200, (base, peak, err)
    assert "Traceback" not in err
    # batch refuses the ratio outright; streaming stops at the padding
    assert (
        ("capture.gzip_ratio" in err and code == 3)
        if not stream
        else ("capture.zero_padding=1" in err and code == 0)
    )


def _capture_for_pipes(tmp_path: Path) -> Path:
    from tests.flows.test_app import app_sessions
    from tests.flows.test_table import write_capture

    frames = sorted(f for s in app_sessions().values() for f in s)
    return write_capture(tmp_path / "apps.pcapng", frames)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_flows_reads_a_pipe_like_the_file(tmp_path: Path, compressed: bool, name: str, stream: bool) -> None:
    cap = _capture_for_pipes(tmp_path)
    if compressed:
        packed = tmp_path / "apps.pcapng.gz"
        packed.write_bytes(gzip.compress(cap.read_bytes()))
        cap = packed
    mode = ["--stream"] if stream else []
    args = [*SLUICE, "flows", "--no-progress", *mode, "--format", "jsonl"]
    want = subprocess.run([*args, str(cap)], capture_output=True, timeout=PIPE_TIMEOUT_S)
    assert want.returncode == 0, want.stderr
    assert want.stdout.count(b"\n") > 5
    with cap.open("rb") as f:
        # a real pipe: cat writes into it, sluice reads the other end
        cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
        assert cat.stdout is not None
        got = subprocess.run([*args, name], stdin=cat.stdout, capture_output=True, timeout=PIPE_TIMEOUT_S)
        cat.stdout.close()
        cat.wait(timeout=PIPE_TIMEOUT_S)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_stdin_spool_is_bounded(tmp_path: Path) -> None:
    cap = _capture_for_pipes(tmp_path)
    env = {**os.environ, "SLUICE_MAX_CAPTURE_BYTES": "4096"}
    with cap.open("rb") as f:
        cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
        assert cat.stdout is not None
        r = subprocess.run(
            [*SLUICE, "flows", "--format", "jsonl", "-"],
            stdin=cat.stdout,
            capture_output=True,
            text=True,
            env=env,
            timeout=PIPE_TIMEOUT_S,
        )
        cat.stdout.close()
        cat.wait(timeout=PIPE_TIMEOUT_S)
    assert r.returncode == 3 and "capture.too_large" in r.stderr and "Traceback" not in r.stderr


def test_analyze_reads_a_pipe_like_the_file(tmp_path: Path) -> None:
    cap = _capture_for_pipes(tmp_path)
    args = [*SLUICE, "analyze", "--format", "jsonl"]
    want = subprocess.run([*args, str(cap)], capture_output=True, timeout=PIPE_TIMEOUT_S)
    assert want.returncode == 0, want.stderr
    with cap.open("rb") as f:
        got = subprocess.run([*args, "-"], stdin=f, capture_output=True, timeout=PIPE_TIMEOUT_S)
    assert got.returncode == 0, got.stderr
    strip = [line.replace(b'"apps.pcapng"', b'"-"') for line in want.stdout.splitlines()]
    assert got.stdout.splitlines() == strip


def test_flows_option_raises_the_ratio_limit(tmp_path: Path) -> None:
    bomb = record_bomb(tmp_path / "records.pcap.gz", GZIP_RATIO_FLOOR_BYTES + (1 << 20))
    from click.testing import CliRunner

    from sluice.cli.main import cli

    args = ["flows", "--no-progress", "--format", "jsonl", "--out", str(tmp_path / "o.jsonl")]
    refused = CliRunner().invoke(cli, [*args, str(bomb)])
    assert refused.exit_code == 3 and "capture.gzip_ratio" in refused.output
    allowed = CliRunner().invoke(cli, [*args, "--max-gzip-ratio", "0", str(bomb)])
    assert allowed.exit_code == 0, allowed.output
