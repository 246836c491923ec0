"""Decisions to one place: decision logs (and flow summaries) published to NATS JetStream,
collected into a store.

Theory of operation:

* **publish** (``sluice publish``, one per gateway or analysis box): reads a decision log's
  segments (never renamed, :mod:`sluice.decisions.log`) - or a JSON-lines file of decisions -
  from a cursor ``(segment, byte offset)`` kept in a state file, and publishes every complete
  line to ``sluice.decisions.<producer>`` with the header
  ``Nats-Msg-Id: <producer>/<dir>/<segment>/<offset>``: a key that names the record, not the
  attempt. The cursor moves (temporary file, fsync, rename) only after JetStream acknowledged
  every message before it, so a publisher killed at any point publishes again what it may have
  sent: at least once. JetStream drops a repeated ``Nats-Msg-Id`` within its duplicate window,
  and the store drops it after that (below).
* **flow summaries** (``sluice publish --flows FILE...``: lines of ``sluice flows`` or
  ``sluice analyze --format jsonl``) take the same path on ``sluice.flows.<producer>``, each
  file's cursor and keys named ``flows@<digest of its name and first line>``
  (``<producer>/flows@<digest>/<file name>/<offset>``): the same file published again, even
  copied elsewhere or with a new cursor, is the same records. The store keeps them apart from
  the decisions (:mod:`sluice.cluster.sinks`).
* **collect** (``sluice collect``): a durable pull consumer (``sluice-collect`` for both kinds,
  ``sluice-collect-decisions`` or ``sluice-collect-flows`` for one; explicit acks)
  fetches messages, gathers them for up to ``flush_rows`` records or ``flush_s`` seconds, hands
  them to a sink (:mod:`sluice.cluster.sinks`: Parquet directory or PostgreSQL) that stores each
  key at most once, and acknowledges them only after the sink returned. A collector killed
  between the two gets the messages again (after ``ack_wait``) and the key makes the replay a
  no-op: nothing lost, nothing counted twice.
* **Faults**: a broker away is reconnected to for ever (fetches fail meanwhile; nothing is
  acknowledged that was not stored). A store away (:class:`~sluice.cluster.sinks.StoreUnavailable`)
  keeps the batch in memory, unacknowledged; the collector retries it with exponential backoff
  (``retry_s`` doubling up to ``retry_max_s``), tells JetStream the messages are still being
  worked on (so they are not redelivered meanwhile), reports each failure and the recovery, and
  fetches nothing new until the batch is stored.

For tests, ``SLUICE_COLLECT_EXIT_BEFORE_ACK=N`` makes the collector exit (status 17) right after
its N-th stored batch and before acknowledging it: the crash the keys are there for.
"""

from __future__ import annotations

__all__ = [
    "DURABLE",
    "STREAM",
    "CollectConfig",
    "CollectStats",
    "collect",
    "ship",
    "stats_dict",
    "stream_state",
]

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sluice.cluster.sinks import KINDS, Incoming, Sink, StoreUnavailable, open_sink
from sluice.decisions.log import log_dirs, segments
from sluice.errors import ConfigError

STREAM = "SLUICE_DECISIONS"
"""The one stream (its name kept from when it carried decisions only)."""
SUBJECTS = "sluice.decisions.>"
FLOW_SUBJECTS = "sluice.flows.>"
DURABLE = "sluice-collect"
"""The collector's durable consumer (both kinds; ``sluice-collect-<kind>`` for one)."""
PUBLISH_BATCH = 256
"""Messages published before waiting for their acknowledgements."""
DUPLICATE_WINDOW_S = 600.0
"""JetStream drops a repeated ``Nats-Msg-Id`` within this many seconds (the store after that)."""
EXIT_BEFORE_ACK_ENV = "SLUICE_COLLECT_EXIT_BEFORE_ACK"
_PRODUCER = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def _stream(js: Any) -> None:
    from nats.js.api import StreamConfig

    cfg = StreamConfig(name=STREAM, subjects=[SUBJECTS, FLOW_SUBJECTS], duplicate_window=DUPLICATE_WINDOW_S)
    try:
        si = await js.stream_info(STREAM)
    except Exception:  # not found: create it (another process may have, meanwhile)
        try:
            await js.add_stream(cfg)
        except Exception:
            si = await js.stream_info(STREAM)
        else:
            return
    if FLOW_SUBJECTS not in (si.config.subjects or []):  # a stream from before flow summaries
        si.config.subjects = [*(si.config.subjects or []), FLOW_SUBJECTS]
        await js.update_stream(si.config)


async def _quiet(_exc: Exception) -> None:
    return None


