"""Popular names that mirror discovery must never propose (Tranco, Cloudflare Radar top lists).

A popular site can share an address (a CDN), page traits or even a certificate with a mirror;
the name stage alone never proposes, but the infrastructure and page traits can.  This guard is
explicit: a candidate whose *registrable domain* is in the operator's popularity list is flagged
(``sluice mirrors candidates``) and refused (``sluice mirrors propose``), with the reason, never
silently dropped.  Matching by registrable domain (the public suffix list) makes ``www.google.com``
and ``google.com`` one name; a name under a private suffix (``x.blogspot.com``) stays its own.

Formats read: ``rank,domain`` CSV (Tranco), a ``domain`` CSV with a header (Cloudflare Radar),
or one name per line; ``#`` comments and blank lines are skipped.  Only the first ``top`` names
(by rank, else by position) count.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TOP", "ENV_VAR", "PopularList", "load_popular", "registrable"]

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from sluice.errors import ConfigError
from sluice.services.discover import registrable as psl_registrable

DEFAULT_TOP = 10_000
"""Names of the list that count by default (the issue's "Tranco top 10k")."""
ENV_VAR = "SLUICE_POPULAR_LIST"
"""Environment variable naming the list when ``--popular`` is not given."""


def registrable(name: str) -> str:
    """The registrable domain of ``name`` (:func:`sluice.services.discover.registrable`: the
    public suffix list, private section included); the name itself when it is a bare suffix
    (``blogspot.com`` listed as popular), "" for an address or nothing."""
    n = name.strip().rstrip(".").lower().removeprefix("*.")
    reg = psl_registrable(n)
    if reg or not n:
        return reg
    try:
        ipaddress.ip_address(n.strip("[]"))
    except ValueError:
        return n
    return ""


@dataclass(frozen=True, slots=True)
class PopularList:
    """Registrable domains of a popularity list, with their rank."""

    ranks: dict[str, int] = field(default_factory=dict)
    """Registrable domain -> best (lowest) rank of a listed name under it."""
    source: str = ""
    """The file it came from."""
    top: int = DEFAULT_TOP
    """How many of the list's names were read."""

    def __len__(self) -> int:
        return len(self.ranks)

    def match(self, name: str) -> tuple[str, int] | None:
        """``(registrable domain, rank)`` when ``name`` is popular, else None."""
        reg = registrable(name)
        rank = self.ranks.get(reg) if reg else None
        return None if rank is None else (reg, rank)

    def reason(self, name: str) -> str:
        """Why ``name`` is refused ("" when it is not popular)."""
        m = self.match(name)
        if m is None:
            return ""
        where = Path(self.source).name or "the popularity list"
        return f"popular: {m[0]} is rank {m[1]} in {where} (top {self.top})"


def load_popular(path: str | Path, *, top: int = DEFAULT_TOP) -> PopularList:
    """Read a popularity list.

    Args:
        path: Tranco ``rank,domain`` CSV, Radar ``domain`` CSV, or one name per line.
        top: keep the names ranked ``1..top`` (by the rank column, else by position).

    Returns:
        The list, keyed by registrable domain.

    Raises:
        OSError: unreadable file.
        ConfigError: ``top`` below 1, or a file without a single name.
    """
    if top < 1:
        raise ConfigError("--popular-top", f"must be at least 1, got {top}")
    ranks: dict[str, int] = {}
    pos = 0
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            cells = [c.strip().strip('"') for c in text.split(",")]
            name = cells[-1].lower()
            if "." not in name:  # a header ("domain", "rank,domain") or junk
                continue
            pos += 1
            rank = int(cells[0]) if len(cells) > 1 and cells[0].isdigit() else pos
            if rank > top:
                if len(cells) > 1 and cells[0].isdigit():
                    continue  # ranked files may be unsorted
                break
            reg = registrable(name)
            if reg and rank < ranks.get(reg, rank + 1):
                ranks[reg] = rank
    if not ranks:
        raise ConfigError(
            "--popular", f"{path}: no domain names found (expected rank,domain or one per line)"
        )
    return PopularList(ranks, str(path), top)
