"""Mirror families from the register's own dumps: what the name stage learns from and is judged on.

Theory of operation
-------------------
A Roskomnadzor dump row names a resource, the addresses it resolved to, and the decision that
blocked it.  One decision of the tax service (ФНС) or a court usually covers one operator's
mirrors (``fonbet`` x 642 under one decision), but some decisions cover many unrelated sites.  A
*family* is therefore a connected group *inside one decision*: two registrable domains of the
same decision are joined when they have the same brand stem (:func:`~sluice.mirrors.brand.brand_stem`)
or resolved to a common address that at most :data:`MAX_NAMES_PER_ADDRESS` registrable domains
of the whole dump share (a hosting address, not a CDN's).  Groups of at least ``min_size``
registrable domains are families; the seed is the shortest name of the family's most common
stem (what an operator would start from: the blocked brand).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sluice.mirrors.brand import brand_stem
from sluice.mirrors.stems import name_parts

__all__ = ["DumpRow", "Family", "find_families", "read_rkn_rows", "split_by_family"]

MAX_NAMES_PER_ADDRESS = 40
"""An address shared by more registrable domains than this links nothing (shared hosting, CDN)."""
_URL_HOST = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://([^/:?#|]+)")


@dataclass(frozen=True, slots=True)
class DumpRow:
    """One register row reduced to what mirror families need."""

    name: str
    """Registrable domain (lower case, Unicode)."""
    full: str
    """The full host name as listed (without ``*.``)."""
    addresses: tuple[str, ...]
    """Addresses the row gives."""
    decision: str
    """Authority and number, whitespace-normalised."""


@dataclass(slots=True)
class Family:
    """Registrable domains of one operator's mirrors under one decision."""

    decision: str
    """The decision that blocked them."""
    seed: str
    """The name an operator starts from."""
    members: list[str] = field(default_factory=list)
    """Every registrable domain of the family (the seed too), sorted."""
    addresses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Registrable domain -> addresses its rows gave."""

    @property
    def others(self) -> list[str]:
        """Members except the seed."""
        return [m for m in self.members if m != self.seed]

    @property
    def key(self) -> str:
        """Stable id: the seed and the decision."""
        return f"{self.seed}|{self.decision}"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1251")


def read_rkn_rows(paths: Iterable[str | Path]) -> list[DumpRow]:
    """Rows of RKN CSV dumps (``ips;domain;urls;authority;number;date``) that name a host.

    Args:
        paths: dump files (cp1251 or UTF-8; the ``Updated:`` line is skipped).

    Returns:
        One row per host named (the domain field, else each URL's host); address-only rows are
        left out.
    """
    out: list[DumpRow] = []
    for p in paths:
        text = _decode(Path(p).read_bytes())
        lines = text.splitlines()
        if lines and lines[0].startswith("Updated:"):
            lines = lines[1:]
        for row in csv.reader(lines, delimiter=";"):
            if len(row) < 5:
                continue
            hosts = [row[1].strip()] if row[1].strip() else _URL_HOST.findall(row[2])
            ips = tuple(x.strip() for x in row[0].split("|") if x.strip())
            decision = " ".join(f"{row[3]} {row[4]}".split())
            for h in hosts:
                h = h.strip().lower().removeprefix("*.").rstrip(".")
                if not h or h.replace(".", "").isdigit() or ":" in h:
                    continue
                reg = name_parts(h).registrable
                if reg:
                    out.append(DumpRow(reg, h, ips, decision))
    return out


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_families(rows: Sequence[DumpRow], *, min_size: int = 10) -> list[Family]:
    """Mirror families (see the module docstring), largest first.

    Args:
        rows: dump rows (:func:`read_rkn_rows`).
        min_size: fewest registrable domains a family has.

    Returns:
        The families.
    """
    names_of_addr: dict[str, set[str]] = {}
    for r in rows:
        for a in r.addresses:
            names_of_addr.setdefault(a, set()).add(r.name)
    by_decision: dict[str, dict[str, set[str]]] = {}
    for r in rows:
        by_decision.setdefault(r.decision, {}).setdefault(r.name, set()).update(r.addresses)
    families: list[Family] = []
    for decision, names in by_decision.items():
        if len(names) < min_size:
            continue
        u = _Union()
        first_of: dict[str, str] = {}
        for n, addrs in sorted(names.items()):
            u.find(n)
            keys = [f"s:{brand_stem(n)}"] + [
                f"a:{a}" for a in addrs if len(names_of_addr.get(a, ())) <= MAX_NAMES_PER_ADDRESS
            ]
            for k in keys:
                if k in first_of:
                    u.union(n, first_of[k])
                else:
                    first_of[k] = n
        groups: dict[str, list[str]] = {}
        for n in names:
            groups.setdefault(u.find(n), []).append(n)
        for members in groups.values():
            if len(members) < min_size:
                continue
            stems = Counter(brand_stem(m) for m in members)
            top = stems.most_common(1)[0][0]
            seed = min((m for m in members if brand_stem(m) == top), key=lambda m: (len(m), m))
            families.append(
                Family(decision, seed, sorted(members), {m: tuple(sorted(names[m])) for m in members})
            )
    families.sort(key=lambda f: (-len(f.members), f.key))
    return _dedupe(families)


def _dedupe(families: list[Family]) -> list[Family]:
    """Keep a name in its largest family only (two dumps repeat decisions under other numbers)."""
    taken: set[str] = set()
    out: list[Family] = []
    for f in families:
        members = [m for m in f.members if m not in taken]
        if len(members) < max(2, len(f.members) // 2) or f.seed not in members:
            continue
        taken.update(members)
        f.members = members
        f.addresses = {m: f.addresses[m] for m in members}
        out.append(f)
    return out


def split_by_family(families: Sequence[Family], folds: int = 2) -> list[list[Family]]:
    """Families dealt into ``folds`` folds by a hash of their key (stable across runs)."""
    out: list[list[Family]] = [[] for _ in range(folds)]
    for f in families:
        h = int.from_bytes(hashlib.sha256(f.key.encode()).digest()[:4], "big")
        out[h % folds].append(f)
    return out
