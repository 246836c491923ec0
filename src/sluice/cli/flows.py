"""``sluice flows``: one row per flow of captures or a live interface."""

from __future__ import annotations

__all__ = ["flows_command"]

import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

import click

from sluice.batch.flows import batch_flows
from sluice.cli._exit import InputFailure, UsageFailure
from sluice.cli._output import (
    JSON_RULE,
    PROTO_NAMES,
    Col,
    Progress,
    TableStream,
    endpoint,
    listing_format,
    print_table,
)
from sluice.cli._output import progress as progress_bar
from sluice.errors import CaptureError, ConfigError
from sluice.flows.loop import PacketLoop, RunSummary
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig
from sluice.io.capture import open_capture
from sluice.io.flowlog import FORMATS, open_flow_writer
from sluice.io.limits import ReadLimits
from sluice.io.source import PacketSource

if TYPE_CHECKING:
    from sluice.io.bpf import FilteredSource, PacketFilter

PROGRESS_MIN_BYTES = 50 * 1024 * 1024


_ENDPOINT_W = 47
"""Width of an endpoint column when rows stream: ``[IPv6]:port`` at its longest."""


def flow_cols(multi: bool, endpoint_width: int = 0) -> list[Col]:
    """Columns of the flows table (``capture`` first with several captures)."""
    cols = [
        Col("flow_id"), Col("proto"), Col("client", endpoint_width), Col("server", endpoint_width),
        Col("packets"), Col("bytes", right=True), Col("duration", right=True), Col("app"),
        Col("server_name"),
    ]  # fmt: skip
    return [Col("capture"), *cols] if multi else cols


def flow_cells(r: FlowRecord) -> list[str]:
    """One flow's table cells (without the capture)."""
    return [
        str(r.flow_id) + ("e" if r.early else ""),
        PROTO_NAMES.get(r.proto, str(r.proto)),
        endpoint(r.client, r.client_port, r.ip_version == 6),
        endpoint(r.server, r.server_port, r.ip_version == 6),
        f"{r.c2s_packets}/{r.s2c_packets}",
        str(r.c2s_bytes + r.s2c_bytes),
        f"{r.duration:.3f}",
        r.meta.app or "-",
        r.meta.server_name or "-",
    ]


class _FlowTable:
    """The ``table`` format: every row of the batch path at the end (columns fitted to the
    content), the streaming path's rows as they come (fixed widths)."""

    def __init__(self, out: IO[str], multi: bool) -> None:
        self.out = out
        self.multi = multi
        self.rows: list[list[str]] = []
        self.stream: TableStream | None = None

    def write(self, records: Iterable[FlowRecord], extra: dict[str, Any] | None = None) -> None:
        capture = [str((extra or {}).get("capture", ""))] if self.multi else []
        if isinstance(records, Sequence):
            self.rows.extend(capture + flow_cells(r) for r in records)
            return
        if self.stream is None:
            self.stream = TableStream(flow_cols(self.multi, _ENDPOINT_W), self.out)
        for r in records:
            self.stream.row(capture + flow_cells(r))

    def close(self) -> None:
        if self.rows:
            print_table(flow_cols(self.multi), self.rows, self.out)
        self.out.flush()


