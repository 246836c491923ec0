"""``sluice registry``: import, check, history, export and stats of the register.

A thin shell: it parses options, calls :mod:`sluice.registry.service`, and formats the result.
Exit codes: 0 OK, 1 findings (``check --fail-on-findings``), 2 usage or configuration error,
3 I/O error (file missing or unreadable, input refused as damaged or truncated, store
unreachable).  Every command takes ``--json``.  The register is ``--db`` (a SQLite file, or a
``postgresql://`` URL), default ``$SLUICE_REGISTRY_DB`` or ``./sluice-registry.db``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from sluice.registry import service
from sluice.registry.exports import EXPORT_TARGETS
from sluice.registry.importers import FORMATS
from sluice.registry.model import ImportSummary, RegistryError
from sluice.registry.sync import DEFAULT_MAX_DROP

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
    }
)
_DB_KEY = "sluice.registry.db"


def _fail(exc: RegistryError, as_json: bool) -> NoReturn:
    code = EXIT_USAGE if exc.reason in _USAGE_REASONS else EXIT_IO
    if as_json:
        click.echo(
            json.dumps({"error": exc.reason, "detail": exc.detail, "path": exc.path}, ensure_ascii=False)
        )
    click.echo(f"error: {exc} [{exc.reason}]", err=True)
    sys.exit(code)


def _db(ctx: click.Context) -> str:
    return str(ctx.meta[_DB_KEY])


@click.group(name="registry")
@click.option(
    "--db",
    envvar="SLUICE_REGISTRY_DB",
    default="sluice-registry.db",
    show_default=True,
    help="Register store: a SQLite file path or a postgresql:// URL.",
)
@click.pass_context
def registry(ctx: click.Context, db: str) -> None:
    """The register of blocked resources: import lists, check, audit, export."""
    ctx.meta[_DB_KEY] = db


def _print_summary(s: ImportSummary, show_rejected: int) -> None:
    verb = "would change" if s.dry_run else "import"
    click.echo(
        f"{s.source} ({s.fmt}{', ' + s.dump_time if s.dump_time else ''}): {s.rows} rows,"
        f" {s.entries} entries; {verb}: {s.added} added, {s.removed} removed,"
        f" {s.changed} changed, {s.unchanged} unchanged, {len(s.rejected)} rejected lines"
    )
    for r in s.rejected[:show_rejected]:
        where = f"{r.path}:" if r.path else "line "
        click.echo(f"  rejected {where}{r.line}: {r.reason}: {r.text[:120]}")
    if len(s.rejected) > show_rejected:
        click.echo(f"  ... {len(s.rejected) - show_rejected} more rejected lines (--json lists all)")


@registry.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="Input format (several FILES: parts of one RKN CSV dump).",
)
@click.option("--source", default="", help="List name (default: rkn, or the file's name).")
@click.option(
    "--max-drop",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_MAX_DROP,
    show_default=True,
    help="Refuse when rows fall by more than this share.",
)
@click.option("--force", is_flag=True, help="Accept a larger drop in rows.")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--show-rejected", type=click.IntRange(0), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def import_cmd(
    ctx: click.Context,
    files: tuple[Path, ...],
    fmt: str,
    source: str,
    max_drop: float,
    force: bool,
    dry_run: bool,
    show_rejected: int,
    as_json: bool,
) -> None:
    """Sync the register with FILE(s): add, remove and update one source's entries."""
    total = sum(p.stat().st_size for p in files if p.is_file())
    err = sys.stderr
    try:
        with click.progressbar(length=max(total, 1), label="reading", file=err) as bar:
            last = [0]

            def progress(n: int) -> None:
                bar.update(max(0, n - last[0]))
                last[0] = max(last[0], n)

            summary = service.import_paths(
                _db(ctx),
                list(files),
                fmt,
                source=source,
                max_drop=max_drop,
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
    """Show the entries that apply to each HOST, URL or IP, with their legal basis."""
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
        sys.exit(EXIT_FINDINGS)


@registry.command("history")
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
        click.echo(f"{target}: written {res.written}, skipped {res.skipped}", err=True)


@registry.command("stats")
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
