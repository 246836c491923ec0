"""``sluice crypto``: crypto-asset content in files and pages."""

from __future__ import annotations

__all__ = ["crypto"]

import sys
import urllib.request
from pathlib import Path

import click
import orjson

from sluice.crypto.scan import score_text

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


@crypto.command("scan")
@click.argument("sources", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format jsonl.")
def scan(sources: tuple[str, ...], fmt: str, as_json: bool) -> None:
    """Score FILES or URLs for crypto-asset content and list the wallet addresses they carry.

    JSONL: one object per address (kind "address": file, offset in characters, chain, address,
    checksum verified|unchecksummed|none) and one per input (kind "page": file, score 0-1, label
    crypto|other, evidence). Exit codes: 0 ok, 3 an input could not be read.
    """
    failed = False
    for src in sources:
        try:
            text = _read(src)
        except (OSError, ValueError) as exc:
            click.echo(f"{src}: cannot read: {exc}", err=True)
            failed = True
            continue
        page = score_text(text)
        if fmt == "jsonl" or as_json:
            for h in page.addresses:
                row = {"kind": "address", "file": src, "offset": h.offset, **h.address.to_dict()}
                sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
            row2 = {"kind": "page", "file": src, "score": page.score, "label": page.label,
                    "evidence": list(page.evidence)}  # fmt: skip
            sys.stdout.buffer.write(orjson.dumps(row2) + b"\n")
            continue
        click.echo(f"{src}\t{page.label}\t{page.score:.2f}")
        for e in page.evidence[:12]:
            click.echo(f"  {e['kind']:8} {e['what']!s:30} ×{e['count']}  (+{e['weight']})")
        for h in page.addresses:
            a = h.address
            click.echo(f"  address  {a.chain:12} {a.address}  @{h.offset}  checksum {a.checksum}")
    sys.stdout.flush()
    if failed:
        sys.exit(3)