def _stream(source: PacketSource, loop: PacketLoop, progress: Progress, early: bool) -> Iterator[FlowRecord]:
    out: list[FlowRecord] = []
    done_fn = getattr(source, "progress", None)
    for n, raw in enumerate(source):
        loop.process(raw, out)
        if out:
            yield from (r for r in out if early or not r.early)
            out.clear()
        if n % 4096 == 0 and done_fn is not None:
            done, total = done_fn()
            progress.update(done, total)
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
    default=None,
    help="Output format [default: table]. jsonl/parquet: absent values null, Community ID, TLS "
    "names; parquet times as timestamp[us, UTC]; csv lists as JSON arrays; eve: Suricata EVE JSON "
    "lines.",
)
@click.option("--json", "as_json", is_flag=True, help=f"Rows as JSON lines: {JSON_RULE}.")
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
@click.option(
    "--filter",
    "bpf",
    metavar="EXPR",
    help="Only packets matching this pcap-filter(7) expression ('tcp port 443'), for live "
    "capture and for files alike (as `tcpdump -r FILE EXPR`; compiled by libpcap). Flow ids "
    "then count the packets that passed.",
)
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
    fmt: str | None,
    as_json: bool,
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
    fmt = listing_format(fmt, as_json)
    if not captures and not interface:
        raise click.UsageError("give at least one CAPTURE file, or --interface")
    if cluster and (interface or stream or bpf):
        raise click.UsageError(
            "--cluster runs the batch path over files: not with --interface, --stream or --filter"
        )
    if fmt == "parquet" and not out_path:
        raise click.UsageError("--format parquet needs --out FILE")
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageFailure("--format parquet needs pyarrow: pip install 'sluice[parquet]'")
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
            existed = os.path.lexists(path)
            try:
                with open(path, "a", encoding="utf-8"):
                    pass
                if not existed:  # the check leaves nothing behind if the run fails later
                    os.unlink(path)
            except OSError as exc:
                raise InputFailure(f"cannot write {path}: {exc.strerror}") from None
    if fmt != "parquet":
        out = open(out_path, "w", encoding="utf-8", newline="") if out_path else sys.stdout  # noqa: SIM115
    multi = len(captures) > 1
    writer: Any = _FlowTable(out, multi) if fmt == "table" and out is not None else None
    writer = writer or open_flow_writer(fmt, out, out_path)
    summaries: dict[str, Any] = {}
    failed = False
    try:
        pfilter = _packet_filter(bpf) if bpf and captures else None
        if interface:
            summaries[interface] = _run_live(interface, bpf, duration, count, config, writer, early, strict)
        if cluster:
            summaries.update(_run_cluster(cluster, captures, config, writer, early, multi, shard_dir))
            captures = ()
        for path in captures:
            try:
                summaries[path] = _run_file(
                    path, config, writer, stream, early, strict, progress, multi, limits, pfilter
                )
            except CaptureError as exc:
                click.echo(f"sluice flows: error: {exc} [{exc.reason}]", err=True)
                failed = True
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    except CaptureError as exc:
        raise InputFailure(f"{exc} [{exc.reason}]") from None
    finally:
        writer.close()
        if out is not None and out is not sys.stdout:
            out.close()
    if summary_json:
        try:
            with open(summary_json, "w", encoding="utf-8") as f:
                json.dump(summaries, f, indent=2)
        except OSError as exc:
            raise InputFailure(f"cannot write {summary_json}: {exc.strerror}") from None
    if failed:
        raise InputFailure()


def _packet_filter(expr: str) -> PacketFilter:
    from sluice.io.bpf import PacketFilter

    return PacketFilter(expr)


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
    pfilter: PacketFilter | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    named = multi or getattr(writer, "names_capture", False)  # EVE flow_id includes the capture
    extra = {"capture": os.path.basename(path)} if named else None
    show = progress and os.path.isfile(path) and os.path.getsize(path) >= PROGRESS_MIN_BYTES
    kept = ""
    with progress_bar(os.path.basename(path), enabled=show) as bar:
        if stream:
            loop = PacketLoop(config, strict=strict)
            with open_capture(path, limits) as reader:
                source: Any = reader if pfilter is None else _filtered(reader, pfilter)
                writer.write(_stream(source, loop, bar, early), extra)
            summary = loop.summary
            if pfilter is not None:
                kept = _kept_text(pfilter.expr, source.packets_kept, source.packets_read)
        elif pfilter is None:
            result = batch_flows(
                path, config, strict=strict, early=early, progress=_stages(bar), limits=limits
            )
            writer.write(result.records, extra)
            summary = result.summary
        else:
            from sluice.io.bpf import filtered_captures

            with filtered_captures([path], pfilter, limits) as (rep,):
                result = batch_flows(
                    rep.filtered_path, config, strict=strict, early=early, progress=_stages(bar)
                )
            result.summary.merge_counts(rep.anomalies)
            writer.write(result.records, extra)
            summary = result.summary
            kept = f"\n  filter '{pfilter.expr}': {rep.kept_text()}"
    seconds = time.perf_counter() - t0
    click.echo(_summary_text(path, summary, seconds) + kept, err=True)
    return {**summary.to_dict(), "seconds": round(seconds, 3)}


def _filtered(reader: PacketSource, pfilter: PacketFilter) -> FilteredSource:
    from sluice.io.bpf import FilteredSource

    return FilteredSource(reader, pfilter)


def _kept_text(expr: str, kept: int, read: int) -> str:
    return f"\n  filter '{expr}': {kept:,} of {read:,} packets passed"


def _stages(bar: Progress) -> Callable[[float, str], None]:
    """The batch path's progress callback (fraction done, stage name) drawn on ``bar``."""

    def stage(fraction: float, name: str) -> None:
        bar.update(100 * fraction, 100, name)

    return stage


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
        with progress_bar(interface, enabled=False) as bar:
            writer.write(_stream(source, loop, bar, early))
    finally:
        source.close()
    seconds = time.perf_counter() - t0
    click.echo(_summary_text(interface, loop.summary, seconds), err=True)
    return {**loop.summary.to_dict(), "seconds": round(seconds, 3)}
