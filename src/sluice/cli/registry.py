"""``sluice registry``: import, check, history, export, stats, the review queue and impact previews.

A thin shell: it parses options, calls :mod:`sluice.registry.service`, and formats the result.
Exit codes: 0 OK, 1 findings (``check --fail-on-findings``), 2 usage or configuration error
(no register at the path given, no source name), 3 I/O error (file missing or unreadable, input
refused as damaged or truncated, a fetch refused or failed, store unreachable).  Every command
takes ``--json``.  The register is ``--register`` (a SQLite file, or a ``postgresql://`` URL),
after the subcommand or before it, default ``$SLUICE_REGISTRY`` or ``./sluice-registry.db``
(``--db`` and ``$SLUICE_REGISTRY_DB`` are deprecated names of the same); only ``init`` and
``import`` create one.

The review queue (``proposals``) lives in :mod:`sluice.cli.proposals`, the sources and ``fetch``
in :mod:`sluice.cli.sources`, signed snapshots in :mod:`sluice.cli.snapshot`; what they share
(the exit code of a :class:`~sluice.registry.model.RegistryError`, ``--register``) in
:mod:`sluice.cli._register`. All are registered on this group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sluice.cli._context import DEFAULT_REGISTER, registry_db, store_group_register
from sluice.cli._exit import Findings
from sluice.cli._output import progress as progress_bar
from sluice.cli._register import register_made_opt, register_opt, registry_errors
from sluice.cli.proposals import proposals_group
from sluice.cli.snapshot import snapshot_group
from sluice.cli.sources import fetch_cmd, sources_group
from sluice.registry import service
from sluice.registry.choices import DEFAULT_MAX_DROP, DEFAULT_MAX_REMOVED, FORMATS, MAX_NAMES
from sluice.registry.exports import EXPORT_TARGETS
from sluice.registry.model import ImportSummary, RegistryError

if TYPE_CHECKING:
    from sluice.registry.impact import ImpactReport

__all__ = ["registry"]


@click.group(name="registry")
@click.option(
    "--register",
    "register_given",
    default=None,
    metavar="PATH|URL",
    help="The register for every subcommand (also accepted after it) [env: SLUICE_REGISTRY;"
    f" default: {DEFAULT_REGISTER}].",
)
@click.option("--db", "db_given", default=None, hidden=True, help="Deprecated: --register.")
@click.pass_context
def registry(ctx: click.Context, register_given: str | None, db_given: str | None) -> None:
    """The register of blocked resources: import lists, check, audit, export.

    The register is --register PATH|URL (or $SLUICE_REGISTRY), before or after the subcommand.
    Only `init` and `import` create one; every other command refuses a path with no register.
    """
    store_group_register(ctx, register_given, db_given)


@registry.command("init")
@register_made_opt
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def init_cmd(ctx: click.Context, as_json: bool) -> None:
    """Create an empty register (or say that one is there already)."""
    with registry_errors(as_json):
        out = service.init(registry_db(ctx))
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
    elif out["created"]:
        click.echo(f"created the register {out['register']} (schema version {out['schema_version']})")
    else:
        click.echo(f"{out['register']} is a register already ({out['entries']} entries): left as it is")


def _print_summary(s: ImportSummary, show_rejected: int) -> None:
    verb = "would change" if s.dry_run else "import"
    click.echo(
        f"{s.source} ({s.fmt}{', ' + s.dump_time if s.dump_time else ''}): {s.rows} rows,"
        f" {s.entries} entries; {verb}: {s.added} added, {s.removed} removed,"
        f" {s.changed} changed, {s.unchanged} unchanged, {len(s.rejected)} rejected lines"
    )
    if s.held:
        click.echo(
            f"  {s.held} removals held back: rows were rejected, and a rejected row never removes"
            " an entry (fix the rows to let them go)"
        )
    for r in s.rejected[:show_rejected]:
        where = f"{r.path}:" if r.path else "line "
        click.echo(f"  rejected {where}{r.line}: {r.reason}: {r.text[:120]}")
    if len(s.rejected) > show_rejected:
        click.echo(f"  ... {len(s.rejected) - show_rejected} more rejected lines (--json lists all)")


@registry.command("import")
@register_made_opt
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="Input format (several FILES: parts of one RKN CSV dump).",
)
@click.option(
    "--source",
    default="",
    help="The list's name, the same for every copy of it (default: the name its header declares:"
    " rkn for RKN dumps, the '# Title:' of a list, an RPZ zone's origin; required when none).",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_MAX_DROP,
    show_default=True,
    help="Refuse when rows fall by more than this share.",
)
@click.option(
    "--max-removed",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_MAX_REMOVED,
    show_default=True,
    help="Refuse when the import would remove more than this share of the source's entries.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Accept a larger drop or removal, an older dump, and entries that block everything.",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option(
    "--preview",
    is_flag=True,
    help="Write nothing; show what every entry would also hit in the traffic of --flows.",
)
@click.option(
    "--flows",
    "flow_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Flow log (sluice flows: JSONL, CSV, Parquet) or capture, for --preview (repeatable).",
)
@click.option("--own", multiple=True, help="Names (d, *.d) the entries are meant to hit (repeatable).")
@click.option("--show-rejected", type=click.IntRange(0), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def import_cmd(
    ctx: click.Context,
    files: tuple[Path, ...],
    fmt: str,
    source: str,
    max_drop: float,
    max_removed: float,
    force: bool,
    dry_run: bool,
    preview: bool,
    flow_files: tuple[Path, ...],
    own: tuple[str, ...],
    show_rejected: int,
    as_json: bool,
) -> None:
    """Sync the register with FILE(s): add, remove and update one source's entries.

    A FILE of ``-`` (or ``/dev/stdin``) is standard input; pipes are read once, like files.
    """
    if preview or flow_files:
        if not (preview and flow_files):
            raise click.UsageError("--preview and --flows go together")
        with registry_errors(as_json):
            report = service.import_preview(list(files), fmt, list(flow_files), source=source, own=own)
        _print_impact(report, "json" if as_json else "text", MAX_NAMES)
        return
    total = sum(p.stat().st_size for p in files if str(p) != "-" and p.is_file())
    with registry_errors(as_json), progress_bar("registry import: reading", max(total, 1)) as bar:

        def progress(n: int) -> None:
            bar.update(n)

        summary = service.import_paths(
            registry_db(ctx),
            list(files),
            fmt,
            source=source,
            max_drop=max_drop,
            max_removed=max_removed,
            force=force,
            dry_run=dry_run,
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        _print_summary(summary, show_rejected)


@registry.command("check")
@register_opt
@click.argument("items", nargs=-1, required=True)
@click.option("--source", default=None, help="Only this list.")
@click.option("--fail-on-findings", is_flag=True, help="Exit 1 when anything matches.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check_cmd(
    ctx: click.Context,
    items: tuple[str, ...],
    source: str | None,
    fail_on_findings: bool,
    as_json: bool,
) -> None:
    """Show the entries that apply to each HOST, URL, IP or wallet address (chain:address), with
    their legal basis."""
    with registry_errors(as_json):
        results = service.check(registry_db(ctx), list(items), source=source)
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False))
    else:
        for r in results:
            matches: list[dict[str, Any]] = r["matches"]
            if not matches:
                click.echo(f"{r['query']}: no entry")
                continue
            click.echo(f"{r['query']}: {len(matches)} entr{'y' if len(matches) == 1 else 'ies'}")
            for m in matches:
                basis = "; ".join(m["basis_text"]) or "(no decision given)"
                click.echo(f"  {m['reason']:<13} {m['kind']:<11} {m['shown']}  [{m['source']}]  {basis}")
    if fail_on_findings and any(r["matches"] for r in results):
        raise Findings()


@registry.command("history")
@register_opt
@click.argument("indicator")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history_cmd(ctx: click.Context, indicator: str, as_json: bool) -> None:
    """Show every change to INDICATOR (added, removed, changed) and its current entries."""
    with registry_errors(as_json):
        h = service.history(registry_db(ctx), indicator)
    if as_json:
        click.echo(json.dumps(h, ensure_ascii=False))
        return
    click.echo(f"{h['shown']} ({h['indicator']})")
    if not h["events"]:
        click.echo("  no history")
    for ev in h["events"]:
        basis = "; ".join(ev["new_basis_text"] or ev["old_basis_text"])
        click.echo(
            f"  {ev['at']}  {ev['action']:<8} {ev['kind']:<11} [{ev['source']}]"
            f"  import #{ev['import_id']}  {basis}"
        )
    for cur in h["current"]:
        click.echo(f"  now in [{cur['source']}] as {cur['kind']} since {cur['added_at']}")


@registry.command("export")
@register_opt
@click.option("--to", "target", type=click.Choice(EXPORT_TARGETS), required=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output file (default: standard output)."
)
@click.option("--source", default=None, help="Only this list.")
@click.option("--origin", default="rpz.sluice", show_default=True, help="RPZ zone origin.")
@click.option("--table", default="sluice_registry", show_default=True, help="nftables table name.")
@click.option("--json", "as_json", is_flag=True, help="Print counts as JSON (needs --out).")
@click.pass_context
def export_cmd(
    ctx: click.Context,
    target: str,
    out: Path | None,
    source: str | None,
    origin: str,
    table: str,
    as_json: bool,
) -> None:
    """Write the register for nftables, RPZ, unbound, dnsmasq, Squid or a hosts file."""
    with registry_errors(as_json):
        res = service.export(registry_db(ctx), target, source=source, origin=origin, table=table)
        if out is None:
            click.echo(res.text, nl=False)
        else:
            try:
                out.write_text(res.text, encoding="utf-8")
            except OSError as exc:
                raise RegistryError("registry.io_error", exc.strerror or str(exc), str(out)) from exc
    report = {
        "target": target,
        "out": str(out) if out else "-",
        "written": res.written,
        "skipped": res.skipped,
    }
    if as_json and out is not None:
        click.echo(json.dumps(report))
    else:
        click.echo(f"{target}: written {_counts(res.written)}; skipped {_counts(res.skipped)}", err=True)


def _counts(by: dict[str, int]) -> str:
    """``{"domain": 3814, "ip": 2}`` for people: ``3,816 (domain 3,814, ip 2)``, or ``0``."""
    if not by:
        return "0"
    return f"{sum(by.values()):,} (" + ", ".join(f"{k} {n:,}" for k, n in sorted(by.items())) + ")"


@registry.command("stats")
@register_opt
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats_cmd(ctx: click.Context, as_json: bool) -> None:
    """Entries per source and kind, and the latest imports."""
    with registry_errors(as_json):
        st = service.stats(registry_db(ctx))
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False))
        return
    counts: dict[str, dict[str, int]] = st["entries"]
    for src, kinds in sorted(counts.items()):
        click.echo(f"{src}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    for imp in st["imports"]:
        click.echo(
            f"  import #{imp['id']} {imp['at']} {imp['source']} ({imp['format']}):"
            f" {imp['rows']} rows, +{imp['added']} -{imp['removed']} ~{imp['changed']}"
        )


# -- impact previews --


def _print_impact(report: ImpactReport, fmt: str, show_names: int) -> None:
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    click.echo(f"traffic: {report.flows} flows from {', '.join(report.files)}")
    if not report.shared_checked:
        click.echo("  (no service catalogue: shared infrastructure not checked)")
    for e in report.entries:
        click.echo(
            f"{e.indicator} ({e.kind.value}): {e.flows} flows, {e.clients} clients"
            f" on {e.addresses} addresses; collateral {e.collateral_flows} flows"
            f" ({e.collateral_share:.1%}, bytes {e.collateral_byte_share:.1%}),"
            f" {e.collateral_clients} clients, {e.collateral_names} other names"
        )
        for s in e.shared:
            click.echo(f"  SHARED INFRASTRUCTURE: {s['operator']} {s['cidr']} [{s['source']}]")
        click.echo(f"  -> {e.advice}")
        for n in e.names[:show_names]:
            mark = "own" if n.own else "   "
            click.echo(
                f"  {mark} {n.name:<40} {n.flows:>6} flows {n.clients:>5} clients  {', '.join(n.addresses)}"
            )
        if e.names_total > min(show_names, len(e.names)):
            click.echo(f"  ... {e.names_total - min(show_names, len(e.names))} more names (--format json)")


@registry.command("impact")
@click.argument("entries", nargs=-1, required=True)
@click.option(
    "--flows",
    "flow_files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Flow log (sluice flows: JSONL, CSV, Parquet) or capture (pcap, pcapng); repeatable.",
)
@click.option("--own", multiple=True, help="Names (d, *.d) the entries are meant to hit (repeatable).")
@click.option("--names", "show_names", type=click.IntRange(0), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def impact_cmd(
    entries: tuple[str, ...],
    flow_files: tuple[Path, ...],
    own: tuple[str, ...],
    show_names: int,
    fmt: str,
    as_json: bool,
) -> None:
    """What each ENTRY (name, *.mask, URL, address, CIDR) would also hit in the given traffic."""
    fmt = "json" if as_json else fmt
    with registry_errors(fmt == "json"):
        report = service.impact(
            list(entries), list(flow_files), own=own, max_names=max(show_names, MAX_NAMES)
        )
    _print_impact(report, fmt, show_names)


registry.add_command(proposals_group)
registry.add_command(sources_group)
registry.add_command(sources_group, "source")
registry.add_command(fetch_cmd)
registry.add_command(snapshot_group)
