"""``sluice registry``: import, check, history, export, stats, the review queue and impact previews.

A thin shell: it parses options, calls :mod:`sluice.registry.service`, and formats the result.
Exit codes: 0 OK, 1 findings (``check --fail-on-findings``), 2 usage or configuration error
(no register at the path given, no source name), 3 I/O error (file missing or unreadable, input
refused as damaged or truncated, a fetch refused or failed, store unreachable).  Every command
takes ``--json``.  The register is ``--register`` (a SQLite file, or a ``postgresql://`` URL),
after the subcommand or before it, default ``$SLUICE_REGISTRY`` or ``./sluice-registry.db``
(``--db`` and ``$SLUICE_REGISTRY_DB`` are deprecated names of the same); only ``init`` and
``import`` create one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sluice.cli._context import DEFAULT_REGISTER, register_option, registry_db, store_group_register
from sluice.cli._exit import Findings, InputFailure, failure_for
from sluice.cli._output import progress as progress_bar
from sluice.registry import service
from sluice.registry.choices import DEFAULT_MAX_DROP, DEFAULT_MAX_REMOVED, FORMATS, MAX_NAMES
from sluice.registry.exports import EXPORT_TARGETS
from sluice.registry.model import ImportSummary, RegistryError

if TYPE_CHECKING:
    from sluice.registry.impact import ImpactReport

__all__ = ["registry"]

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_IO = 3
_USAGE_REASONS = frozenset(
    {
        "registry.bad_format",
        "registry.no_input",
        "registry.bad_export_target",
        "registry.bad_export_option",
        "registry.bad_indicator",
        "registry.bad_state",
        "registry.bad_proposal",
        "registry.no_proposal",
        "registry.no_register",
        "registry.no_source",
        "registry.bad_source",
        "registry.unknown_source",
        "registry.source_exists",
        "registry.bad_url",
        "registry.bad_interval",
    }
)


def _fail(exc: RegistryError, as_json: bool) -> NoReturn:
    code = EXIT_USAGE if exc.reason in _USAGE_REASONS else EXIT_IO
    if as_json:
        click.echo(
            json.dumps({"error": exc.reason, "detail": exc.detail, "path": exc.path}, ensure_ascii=False)
        )
    raise failure_for(code, f"{exc} [{exc.reason}]")


def _db(ctx: click.Context) -> str:
    return registry_db(ctx)


_register = register_option(param=None, default=DEFAULT_REGISTER)
"""``--register`` on a subcommand (kept in ``ctx.meta`` for :func:`_db`)."""
_register_made = register_option(
    param=None,
    default=DEFAULT_REGISTER,
    help_text="The register: a SQLite file or a postgresql:// URL [env: SLUICE_REGISTRY];"
    " created when absent.",
)
"""``--register`` of the two commands that create one (``init``, ``import``)."""


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
@_register_made
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def init_cmd(ctx: click.Context, as_json: bool) -> None:
    """Create an empty register (or say that one is there already)."""
    try:
        out = service.init(_db(ctx))
    except RegistryError as exc:
        _fail(exc, as_json)
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
@_register_made
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
        try:
            report = service.import_preview(list(files), fmt, list(flow_files), source=source, own=own)
        except RegistryError as exc:
            _fail(exc, as_json)
        _print_impact(report, "json" if as_json else "text", MAX_NAMES)
        return
    total = sum(p.stat().st_size for p in files if str(p) != "-" and p.is_file())
    try:
        with progress_bar("registry import: reading", max(total, 1)) as bar:

            def progress(n: int) -> None:
                bar.update(n)

            summary = service.import_paths(
                _db(ctx),
                list(files),
                fmt,
                source=source,
                max_drop=max_drop,
                max_removed=max_removed,
                force=force,
                dry_run=dry_run,
                progress=progress,
            )
    except RegistryError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        _print_summary(summary, show_rejected)


@registry.command("check")
@_register
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
    try:
        results = service.check(_db(ctx), list(items), source=source)
    except RegistryError as exc:
        _fail(exc, as_json)
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
@_register
@click.argument("indicator")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history_cmd(ctx: click.Context, indicator: str, as_json: bool) -> None:
    """Show every change to INDICATOR (added, removed, changed) and its current entries."""
    try:
        h = service.history(_db(ctx), indicator)
    except RegistryError as exc:
        _fail(exc, as_json)
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
@_register
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
    try:
        res = service.export(_db(ctx), target, source=source, origin=origin, table=table)
        if out is None:
            click.echo(res.text, nl=False)
        else:
            try:
                out.write_text(res.text, encoding="utf-8")
            except OSError as exc:
                raise RegistryError("registry.io_error", exc.strerror or str(exc), str(out)) from exc
    except RegistryError as exc:
        _fail(exc, as_json)
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
@_register
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats_cmd(ctx: click.Context, as_json: bool) -> None:
    """Entries per source and kind, and the latest imports."""
    try:
        st = service.stats(_db(ctx))
    except RegistryError as exc:
        _fail(exc, as_json)
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
    try:
        report = service.impact(
            list(entries), list(flow_files), own=own, max_names=max(show_names, MAX_NAMES)
        )
    except RegistryError as exc:
        _fail(exc, fmt == "json")
    _print_impact(report, fmt, show_names)


# -- the review queue --


@registry.group("proposals")
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
@_register
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
    try:
        items = service.proposals_list(_db(ctx), state, limit)
    except RegistryError as exc:
        _fail(exc, fmt == "json")
    if fmt == "json":
        click.echo(json.dumps(items, ensure_ascii=False))
        return
    if not items:
        click.echo("no proposals")
    for p in items:
        click.echo(_proposal_line(p))


@proposals_group.command("show")
@_register
@click.argument("pid", type=click.IntRange(1), metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def proposals_show_cmd(ctx: click.Context, pid: int, fmt: str, as_json: bool) -> None:
    """One proposal: evidence, impact preview and its audit trail."""
    fmt = "json" if as_json else fmt
    try:
        p = service.proposal_show(_db(ctx), pid)
    except RegistryError as exc:
        _fail(exc, fmt == "json")
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
    try:
        outs = service.decide(_db(ctx), list(ids), accept, reviewer=reviewer, reason=reason)
    except RegistryError as exc:
        _fail(exc, fmt == "json")
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
@_register
@_review_options
def proposals_accept_cmd(
    ctx: click.Context, ids: tuple[int, ...], reviewer: str, reason: str, fmt: str, as_json: bool
) -> None:
    """Accept proposal ID(s): each becomes an entry of proposals:<detector>."""
    _decide(ctx, ids, True, reviewer, reason, "json" if as_json else fmt)


@proposals_group.command("reject")
@_register
@_review_options
def proposals_reject_cmd(
    ctx: click.Context, ids: tuple[int, ...], reviewer: str, reason: str, fmt: str, as_json: bool
) -> None:
    """Reject proposal ID(s): they never become entries."""
    _decide(ctx, ids, False, reviewer, reason, "json" if as_json else fmt)


# -- sources: list, rename, remove; lists fetched from URLs --


@registry.group("sources")
def sources_group() -> None:
    """The register's sources (lists): list, rename, remove, and lists fetched from URLs.

    Also `sluice registry source ...`.
    """


@sources_group.command("list")
@_register
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every source: entries per kind, its last import, where it comes from (file or URL)."""
    try:
        items = service.sources_list(_db(ctx))
    except RegistryError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False))
        return
    if not items:
        click.echo("no sources (sluice registry import, or sluice registry source add)")
    for it in items:
        kinds = ", ".join(f"{k} {n}" for k, n in it["entries"].items()) or "no entries"
        click.echo(f"{it['name']}: {it['total']} entries ({kinds})")
        imp = it["last_import"]
        if imp is not None:
            click.echo(
                f"  last import #{imp['id']} {imp['at']} ({imp['format']}): {imp['rows']} rows,"
                f" +{imp['added']} -{imp['removed']} ~{imp['changed']}"
            )
        if it["origin"]:
            click.echo(f"  origin: {it['origin']}")
        f = it["fetch"]
        if f is not None:
            every = f"every {f['every_s']:g} s" if f["every_s"] else "every fetch"
            last = f"last {f['status']} {f['checked_at']}" if f["checked_at"] else "never fetched"
            click.echo(f"  fetched {every}, {f['fmt']}; {last}{': ' + f['detail'] if f['detail'] else ''}")