async def _probe(servers: str) -> Any:
    """One connection attempt per server (nats-py retries a first connection as often as it
    reconnects: for ever with ``max_reconnect_attempts=-1``, never saying so)."""
    import nats

    return await nats.connect(
        servers, max_reconnect_attempts=1, reconnect_time_wait=0.2, connect_timeout=5, error_cb=_quiet
    )


async def _connect(servers: str, report: Callable[[str], None] | None = None) -> Any:
    """A NATS connection that reconnects for ever; the first connection is retried with backoff
    and each failure reported."""
    import nats

    wait = 0.5
    while True:
        try:
            await (await _probe(servers)).close()
            return await nats.connect(
                servers,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=5,
                error_cb=_quiet,  # the client's own errors: its reconnects and our retries handle them
            )
        except Exception as exc:  # no server yet: retry with backoff
            if report is not None:
                report(f"broker unavailable ({type(exc).__name__}); retrying in {wait:g} s")
            await asyncio.sleep(wait)
            wait = min(wait * 2, 10.0)


# -- publishing --


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


Sources = Callable[[], list[tuple[str, list[Path]]]]
"""What to publish, asked again on every pass: (cursor name, files oldest first) of each source.
The cursor name is part of every record's key."""


def _log_sources(log: Path) -> Sources:
    """A decision log directory (and its ``worker-*`` ones), or a file (cursor name ``.``)."""

    def sources() -> list[tuple[str, list[Path]]]:
        if log.is_file():
            return [(".", [log])]
        return [(str(d.relative_to(log)) if d != log else ".", segments(d)) for d in log_dirs(log)]

    return sources


def _flow_sources(files: Sequence[Path]) -> Sources:
    """Flow-summary files, each named ``flows@<digest of its name and first line>``: the same
    file published again - from another directory, another cursor, another run - gives the same
    keys, and files of the same name with other flows do not collide. A file whose first line
    is not complete yet, or that is gone, waits."""

    def sources() -> list[tuple[str, list[Path]]]:
        out = []
        for f in files:
            try:
                with open(f, "rb") as fh:
                    first = fh.readline(1 << 20)
            except FileNotFoundError:
                continue
            if first.endswith(b"\n"):
                digest = hashlib.sha256(f.name.encode() + b"\n" + first).hexdigest()[:16]
                out.append((f"flows@{digest}", [f]))
        return out

    return sources


