"""Decisions/s from three gateways through NATS JetStream into the decisions store, beside writing
the same decisions straight into the same kind of store.

Usage::

    python bench/bench_stream.py [--per-gateway 20000] [--stores parquet,postgresql] [--repeat 2]
    python bench/bench_stream.py --snapshot 1200000   # the register snapshot's size and times

Three decision logs (``DecisionLog``, one per gateway, written before the clock starts) are
published by three ``sluice publish`` processes into a real ``nats-server -js`` (file store in
a temporary directory) and consumed by one ``sluice collect`` process into a fresh store: a
Parquet directory, or a database on a throwaway PostgreSQL (``fsync=off``, as the tests run it).
The collector is started and subscribed first; the clock runs from the publishers' launch (their
interpreter start-up included) to the collector's report that every record is stored.

Baseline, same input: the same lines handed to the same sink in this process, in batches of the
collector's ``--flush-rows`` (10,000): ``ParquetSink.store`` (files + key index) and
``PostgresSink.store`` (COPY + INSERT ... ON CONFLICT). Ratio = through the broker / straight.

The servers come from the test kit (``tests/cluster/streamkit.py``), so run it from the
repository root with the test extra installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster.streamkit import Nats, Pg  # noqa: E402

from sluice.cluster.sinks import Incoming, ParquetSink, PostgresSink, Sink  # noqa: E402
from sluice.cluster.stream import stream_state  # noqa: E402
from sluice.decisions.log import DecisionLog, segments  # noqa: E402
from sluice.policy.model import Action, Decision, Mode, RegisterRef  # noqa: E402

GATEWAYS = 3
FLUSH_ROWS = 10_000
_TOTAL = re.compile(r"\(total (\d+),")


def gateway_decision(g: int, i: int) -> Decision:
    """A decision like a gateway's: a third blocks a register entry with its basis."""
    block = i % 3 == 0
    return Decision(
        time=1_780_000_000.0 + i * 0.01 + g * 0.001,
        flow_id=i,
        flow_key=f"tcp 10.{g}.{i // 250 % 250}.{i % 250 + 1}:{40000 + i % 20000}"
        f" > 203.0.113.{i % 250 + 1}:443",
        server_name=f"host{i % 5000}.example{g}.ru",
        app="tls",
        rule="register-block" if block else "(default)",
        rule_index=0 if block else -1,
        action=Action.BLOCK if block else Action.ALLOW,
        mode=Mode.ENFORCE,
        enforced=block,
        verdict_class="benign",
        confidence=0.93,
        detector="combiner",
        evidence=("tls.sni: server_name=host.example.ru",),
        register=(
            (
                RegisterRef(
                    query=f"host{i % 5000}.example{g}.ru",
                    reason="domain suffix",
                    source="rkn",
                    kind="domain",
                    indicator=f"example{g}.ru",
                    basis=("27-31-2020/Ид2971-18",),
                ),
            )
            if block
            else ()
        ),
        policy="0123456789abcdef",
        stage="settled",
        decided_at=0,
    )


def write_logs(d: Path, per: int) -> list[Path]:
    logs = []
    for g in range(GATEWAYS):
        p = d / f"gw{g}"
        with DecisionLog(p, fsync="never") as log:
            for i in range(per):
                log.write(gateway_decision(g, i))
        logs.append(p)
    return logs


def lines_of(logs: list[Path]) -> list[Incoming]:
    out = []
    seq = 0
    for g, log in enumerate(logs):
        for seg in segments(log):
            off = 0
            for line in seg.read_bytes().splitlines(keepends=True):
                seq += 1
                out.append(Incoming(f"gw{g}/./{seg.name}/{off}", f"gw{g}", line.rstrip(b"\n"), seq))
                off += len(line)
    return out


def straight(sink: Sink, rows: list[Incoming]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(rows), FLUSH_ROWS):
        sink.store(rows[i : i + FLUSH_ROWS])
    dt = time.perf_counter() - t0
    sink.close()
    return dt


def _sluice(*args: str, **kw: object) -> subprocess.Popen[str]:
    p: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-m", "sluice", *args], text=True, **kw
    )
    return p