@sources_group.command("rename")
@click.argument("old")
@click.argument("new")
@_register
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_rename_cmd(ctx: click.Context, old: str, new: str, as_json: bool) -> None:
    """Rename source OLD to NEW: its entries move (audited: removed from OLD, added to NEW)."""
    try:
        out = service.sources_rename(_db(ctx), old, new)
    except RegistryError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    click.echo(
        f"renamed {old} to {new}: {out['moved']} entries (import #{out['added_import']} added them"
        f" to {new}, #{out['removed_import']} removed them from {old})"
    )


@sources_group.command("remove")
@click.argument("name")
@_register
@click.option("--dry-run", is_flag=True, help="Show what would be removed; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_remove_cmd(ctx: click.Context, name: str, dry_run: bool, as_json: bool) -> None:
    """Remove source NAME: every entry of it (audited, as an import of nothing) and its URL."""
    try:
        summary = service.sources_remove(_db(ctx), name, dry_run=dry_run)
    except RegistryError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
        return
    verb = "would remove" if dry_run else f"removed (import #{summary.import_id})"
    click.echo(f"{name}: {verb} {summary.removed} entries")


@sources_group.command("add")
@click.argument("name")
@click.argument("url")
@_register
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="The list's format.")
@click.option(
    "--every",
    default="0",
    show_default=True,
    help="Fetch it again after this long (90, 30m, 12h, 1d; 0: at every `registry fetch`).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_add_cmd(ctx: click.Context, name: str, url: str, fmt: str, every: str, as_json: bool) -> None:
    """Fetch source NAME from URL (http or https), like Pi-hole's adlists; then `registry fetch`."""
    try:
        out = service.source_add(_db(ctx), name, url, fmt, every)
    except RegistryError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
    else:
        click.echo(f"{name}: {fmt} from {url}, every {every}; fetch it with: sluice registry fetch {name}")


registry.add_command(sources_group, "source")


@registry.command("fetch")
@click.argument("names", nargs=-1)
@_register
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the last good copies are kept (default: REGISTER.sources/ beside a SQLite register).",
)
@click.option("--max-bytes", type=click.IntRange(1), default=service.FETCH_MAX_BYTES, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1), default=service.FETCH_TIMEOUT_S,
              show_default=True, help="Seconds a download may take in all.")  # fmt: skip
