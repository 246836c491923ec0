"""Decisions to one place: gateway decision logs shipped through NATS JetStream into PostgreSQL.

Theory of operation:

* **ship** (one per gateway or analysis box): reads the decision log's segments (which are never
  renamed, :mod:`sluice.decisions.log`) from a cursor ``(segment, byte offset)`` kept in a state
  file, and publishes every complete line to ``sluice.decisions.<producer>`` with the header
  ``Nats-Msg-Id: <producer>/<segment>/<offset>`` - a key that names the record, not the attempt.
  The cursor moves (write to a temporary file, fsync, rename) only after JetStream acknowledged
  every message before it, so a shipper killed at any point publishes again what it may have
  sent: at least once. JetStream drops a repeated ``Nats-Msg-Id`` within its duplicate window.
* **collect**: a durable pull consumer (``sluice-collect``, explicit acks) fetches batches,
  inserts them into ``stream_decisions`` keyed by the same id (``ON CONFLICT DO NOTHING``) in one
  transaction, and acknowledges only after the commit. A collector killed before its acks gets
  the batch again (after ``ack_wait``), and the key makes the replay a no-op: nothing lost,
  nothing counted twice.
"""

from __future__ import annotations

__all__ = ["STREAM", "collect", "ship"]

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.decisions.log import log_dirs, segments

STREAM = "SLUICE_DECISIONS"
SUBJECTS = "sluice.decisions.>"
DURABLE = "sluice-collect"
BATCH = 256

_SCHEMA = """CREATE TABLE IF NOT EXISTS stream_decisions (
  key TEXT PRIMARY KEY, producer TEXT NOT NULL, record JSONB NOT NULL,
  received TIMESTAMPTZ NOT NULL DEFAULT now())"""


async def _stream(js: Any) -> None:
    from nats.js.api import StreamConfig

    cfg = StreamConfig(name=STREAM, subjects=[SUBJECTS], duplicate_window=600.0)
    try:
        await js.stream_info(STREAM)
    except Exception:  # not found: create it (another process may have, meanwhile)
        try:
            await js.add_stream(cfg)
        except Exception:
            await js.stream_info(STREAM)


def _load_cursor(state: Path) -> dict[str, list[Any]]:
    try:
        data: dict[str, list[Any]] = json.loads(state.read_text())
        return data
    except FileNotFoundError:
        return {}


def _save_cursor(state: Path, cursor: dict[str, list[Any]]) -> None:
    tmp = state.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cursor, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state)


def _pending(log: Path, producer: str, cursor: dict[str, list[Any]]) -> list[tuple[str, str, int, bytes]]:
    """(directory, segment name, end offset, line) of complete lines after the cursor, in order."""
    out = []
    for d in log_dirs(log):
        rel = str(d.relative_to(log)) if d != log else "."
        seg0, off0 = cursor.get(rel, ["", 0])
        for seg in segments(d):
            if seg.name < seg0:
                continue
            start = off0 if seg.name == seg0 else 0
            with open(seg, "rb") as f:
                f.seek(start)
                data = f.read()
            pos = start
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break  # being written: next time
                pos += len(line)
                if line.strip():
                    out.append((rel, seg.name, pos, line.rstrip(b"\n")))
    return out


async def _ship(servers: str, log: Path, producer: str, state: Path, follow_s: float | None) -> int:
    import nats

    nc = await nats.connect(servers, max_reconnect_attempts=-1, reconnect_time_wait=1)
    js = nc.jetstream()
    await _stream(js)
    cursor = _load_cursor(state)
    sent = 0
    try:
        while True:
            todo = _pending(log, producer, cursor)
            for i in range(0, len(todo), BATCH):
                chunk = todo[i : i + BATCH]
                acks = [
                    js.publish(
                        f"sluice.decisions.{producer}",
                        line,
                        headers={"Nats-Msg-Id": f"{producer}/{rel}/{seg}/{end - len(line) - 1}"},
                    )
                    for rel, seg, end, line in chunk
                ]
                try:
                    await asyncio.gather(*acks)
                except Exception:  # broker away or slow: the cursor stays, the same ids go again
                    await asyncio.sleep(1.0)
                    break
                for rel, seg, end, _line in chunk:  # acknowledged: the cursor may pass them
                    cursor[rel] = [seg, end]
                _save_cursor(state, cursor)
                sent += len(chunk)
            if follow_s is None:
                return sent
            await asyncio.sleep(follow_s)
    finally:
        await nc.drain()


