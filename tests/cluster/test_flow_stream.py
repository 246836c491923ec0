"""Flow summaries through NATS JetStream into the store, beside the decisions: the flows of a real
capture (``sluice flows``/``sluice analyze --format jsonl`` over ``examples/demo.pcapng``)
published by ``sluice publish --flows``, collected by ``sluice collect`` into a Parquet directory
and into PostgreSQL, with real processes: each flow stored once, also when the same file is
published again and when the collector dies between storing and acknowledging."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.cluster.sinks import Incoming, ParquetSink, PostgresSink
from sluice.decisions.log import DecisionLog
from sluice.decisions.store import read_flow_summaries, store_files
from tests.cluster.streamkit import Nats, Pg, collect_args, decision, flow_ids, sluice, wait_for

pytest.importorskip("nats")
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.pcapng"


def _run(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def flow_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo capture's flows (``sluice flows``) and its analysis (``sluice analyze``), JSONL."""
    d = tmp_path_factory.mktemp("flows")
    flows, analysis = d / "flows.jsonl", d / "analysis.jsonl"
    flows.write_text(_run("flows", str(DEMO), "--format", "jsonl"))
    analysis.write_text(_run("analyze", str(DEMO), "--format", "jsonl"))
    return flows, analysis


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _publish(nats: Nats, state: Path, *files: Path) -> dict[str, object]:
    args = [a for f in files for a in ("--flows", str(f))]
    out = _run("publish", "--nats", nats.url, "--producer", "lab-1", "--state", str(state), "--json", *args)
    result: dict[str, object] = json.loads(out)
    return result


