"""``sluice publish`` and ``sluice collect``: decisions of many boxes to one store, through NATS
JetStream (:mod:`sluice.cluster.stream`).

``sluice publish`` runs beside a gateway (``gateway run --log DIR``) or after an analysis (a dry
run over captures writes the same log with ``sluice policy test --log DIR``) and ships that log;
with ``--flows FILE...`` it ships flow summaries instead (``sluice flows``/``sluice analyze
--format jsonl`` output) on their own subject;
``sluice collect`` consumes the stream into the decisions store - a Parquet directory by default,
PostgreSQL by URL - that ``sluice decisions --log`` and ``sluice serve --log`` read.

Exit codes: 0 OK, 2 bad option (producer name, store written by another collector), 3 the log
or the store cannot be read.
"""

from __future__ import annotations

__all__ = ["collect", "publish"]

import json
from pathlib import Path

import click

EXIT_USAGE, EXIT_IO = 2, 3


@click.command("publish")
@click.option(
    "--nats", "servers", required=True, help="NATS server URL(s), comma-separated (nats://HOST:4222)."
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(exists=True, path_type=Path),
    help="Decision log directory (gateway run --log, policy test --log), or a JSON-lines file of"
    " decisions [default: decisions].",
)
@click.option(
    "--flows",
    "flow_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Publish flow summaries instead: a JSON-lines file written by 'sluice flows --format jsonl'"
    " or 'sluice analyze --format jsonl' (repeat for several), on subject sluice.flows.PRODUCER.",
)
@click.option(
    "--producer",
    required=True,
    help="This box's name: in the subject and in every record's key (letters, digits, - and _).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cursor file: what is already published (default: .publish-PRODUCER.json beside the log,"
    " .publish-PRODUCER-flows.json beside the first --flows file).",
)
@click.option(
    "--follow",
    "follow_s",
    type=click.FloatRange(min=0.05),
    help="Keep following the log, looking for new records every so many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def publish(
    servers: str,
    log_path: Path | None,
    flow_files: tuple[Path, ...],
    producer: str,
    state_path: Path | None,
    follow_s: float | None,
    as_json: bool,
) -> None:
    """Publish a decision log - or flow summaries (--flows) - to NATS JetStream, at least once,
    each record under a fixed key (producer, file, line offset).

    Killed and restarted, it publishes again from its cursor; the keys make the repeats
    harmless, and so they do for a file published twice. Without --follow it stops once
    everything there is published.
    """
    from sluice.cluster.stream import ship

    if flow_files and log_path is not None:
        raise click.UsageError("--flows and --log are published by separate runs")
    if flow_files:
        kind, source = "flows", list(flow_files)
        state = state_path or flow_files[0].resolve().parent / f".publish-{producer}-flows.json"
    else:
        kind, source = "decisions", [log_path or Path("decisions")]
        if not source[0].exists():
            raise click.BadParameter(f"{source[0]} does not exist", param_hint="--log")
        state = state_path or source[0].resolve().parent / f".publish-{producer}.json"
    n = ship(servers, source if kind == "flows" else source[0], producer, state, follow_s, kind)
    if as_json:
        click.echo(json.dumps({"published": n, "kind": kind, "producer": producer, "state": str(state)}))
    else:
        what = "flow summaries" if kind == "flows" else "records"
        click.echo(f"published {n} {what} as {producer} (cursor {state})")


@click.command("collect")
@click.option("--nats", "servers", required=True, help="NATS server URL(s), comma-separated.")
@click.option(
    "--store",
    default="decisions-store",
    show_default=True,
    help="Parquet store directory (day partitions; flow summaries under flows/), or a postgresql://"
    " URL (tables stream_decisions, flow_summaries).",
)
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(["decisions", "flows"]),
    multiple=True,
    help="Take only this kind from the stream (repeatable) [default: decisions and flows].",
)
@click.option(
    "--flush-rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Store a batch when it has this many records ...",
)
@click.option(
    "--flush-s",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="... or when its oldest record has waited this many seconds.",
)
@click.option(
    "--ack-wait",
    "ack_wait_s",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds before JetStream redelivers an unacknowledged message.",
)
@click.option(
    "--retry-max",
    "retry_max_s",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Longest wait between attempts while the store is down (seconds; doubling from 1).",
)
@click.option(
    "--idle",
    "idle_s",
    type=click.FloatRange(min=0.1),
    help="Stop after this many seconds without a message (default: run until stopped).",
)
@click.option("--status", is_flag=True, help="Print the stream's and the collector's counts, then exit.")
@click.option("--quiet", "-q", is_flag=True, help="Report failures only, not every stored batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def collect(
    servers: str,
    store: str,
    kinds: tuple[str, ...],
    flush_rows: int,
    flush_s: float,
    ack_wait_s: float,
    retry_max_s: float,
    idle_s: float | None,
    status: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Consume the decision stream - decisions and flow summaries - into the decisions store,
    each record once.

    A batch is acknowledged only after it is stored. While the store is down (database
    stopped, directory not writable) the batch is held and retried with backoff, each failure
    reported on stderr; nothing is acknowledged meanwhile.
    """
    from sluice.cluster.sinks import KINDS
    from sluice.cluster.stream import CollectConfig, stats_dict, stream_state
    from sluice.cluster.stream import collect as run

    if status:
        click.echo(json.dumps(stream_state(servers)))
        return
    if retry_max_s >= ack_wait_s:
        raise click.BadParameter("must be below --ack-wait", param_hint="--retry-max")
    cfg = CollectConfig(
        servers=servers,
        store=store,
        flush_rows=flush_rows,
        flush_s=flush_s,
        ack_wait_s=ack_wait_s,
        retry_max_s=retry_max_s,
        idle_s=idle_s,
        kinds=tuple(dict.fromkeys(kinds)) if kinds else KINDS,
    )

    def report(line: str) -> None:
        if not (quiet and line.startswith("stored")):
            click.echo(f"sluice collect: {line}", err=True)

    try:
        st = run(cfg, report)
    except KeyboardInterrupt:
        click.echo("sluice collect: stopped", err=True)
        return
    out = stats_dict(st)
    if as_json:
        click.echo(json.dumps({"store": store, **out}))
    else:
        click.echo(
            f"{st.acked} records acknowledged: {st.stored} stored, {st.duplicates} already there; "
            f"{st.batches} batches, {st.store_failures} failed attempts ({st.store_down_s:.1f} s store down)"
        )
