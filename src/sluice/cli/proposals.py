"""``sluice registry proposals list|show|accept|reject``: the register's review queue.

What detectors propose waits here until a person accepts it (it becomes an entry of the source
``proposals:<detector>``) or rejects it. A thin shell over :mod:`sluice.registry.service`,
registered on the ``registry`` group by :mod:`sluice.cli.registry`, with its exit codes.
"""

from __future__ import annotations

__all__ = ["proposals_group"]

import json
from collections.abc import Callable
from typing import Any

import click

from sluice.cli._context import registry_db
from sluice.cli._register import register_opt, registry_errors
from sluice.registry import service


@click.group(name="proposals")
def proposals_group() -> None:
    """The review queue: what detectors propose, accepted or rejected by a person."""


def _proposal_line(p: dict[str, Any]) -> str:
    decided = (
        f"  {p['state']} by {p['reviewer']} {p['decided_at']}: {p['decision_reason']}"
        if p["reviewer"]
        else ""
    )
    return (
        f"#{p['id']:<5} {p['state']:<8} {p['kind']:<11} {p['indicator']}  [{p['detector']}]"
        f" {p['created_at']}  {p['reason']}{decided}"
    )


@proposals_group.command("list")
@register_opt
@click.option("--state", default=None, help="proposed, accepted or rejected.")
@click.option("--limit", type=click.IntRange(1), default=None)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def proposals_list_cmd(
    ctx: click.Context, state: str | None, limit: int | None, fmt: str, as_json: bool
) -> None:
    """Proposals, newest first."""
    fmt = "json" if as_json else fmt
    with registry_errors(fmt == "json"):
        items = service.proposals_list(registry_db(ctx), state, limit)
    if fmt == "json":
        click.echo(json.dumps(items, ensure_ascii=False))
        return
    if not items:
        click.echo("no proposals")
    for p in items:
        click.echo(_proposal_line(p))


@proposals_group.command("show")
@register_opt
@click.argument("pid", type=click.IntRange(1), metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def proposals_show_cmd(ctx: click.Context, pid: int, fmt: str, as_json: bool) -> None:
    """One proposal: evidence, impact preview and its audit trail."""
    fmt = "json" if as_json else fmt
    with registry_errors(fmt == "json"):
        p = service.proposal_show(registry_db(ctx), pid)
    if fmt == "json":
        click.echo(json.dumps(p, ensure_ascii=False))
        return
    click.echo(_proposal_line(p))
    click.echo(f"  source when accepted: {p['source']}")
    click.echo("  evidence: " + json.dumps(p["evidence"], ensure_ascii=False, sort_keys=True))
    click.echo(
        "  impact: "
        + (json.dumps(p["impact"], ensure_ascii=False, sort_keys=True) if p["impact"] else "(none)")
    )
    for ev in p["events"]:
        who = f" by {ev['actor']}" if ev["actor"] else ""
        click.echo(f"  {ev['at']}  {ev['action']}{who}  {ev['note']}")


def _decide(
    ctx: click.Context, ids: tuple[int, ...], accept: bool, reviewer: str, reason: str, fmt: str
) -> None:
    with registry_errors(fmt == "json"):
        outs = service.decide(registry_db(ctx), list(ids), accept, reviewer=reviewer, reason=reason)
    if fmt == "json":
        click.echo(json.dumps(outs, ensure_ascii=False))
        return
    for o in outs:
        if o["changed"]:
            extra = f" (import #{o['import_id']})" if o["import_id"] else ""
            click.echo(f"#{o['id']}: {o['state']}{extra}")
        else:
            click.echo(f"#{o['id']}: unchanged, already {o['state']} by {o['reviewer']}")


_REVIEW_OPTIONS: list[Callable[[Any], Any]] = [
    click.argument("ids", nargs=-1, required=True, type=click.IntRange(1)),
    click.option("--reviewer", required=True, help="Who decides (recorded in the audit)."),
    click.option("--reason", required=True, help="Why (recorded in the audit and the entry's basis)."),
    click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True),
    click.option("--json", "as_json", is_flag=True, help="Same as --format json."),
    click.pass_context,
]


def _review_options(f: Any) -> Any:
    for opt in reversed(_REVIEW_OPTIONS):
        f = opt(f)
    return f


@proposals_group.command("accept")
@register_opt
@_review_options
def proposals_accept_cmd(
    ctx: click.Context, ids: tuple[int, ...], reviewer: str, reason: str, fmt: str, as_json: bool
) -> None:
    """Accept proposal ID(s): each becomes an entry of proposals:<detector>."""
    _decide(ctx, ids, True, reviewer, reason, "json" if as_json else fmt)


@proposals_group.command("reject")
@register_opt
@_review_options
def proposals_reject_cmd(
    ctx: click.Context, ids: tuple[int, ...], reviewer: str, reason: str, fmt: str, as_json: bool
) -> None:
    """Reject proposal ID(s): they never become entries."""
    _decide(ctx, ids, False, reviewer, reason, "json" if as_json else fmt)
