"""The decisions store without the broker: the Parquet sink's key index (replays, a crash between
a file's rename and its keys' commit, a second writer), PostgreSQL's, and the readers -
``read_decisions``, ``sluice decisions --log`` and the console's index - on both."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from sluice.cluster.sinks import Incoming, ParquetSink, PostgresSink
from sluice.decisions import DecisionFilter, ReadStats, read_decisions
from sluice.decisions.store import is_store, store_files
from sluice.errors import ConfigError
from tests.cluster.streamkit import BASE_TS, Pg, decision, stored_keys

N = 600


def _incoming(lo: int, hi: int, producer: str = "gw1") -> list[Incoming]:
    return [
        Incoming(
            f"{producer}/./decisions.000001.jsonl/{i}", producer, orjson.dumps(decision(i).to_dict()), i + 1
        )
        for i in range(lo, hi)
    ]


def test_parquet_sink_stores_each_key_once(tmp_path: Path) -> None:
    root = tmp_path / "store"
    sink = ParquetSink(root)
    assert sink.store(_incoming(0, 400)) == 400
    assert sink.store(_incoming(200, N)) == N - 400  # a replay overlapping new records
    assert sink.store(_incoming(0, N)) == 0
    with pytest.raises(ConfigError, match="another collector"):
        ParquetSink(root)
    sink.close()
    assert is_store(root)
    days = sorted(p.parent.name for p in store_files(root))
    assert days[0] == "day=2026-05-28" and days[-1] == "day=2026-05-29"  # 600 x 30 s spans midnight
    keys = stored_keys(root)
    assert len(keys) == N and len(set(keys)) == N
    again = ParquetSink(root)  # a restarted collector: the index is on disk
    try:
        assert again.store(_incoming(0, N)) == 0
    finally:
        again.close()


def test_parquet_sink_crash_between_rename_and_index(tmp_path: Path) -> None:
    """Files whose keys never reached the index (the collector died after the rename) are read
    into it on the next open, and leftover temporary files are deleted."""
    root = tmp_path / "store"
    sink = ParquetSink(root)
    sink.store(_incoming(0, N))
    sink.close()
    for p in root.glob(".keys.sqlite*"):
        p.unlink()  # as if no key had been committed
    day = store_files(root)[0].parent
    (day / ".tmp-part-000000000999-000000001000.parquet").write_bytes(b"half a file")
    sink = ParquetSink(root)
    try:
        assert sink.store(_incoming(0, N + 50)) == 50
    finally:
        sink.close()
    assert not list(day.glob(".tmp-*"))
    assert sorted(d.flow_id for d in read_decisions(root)) == list(range(N + 50))


def test_read_store_filters_and_counts(tmp_path: Path) -> None:
    root = tmp_path / "store"
    sink = ParquetSink(root)
    sink.store([*_incoming(0, N), Incoming("gw1/x/1", "gw1", b"not json", 10_000)])
    sink.close()
    st = ReadStats()
    found = list(read_decisions(root, DecisionFilter(since=BASE_TS + 30 * 500, action="block"), st))
    assert [d.flow_id for d in found] == [i for i in range(500, N) if i % 3 == 0]
    assert st.reasons == {"decisions.bad_json": 1}  # kept in the store, never taken for a decision
    (store_files(root)[-1].parent / "part-999999999999-999999999999.parquet").write_bytes(b"PAR1 broken")
    st = ReadStats()
    assert len(list(read_decisions(root, None, st))) == N
    assert st.reasons["decisions.bad_file"] == 1


def test_postgres_sink_and_reader(pg: Pg) -> None:
    url = pg.new_database()
    sink = PostgresSink(url)
    try:
        assert sink.store(_incoming(0, 400)) == 400
        assert sink.store([*_incoming(200, N), Incoming("gw1/x/1", "gw1", b'{"a": "\\u0000"', 9)]) == N - 399
        assert sink.store(_incoming(0, N)) == 0
    finally:
        sink.close()
    st = ReadStats()
    assert [d.flow_id for d in read_decisions(url, None, st)] == list(range(N))
    assert st.reasons == {"decisions.not_a_decision": 1}
    found = list(read_decisions(url, DecisionFilter(until=BASE_TS + 30 * 10)))
    assert [d.flow_id for d in found] == list(range(10))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_decisions_command_reads_both_stores(tmp_path: Path, pg: Pg) -> None:
    root, url = tmp_path / "store", pg.new_database()
    for sink in (ParquetSink(root), PostgresSink(url)):
        sink.store(_incoming(0, N))
        sink.close()
    for where in (str(root), url):
        r = _cli("decisions", "--log", where, "--action", "block", "--format", "jsonl")
        assert r.returncode == 0, r.stderr
        ids = [json.loads(line)["flow_id"] for line in r.stdout.splitlines()]
        assert ids == [i for i in range(N) if i % 3 == 0]
    pg.halt()
    try:
        r = _cli("decisions", "--log", url)
        assert r.returncode == 3 and "cannot connect" in r.stderr
    finally:
        pg.resume()


def test_console_index_reads_the_parquet_store(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from sluice.console.decindex import DecisionIndex, DecisionQuery

    root = tmp_path / "store"
    sink = ParquetSink(root)
    sink.store(_incoming(0, 400, "gw1") + _incoming(400, N, "gw2"))
    idx = DecisionIndex(root, tmp_path / "index.sqlite")
    try:
        assert idx.refresh() == N
        assert idx.refresh() == 0  # files never change: read once
        sink.store(_incoming(N, N + 10, "gw3"))
        assert idx.refresh() == 10
        assert idx.count(DecisionQuery(action="block")) == len([i for i in range(N + 10) if i % 3 == 0])
        rows, _ = idx.page(DecisionQuery(), limit=1)
        full = idx.get(int(rows[0]["id"]))
        assert full is not None and full["flow_id"] == N + 9 and full["writer"] == "gw3"
        assert sorted(w["writer"] for w in idx.writers()) == ["gw1", "gw2", "gw3"]
        shutil.rmtree(store_files(root)[0].parent)  # a day dropped (retention): its rows go too
        idx.refresh()
        assert idx.count() < N + 10
    finally:
        idx.close()
        sink.close()


def test_cli_refusals(tmp_path: Path) -> None:
    """A producer name that cannot be a subject token exits 2; an unreachable broker's status
    exits 3; a second collector on one Parquet store exits 2; all before any message moves."""
    (tmp_path / "log").mkdir()
    r = _cli("publish", "--nats", "nats://127.0.0.1:1", "--log", str(tmp_path / "log"), "--producer", "gw.1")
    assert r.returncode == 2 and "producer" in r.stderr
    r = _cli("collect", "--nats", "nats://127.0.0.1:1", "--status")
    assert r.returncode == 3 and "cannot reach the broker" in r.stderr
    sink = ParquetSink(tmp_path / "store")
    try:
        r = _cli("collect", "--nats", "nats://127.0.0.1:1", "--store", str(tmp_path / "store"))
        assert r.returncode == 2 and "another collector" in r.stderr
    finally:
        sink.close()


def test_console_index_reads_the_postgres_store(tmp_path: Path, pg: Pg) -> None:
    pytest.importorskip("fastapi")
    from sluice.console.decindex import DecisionIndex, DecisionQuery

    url = pg.new_database()
    sink = PostgresSink(url)
    sink.store(_incoming(0, 400, "gw1") + _incoming(400, N, "gw2"))
    idx = DecisionIndex(url, tmp_path / "index.sqlite")
    try:
        assert idx.refresh() == N
        assert idx.refresh() == 0
        sink.store(_incoming(N - 5, N, "gw2") + _incoming(N, N + 10, "gw3"))  # 5 already there
        assert idx.refresh() == 10
        assert idx.count(DecisionQuery(action="block")) == len([i for i in range(N + 10) if i % 3 == 0])
        rows, _ = idx.page(DecisionQuery(), limit=1)
        full = idx.get(int(rows[0]["id"]))
        assert full is not None and full["flow_id"] == N + 9 and full["writer"] == "gw3"
        pg.halt()  # the store away: the index keeps what it has
        try:
            assert idx.refresh() == 0 and idx.count() == N + 10
        finally:
            pg.resume()
    finally:
        idx.close()
        sink.close()
