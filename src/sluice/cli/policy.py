"""``sluice policy check`` and ``sluice policy test``: validate a policy, dry-run it on captures.

Exit codes: 0 OK, 2 policy or usage error (every problem printed with its line), 3 I/O error
(policy, capture or register unreadable).
"""

from __future__ import annotations

__all__ = ["policy"]

import json
import sys
from pathlib import Path

import click

from sluice.cli._detect import load_combiner, model_options
from sluice.errors import CaptureError, ConfigError, SluiceError
from sluice.policy import Decision, Mode, ReplayResult, check_policy, load_policy, replay_captures

EXIT_USAGE, EXIT_IO = 2, 3
_COLUMNS = (("flow", 10), ("flow_key", 46), ("server_name", 26), ("class", 20), ("rule", 18), ("action", 0))


@click.group("policy")
def policy() -> None:
    """Check policy files and try them on captures (dry runs)."""


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(file: str, as_json: bool) -> None:
    """Validate the policy FILE; print every problem with its line (exit 2 when there is one)."""
    try:
        text = Path(file).read_text(encoding="utf-8")
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
    "--log",
    "log_dir",
    type=click.Path(file_okay=False, path_type=str),
    help="Also write the dry-run decisions to this decision log directory.",
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
    log_dir: str | None,
    as_json: bool,
) -> None:
    """Replay CAPTURE files through analysis and the policy FILE; print what every rule would
    have done (nothing is enforced) with counts per rule and per action."""
    try:
        pol = load_policy(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        click.echo(f"sluice policy: error: cannot read {file}: {exc.strerror}", err=True)
        sys.exit(EXIT_IO)
    matcher = None
    if register_db:
        try:
            from sluice.registry import Matcher, open_store

            matcher = Matcher.from_store(open_store(register_db))
        except SluiceError as exc:
            click.echo(f"sluice policy: error: cannot open the register: {exc}", err=True)
            sys.exit(EXIT_IO)
    combiner = load_combiner(model_dir, no_model, "sluice policy", fet_veto)
    try:
        res = replay_captures(pol, list(captures), combiner, matcher=matcher)
    except CaptureError as exc:
        click.echo(f"sluice policy: error: {exc} [{exc.reason}]", err=True)
        sys.exit(EXIT_IO)
    if log_dir:
        _write_log(log_dir, res)
    multi = len(captures) > 1
    if fmt == "jsonl":
        for d in res.decisions:
            click.echo(json.dumps(d.to_dict(), ensure_ascii=False, separators=(",", ":")))
    else:
        click.echo(" ".join(n.ljust(w) for n, w in _COLUMNS).rstrip())
        for d in res.decisions:
            click.echo(
                " ".join(c.ljust(w) for c, (_, w) in zip(_row(d, multi), _COLUMNS, strict=True)).rstrip()
            )
    if as_json:
        click.echo(json.dumps(res.summary(), indent=2))
    else:
        click.echo(_summary_text(res), err=fmt == "jsonl")


def _row(d: Decision, multi: bool) -> list[str]:
    cls = f"{d.verdict_class}/{d.family or '-'}" if d.verdict_class else "-"
    action = d.action.value + (f" {d.rate_kbit} kbit/s" if d.rate_kbit else "")
    if d.mode is Mode.SHADOW:
        action += " (shadow)"
    if d.register:
        action += f"  register:{d.register[0].source}:{d.register[0].indicator}"
    return [
        (f"{d.capture}:" if multi else "") + str(d.flow_id),
        d.flow_key,
        (d.server_name or "-")[:26],
        cls,
        d.rule,
        action,
    ]


def _summary_text(res: ReplayResult) -> str:
    lines = [
        f"{len(res.decisions)} flows (dry run: nothing enforced)",
        "  rule                  action    mode     decided  matched",
    ]
    for r in res.rules:
        lines.append(f"  {r.name:<21} {r.action.value:<9} {r.mode.value:<8} {r.decided:>7}  {r.matched:>7}")
    lines.append("  by action: " + ", ".join(f"{k} {v}" for k, v in res.by_action.items()))
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