def ship(
    servers: str, log: str | Path, producer: str, state: str | Path, follow_s: float | None = None
) -> int:
    """Publish the decision log's new records to JetStream; how many were published.

    Args:
        servers: NATS URL(s), comma-separated.
        log: decision log directory (``worker-*`` subdirectories included).
        producer: this box's name (in the subject and every record's key).
        state: the cursor file.
        follow_s: keep following the log, checking every so many seconds (None: once).
    """
    return asyncio.run(_ship(servers, Path(log), producer, Path(state), follow_s))


async def _collect(
    servers: str, store_url: str, idle_s: float | None, report: Callable[[int, int], None] | None
) -> int:
    import nats
    import psycopg
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(servers, max_reconnect_attempts=-1, reconnect_time_wait=1)
    js = nc.jetstream()
    await _stream(js)
    sub = await js.pull_subscribe(
        SUBJECTS, durable=DURABLE, config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=5.0)
    )
    stored = 0
    idle = 0.0
    conn = psycopg.connect(store_url)
    conn.execute(_SCHEMA)
    conn.commit()
    try:
        while idle_s is None or idle < idle_s:
            try:
                msgs = await sub.fetch(BATCH, timeout=1.0)
            except NatsTimeout:
                idle += 1.0
                continue
            except Exception:  # broker away: reconnecting meanwhile
                await asyncio.sleep(1.0)
                continue
            idle = 0.0
            rows = [
                (m.headers["Nats-Msg-Id"], m.subject.rsplit(".", 1)[-1], m.data.decode())
                for m in msgs
                if m.headers and "Nats-Msg-Id" in m.headers
            ]
            try:
                conn = conn if not conn.closed else psycopg.connect(store_url)
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO stream_decisions (key, producer, record) VALUES (%s, %s, %s)"
                        " ON CONFLICT (key) DO NOTHING",
                        rows,
                    )
                conn.commit()  # stored first, acknowledged after: a crash between replays the batch
            except psycopg.Error:  # store down: no ack, the batch comes back after ack_wait
                with contextlib.suppress(psycopg.Error):
                    conn.close()
                await asyncio.sleep(1.0)
                continue
            for m in msgs:
                await m.ack()
            stored += len(rows)
            if report is not None:
                report(len(rows), stored)
    finally:
        await nc.drain()
        conn.close()
    return stored


def collect(
    servers: str,
    store_url: str,
    *,
    idle_s: float | None = None,
    report: Callable[[int, int], None] | None = None,
) -> int:
    """Consume the decision stream into PostgreSQL (``stream_decisions``); messages handled.

    Args:
        servers: NATS URL(s).
        store_url: ``postgresql://`` URL of the decisions store.
        idle_s: stop after this many seconds without a message (None: run until killed).
        report: called with (batch size, total) after each committed batch.
    """
    return asyncio.run(_collect(servers, store_url, idle_s, report))


def main(argv: list[str] | None = None) -> None:
    """``python -m sluice.cluster.stream ship|collect ...`` (the processes the tests kill)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sluice.cluster.stream")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ship")
    s.add_argument("--nats", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--producer", required=True)
    s.add_argument("--state", required=True)
    s.add_argument("--follow", type=float, default=None)
    c = sub.add_parser("collect")
    c.add_argument("--nats", required=True)
    c.add_argument("--store", required=True)
    c.add_argument("--idle", type=float, default=None)
    a = ap.parse_args(argv)
    if a.cmd == "ship":
        print(json.dumps({"published": ship(a.nats, a.log, a.producer, a.state, a.follow)}), flush=True)
    else:
        done = collect(a.nats, a.store, idle_s=a.idle, report=lambda n, t: print(f"stored {t}", flush=True))
        print(json.dumps({"collected": done}), flush=True)


if __name__ == "__main__":
    main()