@click.option("--max-drop", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MAX_DROP, show_default=True)
@click.option(
    "--max-removed", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MAX_REMOVED, show_default=True
)
@click.option("--force", is_flag=True, help="Accept what the import guards refuse (as `import --force`).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def fetch_cmd(
    ctx: click.Context,
    names: tuple[str, ...],
    cache_dir: Path | None,
    max_bytes: int,
    timeout_s: float,
    max_drop: float,
    max_removed: float,
    force: bool,
    as_json: bool,
) -> None:
    """Download the sources added with `registry source add` and import what changed.

    NAMES: these sources now; none: every source whose --every has passed. Asks conditionally
    (ETag, If-Modified-Since): "not modified" changes nothing. A download that is too large, too
    slow, incomplete or refused by the import guards changes nothing either: the last good copy
    is kept, the bad one saved as NAME.rejected, and the refusal reported (exit 3).
    """
    try:
        outs = service.fetch(
            _db(ctx),
            list(names),
            cache_dir,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            max_drop=max_drop,
            max_removed=max_removed,
            force=force,
        )
    except RegistryError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps([o.as_dict() for o in outs], ensure_ascii=False))
    else:
        if not outs:
            click.echo("no sources to fetch (sluice registry source add NAME URL --format F)")
        for o in outs:
            click.echo(_fetch_line(o))
    if any(not o.ok for o in outs):
        raise InputFailure()


def _fetch_line(o: Any) -> str:
    if o.status == "imported":
        s = o.summary
        return (
            f"{o.name}: imported {o.bytes} bytes (import #{s.import_id}): +{s.added} -{s.removed}"
            f" ~{s.changed}, {len(s.rejected)} rejected lines"
        )
    if o.status in ("refused", "failed"):
        kept = f"; kept the last good copy {o.good_copy}" if o.good_copy else "; no good copy yet"
        bad = f"; the download is in {o.rejected_copy}" if o.rejected_copy else ""
        return f"{o.name}: {o.status.upper()}: {o.detail} [{o.reason}]{kept}{bad}"
    if o.status == "not-modified":
        return f"{o.name}: not modified (HTTP 304): nothing changed"
    if o.status == "unchanged":
        return f"{o.name}: unchanged ({o.bytes} bytes, same digest): nothing changed"
    return f"{o.name}: not due ({o.detail})"


from sluice.cli.snapshot import snapshot_group  # noqa: E402 - after the group it joins

registry.add_command(snapshot_group)