def _pending(sources: Sources, cursor: dict[str, list[Any]]) -> list[tuple[str, str, int, bytes]]:
    """(cursor name, file name, end offset, line) of complete lines after the cursor, in order."""
    out = []
    for rel, files in sources():
        seg0, off0 = cursor.get(rel, ["", 0])
        for seg in files:
            if seg.name < seg0:
                continue
            start = off0 if seg.name == seg0 else 0
            try:
                with open(seg, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:  # rotated away meanwhile
                continue
            pos = start
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break  # being written: next time
                pos += len(line)
                if line.strip():
                    out.append((rel, seg.name, pos, line.rstrip(b"\n")))
    return out


async def _ship(
    servers: str, sources: Sources, subject: str, producer: str, state: Path, follow_s: float | None
) -> int:
    nc = await _connect(servers)
    js = nc.jetstream()
    await _stream(js)
    cursor = _load_cursor(state)
    sent = 0
    try:
        while True:
            todo = _pending(sources, cursor)
            for i in range(0, len(todo), PUBLISH_BATCH):
                chunk = todo[i : i + PUBLISH_BATCH]
                acks = [
                    js.publish(
                        subject,
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
            else:
                if follow_s is None:
                    return sent
                await asyncio.sleep(follow_s)
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


def ship(
    servers: str,
    log: str | Path | Sequence[str | Path],
    producer: str,
    state: str | Path,
    follow_s: float | None = None,
    kind: str = "decisions",
) -> int:
    """Publish the new records of a decision log, or of flow-summary files, to JetStream; how
    many were published.

    Args:
        servers: NATS URL(s), comma-separated.
        log: for ``decisions``, a decision log directory (``worker-*`` subdirectories included)
            or a JSON-lines file; for ``flows``, JSON-lines files of flow summaries
            (``sluice flows``/``sluice analyze --format jsonl``).
        producer: this box's name (in the subject and every record's key).
        state: the cursor file.
        follow_s: keep following the files, checking every so many seconds (None: stop when all
            that is there is published).
        kind: ``decisions`` (subject ``sluice.decisions.<producer>``) or ``flows``
            (``sluice.flows.<producer>``).

    Raises:
        ConfigError: a producer name that cannot be a subject token, an unknown kind.
    """
    if not _PRODUCER.fullmatch(producer):
        raise ConfigError("producer", f"{producer!r}: 1-64 letters, digits, '-' or '_'")
    if kind not in KINDS:
        raise ConfigError("kind", f"{kind!r}: one of {', '.join(KINDS)}")
    if kind == "flows":
        paths = [Path(log)] if isinstance(log, str | Path) else [Path(p) for p in log]
        sources = _flow_sources(paths)
    else:
        if not isinstance(log, str | Path):
            raise ConfigError("log", "one decision log at a time")
        sources = _log_sources(Path(log))
    return asyncio.run(_ship(servers, sources, f"sluice.{kind}.{producer}", producer, Path(state), follow_s))


# -- collecting --


@dataclass(frozen=True, slots=True)
class CollectConfig:
    """How ``sluice collect`` runs."""

    servers: str
    """NATS URL(s), comma-separated."""
    store: str = "decisions-store"
    """Parquet store directory, or a ``postgresql://`` URL."""
    fetch: int = 1000
    """Messages asked for per fetch."""
    flush_rows: int = 10_000
    """A batch is stored when it has this many records ..."""
    flush_s: float = 1.0
    """... or when its first record has waited this long (seconds)."""
    ack_wait_s: float = 30.0
    """JetStream redelivers a message not acknowledged within this (seconds)."""
    retry_s: float = 1.0
    """First wait after a failed store (seconds); doubled each time ..."""
    retry_max_s: float = 15.0
    """... up to this (below ``ack_wait_s``)."""
    idle_s: float | None = None
    """Stop after this long without a message, everything stored (None: run until stopped)."""
    kinds: tuple[str, ...] = KINDS
    """What to take from the stream: ``decisions``, ``flows`` (flow summaries), or both."""


@dataclass
class CollectStats:
    """What a collector did."""

    acked: int = 0
    """Messages acknowledged (stored, or already in the store)."""
    stored: int = 0
    """Records new to the store."""
    duplicates: int = 0
    """Records the store already had (replays: redeliveries, republished lines)."""
    batches: int = 0
    """Batches stored."""
    store_failures: int = 0
    """Failed attempts to store a batch."""
    store_down_s: float = 0.0
    """Time spent waiting for the store (seconds)."""
    busy_s: float = 0.0
    """Seconds from the first message received to the last batch stored."""


@dataclass(frozen=True, slots=True)
class _Msg:
    msg: Any
    incoming: Incoming


def _incoming(m: Any) -> Incoming | None:
    key = m.headers.get("Nats-Msg-Id") if m.headers else None
    parts = m.subject.split(".")
    if not key or len(parts) != 3 or parts[1] not in KINDS:
        return None  # not a sluice publisher's message: acknowledged, not stored
    return Incoming(key, parts[2], bytes(m.data), int(m.metadata.sequence.stream), parts[1])


async def _subscribe(js: Any, cfg: CollectConfig) -> Any:
    """The pull subscription of the collector's durable consumer for ``cfg.kinds``: filtered to
    one kind's subjects, or unfiltered (the whole stream) for both. A durable left with another
    filter (a collector from before flow summaries) is replaced: the new one starts from the
    stream's first message, and the store drops every key it already has."""
    from nats.js.api import AckPolicy, ConsumerConfig

    kinds = tuple(k for k in KINDS if k in cfg.kinds)
    durable = DURABLE if kinds == KINDS else f"{DURABLE}-{kinds[0]}"
    want = None if kinds == KINDS else f"sluice.{kinds[0]}.>"
    try:
        have = (await js.consumer_info(STREAM, durable)).config.filter_subject or None
    except Exception:  # none yet
        have = "absent"
    if have != want:
        if have != "absent":
            await js.delete_consumer(STREAM, durable)
        await js.add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=durable,
                filter_subject=want,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=cfg.ack_wait_s,
                max_ack_pending=max(2 * cfg.flush_rows, 1000),
            ),
        )
    return await js.pull_subscribe_bind(durable=durable, stream=STREAM)


async def _store_batch(
    sink: Sink, batch: list[_Msg], cfg: CollectConfig, st: CollectStats, report: Callable[[str], None]
) -> None:
    """Store, retrying with backoff until it works; then acknowledge."""
    rows = [b.incoming for b in batch]
    wait, down_since = cfg.retry_s, 0.0
    while True:
        try:
            n = await asyncio.to_thread(sink.store, rows)
            break
        except StoreUnavailable as exc:
            st.store_failures += 1
            down_since = down_since or time.monotonic()
            report(
                f"store unavailable: {exc}; {len(rows)} records held, not acknowledged;"
                f" retrying in {wait:g} s"
            )
            for b in batch:  # still being worked on: no redelivery meanwhile
                with contextlib.suppress(Exception):
                    await b.msg.in_progress()
            await asyncio.sleep(wait)
            wait = min(wait * 2, cfg.retry_max_s)
    if down_since:
        down = time.monotonic() - down_since
        st.store_down_s += down
        report(f"store back after {down:.1f} s; batch of {len(rows)} stored")
    st.batches += 1
    st.stored += n
    st.duplicates += len(rows) - n
    limit = os.environ.get(EXIT_BEFORE_ACK_ENV)
    if limit and st.batches >= int(limit):
        os._exit(17)  # the fault the keys are for: stored, not acknowledged
    for b in batch:
        with contextlib.suppress(Exception):  # broker away: redelivered later, a no-op in the store
            await b.msg.ack()
    st.acked += len(batch)
    report(f"stored {n} new of {len(rows)} (total {st.stored}, {st.duplicates} already there)")


async def _collect(cfg: CollectConfig, sink: Sink, report: Callable[[str], None]) -> CollectStats:
    from nats.errors import TimeoutError as NatsTimeout

    nc = await _connect(cfg.servers, report)
    js = nc.jetstream()
    await _stream(js)
    sub = await _subscribe(js, cfg)
    st = CollectStats()
    batch: list[_Msg] = []
    first = oldest = last = 0.0
    idle_since = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if batch and (len(batch) >= cfg.flush_rows or now - oldest >= cfg.flush_s):
                await _store_batch(sink, batch, cfg, st, report)
                batch = []
                last = time.monotonic()
                continue
            if not batch and cfg.idle_s is not None and now - idle_since >= cfg.idle_s:
                break
            # not shorter than receiving a fetch takes on a busy machine: a fetch cut short
            # leaves its messages queued and the next one asks again, ~1 message per fetch
            timeout = max(0.5, min(1.0, cfg.flush_s - (now - oldest))) if batch else 1.0
            try:
                msgs = await sub.fetch(min(cfg.fetch, cfg.flush_rows - len(batch)), timeout=timeout)
            except NatsTimeout:
                continue
            except Exception as exc:  # broker away: the client reconnects meanwhile
                report(f"broker unavailable ({type(exc).__name__}); fetching again in 1 s")
                await asyncio.sleep(1.0)
                continue
            idle_since = time.monotonic()
            first = first or idle_since
            for m in msgs:
                inc = _incoming(m)
                if inc is None:
                    with contextlib.suppress(Exception):
                        await m.ack()
                    continue
                if not batch:
                    oldest = time.monotonic()
                batch.append(_Msg(m, inc))
    finally:  # acks flushed out, then closed (a drain would wait on the pull requests)
        with contextlib.suppress(Exception):
            await nc.flush(timeout=5)
        with contextlib.suppress(Exception):
            await nc.close()
    st.busy_s = max(0.0, last - first) if first else 0.0
    return st


def collect(cfg: CollectConfig, report: Callable[[str], None] | None = None) -> CollectStats:
    """Consume the decision stream into the store until stopped (or idle, see ``cfg.idle_s``).

    Args:
        cfg: where from, where to, batching and retry.
        report: called with a line for each stored batch, failure and recovery.

    Raises:
        ConfigError: the store is written by another collector, or is not a directory.
    """
    say = report or (lambda _line: None)
    sink = open_sink(cfg.store)
    try:
        return asyncio.run(_collect(cfg, sink, say))
    finally:
        sink.close()


async def _state(servers: str) -> dict[str, int]:
    try:
        nc = await _probe(servers)
    except Exception as exc:  # one attempt: a status is asked now
        raise ConnectionError(f"cannot reach the broker at {servers}: {type(exc).__name__}") from None
    try:
        js = nc.jetstream()
        si = await js.stream_info(STREAM)
        out = {"messages": int(si.state.messages), "last_seq": int(si.state.last_seq)}
        try:
            ci = await js.consumer_info(STREAM, DURABLE)
            out |= {"pending": int(ci.num_pending or 0), "ack_pending": int(ci.num_ack_pending or 0)}
        except Exception:  # no collector yet
            out |= {"pending": out["messages"], "ack_pending": 0}
        return out
    finally:
        await nc.close()


def stream_state(servers: str) -> dict[str, int]:
    """The stream's messages and last sequence, and the collector's pending and unacknowledged
    counts (for tests and ``sluice collect --status``).

    Raises:
        ConnectionError: the broker cannot be reached.
    """
    return asyncio.run(_state(servers))


def stats_dict(st: CollectStats) -> dict[str, Any]:
    """JSON-friendly form of :class:`CollectStats`."""
    return asdict(st)
