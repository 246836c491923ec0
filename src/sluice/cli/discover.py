"""``sluice services discover``: endpoints of VPN, proxy and circumvention services found in traffic.

A thin shell over :mod:`sluice.services.discover` (grouping) and, with ``--propose``,
:mod:`sluice.registry.proposals` (the review queue) and :mod:`sluice.registry.impact` (what each
proposed entry would also cut). Exit codes: 0 OK, 2 usage or configuration error, 3 I/O error.
"""

from __future__ import annotations

__all__ = ["discover_command"]

import json
import time
from typing import Any

import click

from sluice.cli._context import register_option
from sluice.cli._exit import InputFailure, UsageFailure
from sluice.errors import CaptureError, ConfigError, SluiceError


def _when(ts: float) -> str:
    if ts in (float("inf"), float("-inf")):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _text(rank: int, c: dict[str, Any]) -> str:
    fams = ", ".join(f"{f} ×{n}" for f, n in c["families"].items())
    lines = [
        f"{rank}. {c['service']}  score {c['score']}: {c['findings']} finding flows of {c['flows']}, "
        f"{c['clients']} clients, {len(c['endpoints'])} endpoints ({fams})",
        f"   seen {_when(c['first_seen'])} .. {_when(c['last_seen'])} UTC",
    ]
    for e in c["endpoints"]:
        names = ", ".join(e["names"][:4]) + (" …" if len(e["names"]) > 4 else "")
        lines.append(f"   - {e['endpoint']}  {e['findings']}/{e['flows']} flows  {names}")
    lines += [f"   because {why}" for why in c["links"][:8]]
    if len(c["links"]) > 8:
        lines.append(f"   (and {len(c['links']) - 8} more links)")
    return "\n".join(lines)


@click.command("discover")
@click.argument(
    "inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=str)
)
@click.option(
    "--min-findings",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Finding flows a service needs.",
)
@click.option(
    "--ignore-domains",
    type=click.File("r", encoding="utf-8"),
    help="File of registrable domains (one per line) that never link endpoints (popular sites).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--propose", is_flag=True, help="Put each candidate's entries in the register's review queue.")
@register_option(help_text="The register (with --propose; it must exist) [env: SLUICE_REGISTRY].")
def discover_command(
    inputs: tuple[str, ...],
    min_findings: int,
    ignore_domains: Any,
    fmt: str,
    propose: bool,
    register_db: str | None,
) -> None:
    """Group the servers of INPUTS' findings into candidate services, best first, with why.

    INPUTS are captures (judged here), or ``sluice analyze`` output (``.jsonl``, ``.parquet``).
    """
    from sluice.services.discover import discover, proposals_for, read_flows

    if propose and not register_db:
        raise click.UsageError("--propose needs --register (or SLUICE_REGISTRY)")
    skip = [ln.strip() for ln in ignore_domains or [] if ln.strip() and not ln.startswith("#")]
    try:
        flows = read_flows(list(inputs))
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    except CaptureError as exc:
        raise InputFailure(f"{exc} [{exc.reason}]") from None
    cands = discover(flows, min_findings=min_findings, ignore_domains=skip)
    docs = [c.to_dict() for c in cands]
    if propose:
        assert register_db is not None
        try:
            ids = _propose(cands, inputs, register_db, proposals_for)
        except SluiceError as exc:
            raise (UsageFailure if isinstance(exc, ConfigError) else InputFailure)(
                str(exc)
            ) from None  # no register: usage
        for doc, got in zip(docs, ids, strict=True):
            doc["proposals"] = got
    if fmt == "json":
        click.echo(json.dumps({"flows": len(flows), "candidates": docs}, indent=2, default=str))
        return
    click.echo(f"{len(docs)} candidate services from {len(flows)} flows")
    for i, doc in enumerate(docs, 1):
        click.echo(_text(i, doc))
        if "proposals" in doc:
            click.echo(f"   proposed: {', '.join(f'#{p}' for p in doc['proposals']) or 'nothing new'}")


def _propose(
    cands: list[Any], inputs: tuple[str, ...], register_db: str, proposals_for: Any
) -> list[list[int]]:
    """Proposal ids per candidate, each proposal with its collateral-impact preview."""
    from dataclasses import replace

    from sluice.registry.impact import preview_impact, read_traffic, shared_lookup
    from sluice.registry.proposals import propose
    from sluice.registry.stores import open_store

    shared = shared_lookup()
    traffic = read_traffic(list(inputs))
    store = open_store(register_db)
    out = []
    try:
        for cand in cands:
            props = proposals_for(cand, shared)
            entries = [(p.kind, p.indicator) for p in props]
            own = [f"*.{d}" for d in cand.domains]
            report = preview_impact(entries, traffic, own=own, shared=shared) if entries else None
            ids = []
            for i, p in enumerate(props):
                impact = report.entries[i].as_dict() if report is not None else {}
                ids.append(propose(store, replace(p, impact=impact)))
            out.append(ids)
    finally:
        store.close()
    return out