def through_broker(nats: Nats, store: str, logs: list[Path], total: int, work: Path) -> dict[str, float]:
    col = _sluice(
        "collect",
        "--nats",
        nats.url,
        "--store",
        store,
        "--flush-rows",
        str(FLUSH_ROWS),
        "--idle",
        "20",
        "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    done = threading.Event()
    t_done = [0.0]
    tail: list[str] = []

    def watch() -> None:
        assert col.stderr is not None
        for line in col.stderr:
            tail.append(line)
            m = _TOTAL.search(line)
            if m and int(m.group(1)) >= total and not done.is_set():
                t_done[0] = time.perf_counter()
                done.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + 120
    while "ack_pending" not in _state(nats) or _state(nats).get("pending", 1) != 0:
        if time.monotonic() > deadline:
            raise SystemExit("the collector did not subscribe")
        time.sleep(0.2)
    t0 = time.perf_counter()
    pubs = [
        _sluice(
            "publish",
            "--nats",
            nats.url,
            "--log",
            str(log),
            "--producer",
            f"gw{g}",
            "--state",
            str(work / f"cursor-gw{g}.json"),
            stdout=subprocess.DEVNULL,
        )
        for g, log in enumerate(logs)
    ]
    for p in pubs:
        p.wait()
    t_pub = time.perf_counter() - t0
    if not done.wait(600):
        col.kill()
        raise SystemExit("the collector did not store everything: " + "".join(tail[-20:]))
    out, _ = col.communicate(timeout=120)
    summary = json.loads(out.strip().splitlines()[-1])
    if summary["stored"] != total or summary["duplicates"] != 0:
        raise SystemExit(f"stored {summary['stored']} of {total}, {summary['duplicates']} duplicates")
    return {"wall_s": t_done[0] - t0, "publish_s": t_pub, "collector_busy_s": summary["busy_s"]}


def _state(nats: Nats) -> dict[str, int]:
    try:
        s = stream_state(nats.url)
    except Exception:  # stream not there yet
        return {}
    return s


SHARED_DUMP = ROOT.parent / "shared" / "registry-data" / "zi_dump_2016-06-13.csv"


def snapshot_costs(entries: int) -> None:
    """``--snapshot``: size and times of a signed register snapshot, of the real 2016 RKN dump
    (from ../shared, when there) and of ``entries`` synthetic rows shaped like it
    (``bench_registry.build_dump``): what shipping the register to a fleet costs."""
    from bench_registry import build_dump

    from sluice.registry.snapshot import (
        generate_key,
        load_private_key,
        load_public_key,
        publish_snapshot,
        read_snapshot,
    )
    from sluice.registry.stores import SqliteStore
    from sluice.registry.sync import import_files

    with tempfile.TemporaryDirectory(prefix="sluice-bench-snap-") as tmp:
        d = Path(tmp)
        generate_key(d / "key.pem", d / "key.pub")
        key, pub = load_private_key(d / "key.pem"), load_public_key(d / "key.pub")
        dumps = [("real RKN dump 2016-06-13", SHARED_DUMP)] if SHARED_DUMP.is_file() else []
        synthetic = d / "dump.csv"
        build_dump(synthetic, entries)
        dumps.append((f"synthetic, {entries:,} rows", synthetic))
        for name, dump in dumps:
            store = SqliteStore(d / f"{dump.stem}.db", create=True)
            import_files(store, [dump])
            t = time.perf_counter()
            h = publish_snapshot(store, d / f"{dump.stem}.snap", key)
            t_pub = time.perf_counter() - t
            store.close()
            size = (d / f"{dump.stem}.snap").stat().st_size
            t = time.perf_counter()
            snap = read_snapshot(d / f"{dump.stem}.snap", pub)
            t_read = time.perf_counter() - t
            t = time.perf_counter()
            snap.matchers()
            t_match = time.perf_counter() - t
            print(
                f"snapshot of {name}: {h.entries:,} entries, {size / 1e6:.1f} MB"
                f" ({size / max(h.entries, 1):.1f} B/entry, signed zlib JSON);"
                f" publish {t_pub:.1f} s, verify+parse {t_read:.1f} s, matchers {t_match:.1f} s;"
                f" 1,000 gateways: {size * 1000 / 1e9:.1f} GB"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-gateway", type=int, default=20_000)
    ap.add_argument("--stores", default="parquet,postgresql")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--snapshot", type=int, metavar="ENTRIES", help="Measure register snapshots instead.")
    a = ap.parse_args()
    if a.snapshot:
        snapshot_costs(a.snapshot)
        return
    total = GATEWAYS * a.per_gateway
    import psycopg  # noqa: F401 - imported before any clock, as the collector's start-up is
    import pyarrow.parquet  # noqa: F401

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-stream-") as tmp:
        work = Path(tmp)
        logs = write_logs(work / "logs", a.per_gateway)
        rows = lines_of(logs)
        assert len(rows) == total
        size = sum(len(r.data) for r in rows)
        print(
            f"{total} decisions from {GATEWAYS} gateways, {size / total:.0f} bytes each;"
            f" load {os.getloadavg()}"
        )
        pg = Pg() if "postgresql" in a.stores else None
        try:
            for kind in a.stores.split(","):
                r = results.setdefault(kind, {"straight": [], "broker": [], "publish": [], "busy": []})
                for k in range(a.repeat):
                    tag = f"{kind}{k}"
                    target = pg.new_database() if pg and kind == "postgresql" else str(work / f"s-{tag}")
                    sink: Sink = PostgresSink(target) if kind == "postgresql" else ParquetSink(target)
                    r["straight"].append(straight(sink, rows))
                    nats = Nats(work / f"js-{tag}")
                    try:
                        store = pg.new_database() if pg and kind == "postgresql" else str(work / f"b-{tag}")
                        b = through_broker(nats, store, logs, total, work)
                    finally:
                        nats.stop()
                    for f in ("cursor-gw0.json", "cursor-gw1.json", "cursor-gw2.json"):
                        (work / f).unlink(missing_ok=True)
                    r["broker"].append(b["wall_s"])
                    r["publish"].append(b["publish_s"])
                    r["busy"].append(b["collector_busy_s"])
                    print(
                        f"{kind} round {k}: straight {total / r['straight'][-1]:,.0f}/s; through the broker "
                        f"{total / b['wall_s']:,.0f}/s end to end"
                        f" (publishers done in {b['publish_s']:.1f} s, "
                        f"collector busy {b['collector_busy_s']:.1f} s); load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        finally:
            if pg is not None:
                pg.stop()
    print("\nmedians:")
    for kind, r in results.items():
        s_rate = total / statistics.median(r["straight"])
        b_rate = total / statistics.median(r["broker"])
        c_rate = total / statistics.median(r["busy"])
        print(
            f"  {kind:<10} straight {s_rate:>9,.0f}/s   broker end-to-end {b_rate:>9,.0f}/s   "
            f"ratio {b_rate / s_rate:.2f}   (collector busy: {c_rate:,.0f}/s)"
        )


if __name__ == "__main__":
    main()
