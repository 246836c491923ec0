"""``sluice policy check`` and ``sluice policy test``: validate a policy, dry-run it on captures.

``policy test`` replays captures packet by packet through the gateway's Decider
(:func:`sluice.decide.replay_captures`): each flow shows what ``sluice gateway run`` would have
decided, at which stage and packet; what only the whole flow says (the ``offline`` stage) is
listed apart, under "offline only".

Exit codes: 0 OK, 2 policy or usage error (every problem printed with its line), 3 I/O error
(policy, capture or register unreadable).
"""

from __future__ import annotations

__all__ = ["policy"]

import json
import os
import sys
from collections.abc import Iterable
from contextlib import ExitStack
from typing import IO

import click

from sluice.cli._context import register_option
from sluice.cli._detect import load_combiner, model_options
from sluice.cli._exit import InputFailure, UsageFailure
from sluice.cli._filter import FILTER_HELP, filtered_paths
from sluice.cli._output import (
    JSON_RULE,
    Col,
    CsvRows,
    listing_format,
    print_table,
    render_plain,
    write_summary_json,
)
from sluice.cli._output import progress as progress_bar
from sluice.errors import CaptureError, ConfigError, SluiceError
from sluice.gateway.rules import DEFAULT_PACKETS
from sluice.policy import Decision, FlowOutcome, Mode, ReplayResult, check_policy, load_policy
from sluice.policy.loader import PolicyError, read_policy_text

FORMATS = ("table", "jsonl", "csv", "eve")


def _cols(multi: bool) -> list[Col]:
    cols = [Col(n) for n in ("flow", "flow_key", "server_name", "class", "at", "rule", "action")]
    return [Col("capture"), *cols] if multi else cols


