"""Captures on a Dask cluster (scheduler and workers as processes) give exactly the serial result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.batch.flows import batch_flows
from sluice.cli._detect import load_combiner
from sluice.cluster import analyze_on_cluster, flows_on_cluster, open_client, plan_shards
from sluice.cluster.summary import summarize_shards
from sluice.detect.combiner import DEFAULT_FET_VETO
from sluice.detect.service import analyze_captures, summarize
from sluice.flows.table import FlowConfig

SLUICE = str(Path(sys.executable).with_name("sluice"))
DETECTOR = (None, False, DEFAULT_FET_VETO)  # as `sluice analyze` without options
_TIMING = ("flows_seconds", "verdict_seconds", "register_seconds")


def _untimed(runs: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {k: {n: v for n, v in r.items() if n not in _TIMING} for k, r in runs.items()}


def test_plan_splits_large_captures_only(tmp_path: Path) -> None:
    small, large = tmp_path / "a.pcap", tmp_path / "b.pcap"
    small.write_bytes(b"x" * 10)
    large.write_bytes(b"x" * 1000)
    shards = plan_shards([str(small), str(large)], workers=3, shard_bytes=400)
    assert [(Path(s.path).name, s.index, s.count) for s in shards] == [
        ("a.pcap", 0, 1), ("b.pcap", 0, 3), ("b.pcap", 1, 3), ("b.pcap", 2, 3)
    ]  # fmt: skip
    assert shards[0].bounds is None and shards[2].bounds == (1, 3)


@pytest.mark.corpus
@pytest.mark.slow
def test_flows_on_ndpi_corpus_identical(scheduler: str, ndpi_captures: list[str], tmp_path: Path) -> None:
    cfg = FlowConfig()
    with open_client(scheduler) as client:
        # shard_bytes=1: every capture split in two by flow hash, the hardest case for the merge
        got, run = flows_on_cluster(client, ndpi_captures, cfg, str(tmp_path), early=True, shard_bytes=1)
    assert run.shards == 2 * len(ndpi_captures)
    total = 0
    for path, records in got:
        serial = batch_flows(path, cfg, early=True)
        assert records == serial.records, path
        assert run.summaries[path].to_dict() == serial.summary.to_dict(), path
        total += len(records)
    assert total > 2500
    print(f"nDPI corpus: {len(ndpi_captures)} captures, {total} records identical")


@pytest.mark.corpus
@pytest.mark.slow
def test_analyze_on_ndpi_corpus_identical(scheduler: str, ndpi_captures: list[str], tmp_path: Path) -> None:
    combiner = load_combiner(None, False)
    serial = analyze_captures(ndpi_captures, combiner)
    with open_client(scheduler) as client:
        got, run = analyze_on_cluster(
            client,
            ndpi_captures,
            detector=DETECTOR,
            register=None,
            shard_dir=str(tmp_path),
            shard_bytes=65536,
        )
    assert run.shards > len(ndpi_captures)  # the larger captures were split
    assert got.flows == serial.flows
    assert _untimed(got.runs) == _untimed(serial.runs)
    findings = sum(1 for f in serial.flows if f.verdict.is_finding)
    assert findings > 0
    # the summary over the shards' Parquet (pandas) equals the one over the merged rows
    want = summarize(serial.flows)
    over = summarize_shards(run.files)
    for key in ("flows", "by_class", "by_family", "findings", "register_matches"):
        assert over[key] == want[key], key
    print(f"nDPI corpus analyze: {len(serial.flows)} rows identical, {findings} findings")


@pytest.mark.slow
def test_bench_capture_identical(scheduler: str, bench_capture: Path, tmp_path: Path) -> None:
    combiner = load_combiner(None, False)
    serial = analyze_captures([str(bench_capture)], combiner)
    with open_client(scheduler) as client:
        got, run = analyze_on_cluster(
            client, [str(bench_capture)], detector=DETECTOR, register=None, shard_dir=str(tmp_path)
        )
    assert run.shards == 2  # 850 MB: one shard per worker
    assert len(got.flows) == len(serial.flows) >= 20_000
    assert got.flows == serial.flows
    assert _untimed(got.runs) == _untimed(serial.runs)
    print(f"bench capture: {len(got.flows)} rows identical over {run.shards} shards")


@pytest.mark.corpus
@pytest.mark.slow
def test_cli_outputs_identical(scheduler: str, ndpi_captures: list[str], tmp_path: Path) -> None:
    caps = ndpi_captures[:40]
    for cmd in (["flows", "--format", "jsonl"], ["analyze", "--format", "jsonl", "--no-model"]):
        serial = subprocess.run([SLUICE, *cmd, *caps], capture_output=True, check=True, timeout=600)
        shards = tmp_path / cmd[0]
        for spec in (scheduler, "local:2"):
            cluster = subprocess.run(
                [SLUICE, *cmd, "--cluster", spec, "--shard-dir", str(shards), *caps],
                capture_output=True,
                timeout=600,
            )
            assert cluster.returncode == 0, cluster.stderr.decode()
            assert cluster.stdout == serial.stdout, (cmd, spec)
        assert len(serial.stdout.splitlines()) > 500
        assert list(shards.glob("*.parquet"))


def test_cluster_spec_refused() -> None:
    out = subprocess.run(
        [SLUICE, "flows", "--cluster", "local:0", "/dev/null"], capture_output=True, timeout=120
    )
    assert out.returncode == 2 and b"--cluster" in out.stderr
