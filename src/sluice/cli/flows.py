"""``sluice flows``: one row per flow of captures or a live interface."""

from __future__ import annotations

__all__ = ["flows_command"]

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

import click

from sluice.batch.flows import batch_flows
from sluice.errors import CaptureError, ConfigError
from sluice.flows.loop import PacketLoop, RunSummary
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig
from sluice.io.capture import open_capture
from sluice.io.flowlog import FORMATS, open_flow_writer
from sluice.io.limits import ReadLimits
from sluice.io.source import PacketSource

PROGRESS_MIN_BYTES = 50 * 1024 * 1024


class _Progress:
    """A one-line progress display on stderr (only when stderr is a terminal)."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.last = 0.0

    def update(self, done: int, total: int | None, packets: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.2:
            return
        self.last = now
        pct = f"{100 * done / total:5.1f}%" if total else ""
        click.echo(f"\r{self.label} {pct} {packets:,} packets", err=True, nl=False)

    def stage(self, fraction: float, name: str) -> None:
        if self.enabled:
            click.echo(f"\r{self.label} {100 * fraction:5.1f}% {name:8}", err=True, nl=False)

    def close(self) -> None:
        if self.enabled:
            click.echo("\r" + " " * 60 + "\r", err=True, nl=False)


def _stream(source: PacketSource, loop: PacketLoop, progress: _Progress, early: bool) -> Iterator[FlowRecord]:
    out: list[FlowRecord] = []
    done_fn = getattr(source, "progress", None)
    for n, raw in enumerate(source):
        loop.process(raw, out)
        if out:
            yield from (r for r in out if early or not r.early)
            out.clear()
        if n % 4096 == 0 and done_fn is not None:
            done, total = done_fn()
            progress.update(done, total, n)
    loop.finish(out)
    loop.summary.merge_counts(source.stats.anomalies)
    yield from (r for r in out if early or not r.early)


def _summary_text(name: str, s: RunSummary, seconds: float) -> str:
    rate = s.packets / seconds if seconds > 0 else 0.0
    parts = [
        f"{name}: {s.packets:,} packets ({s.ip_packets:,} IP, {s.non_ip:,} non-IP), "
        f"{s.flows:,} flows in {seconds:.2f} s ({rate:,.0f} packets/s)"
    ]
    if s.anomalies:
        parts.append("  anomalies: " + ", ".join(f"{k}={v}" for k, v in sorted(s.anomalies.items())))
    else:
        parts.append("  anomalies: none")
    return "\n".join(parts)


@click.command("flows")
@click.argument("captures", nargs=-1, type=click.Path(dir_okay=True, path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format. jsonl/parquet: absent values null, Community ID, TLS names; parquet "
    "times as timestamp[us, UTC]; csv lists as JSON arrays; eve: Suricata EVE JSON lines.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True, path_type=str),
    help="Write records to FILE instead of standard output (required for parquet).",
)
@click.option("--stream", is_flag=True, help="Use the streaming path (bounded memory) for files.")
@click.option("--early", is_flag=True, help="Also emit early records (after --early-packets).")
@click.option("--early-packets", type=click.IntRange(0), default=8, show_default=True)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds of silence that end a flow.",
)
@click.option(
    "--active-timeout",
    type=click.FloatRange(0, min_open=True),
    default=1800.0,
    show_default=True,
    help="Seconds after which a long flow is cut.",
)
@click.option(
    "--max-flows",
    type=click.IntRange(1),
    default=1_000_000,
    show_default=True,
    help="Flows held in memory at most (streaming path).",
)
@click.option("--interface", "-i", help="Capture live from this interface (streaming path).")
@click.option("--filter", "bpf", help="BPF filter for live capture (tcpdump syntax).")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop live capture after SECONDS.")
@click.option("--count", type=click.IntRange(1), help="Stop live capture after N packets.")
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also write the run summary as JSON to FILE.",
)
@click.option("--progress/--no-progress", default=True, help="Progress on stderr (terminals only).")
@click.option("--strict", is_flag=True, help="Stop on internal errors (for debugging sluice).")
@click.option(
    "--max-gzip-ratio",
    type=click.IntRange(0),
    default=None,
    help="Refuse gzip captures inflating more than N times (default 100, "
    "env SLUICE_MAX_GZIP_RATIO; 0: no limit).",
)
@click.option(
    "--max-capture-bytes",
    type=click.IntRange(0),
    default=None,
    help="Most bytes of a capture held in memory: gzip on the batch path, or a pipe "
    "(default 2 GiB, env SLUICE_MAX_CAPTURE_BYTES; 0: no limit).",
)
@click.option(
    "--cluster",
    help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N (N worker "
    "processes). Split by capture, large captures by flow hash; the same records as a serial run.",
)
@click.option(
    "--shard-dir",
    type=click.Path(file_okay=False, path_type=str),
    help="With --cluster: keep each shard's Parquet file here (a directory the workers can "
    "write; default: a temporary directory, removed).",
)
def flows_command(
    captures: tuple[str, ...],
    fmt: str,
    out_path: str | None,
    stream: bool,
    early: bool,
    early_packets: int,
    idle_timeout: float,
    active_timeout: float,
    max_flows: int,
    interface: str | None,
    bpf: str | None,
    duration: float | None,
    count: int | None,
    summary_json: str | None,
    progress: bool,
    strict: bool,
    max_gzip_ratio: int | None,
    max_capture_bytes: int | None,
    cluster: str | None = None,
    shard_dir: str | None = None,
) -> None:
    """Print one row per flow of CAPTURE files (pcap, pcapng, optionally .gz) or an interface.

    ``-`` or ``/dev/stdin`` reads standard input (a pipe is read into memory on the batch path,
    within --max-capture-bytes; --stream reads it in constant memory).

    A closing summary (packets, flows, anomalies by reason) goes to stderr. Exit codes: 0 ok,
    2 usage error, 3 a capture could not be read.
    """
    if not captures and not interface:
        raise click.UsageError("give at least one CAPTURE file, or --interface")
    if cluster and (interface or stream):
        raise click.UsageError("--cluster runs the batch path over files: not with --interface or --stream")
    if fmt == "parquet" and not out_path:
        raise click.UsageError("--format parquet needs --out FILE")
    config = FlowConfig(
        idle_timeout_s=idle_timeout,
        active_timeout_s=active_timeout,
        max_flows=max_flows,
        early_packets=early_packets,
    )
    try:
        limits = ReadLimits.from_env(
            max_gzip_ratio=None if max_gzip_ratio is None else (max_gzip_ratio or sys.maxsize),
            max_capture_bytes=None if max_capture_bytes is None else (max_capture_bytes or sys.maxsize),
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    out: IO[str] | None = None
    for path in (out_path, summary_json):  # refuse unwritable outputs before the work, not after
        if path:
            try:
                with open(path, "a", encoding="utf-8"):
                    pass
            except OSError as exc:
                click.echo(f"sluice flows: error: cannot write {path}: {exc.strerror}", err=True)
                sys.exit(3)
    if fmt != "parquet":
        out = open(out_path, "w", encoding="utf-8", newline="") if out_path else sys.stdout  # noqa: SIM115
    writer = open_flow_writer(fmt, out, out_path)
    summaries: dict[str, Any] = {}
    failed = False
    multi = len(captures) > 1
    try:
        if interface:
            summaries[interface] = _run_live(interface, bpf, duration, count, config, writer, early, strict)
        if cluster:
            summaries.update(_run_cluster(cluster, captures, config, writer, early, multi, shard_dir))
            captures = ()
        for path in captures:
            try:
                summaries[path] = _run_file(
                    path, config, writer, stream, early, strict, progress, multi, limits
                )
            except CaptureError as exc:
                click.echo(f"sluice flows: error: {exc} [{exc.reason}]", err=True)
                failed = True
    except ConfigError as exc:
        click.echo(f"sluice flows: error: {exc}", err=True)
        sys.exit(2)
    except CaptureError as exc:
        click.echo(f"sluice flows: error: {exc} [{exc.reason}]", err=True)
        sys.exit(3)
    finally:
        writer.close()
        if out is not None and out is not sys.stdout:
            out.close()
    if summary_json:
        try:
            with open(summary_json, "w", encoding="utf-8") as f:
                json.dump(summaries, f, indent=2)
        except OSError as exc:
            click.echo(f"sluice flows: error: cannot write {summary_json}: {exc.strerror}", err=True)
            sys.exit(3)
    if failed:
        sys.exit(3)


def _run_file(
    path: str,
    config: FlowConfig,
    writer: Any,
    stream: bool,
    early: bool,
    strict: bool,
    progress: bool,
    multi: bool,
    limits: ReadLimits,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    named = multi or getattr(writer, "names_capture", False)  # EVE flow_id includes the capture
    extra = {"capture": os.path.basename(path)} if named else None
    show = progress and os.path.isfile(path) and os.path.getsize(path) >= PROGRESS_MIN_BYTES
    bar = _Progress(show, os.path.basename(path))
    if stream:
        loop = PacketLoop(config, strict=strict)
        with open_capture(path, limits) as reader:
            writer.write(_stream(reader, loop, bar, early), extra)
        summary = loop.summary
    else:
        result = batch_flows(path, config, strict=strict, early=early, progress=bar.stage, limits=limits)
        writer.write(result.records, extra)
        summary = result.summary
    bar.close()
    seconds = time.perf_counter() - t0
    click.echo(_summary_text(path, summary, seconds), err=True)
    return {**summary.to_dict(), "seconds": round(seconds, 3)}


def _run_cluster(
    spec: str,
    captures: tuple[str, ...],
    config: FlowConfig,
    writer: Any,
    early: bool,
    multi: bool,
    shard_dir: str | None,
) -> dict[str, Any]:
    """``--cluster``: the captures on Dask (:mod:`sluice.cluster`), written in capture order."""
    import tempfile

    from sluice.cluster import flows_on_cluster, open_client

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sluice-shards-") as tmp, open_client(spec) as client:
        results, run = flows_on_cluster(client, captures, config, shard_dir or tmp, early=early)
    seconds = time.perf_counter() - t0
    named = multi or getattr(writer, "names_capture", False)
    out: dict[str, Any] = {}
    for path, records in results:
        writer.write(records, {"capture": os.path.basename(path)} if named else None)
        summary = run.summaries[path]
        click.echo(_summary_text(path, summary, seconds), err=True)
        out[path] = {**summary.to_dict(), "seconds": round(seconds, 3), "shards": run.shards}
    return out


def _run_live(
    interface: str,
    bpf: str | None,
    duration: float | None,
    count: int | None,
    config: FlowConfig,
    writer: Any,
    early: bool,
    strict: bool,
) -> dict[str, Any]:
    from sluice.io.live import LiveSource

    t0 = time.perf_counter()
    source = LiveSource(interface, bpf_filter=bpf, max_packets=count, duration_s=duration)
    loop = PacketLoop(config, strict=strict)
    try:
        writer.write(_stream(source, loop, _Progress(False, interface), early))
    finally:
        source.close()
    seconds = time.perf_counter() - t0
    click.echo(_summary_text(interface, loop.summary, seconds), err=True)
    return {**loop.summary.to_dict(), "seconds": round(seconds, 3)}
