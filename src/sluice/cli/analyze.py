"""``sluice analyze``: one verdict per flow of some captures, with evidence and register matches.

A thin shell over :func:`sluice.detect.service.analyze_captures`; with ``--decisions``, over
:func:`sluice.decide.replay_captures` (the captures replayed packet by packet through the
gateway's Decider with a policy: what the gateway would decide per flow, and apart, what only the
whole flow decides). Exit codes: 0 OK, 1 findings
(with ``--fail-on-findings``), 2 usage or configuration error (bad model, bad option), 3 I/O error
(capture or register unreadable).
"""

from __future__ import annotations

__all__ = ["analyze"]

import json
import os
import sys
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any

import click

from sluice.cli._context import register_option
from sluice.cli._detect import load_combiner, model_options
from sluice.cli._exit import Findings, InputFailure, UsageFailure
from sluice.cli._filter import FILTER_HELP, filtered_paths
from sluice.cli._output import (
    JSON_RULE,
    PROTO_NAMES,
    Col,
    CsvRows,
    endpoint,
    listing_format,
    print_table,
    write_summary_json,
)
from sluice.cli._output import progress as progress_bar
from sluice.errors import CaptureError, ConfigError, SluiceError
from sluice.gateway.rules import DEFAULT_PACKETS

if TYPE_CHECKING:  # the detectors load when the command runs, not for its --help
    from sluice.decide import RegisterLookup
    from sluice.detect.combiner import Combiner
    from sluice.detect.service import AnalysisResult, FlowVerdict

FORMATS = ("table", "jsonl", "csv", "parquet", "eve")


def _cols(multi: bool) -> list[Col]:
    cols = [
        Col("flow"), Col("proto"), Col("client"), Col("server"), Col("pkts"), Col("app"),
        Col("server_name"), Col("class"), Col("family"), Col("conf"), Col("at"), Col("evidence"),
    ]  # fmt: skip
    return [Col("capture"), *cols] if multi else cols


def _row(f: FlowVerdict, multi: bool) -> list[str]:
    r, v = f.record, f.verdict
    v6 = r.ip_version == 6
    ev = v.evidence[0].code if v.evidence else "-"
    if f.register:
        ev += f" register:{f.register[0].source}"
    return [
        *([f.capture] if multi else []),
        str(r.flow_id),
        PROTO_NAMES.get(r.proto, str(r.proto)),
        endpoint(r.client, r.client_port, v6),
        endpoint(r.server, r.server_port, v6),
        f"{r.c2s_packets}/{r.s2c_packets}",
        r.meta.app or "-",
        r.meta.server_name or "-",
        v.label,
        v.family or "-",
        f"{v.confidence:.2f}",
        str(v.decided_at),
        ev,
    ]


def _write_table(out: IO[str], res: AnalysisResult, multi: bool) -> None:
    print_table(_cols(multi), [_row(f, multi) for f in res.flows], out)


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['flows']} flows, {summary['findings']} findings, "
        f"{summary['register_matches']} with register matches"
    ]
    for name, n in summary["by_family"].items():
        lines.append(f"  {name:<36} {n}")
    if summary["decided_at_median"] is not None:
        lines.append(
            f"  findings decided at packet index {summary['decided_at_median']} (median), "
            f"{summary['decided_within_8_packets']} within the first 8 packets"
        )
    return "\n".join(lines)


def _explain_text(f: FlowVerdict) -> str:
    r, v = f.record, f.verdict
    lines = [
        f"flow {r.flow_id} of {f.capture}: {v.flow_key}",
        f"  verdict: {v.label}/{v.family or '-'} confidence {v.confidence:.3f}, decided at packet "
        f"{v.decided_at}, by {v.detector} v{v.version}"
        + (f", model {v.model_digest[:12]}" if v.model_digest else ""),
        f"  packets {r.c2s_packets}/{r.s2c_packets}, app {r.meta.app or '-'}, "
        f"server name {r.meta.server_name or '-'}",
    ]
    for e in v.evidence:
        at = f" @pkt {e.packet}" if e.packet >= 0 else ""
        lines.append(f"  - [{e.code}] {e.reason}{at}")
        lines.append(
            f"      {e.feature} = {e.observed}  (expected: {e.reference}; contribution {e.contribution:+.3f})"
        )
    for h in f.register:
        lines.append(f"  - [register.{h.reason}] {h.query} is in {h.source} as {h.kind} {h.indicator}")
    return "\n".join(lines)


