"""``sluice crypto``: crypto-asset content in files and pages."""

from __future__ import annotations

__all__ = ["crypto"]

import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from sluice.cli._context import register_option
from sluice.cli._exit import InputFailure, UsageFailure
from sluice.cli._output import Col, listing_format, print_table, render_plain
from sluice.crypto.scan import score_text

if TYPE_CHECKING:
    from sluice.registry.matcher import Matcher

MAX_FETCH_BYTES = 4 * 1024 * 1024
"""Most bytes read from one URL."""
FETCH_TIMEOUT_S = 15.0
"""Seconds to wait for one URL."""


def _read(source: str) -> str:
    if source.startswith(("http://", "https://")):
        req = urllib.request.Request(source, headers={"User-Agent": "sluice-crypto-scan"})  # noqa: S310
        with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310
            raw: bytes = resp.read(MAX_FETCH_BYTES)
            charset: str = resp.headers.get_content_charset() or "utf-8"
        return raw.decode(charset, errors="replace")
    return Path(source).read_bytes().decode("utf-8", errors="replace")


@click.group()
def crypto() -> None:
    """Crypto assets: wallet addresses and crypto content in text."""


def _load_register(db: str) -> Matcher:
    """The register's entries as a matcher (wallets are what the scan looks up)."""
    from sluice.registry.matcher import Matcher
    from sluice.registry.model import RegisterNotFound, RegistryError
    from sluice.registry.stores import open_store

    try:
        store = open_store(db)
        try:
            return Matcher.from_store(store)
        finally:
            store.close()
    except RegistryError as exc:
        raise (UsageFailure if isinstance(exc, RegisterNotFound) else InputFailure)(
            f"{exc} [{exc.reason}]"
        ) from None


def _register_rows(matcher: Matcher, address: Any) -> list[dict[str, Any]]:
    """The register entries an address found is (``register`` field of its JSONL object)."""
    return [
        {
            "source": m.entry.source,
            "indicator": m.entry.indicator,
            "reason": m.reason.code,
            "basis_text": [str(b) for b in m.entry.basis],
        }
        for m in matcher.address_matches(address)
    ]


def _indented(cols: list[Col], rows: Sequence[Sequence[object]]) -> None:
    """A table under an input's line: drawn on a terminal, else plain and indented by two spaces."""
    if sys.stdout.isatty():
        print_table(cols, rows)
    else:
        click.echo("".join("  " + line + "\n" for line in render_plain(cols, rows).splitlines()), nl=False)


@crypto.command("scan")
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl"]),
    default=None,
    help="table (default: per input its score, evidence and addresses) or jsonl (below).",
)
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON lines (the same as --format jsonl).")
@register_option(
    param="db",
    help_text="Register (SQLite file or postgresql:// URL) whose wallet entries to flag"
    " [env: SLUICE_REGISTRY; none: not checked].",
)
def scan(sources: tuple[str, ...], fmt: str | None, as_json: bool, db: str | None) -> None:
    """Score FILES or URLs for crypto-asset content and list the wallet addresses they carry.

    JSONL: one object per address (kind "address": file, offset in characters, chain, address,
    checksum verified|unchecksummed|none, register: the register's wallet entries it is, [] for
    none, null when no register was given) and one per input (kind "page": file, score 0-1,
    label crypto|other, evidence, register: how many addresses found are register wallets, null
    without a register). Exit codes: 0 ok, 2 no such register, 3 an input or the register could
    not be read.
    """
    fmt = listing_format(fmt, as_json)
    matcher = _load_register(db) if db else None
    failed = False
    for src in sources:
        try:
            text = _read(src)
        except (OSError, ValueError) as exc:
            click.echo(f"{src}: cannot read: {exc}", err=True)
            failed = True
            continue
        page = score_text(text)
        if fmt == "jsonl":
            n_reg = 0
            for h in page.addresses:
                row: dict[str, Any] = {
                    "kind": "address",
                    "file": src,
                    "offset": h.offset,
                    **h.address.to_dict(),
                }
                row["register"] = _register_rows(matcher, h.address) if matcher is not None else None
                n_reg += bool(row["register"])
                sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
            row2 = {"kind": "page", "file": src, "score": page.score, "label": page.label,
                    "evidence": list(page.evidence),
                    "register": n_reg if matcher is not None else None}  # fmt: skip
            sys.stdout.buffer.write(orjson.dumps(row2) + b"\n")
            continue
        click.echo(f"{src}\t{page.label}\t{page.score:.2f}")
        ev = [[e["kind"], e["what"], f"×{e['count']}", f"+{e['weight']}"] for e in page.evidence[:12]]
        if ev:
            _indented([Col("evidence"), Col("what"), Col("count"), Col("weight")], ev)
        rows: list[list[object]] = []
        for h in page.addresses:
            a = h.address
            regs = _register_rows(matcher, a) if matcher is not None else []
            reg = " | ".join(f"[{r['source']}] {r['indicator']}  {'; '.join(r['basis_text'])}" for r in regs)
            rows.append([a.chain, a.address, f"@{h.offset}", a.checksum, f"REGISTER {reg}" if reg else "-"])
        if rows:
            _indented([Col("chain"), Col("address"), Col("offset"), Col("checksum"), Col("register")], rows)
    sys.stdout.flush()
    if failed:
        raise InputFailure()