@click.group("policy")
def policy() -> None:
    """Check policy files and try them on captures (dry runs)."""


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(file: str, as_json: bool) -> None:
    """Validate the policy FILE; print every problem with its line (exit 2 when there is one)."""
    try:
        text = read_policy_text(file)  # bounded (issue 19: /dev/zero grew to 24 GB)
    except PolicyError as exc:
        raise UsageFailure(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFailure(f"cannot read {file}: {exc}") from None
    pol, issues = check_policy(text, file)
    if as_json:
        out = {
            "ok": not issues,
            "issues": [
                {
                    "line": i.line,
                    "reason": i.reason,
                    "message": i.message,
                    "rule_index": i.rule_index,
                    "rule": i.rule_name,
                    "key": i.key,
                }
                for i in issues
            ],
        }
        if pol is not None:
            out["rules"] = [
                {"name": r.name, "action": r.action.value, "mode": r.mode.value, "line": r.line}
                for r in pol.rules
            ]
            out["default"] = pol.default.action.value
            out["digest"] = pol.digest
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for i in issues:
            click.echo(str(i), err=True)
        if pol is not None:
            shadow = sum(1 for r in pol.rules if r.mode is Mode.SHADOW)
            click.echo(
                f"{file}: ok: {len(pol.rules)} rules ({shadow} in shadow mode), "
                f"default {pol.default.action.value}, digest {pol.digest}"
            )
    if issues:
        raise UsageFailure()


@policy.command("show-default")
def show_default() -> None:
    """Print the policy sluice ships and uses when none is given (sluice/policy/default.toml in
    the package): a starting point for your own (`sluice policy show-default > my-policy.toml`)."""
    from sluice.policy import default_policy_text

    click.echo(default_policy_text(), nl=False)


@policy.command("test")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@register_option(
    help_text="Register to match against (SQLite file or postgresql:// URL; it must exist)"
    " [env: SLUICE_REGISTRY]."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format of the decisions [default: table]: table (a row per flow, then the "
    "offline-only ones), jsonl or csv (the decisions, offline-only ones after), eve (Suricata EVE "
    "alerts and drops). The counts go to stderr unless the rows are a table.",
)
@model_options
@click.option(
    "--packets",
    type=click.IntRange(3, 1_000_000),
    default=DEFAULT_PACKETS,
    show_default=True,
    help="Packets of each connection the gateway queues (as `gateway run --packets`).",
)
@click.option(
    "--log",
    "log_dir",
    type=click.Path(file_okay=False, path_type=str),
    help="Also write the decisions the gateway would have made to this decision log directory.",
)
@click.option("--json", "as_json", is_flag=True, help=f"Decisions as JSON lines: {JSON_RULE}.")
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also write the counts (per rule, action and stage) as JSON to FILE.",
)
@click.option("--filter", "bpf", metavar="EXPR", help=FILTER_HELP)
@click.option("--progress/--no-progress", default=True, help="Progress on stderr (terminals only).")
def test_command(
    file: str,
    captures: tuple[str, ...],
    register_db: str | None,
    fmt: str,
    model_dir: str | None,
    no_model: bool,
    fet_veto: float | None,
    packets: int,
    log_dir: str | None,
    as_json: bool,
    summary_json: str | None,
    bpf: str | None,
    progress: bool,
) -> None:
    """Replay CAPTURE files packet by packet through the gateway's Decider with the policy FILE;
    print what the gateway would have decided for every flow (nothing is enforced), counts per
    rule and per action, and apart, what only the whole flow decides (offline only).

    Replayed decisions carry the capture's time (the flow's first packet), so in the --log they
    keep it: `sluice decisions --since 1h` on such a log counts back from its newest decision
    (see `sluice decisions --help`, --clock)."""
    fmt = listing_format(fmt, as_json)
    try:
        pol = load_policy(file)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    except OSError as exc:
        raise InputFailure(f"cannot read {file}: {exc.strerror}") from None
    from sluice.decide import decide_after_for, open_register, replay_captures

    register = None
    if register_db:
        try:
            register = open_register(register_db)
        except SluiceError as exc:
            raise (UsageFailure if isinstance(exc, ConfigError) else InputFailure)(
                f"cannot open the register: {exc}"
            ) from None  # no register: usage
    combiner = load_combiner(model_dir, no_model, fet_veto)
    with ExitStack() as stack:
        paths = filtered_paths(stack, captures, bpf)
        try:
            with progress_bar("policy test", len(paths), enabled=progress) as bar:

                def step(done: int, path: str) -> None:
                    bar.update(done, text=f"policy test: replaying {os.path.basename(path)}")

                res = replay_captures(
                    pol,
                    paths,
                    combiner,
                    register=register,
                    decide_after=decide_after_for(packets),
                    progress=step,
                )
                bar.update(len(paths))
        except CaptureError as exc:
            raise InputFailure(f"{exc} [{exc.reason}]") from None
    if log_dir:
        _write_log(log_dir, res)
    multi = len(captures) > 1
    if fmt == "table":
        write_outcomes(sys.stdout, res, multi)
    else:
        write_decisions(sys.stdout, fmt, res.decisions + [o.offline for o in res.offline_only])
    try:
        write_summary_json(summary_json, res.summary())
    except OSError as exc:
        raise InputFailure(f"cannot write {summary_json}: {exc.strerror}") from None
    click.echo(summary_text(res), err=fmt != "table")


def write_decisions(out: IO[str], fmt: str, found: Iterable[Decision]) -> None:
    """Decisions as ``jsonl``, ``csv`` (lists as JSON arrays) or ``eve`` (alerts and drops)."""
    rows = CsvRows(out) if fmt == "csv" else None
    for d in found:
        if fmt == "eve":
            from sluice.decisions.eve import decision_events

            out.writelines(
                json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in decision_events(d)
            )
        elif rows is not None:
            rows.write(d.to_dict())
        else:
            out.write(json.dumps(d.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


def _jline(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_outcomes(out: IO[str], res: ReplayResult, multi: bool) -> None:
    """One row per flow with the gateway's decision, then the offline-only rows apart."""
    print_table(_cols(multi), [_row(o, o.inline, multi) for o in res.outcomes], out)
    off = res.offline_only
    if off:
        out.write("\noffline only (the whole flow decides otherwise; the gateway would not):\n")
        print_table(_cols(multi), [_row(o, o.offline, multi) for o in off], out)
    out.flush()


def _row(o: FlowOutcome, d: Decision | None, multi: bool) -> list[str]:
    flow = [o.capture, str(o.record.flow_id)] if multi else [str(o.record.flow_id)]
    if d is None:
        name = o.record.meta.server_name or "-"
        return [
            *flow,
            o.verdict.flow_key,
            name,
            "-",
            f"- ({o.record.packets} pkts)",
            "-",
            "undecided (passes)",
        ]
    cls = f"{d.verdict_class}/{d.family or '-'}" if d.verdict_class else "-"
    action = d.action.value + (f" {d.rate_kbit} kbit/s" if d.rate_kbit else "")
    if d.mode is Mode.SHADOW:
        action += " (shadow)"
    if d.register:
        action += f"  register:{d.register[0].source}:{d.register[0].indicator}"
    return [*flow, d.flow_key, d.server_name or "-", cls, f"{d.stage}@{d.decided_at}", d.rule, action]


def summary_text(res: ReplayResult) -> str:
    """Counts per rule and action of what the gateway would have done, then the offline-only ones."""
    s = res.summary()
    stages = ", ".join(f"{k} {v}" for k, v in s["by_stage"].items()) or "none"
    lines = [
        f"{s['flows']} flows (dry run: nothing enforced): {s['decided']} decided as the gateway "
        f"would ({stages}), {s['undecided']} undecided (too few packets: they pass)",
    ]
    cols = [Col("rule"), Col("action"), Col("mode"), Col("decided", right=True), Col("matched", right=True)]
    rows = [[r.name, r.action.value, r.mode.value, r.decided, r.matched] for r in res.rules]
    lines += ["  " + line for line in render_plain(cols, rows).splitlines()]
    lines.append("  by action: " + (", ".join(f"{k} {v}" for k, v in res.by_action.items()) or "-"))
    off = s["offline_only"]
    by_off = ", ".join(f"{k} {v}" for k, v in off["by_action"].items()) or "-"
    lines.append(
        f"  offline only (whole flow, not what the gateway does): {off['flows']} flows; by action: {by_off}"
    )
    return "\n".join(lines)


def _write_log(log_dir: str, res: ReplayResult) -> None:
    from sluice.decisions import DecisionLog

    try:
        with DecisionLog(log_dir, fsync="never") as log:
            for d in res.decisions:
                log.write(d)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    except OSError as exc:
        raise InputFailure(f"cannot write the log {log_dir}: {exc.strerror}") from None
