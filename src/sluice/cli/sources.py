"""``sluice registry sources list|rename|remove|add`` (also ``source``) and ``sluice registry fetch``.

The register's sources (lists): what each holds and where it comes from, renamed or removed as a
whole, and lists fetched from URLs (``add``, then ``fetch``: conditional requests, size and time
limits, the import guards, the last good copy kept). A thin shell over
:mod:`sluice.registry.service`, registered on the ``registry`` group by :mod:`sluice.cli.registry`.
"""

from __future__ import annotations

__all__ = ["fetch_cmd", "sources_group"]

import json
from pathlib import Path
from typing import Any

import click

from sluice.cli._context import registry_db
from sluice.cli._exit import InputFailure
from sluice.cli._register import register_opt, registry_errors
from sluice.registry import service
from sluice.registry.choices import DEFAULT_MAX_DROP, DEFAULT_MAX_REMOVED, FORMATS


@click.group(name="sources")
def sources_group() -> None:
    """The register's sources (lists): list, rename, remove, and lists fetched from URLs.

    Also `sluice registry source ...`.
    """


@sources_group.command("list")
@register_opt
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every source: entries per kind, its last import, where it comes from (file or URL)."""
    with registry_errors(as_json):
        items = service.sources_list(registry_db(ctx))
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
@register_opt
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_rename_cmd(ctx: click.Context, old: str, new: str, as_json: bool) -> None:
    """Rename source OLD to NEW: its entries move (audited: removed from OLD, added to NEW)."""
    with registry_errors(as_json):
        out = service.sources_rename(registry_db(ctx), old, new)
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    click.echo(
        f"renamed {old} to {new}: {out['moved']} entries (import #{out['added_import']} added them"
        f" to {new}, #{out['removed_import']} removed them from {old})"
    )


@sources_group.command("remove")
@click.argument("name")
@register_opt
@click.option("--dry-run", is_flag=True, help="Show what would be removed; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sources_remove_cmd(ctx: click.Context, name: str, dry_run: bool, as_json: bool) -> None:
    """Remove source NAME: every entry of it (audited, as an import of nothing) and its URL."""
    with registry_errors(as_json):
        summary = service.sources_remove(registry_db(ctx), name, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
        return
    verb = "would remove" if dry_run else f"removed (import #{summary.import_id})"
    click.echo(f"{name}: {verb} {summary.removed} entries")


@sources_group.command("add")
@click.argument("name")
@click.argument("url")
@register_opt
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
    with registry_errors(as_json):
        out = service.source_add(registry_db(ctx), name, url, fmt, every)
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
    else:
        click.echo(f"{name}: {fmt} from {url}, every {every}; fetch it with: sluice registry fetch {name}")


@click.command(name="fetch")
@click.argument("names", nargs=-1)
@register_opt
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
    with registry_errors(as_json):
        outs = service.fetch(
            registry_db(ctx),
            list(names),
            cache_dir,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            max_drop=max_drop,
            max_removed=max_removed,
            force=force,
        )
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