def _collect(nats: Nats, store: str, *extra: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(_run(*collect_args(nats, store, "--idle", "4", "--json", *extra)))
    return out


def _check_once(store: str, flows: Path, analysis: Path) -> None:
    """Every line of both files stored exactly once, with typed columns read back."""
    t = read_flow_summaries(store)
    expected = _lines(flows) + _lines(analysis)
    keys = t.column("key").to_pylist()
    assert len(keys) == len(expected) and len(set(keys)) == len(keys)
    got = sorted(zip(t.column("capture").to_pylist(), t.column("flow_id").to_pylist(), strict=True), key=str)
    want = sorted(((r.get("capture"), r["flow_id"]) for r in expected), key=str)
    assert got == want
    rows = {(r["capture"], r["flow_id"]): r for r in t.to_pylist()}
    for line in _lines(flows):  # sluice flows: Community ID and times as written
        row = rows[(None, line["flow_id"])]
        assert row["community_id"] == line["community_id"]
        assert row["first_seen"].timestamp() == pytest.approx(line["first_ts"], abs=1e-6)
        assert row["c2s_bytes"] == line["c2s_bytes"] and row["app"] == (line["app"] or None)
    cids = {line["flow_id"]: line["community_id"] for line in _lines(flows)}
    for line in _lines(analysis):  # sluice analyze: its "" and -1 are nulls; the verdict typed
        row = rows[("demo.pcapng", line["flow_id"])]
        assert row["community_id"] == cids[line["flow_id"]]  # computed from the 5-tuple
        assert row["sni"] == (line["sni"] or None) and row["service"] == (line["service"] or None)
        assert row["class"] == line["class"] and row["confidence"] == line["confidence"]


@pytest.mark.slow
def test_flows_of_a_capture_stored_once(
    nats_server: Nats, store: str, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    flows, analysis = flow_files
    with DecisionLog(tmp_path / "log", fsync="never") as log:  # decisions on the same stream
        for i in range(20):
            log.write(decision(i))
    _run("publish", "--nats", nats_server.url, "--log", str(tmp_path / "log"), "--producer", "gw1")
    pub = _publish(nats_server, tmp_path / "cursor.json", flows, analysis)
    n = len(_lines(flows)) + len(_lines(analysis))
    assert pub["published"] == n and pub["kind"] == "flows" and n >= 100
    first = _collect(nats_server, store)
    assert first["stored"] == n + 20 and first["duplicates"] == 0
    _check_once(store, flows, analysis)
    assert sorted(flow_ids(store)) == list(range(20))  # the decisions apart, unchanged
    # the same file again, from another path and a fresh cursor: the same keys, nothing new
    again = tmp_path / "copy" / flows.name
    again.parent.mkdir()
    shutil.copy(flows, again)
    assert _publish(nats_server, tmp_path / "cursor-2.json", again)["published"] == len(_lines(flows))
    # JetStream's duplicate window drops them; past it the store would (test_store)
    second = _collect(nats_server, store)
    assert second["stored"] == 0
    _check_once(store, flows, analysis)
    if not store.startswith("postgresql"):  # the layout pandas reads directly
        import pandas as pd

        df = pd.read_parquet(Path(store) / "flows")
        assert len(df) == n and set(df["day"].astype(str)) == {"2024-07-03"}
        assert str(df["first_seen"].dtype) == "datetime64[us, UTC]"


@pytest.mark.slow
def test_flow_collector_dies_midway(
    nats_server: Nats, store: str, flow_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """A flows-only collector (``--kind flows``) exits between storing its second batch and
    acknowledging it, the next one is SIGKILLed midway, the last one finishes: the replays store
    nothing twice, nothing is lost, and no collector takes the decisions also on the stream."""
    flows, analysis = flow_files
    with DecisionLog(tmp_path / "log", fsync="never") as log:
        for i in range(20):
            log.write(decision(i))
    _run("publish", "--nats", nats_server.url, "--log", str(tmp_path / "log"), "--producer", "gw1")
    _publish(nats_server, tmp_path / "cursor.json", flows, analysis)
    args = [*collect_args(nats_server, store, "--kind", "flows"), "--flush-rows", "10"]
    dead = sluice(args, tmp_path / "out.txt", env={"SLUICE_COLLECT_EXIT_BEFORE_ACK": "2"})
    assert dead.wait(300) == 17
    assert read_flow_summaries(store).num_rows >= 20  # two batches stored, the second unacknowledged
    killed = sluice(args, tmp_path / "out.txt")  # then one SIGKILLed wherever it is past 60 rows
    try:
        wait_for("60 flows stored", lambda: read_flow_summaries(store).num_rows >= 60)
    finally:
        killed.kill()
        killed.wait()
    rest = _collect(nats_server, store, "--kind", "flows", "--flush-rows", "10")
    replays = [int(n) for n in re.findall(r"(\d+) already there\)", (tmp_path / "out.txt").read_text())]
    assert rest["duplicates"] != 0 or max(replays, default=0) > 0  # the replay reached the store ...
    _check_once(store, flows, analysis)  # ... and counted nothing twice
    assert flow_ids(store) == []  # the decisions are not this collector's


def _flow_incoming(path: Path, lo: int, hi: int) -> list[Incoming]:
    lines = path.read_bytes().splitlines()
    return [
        Incoming(f"lab-1/flows@x/{path.name}/{i}", "lab-1", lines[i], i + 1, "flows") for i in range(lo, hi)
    ]


def test_flow_sinks_store_each_key_once(flow_files: tuple[Path, Path], tmp_path: Path, pg: Pg) -> None:
    """Both sinks, past JetStream's duplicate window: replays overlap new lines, a crash loses
    the Parquet key index (its files are read back into it), bad lines are kept as records."""
    flows, _ = flow_files
    n = len(flows.read_bytes().splitlines())
    bad = Incoming("lab-1/flows@x/bad/0", "lab-1", b"not json", 999, "flows")
    root = tmp_path / "store"
    for make in (lambda: ParquetSink(root), lambda: PostgresSink(pg.new_database())):
        sink = make()
        try:
            assert sink.store(_flow_incoming(flows, 0, 30)) == 30
            assert sink.store([*_flow_incoming(flows, 20, n), bad]) == n - 30 + 1
            assert sink.store(_flow_incoming(flows, 0, n)) == 0
            where = str(root) if isinstance(sink, ParquetSink) else sink.url
        finally:
            sink.close()
        t = read_flow_summaries(where)
        assert t.num_rows == n + 1 and len(set(t.column("key").to_pylist())) == n + 1
        unparsed = [r for r in t.to_pylist() if r["key"] == bad.key]
        assert unparsed[0]["flow_id"] is None and "not json" in unparsed[0]["record"]
    for p in root.glob(".keys.sqlite*"):
        p.unlink()  # the index lost: the files are read back into it
    sink = ParquetSink(root)
    try:
        assert sink.store(_flow_incoming(flows, 0, n)) == 0
    finally:
        sink.close()
    assert store_files(root) == []  # no decision file: the flows are in flows/
    days = sorted(p.parent.name for p in store_files(root / "flows"))
    assert days == ["day=2024-07-03", "day=2024-07-03", "day=unknown"]  # the bad line: no time
    assert read_flow_summaries(root).num_rows == n + 1


def test_publish_flows_refusals(tmp_path: Path, flow_files: tuple[Path, Path]) -> None:
    """--flows with --log is refused before anything is sent (exit 2)."""
    flows, _ = flow_files
    (tmp_path / "log").mkdir()
    log = str(tmp_path / "log")
    args = ["publish", "--nats", "nats://127.0.0.1:1", "--producer", "x", "--flows", str(flows), "--log", log]
    r = subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--flows and --log" in r.stderr


@pytest.mark.slow
def test_a_stream_from_before_flows(nats_server: Nats, flow_files: tuple[Path, Path], tmp_path: Path) -> None:
    """A stream and a durable made by a collector from before flow summaries (decisions only,
    the durable filtered to them): the publisher adds the flows' subject to the stream, the
    collector replaces the durable by an unfiltered one, and the store ends with every decision
    and flow once."""
    import asyncio

    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

    from sluice.cluster.stream import DURABLE, STREAM

    flows, _ = flow_files
    store = str(tmp_path / "store")

    async def old_collector() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=STREAM, subjects=["sluice.decisions.>"], duplicate_window=600))
        sub = await js.pull_subscribe(
            "sluice.decisions.>", durable=DURABLE, config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
        )
        await nc.close()
        del sub

    asyncio.run(old_collector())
    with DecisionLog(tmp_path / "log", fsync="never") as log:
        for i in range(20):
            log.write(decision(i))
    _run("publish", "--nats", nats_server.url, "--log", str(tmp_path / "log"), "--producer", "gw1")
    assert _collect(nats_server, store)["stored"] == 20  # the durable replaced: both kinds now
    _publish(nats_server, tmp_path / "cursor.json", flows)
    assert _collect(nats_server, store)["stored"] == len(_lines(flows))
    assert read_flow_summaries(store).num_rows == len(_lines(flows))
    assert sorted(flow_ids(store)) == list(range(20))

    async def durable_filter() -> tuple[list[str], str | None]:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            si, ci = await js.stream_info(STREAM), await js.consumer_info(STREAM, DURABLE)
            return list(si.config.subjects or []), ci.config.filter_subject
        finally:
            await nc.close()

    subjects, filt = asyncio.run(durable_filter())
    assert subjects == ["sluice.decisions.>", "sluice.flows.>"] and not filt
