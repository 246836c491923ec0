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
import sys

import click

from sluice.cli._detect import load_combiner, model_options
from sluice.errors import CaptureError, ConfigError, SluiceError
from sluice.gateway.rules import DEFAULT_PACKETS
from sluice.policy import Decision, FlowOutcome, Mode, ReplayResult, check_policy, load_policy
from sluice.policy.loader import PolicyError, read_policy_text

EXIT_USAGE, EXIT_IO = 2, 3
_COLUMNS = (
    ("flow", 10),
    ("flow_key", 46),
    ("server_name", 26),
    ("class", 20),
    ("at", 14),
    ("rule", 18),
    ("action", 0),
)


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
        click.echo(f"sluice policy: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"sluice policy: error: cannot read {file}: {exc}", err=True)
        sys.exit(EXIT_IO)
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
        sys.exit(EXIT_USAGE)


@policy.command("test")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--register", "register_db", help="Register to match against (SQLite file or postgresql:// URL)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "jsonl")),
    default="table",
    show_default=True,
    help="Output format of the decisions.",
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
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON (after the decisions).")
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
) -> None:
    """Replay CAPTURE files packet by packet through the gateway's Decider with the policy FILE;
    print what the gateway would have decided for every flow (nothing is enforced), counts per
    rule and per action, and apart, what only the whole flow decides (offline only)."""
    try:
        pol = load_policy(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        click.echo(f"sluice policy: error: cannot read {file}: {exc.strerror}", err=True)
        sys.exit(EXIT_IO)
    from sluice.decide import decide_after_for, open_register, replay_captures

    register = None
    if register_db:
        try:
            register = open_register(register_db)
        except SluiceError as exc:
            click.echo(f"sluice policy: error: cannot open the register: {exc}", err=True)
            sys.exit(EXIT_IO)
    combiner = load_combiner(model_dir, no_model, "sluice policy", fet_veto)
    try:
        res = replay_captures(
            pol, list(captures), combiner, register=register, decide_after=decide_after_for(packets)
        )
    except CaptureError as exc:
        click.echo(f"sluice policy: error: {exc} [{exc.reason}]", err=True)
        sys.exit(EXIT_IO)
    if log_dir:
        _write_log(log_dir, res)
    multi = len(captures) > 1
    if fmt == "jsonl":
        for d in res.decisions + [o.offline for o in res.offline_only]:
            click.echo(json.dumps(d.to_dict(), ensure_ascii=False, separators=(",", ":")))
    else:
        click.echo(outcome_table(res, multi))
    if as_json:
        click.echo(json.dumps(res.summary(), indent=2))
    else:
        click.echo(summary_text(res), err=fmt == "jsonl")


def _line(cells: list[str]) -> str:
    return " ".join(c.ljust(w) for c, (_, w) in zip(cells, _COLUMNS, strict=True)).rstrip()


def outcome_table(res: ReplayResult, multi: bool) -> str:
    """One row per flow with the gateway's decision, then the offline-only rows apart."""
    lines = [_line([n for n, _ in _COLUMNS])]
    for o in res.outcomes:
        lines.append(_line(_row(o, o.inline, multi)))
    off = res.offline_only
    if off:
        lines.append("")
        lines.append("offline only (the whole flow decides otherwise; the gateway would not):")
        lines.extend(_line(_row(o, o.offline, multi)) for o in off)
    return "\n".join(lines)


def _row(o: FlowOutcome, d: Decision | None, multi: bool) -> list[str]:
    flow = (f"{o.capture}:" if multi else "") + str(o.record.flow_id)
    if d is None:
        name = (o.record.meta.server_name or "-")[:26]
        return [
            flow,
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
    return [flow, d.flow_key, (d.server_name or "-")[:26], cls, f"{d.stage}@{d.decided_at}", d.rule, action]


def summary_text(res: ReplayResult) -> str:
    """Counts per rule and action of what the gateway would have done, then the offline-only ones."""
    s = res.summary()
    stages = ", ".join(f"{k} {v}" for k, v in s["by_stage"].items()) or "none"
    lines = [
        f"{s['flows']} flows (dry run: nothing enforced): {s['decided']} decided as the gateway "
        f"would ({stages}), {s['undecided']} undecided (too few packets: they pass)",
        "  rule                  action    mode     decided  matched",
    ]
    for r in res.rules:
        lines.append(f"  {r.name:<21} {r.action.value:<9} {r.mode.value:<8} {r.decided:>7}  {r.matched:>7}")
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
        click.echo(f"sluice policy: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        click.echo(f"sluice policy: error: cannot write the log {log_dir}: {exc.strerror}", err=True)
        sys.exit(EXIT_IO)