@click.command("analyze")
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@register_option(
    help_text="Match server names and addresses against this register (SQLite file or postgresql://"
    " URL; it must exist) [env: SLUICE_REGISTRY]."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format of the flow rows [default: table]: table, jsonl, csv (lists and evidence "
    "as JSON arrays), parquet (needs --out), eve (Suricata EVE JSON lines, an alert per finding). "
    "The summary goes to stderr unless the rows are a table on stdout.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write rows to FILE (required for parquet).",
)
@click.option(
    "--explain",
    "explain_id",
    help="Print every piece of evidence for flow FLOW_ID "
    "(or CAPTURE:FLOW_ID with several captures) instead of the rows.",
)
@model_options
@click.option("--json", "as_json", is_flag=True, help=f"Rows as JSON lines: {JSON_RULE}.")
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also write the summary (counts by class and family, runs) as JSON to FILE.",
)
@click.option(
    "--filter",
    "bpf",
    metavar="EXPR",
    help=FILTER_HELP,
)
@click.option("--progress/--no-progress", default=True, help="Progress on stderr (terminals only).")
@click.option("--fail-on-findings", is_flag=True, help="Exit 1 when any flow is a finding.")
@click.option(
    "--decisions",
    "with_decisions",
    is_flag=True,
    help="Replay packet by packet through the gateway's Decider and show its decision per flow "
    "(stage and packet), and apart, what only the whole flow decides (offline only).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=str),
    help="Policy for --decisions (default: the shipped policy).",
)
@click.option(
    "--packets",
    type=click.IntRange(3, 1_000_000),
    default=DEFAULT_PACKETS,
    show_default=True,
    help="With --decisions: packets of each connection the gateway queues (as `gateway run --packets`).",
)
@click.option(
    "--cluster",
    help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N (N worker "
    "processes). Split by capture, large captures by flow hash; the same rows as a serial run.",
)
@click.option(
    "--shard-dir",
    type=click.Path(file_okay=False, path_type=str),
    help="With --cluster: keep each shard's Parquet file here (a directory the workers can "
    "write; default: a temporary directory, removed).",
)
def analyze(
    captures: tuple[str, ...],
    register_db: str | None,
    fmt: str,
    out_path: str | None,
    explain_id: str | None,
    model_dir: str | None,
    no_model: bool,
    fet_veto: float | None,
    as_json: bool,
    summary_json: str | None,
    bpf: str | None,
    progress: bool,
    fail_on_findings: bool,
    with_decisions: bool,
    policy_file: str | None,
    packets: int,
    cluster: str | None = None,
    shard_dir: str | None = None,
) -> None:
    """Judge every flow of CAPTURE files: class, family, confidence, evidence, register matches.

    A summary by class and family follows the rows (on stdout after a table, else on stderr).
    """
    fmt = listing_format(fmt, as_json)
    if fmt == "parquet" and not out_path:
        raise click.UsageError("--format parquet needs --out FILE")
    if with_decisions and (explain_id is not None or fmt in ("parquet", "eve", "csv")):
        raise click.UsageError("--decisions excludes --explain and --format parquet/eve/csv")
    if policy_file and not with_decisions:
        raise click.UsageError("--policy needs --decisions")
    if cluster and (with_decisions or bpf):
        raise click.UsageError("--cluster excludes --decisions and --filter")
    combiner = load_combiner(model_dir, no_model, fet_veto)
    register = _open_register(register_db)
    with ExitStack() as stack:
        paths = filtered_paths(stack, captures, bpf)
        if with_decisions:
            _decisions(paths, policy_file, combiner, register, packets, fmt, out_path, summary_json)
            return
        unreadable: list[str] = []
        try:
            if cluster:
                res = _on_cluster(
                    cluster, list(captures), (model_dir, no_model, fet_veto), register_db, shard_dir
                )
            else:
                res, unreadable = _analyze_each(paths, combiner, register, progress)
        except CaptureError as exc:
            raise InputFailure(f"{exc} [{exc.reason}]") from None
    names = dict(zip(paths, captures, strict=True))
    res.runs = {names.get(k, k): v for k, v in res.runs.items()}
    multi = len(captures) > 1
    if explain_id is not None:
        _explain(res, explain_id, multi)
        return
    from sluice.detect.service import summarize

    summary = summarize(res.flows)
    _emit(res, fmt, out_path, multi, summary, summary_json)
    if unreadable:
        raise InputFailure(f"{len(unreadable)} of {len(paths)} captures unreadable (said above)")
    if fail_on_findings and summary["findings"]:
        raise Findings()


def _open_register(register_db: str | None) -> RegisterLookup | None:
    from sluice.decide import open_register

    register = None
    if register_db:
        try:
            register = open_register(register_db)
        except SluiceError as exc:
            raise (UsageFailure if isinstance(exc, ConfigError) else InputFailure)(
                f"cannot open the register: {exc}"
            ) from None  # no register: usage
    return register


def _analyze_each(
    paths: list[str], combiner: Combiner, register: RegisterLookup | None, show: bool
) -> tuple[AnalysisResult, list[str]]:
    """:func:`analyze_captures` capture by capture, with a progress bar over the captures; a
    capture that cannot be read is said on stderr and skipped (as ``sluice flows`` does): the
    result, and the captures skipped."""
    from sluice.detect.service import AnalysisResult, analyze_captures

    res = AnalysisResult()
    unreadable: list[str] = []
    lookup = register.for_flow if register is not None else None
    with progress_bar("analyze", len(paths), enabled=show) as bar:
        for i, path in enumerate(paths):
            bar.update(i, text=f"analyze {os.path.basename(path)}")
            try:
                one = analyze_captures([path], combiner, register=lookup)
            except CaptureError as exc:
                click.echo(f"sluice analyze: error: {exc} [{exc.reason}]", err=True)
                unreadable.append(path)
                continue
            res.flows.extend(one.flows)
            res.runs.update(one.runs)
        bar.update(len(paths))
    return res, unreadable


def _on_cluster(
    spec: str,
    captures: list[str],
    detector: tuple[str | None, bool, float | None],
    register_db: str | None,
    shard_dir: str | None,
) -> AnalysisResult:
    """``--cluster``: :func:`sluice.cluster.analyze_on_cluster` (each worker loads model and register)."""
    import os
    import tempfile

    from sluice.cluster import analyze_on_cluster, open_client

    reg = os.path.abspath(register_db) if register_db and "://" not in register_db else register_db
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-shards-") as tmp, open_client(spec) as client:
            res, _run = analyze_on_cluster(
                client, captures, detector=detector, register=reg, shard_dir=shard_dir or tmp
            )
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    return res


def _decisions(
    captures: list[str],
    policy_file: str | None,
    combiner: Combiner,
    register: RegisterLookup | None,
    packets: int,
    fmt: str,
    out_path: str | None,
    summary_json: str | None,
) -> None:
    """``--decisions``: the dry run's table (or one JSON line per flow), then its counts."""
    from sluice.cli.policy import summary_text, write_outcomes
    from sluice.decide import decide_after_for, replay_captures
    from sluice.policy import default_policy, load_policy

    try:
        pol = load_policy(policy_file) if policy_file else default_policy()
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    except OSError as exc:
        raise InputFailure(f"cannot read {policy_file}: {exc.strerror}") from None
    try:
        res = replay_captures(
            pol, captures, combiner, register=register, decide_after=decide_after_for(packets)
        )
    except CaptureError as exc:
        raise InputFailure(f"{exc} [{exc.reason}]") from None
    try:
        out = open(out_path, "w", encoding="utf-8") if out_path else sys.stdout  # noqa: SIM115
        try:
            if fmt == "table":
                write_outcomes(out, res, len(captures) > 1)
            else:
                out.writelines(json.dumps(o.to_dict(), separators=(",", ":")) + "\n" for o in res.outcomes)
        finally:
            if out is not sys.stdout:
                out.close()
    except OSError as exc:
        raise InputFailure(f"cannot write {out_path}: {exc.strerror}") from None
    _summary_out(summary_json, {"summary": res.summary(), "runs": res.runs})
    click.echo(summary_text(res), err=fmt != "table" and not out_path)


def _summary_out(path: str | None, doc: dict[str, Any]) -> None:
    try:
        write_summary_json(path, doc)
    except OSError as exc:
        raise InputFailure(f"cannot write {path}: {exc.strerror}") from None


def _explain(res: AnalysisResult, explain_id: str, multi: bool) -> None:
    capture, _, num = explain_id.rpartition(":")
    try:
        fid = int(num)
    except ValueError:
        raise click.UsageError(f"--explain: {explain_id!r} is not a flow id") from None
    hits = [f for f in res.flows if f.record.flow_id == fid and (not capture or f.capture == capture)]
    if multi and not capture and len(hits) > 1:
        raise click.UsageError("--explain: several captures have that flow id; use CAPTURE:FLOW_ID")
    if not hits:
        raise UsageFailure(f"no flow {explain_id}")
    click.echo(_explain_text(hits[0]))


def _emit(
    res: AnalysisResult,
    fmt: str,
    out_path: str | None,
    multi: bool,
    summary: dict[str, Any],
    summary_json: str | None,
) -> None:
    try:
        if fmt == "parquet":
            assert out_path is not None
            _write_parquet(res, out_path)
        else:
            out = open(out_path, "w", encoding="utf-8") if out_path else sys.stdout  # noqa: SIM115
            try:
                if fmt == "table":
                    _write_table(out, res, multi)
                elif fmt == "eve":
                    from sluice.decisions.eve import verdict_events

                    for f in res.flows:
                        out.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in verdict_events(f))
                elif fmt == "csv":
                    rows = CsvRows(out)
                    for f in res.flows:
                        rows.write(f.to_dict())
                else:
                    for f in res.flows:
                        out.write(json.dumps(f.to_dict(), separators=(",", ":")) + "\n")
            finally:
                if out is not sys.stdout:
                    out.close()
    except OSError as exc:
        raise InputFailure(f"cannot write {out_path}: {exc.strerror}") from None
    _summary_out(summary_json, {"summary": summary, "runs": res.runs})
    click.echo(_summary_text(summary), err=fmt != "table" and not out_path)


def _write_parquet(res: AnalysisResult, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for f in res.flows:
        d = f.to_dict()
        d["evidence"] = json.dumps(d["evidence"])
        d["register"] = json.dumps(d["register"])
        rows.append(d)
    pq.write_table(pa.Table.from_pylist(rows), path)
