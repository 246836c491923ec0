"""``sluice mirrors``: find copies of blocked sites (candidates) and send the good ones to review (propose).

A thin shell over :mod:`sluice.mirrors.discover`.  Exit codes: 0 OK, 1 findings (with
``--fail-on-findings``), 2 usage or configuration error, 3 I/O error.
"""

from __future__ import annotations

__all__ = ["mirrors"]

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from sluice.cli._context import register_option
from sluice.cli._output import JSON_RULE, Col, CsvRows, listing_format, print_table

if TYPE_CHECKING:
    from sluice.mirrors.discover import Candidate
    from sluice.mirrors.popular import PopularList
    from sluice.registry.impact import Traffic

from sluice.cli._exit import EXIT_IO, EXIT_USAGE, Findings, failure_for


def _fail(code: int, reason: str, message: str, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": reason, "detail": message}, ensure_ascii=False))
    raise failure_for(code, f"{message} [{reason}]")


_COMMON = [
    click.argument("seeds", nargs=-1, required=True),
    click.option(
        "--observed",
        "observed",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Names seen in traffic: a plain file (name [addresses]), sluice flow logs or captures.",
    ),
    click.option(
        "--names",
        "names_files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="More candidate names, one per line (certificate SANs, CT export, new registrations).",
    ),
    click.option(
        "--siblings-from",
        "siblings_from",
        default=None,
        help="A register: also look for copies of the names it lists under the seeds' decisions.",
    ),
    click.option(
        "--fuzz", is_flag=True, help="Add permutations of each seed (dnstwist-style and operator patterns)."
    ),
    click.option("--fetch", is_flag=True, help="Fetch pages and compare design, content and function."),
    click.option(
        "--screenshots",
        type=int,
        default=0,
        show_default=True,
        help="With --fetch: render the seed and the first N fetched candidates per seed with headless "
        "Chromium and compare perceptual hashes (design).",
    ),
    click.option("--allow-private", is_flag=True, help="Let the fetcher reach private and local addresses."),
    click.option("--user-agent", default=None, help="User-Agent of the fetcher."),
    click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per fetch."),
    click.option(
        "--cache",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Fetch cache directory.",
    ),
    click.option(
        "--fetch-log", type=click.Path(dir_okay=False, path_type=Path), default=None, help="JSONL fetch log."
    ),
    click.option(
        "--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None
    ),
    click.option(
        "--popular",
        "popular_path",
        envvar="SLUICE_POPULAR_LIST",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Popularity list (Tranco rank,domain CSV, Radar CSV, or one name per line; env "
        "SLUICE_POPULAR_LIST): its names are flagged and never proposed (matched by registrable domain).",
    ),
    click.option(
        "--popular-top",
        type=int,
        default=10_000,
        show_default=True,
        help="Names of the popularity list that count (by rank, else by position).",
    ),
    click.option(
        "--asn-db",
        "asn_db",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="IP prefix -> ASN table (pyasn 'ipasn' format: prefix<TAB>asn): the seed's ASN is recorded.",
    ),
    click.option("--min-score", type=float, default=0.0, show_default=True),
    click.option("--limit", type=int, default=100, show_default=True, help="Rows shown (table)."),
]


_F = TypeVar("_F", bound=Callable[..., Any])


def _common(f: _F) -> _F:
    for opt in reversed(_COMMON):
        f = opt(f)
    return f


def _run(
    seeds: tuple[str, ...],
    observed: tuple[Path, ...],
    names_files: tuple[Path, ...],
    siblings_from: str | None,
    fuzz: bool,
    fetch: bool,
    screenshots: int,
    allow_private: bool,
    user_agent: str | None,
    timeout: float,
    cache: Path | None,
    fetch_log: Path | None,
    model_path: Path | None,
    popular_path: Path | None,
    popular_top: int,
    asn_db: Path | None,
    min_score: float,
    as_json: bool,
) -> tuple[list[Candidate], Traffic, PopularList | None]:
    from sluice.errors import ConfigError
    from sluice.mirrors.discover import find_candidates, read_observed_traffic
    from sluice.mirrors.fetch import Fetcher, FetchPolicy
    from sluice.mirrors.infra import load_asn_table
    from sluice.mirrors.namescore import NameModel, default_model
    from sluice.mirrors.popular import load_popular
    from sluice.registry.model import RegistryError

    try:
        model = NameModel.load(model_path) if model_path else default_model()
        popular = load_popular(popular_path, top=popular_top) if popular_path else None
        asn = load_asn_table(asn_db) if asn_db else None
        obs, traffic = read_observed_traffic(list(observed))
        seeds = (*seeds, *_siblings(siblings_from, seeds)) if siblings_from else seeds
        extra = [
            ln.split()[0]
            for p in names_files
            for ln in p.read_text("utf-8", "replace").splitlines()
            if ln.split()
        ]
    except ConfigError as exc:
        _fail(EXIT_USAGE, getattr(exc, "reason", "mirrors.config"), str(exc), as_json)
    except (OSError, RegistryError) as exc:
        _fail(EXIT_IO, "mirrors.io_error", str(exc), as_json)
    fetcher = None
    if fetch:
        policy = FetchPolicy(timeout_s=timeout, allow_private=allow_private)
        if user_agent:
            policy = replace(policy, user_agent=user_agent)
        fetcher = Fetcher(policy, cache_dir=cache, log_path=fetch_log)
    try:
        found = find_candidates(
            list(seeds),
            obs,
            fuzz=fuzz,
            extra=extra,
            model=model,
            fetcher=fetcher,
            min_score=min_score,
            screenshots=screenshots,
            certs=traffic.certs,
            asn=asn,
            popular=popular,
        )
        return found, traffic, popular
    finally:
        if fetcher is not None:
            fetcher.close()


def _siblings(register: str, seeds: tuple[str, ...]) -> list[str]:
    from sluice.mirrors.discover import decision_siblings
    from sluice.registry.stores import open_store

    store = open_store(register)
    try:
        return decision_siblings(store, seeds)
    finally:
        store.close()


@click.group(name="mirrors")
def mirrors() -> None:
    """Mirror discovery: copies of blocked sites by name, design, content and function."""


@mirrors.command("candidates")
@_common
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl", "csv"]),
    default=None,
    help="table (default), jsonl, or csv (traits and lists as JSON in their cells).",
)
@click.option("--json", "as_json", is_flag=True, help=f"Candidates as JSON lines: {JSON_RULE}.")
@click.option("--fail-on-findings", is_flag=True, help="Exit 1 when a candidate passes the legal test.")
def candidates_cmd(fmt: str | None, as_json: bool, fail_on_findings: bool, limit: int, **kw: object) -> None:
    """Ranked candidates for the blocked SEEDS, with the four traits and their values."""
    fmt = listing_format(fmt, as_json)
    found, _, _ = _run(as_json=fmt != "table", **kw)  # type: ignore[arg-type]
    if fmt == "jsonl":
        for c in found:
            click.echo(json.dumps(c.to_dict(), ensure_ascii=False))
    elif fmt == "csv":
        rows = CsvRows(sys.stdout)
        for c in found:
            rows.write(c.to_dict())
    else:
        cols = [Col("score", right=True), Col("seed"), Col("candidate"), Col("how"), Col("traits held")]
        table = []
        for c in found[:limit]:
            held = (",".join(c.traits.held) or "-") + ("  COPY" if c.copy else "")
            held += "  POPULAR (never proposed)" if c.popular else ""
            table.append([f"{c.score:.3f}", c.seed, c.domain, c.how, held])
        print_table(cols, table)
        click.echo(f"{len(found)} candidates" + (f" ({limit} shown: --limit)" if len(found) > limit else ""))
    if fail_on_findings and any(c.copy for c in found):
        raise Findings()


@mirrors.command("propose")
@_common
@register_option(required=True)
@click.option("--propose-min-score", type=float, default=0.8, show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would be proposed; write nothing.")
@click.option("--json", "as_json", is_flag=True)
def propose_cmd(
    register_db: str, propose_min_score: float, dry_run: bool, as_json: bool, limit: int, **kw: object
) -> None:
    """Put the good candidates in the register's review queue, citing the blocked entry they copy,
    each with its collateral-impact preview over the observed traffic."""
    from sluice.mirrors.propose import proposals_for, with_impact
    from sluice.registry.model import RegisterNotFound, RegistryError
    from sluice.registry.proposals import propose
    from sluice.registry.stores import open_store

    found, traffic, popular = _run(as_json=as_json, **kw)  # type: ignore[arg-type]
    try:
        store = open_store(register_db)
    except RegistryError as exc:
        _fail(EXIT_USAGE if isinstance(exc, RegisterNotFound) else EXIT_IO, exc.reason, str(exc), as_json)
    try:
        blocked = {}
        for s in {c.seed for c in found}:
            entries = store.lookup(s)
            if entries:
                e = entries[0]
                blocked[s] = f"{e.source} {e.kind.value} {e.indicator}: " + "; ".join(str(b) for b in e.basis)
        review = proposals_for(found, min_score=propose_min_score, blocked=blocked, popular=popular)
        props = with_impact(review.proposed, traffic)
        ids = [] if dry_run else [propose(store, p) for p in props]
    except RegistryError as exc:
        _fail(EXIT_IO, exc.reason, str(exc), as_json)
    finally:
        store.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "proposed": [
                        {"id": i, **p.as_dict()} for i, p in zip(ids or [0] * len(props), props, strict=True)
                    ],
                    "refused": [r.as_dict() for r in review.refused],
                    "dry_run": dry_run,
                },
                ensure_ascii=False,
                indent=1,
            )
        )
        return
    rows = [
        ["#" + str(i) if i else "(dry run)", p.indicator, p.reason]
        for i, p in zip(ids or [0] * len(props), props, strict=True)
    ]
    if rows:
        print_table([Col("proposal", right=True), Col("indicator"), Col("reason")], rows)
    if review.refused:
        print_table(
            [Col("refused"), Col("seed"), Col("reason")],
            [[r.domain, r.seed, r.reason] for r in review.refused],
        )
    click.echo(
        f"{len(props)} proposals{' (dry run: nothing written)' if dry_run else ''}, "
        f"{len(review.refused)} refused (popular)"
    )
