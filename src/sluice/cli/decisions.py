"""``sluice decisions``: query a decision log across its rotated segments.

Exit codes: 0 OK, 2 bad option (time, duration), 3 log unreadable.
"""

from __future__ import annotations

__all__ = ["decisions"]

import json
import sys
import time
from collections import Counter

import click

from sluice.decisions import DecisionFilter, ReadStats, parse_since, read_decisions
from sluice.errors import ConfigError
from sluice.policy.model import Action, Mode

EXIT_USAGE, EXIT_IO = 2, 3


@click.command("decisions")
@click.option(
    "--log",
    "log_dir",
    default="decisions",
    show_default=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Decision log directory.",
)
@click.option("--since", help="Only decisions since ISO 8601 time or a duration ago (15m, 2h, 7d).")
@click.option("--until", help="Only decisions before ISO 8601 time or a duration ago.")
@click.option("--action", type=click.Choice([a.value for a in Action]), help="Only this action.")
@click.option("--rule", help="Only decisions of this rule ('(default)' for the default).")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), help="Only enforced or shadow rules.")
@click.option("--limit", type=click.IntRange(min=1), help="Print at most N decisions (the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print decisions as JSON lines (summary on stderr).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("text", "jsonl", "eve")),
    default=None,
    help="text (default), jsonl (as --json) or eve: Suricata EVE JSON lines, an alert per decision "
    "and a drop per enforced block (summary on stderr).",
)
def decisions(
    log_dir: str,
    since: str | None,
    until: str | None,
    action: str | None,
    rule: str | None,
    mode: str | None,
    limit: int | None,
    as_json: bool,
    fmt: str | None,
) -> None:
    """Print the decisions of a log, oldest first, with counts by rule and action."""
    from pathlib import Path

    import orjson

    from sluice.decisions.eve import decision_events

    if as_json and fmt not in (None, "jsonl"):
        raise click.UsageError("--json is --format jsonl; give one of them")
    fmt = "jsonl" if as_json else (fmt or "text")
    as_json = fmt != "text"

    if not Path(log_dir).is_dir():
        click.echo(f"sluice decisions: error: no decision log at {log_dir}", err=True)
        sys.exit(EXIT_IO)
    now = time.time()
    try:
        flt = DecisionFilter(
            since=parse_since(since, now) if since else None,
            until=parse_since(until, now) if until else None,
            action=action,
            rule=rule,
            mode=mode,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    stats = ReadStats()
    try:
        found = list(read_decisions(log_dir, flt, stats))
    except OSError as exc:
        click.echo(f"sluice decisions: error: cannot read {log_dir}: {exc.strerror}", err=True)
        sys.exit(EXIT_IO)
    counts = Counter((d.rule, d.action.value, d.mode.value) for d in found)
    shown = found[-limit:] if limit else found
    for d in shown:
        if fmt == "eve":
            for ev in decision_events(d):
                click.echo(orjson.dumps(ev).decode())
        elif as_json:
            click.echo(json.dumps(d.to_dict(), ensure_ascii=False, separators=(",", ":")))
        else:
            reg = f" register:{d.register[0].source}:{d.register[0].indicator}" if d.register else ""
            basis = f" basis:{'; '.join(d.register[0].basis)}" if d.register and d.register[0].basis else ""
            cls = f"{d.verdict_class}/{d.family or '-'}" if d.verdict_class else "-"
            click.echo(
                f"{d.iso_time} {d.action.value:<8} {'enforced' if d.enforced else d.mode.value:<8} "
                f"{d.rule:<18} {d.flow_key} {d.server_name or '-'} {cls}{reg}{basis}"
            )
    summary = [f"{len(found)} decisions in {stats.files} files, {stats.skipped} damaged lines skipped"]
    if stats.reasons:
        summary[0] += " (" + ", ".join(f"{k}={v}" for k, v in sorted(stats.reasons.items())) + ")"
    summary += [f"  {r:<24} {a:<9} {m:<8} {n}" for (r, a, m), n in sorted(counts.items())]
    click.echo("\n".join(summary), err=as_json)
