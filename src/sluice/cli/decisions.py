"""``sluice decisions``: query a decision log across its rotated segments.

Which clock ``--since 1h`` counts back on (``--clock``): a gateway's decisions carry the time they
were made, so "the last hour" is the last hour of the computer's clock (``wall``); decisions
replayed from captures (``sluice policy test --log``) carry the capture's time, so "the last hour"
is the last hour of the log itself, counted back from its newest decision (``capture``). ``auto``
(the default) takes ``capture`` when every decision of the log was replayed from a capture file,
``wall`` otherwise, and says on stderr which it took.

Exit codes: 0 OK, 2 bad option (time, duration), 3 log unreadable.
"""

from __future__ import annotations

__all__ = ["decisions"]

import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import click

from sluice.cli._exit import InputFailure
from sluice.cli._output import JSON_RULE, Col, listing_format, print_table, render_plain
from sluice.cli.policy import write_decisions
from sluice.decisions import DecisionFilter, ReadStats, parse_since, read_decisions
from sluice.decisions.store import is_postgres_url
from sluice.errors import ConfigError
from sluice.policy.model import Action, Decision, Mode

CLOCKS = ("auto", "wall", "capture")


@click.command("decisions")
@click.option(
    "--log",
    "log_dir",
    default="decisions",
    show_default=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Decision log directory, or a decisions store (sluice collect): its directory or postgresql:// URL.",
)
@click.option(
    "--since",
    help="Only decisions since an ISO 8601 time, or a duration (15m, 2h, 7d) before the --clock's now.",
)
@click.option(
    "--until", help="Only decisions before an ISO 8601 time or a duration before the --clock's now."
)
@click.option(
    "--clock",
    type=click.Choice(CLOCKS),
    default="auto",
    show_default=True,
    help="What a duration counts back from: wall (now, the computer's clock: live gateway logs), "
    "capture (the log's newest decision: replays carry their capture's time), auto (capture when "
    "every decision was replayed from a capture file, else wall; said on stderr).",
)
@click.option("--action", type=click.Choice([a.value for a in Action]), help="Only this action.")
@click.option("--rule", help="Only decisions of this rule ('(default)' for the default).")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), help="Only enforced or shadow rules.")
@click.option("--limit", type=click.IntRange(min=1), help="Print at most N decisions (the latest).")
@click.option("--json", "as_json", is_flag=True, help=f"Decisions as JSON lines: {JSON_RULE}.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "jsonl", "csv", "eve", "text")),
    default=None,
    help="table (default; 'text' is its old name), jsonl (as --json), csv (lists as JSON arrays) "
    "or eve: Suricata EVE JSON lines, an alert per decision and a drop per enforced block. The "
    "counts go to stderr unless the decisions are a table.",
)
def decisions(
    log_dir: str,
    since: str | None,
    until: str | None,
    clock: str,
    action: str | None,
    rule: str | None,
    mode: str | None,
    limit: int | None,
    as_json: bool,
    fmt: str | None,
) -> None:
    """Print the decisions of a log, oldest first, with counts by rule and action.

    A duration in --since/--until (1h) counts back from now on a gateway's log, and from the log's
    newest decision on a log that `sluice policy test --log` wrote (replayed decisions carry the
    capture's time): --clock auto (the default) tells them apart and says which it used; --clock
    wall or capture chooses.
    """
    fmt = listing_format("table" if fmt == "text" else fmt, as_json)
    if not is_postgres_url(log_dir) and not Path(log_dir).is_dir():
        raise InputFailure(f"no decision log at {log_dir}")
    try:
        now = _now(clock, log_dir, [t for t in (since, until) if t])
        flt = DecisionFilter(
            since=parse_since(since, now) if since else None,
            until=parse_since(until, now) if until else None,
            action=action,
            rule=rule,
            mode=mode,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    except OSError as exc:
        raise InputFailure(f"cannot read {log_dir}: {exc.strerror}") from None
    stats = ReadStats()
    try:
        found = list(read_decisions(log_dir, flt, stats))
    except OSError as exc:
        raise InputFailure(f"cannot read {log_dir}: {exc.strerror}") from None
    counts = Counter((d.rule, d.action.value, d.mode.value) for d in found)
    shown = found[-limit:] if limit else found
    if fmt == "table":
        if shown:
            multi = len({d.capture for d in shown}) > 1  # several captures or gateway queues
            cols = [Col("capture"), *_COLS] if multi else _COLS
            print_table(cols, [[d.capture, *_row(d)] if multi else _row(d) for d in shown])
    else:
        write_decisions(sys.stdout, fmt, shown)
    summary = [f"{len(found)} decisions in {stats.files} files, {stats.skipped} damaged lines skipped"]
    if stats.reasons:
        summary[0] += " (" + ", ".join(f"{k}={v}" for k, v in sorted(stats.reasons.items())) + ")"
    if counts:
        cols = [Col("rule"), Col("action"), Col("mode"), Col("decisions", right=True)]
        rows = [[r, a, m, n] for (r, a, m), n in sorted(counts.items())]
        summary += ["  " + line for line in render_plain(cols, rows).splitlines()]
    click.echo("\n".join(summary), err=fmt != "table")


_COLS = [Col(n) for n in ("time", "action", "mode", "rule", "flow_key", "server_name", "class", "register")]


def _row(d: Decision) -> list[str]:
    reg = ""
    if d.register:
        reg = f"register:{d.register[0].source}:{d.register[0].indicator}"
        if d.register[0].basis:
            reg += f" basis:{'; '.join(d.register[0].basis)}"
    cls = f"{d.verdict_class}/{d.family or '-'}" if d.verdict_class else "-"
    mode = "enforced" if d.enforced else d.mode.value
    return [d.iso_time, d.action.value, mode, d.rule, d.flow_key, d.server_name or "-", cls, reg or "-"]


def _is_duration(text: str) -> bool:
    try:
        return parse_since(text, 0.0) != parse_since(text, 1.0)
    except ConfigError:
        return False


def _replayed(d: Decision) -> bool:
    """Whether a decision was replayed from a capture file (a gateway's name its queue)."""
    return bool(d.capture) and not d.capture.startswith("nfqueue:")


def _now(clock: str, log_dir: str, times: list[str]) -> float:
    """The "now" durations count back from, under ``clock`` (module docstring); said on stderr."""
    wall = time.time()
    if clock == "wall" or not any(_is_duration(t) for t in times):
        return wall
    newest: float | None = None
    replayed = True
    for d in read_decisions(log_dir):
        newest = d.time if newest is None else max(newest, d.time)
        replayed = replayed and _replayed(d)
    if newest is None or (clock == "auto" and not replayed):
        if clock == "capture":
            click.echo("sluice decisions: --clock capture: the log is empty; counting from now", err=True)
        return wall
    why = (
        "--clock capture"
        if clock == "capture"
        else "--clock auto: every decision was replayed from a capture"
    )
    iso = datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    click.echo(f"sluice decisions: durations count back from the log's newest decision, {iso} ({why}; "
               "--clock wall counts from now)", err=True)  # fmt: skip
    return newest
