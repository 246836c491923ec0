"""``sluice services``: the service catalogue (VPN, proxy and circumvention services; shared infrastructure).

A thin shell over :mod:`sluice.services.catalogue`: it loads the catalogue (the packaged one, or
``--catalogue FILE``), and prints it. Exit codes: 0 OK, 2 usage or configuration error (a bad
catalogue file, an unknown service).
"""

from __future__ import annotations

__all__ = ["services"]

import ipaddress
import json
from pathlib import Path
from typing import Any, NoReturn

import click

from sluice.cli._exit import UsageFailure
from sluice.cli._output import Col, print_table
from sluice.cli.discover import discover_command
from sluice.errors import ConfigError
from sluice.services.catalogue import Catalogue, RangeRef, Service, SharedEntry, SharedInfra
from sluice.services.catalogue_toml import load_catalogue

EXIT_USAGE = 2
_KEY = "sluice.services.catalogue"
_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Same as --format json.")


def _fail(reason: str, message: str, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": reason, "detail": message}, ensure_ascii=False))
    raise UsageFailure(f"{message} [{reason}]")


def _load(ctx: click.Context, as_json: bool) -> Catalogue:
    path: Path | None = ctx.meta.get(_KEY)
    try:
        return load_catalogue(path)
    except ConfigError as exc:
        _fail("services.bad_catalogue", str(exc), as_json)


@click.group(name="services")
@click.option(
    "--catalogue",
    "catalogue_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A catalogue TOML file (default: the one shipped with sluice).",
)
@click.pass_context
def services(ctx: click.Context, catalogue_path: Path | None) -> None:
    """The catalogue of VPN, proxy and circumvention services, and of shared infrastructure."""
    ctx.meta[_KEY] = catalogue_path


@services.command("list")
@_FORMAT
@_JSON
@click.pass_context
def list_cmd(ctx: click.Context, fmt: str, as_json: bool) -> None:
    """Every service (id, class/family, brand, protocols) and every shared infrastructure entry."""
    as_json = as_json or fmt == "json"
    cat = _load(ctx, as_json)
    if as_json:
        doc = {
            "catalogue": cat.origin,
            "reviewed": cat.reviewed,
            "services": [s.to_dict() for s in cat.services],
            "shared": [e.to_dict() for e in cat.shared_infra],
        }
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    click.echo(f"{len(cat.services)} services, {len(cat.shared_infra)} shared infrastructure entries")
    click.echo(f"catalogue: {cat.origin} (reviewed {cat.reviewed or '-'})")
    click.echo("")
    cols = [Col("id"), Col("class/family"), Col("names", right=True), Col("ranges", right=True)]
    cols += [Col("asns", right=True), Col("brand / protocols")]
    rows: list[list[object]] = []
    for s in cat.services:
        names = len(s.domains) + len(s.names) + len(s.cert_orgs)
        brand = f"{s.brand} [{', '.join(s.protocols) or '-'}]"
        rows.append([s.id, f"{s.label}/{s.family}", names, len(s.ranges), len(s.asns), brand])
    print_table(cols, rows)
    click.echo("")
    click.echo("shared infrastructure (an address here never names a service, never block it by address):")
    cols = [Col("id"), Col("kind"), Col("ranges", right=True), Col("asns"), Col("operator")]
    shared = [
        [e.id, e.kind, len(e.ranges), ",".join(f"AS{a.asn}" for a in e.asns) or "-", e.operator]
        for e in cat.shared_infra
    ]
    print_table(cols, shared)


def _range_shared(cat: Catalogue, r: RangeRef) -> SharedInfra | None:
    """The shared infrastructure a range lies in (judged by its first address)."""
    return cat.shared(str(ipaddress.ip_network(r.cidr).network_address))


def _show_service(cat: Catalogue, s: Service, as_json: bool) -> None:
    ranges = [(r, _range_shared(cat, r)) for r in s.ranges]
    if as_json:
        doc: dict[str, Any] = s.to_dict()
        doc["ranges"] = [
            {"cidr": r.cidr, "source": r.source, "shared": infra.to_dict() if infra else None}
            for r, infra in ranges
        ]
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    click.echo(f"{s.brand} ({s.id})")
    click.echo(f"  class/family: {s.label}/{s.family}")
    click.echo(f"  homepage:     {s.homepage}")
    click.echo(f"  protocols:    {', '.join(s.protocols) or '-'}")
    click.echo("  names:")
    for d in s.domains:
        click.echo(f"    {d} (and every name under it)")
    for g in s.names:
        click.echo(f"    {g} (pattern)")
    for o in s.cert_orgs:
        click.echo(f"    certificate O={o}")
    if not (s.domains or s.names or s.cert_orgs):
        click.echo("    - (none: the service is not recognised by name)")
    if s.name_source:
        click.echo(f"    source: {s.name_source}")
    click.echo("  ranges:" if ranges else "  ranges: -")
    for r, infra in ranges:
        flag = (
            f"  [in shared infrastructure: {infra.operator} {infra.cidr}: never names alone]" if infra else ""
        )
        click.echo(f"    {r.cidr}{flag}")
        click.echo(f"      source: {r.source}")
    click.echo("  ASNs:" if s.asns else "  ASNs: -")
    for a in s.asns:
        click.echo(f"    AS{a.asn}  source: {a.source}")
    if s.note:
        click.echo(f"  note: {s.note}")


def _show_shared(e: SharedEntry, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**e.to_dict(), "shared": True}, ensure_ascii=False, indent=2))
        return
    click.echo(f"{e.operator} ({e.id}): shared infrastructure, {e.kind}")
    click.echo("  an address here never names a service on its own; never block it by address")
    click.echo("  ranges:" if e.ranges else "  ranges: -")
    for r in e.ranges:
        click.echo(f"    {r.cidr}  source: {r.source}")
    click.echo("  ASNs:" if e.asns else "  ASNs: -")
    for a in e.asns:
        click.echo(f"    AS{a.asn}  source: {a.source}")
    if e.note:
        click.echo(f"  note: {e.note}")


@services.command("show")
@click.argument("name")
@_FORMAT
@_JSON
@click.pass_context
def show_cmd(ctx: click.Context, name: str, fmt: str, as_json: bool) -> None:
    """One service (by id, brand or one of its names) or shared infrastructure entry (by id)."""
    as_json = as_json or fmt == "json"
    cat = _load(ctx, as_json)
    svc = cat.find(name)
    if svc is not None:
        _show_service(cat, svc, as_json)
        return
    shared = next((e for e in cat.shared_infra if e.id == name.strip().lower()), None)
    if shared is not None:
        _show_shared(shared, as_json)
        return
    _fail(
        "services.unknown",
        f"no service or shared infrastructure entry named {name!r} (see: sluice services list)",
        as_json,
    )


services.add_command(discover_command)
