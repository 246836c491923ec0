"""The crypto catalogue: exchanges, wallet services and mining pools, by the names they use.

Theory of operation: ``catalogue.toml`` (shipped in the package, reviewed like code) lists
``[[entry]]`` items with an id, a brand, a kind (``exchange``, ``wallet``, ``pool``), the domains
its sites, APIs and streams use, and the source of those names. :func:`load_crypto_catalogue`
validates the whole file and refuses it with a :class:`~sluice.errors.ConfigError` naming the entry
and field at fault. A lookup canonicalises the name and probes a dict suffix by suffix
(``stream.binance.com``, ``binance.com``, ``com``): one probe per label.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PATH",
    "KINDS",
    "CryptoCatalogue",
    "CryptoEntry",
    "default_crypto_catalogue",
    "load_crypto_catalogue",
    "loads_crypto_catalogue",
]

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.errors import ConfigError

DEFAULT_PATH = Path(__file__).with_name("catalogue.toml")
"""The catalogue shipped in the package."""
KINDS = ("exchange", "wallet", "pool")
"""Kinds of entry."""
_ID = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\Z")


@dataclass(frozen=True, slots=True)
class CryptoEntry:
    """One exchange, wallet service or mining pool."""

    id: str
    """Lower-case id (``binance``): the family suffix."""
    brand: str
    """Name people know it by."""
    kind: str
    """``exchange``, ``wallet`` or ``pool``."""
    domains: tuple[str, ...]
    """Domains it uses (each matches itself and every name under it)."""
    apps: tuple[str, ...]
    """Its apps, for people reading a verdict."""
    source: str
    """Where its names come from."""

    @property
    def family(self) -> str:
        """TAXONOMY.md family: ``exchange:<id>``, ``wallet:<id>``, or ``stratum`` for a pool."""
        return "stratum" if self.kind == "pool" else f"{self.kind}:{self.id}"


NAME_CACHE = 1 << 16
"""Names whose lookups a catalogue remembers."""


class CryptoCatalogue:
    """Entries indexed by domain."""

    def __init__(self, entries: tuple[CryptoEntry, ...]) -> None:
        self.entries = entries
        self._by_domain = {d: e for e in entries for d in e.domains}
        # a fingerprint rule looks up every flow's names, and names repeat as servers do
        self._lookup = functools.lru_cache(maxsize=NAME_CACHE)(self._lookup_uncached)

    def lookup(self, name: str) -> tuple[CryptoEntry, str] | None:
        """(entry, domain that matched) for a host name, or None."""
        return self._lookup(name)

    def _lookup_uncached(self, name: str) -> tuple[CryptoEntry, str] | None:
        labels = name.strip().rstrip(".").lower().split(".")
        for i in range(len(labels) - 1):
            got = self._by_domain.get(".".join(labels[i:]))
            if got is not None:
                return got, ".".join(labels[i:])
        return None


def _str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}", "a non-empty string is required")
    return value


def _strs(item: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}", "a list of strings is required")
    return tuple(value)


def loads_crypto_catalogue(text: str) -> CryptoCatalogue:
    """Parse and validate catalogue text.

    Raises:
        ConfigError: bad TOML, an unknown kind, a bad id or domain, a duplicate.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("crypto_catalogue", f"not TOML: {exc}") from None
    items = doc.get("entry", [])
    if not isinstance(items, list):
        raise ConfigError("crypto_catalogue.entry", "must be an array of tables")
    entries: list[CryptoEntry] = []
    seen_ids: set[str] = set()
    seen_domains: dict[str, str] = {}
    for n, item in enumerate(items):
        where = f"crypto_catalogue.entry[{n}]"
        if not isinstance(item, dict):
            raise ConfigError(where, "must be a table")
        ident = _str(item, "id", where)
        where = f"crypto_catalogue.entry[{ident}]"
        if not _ID.match(ident) or ident in seen_ids:
            raise ConfigError(f"{where}.id", "lower-case letters, digits and '-', unique")
        seen_ids.add(ident)
        kind = _str(item, "kind", where)
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind", f"{kind!r} is not one of {KINDS}")
        domains = _strs(item, "domains", where)
        if not domains:
            raise ConfigError(f"{where}.domains", "at least one domain is required")
        for i, d in enumerate(domains):
            if not _DOMAIN.match(d) or d in seen_domains:
                raise ConfigError(
                    f"{where}.domains[{i}]", f"{d!r} is no domain or is also {seen_domains.get(d)}"
                )
            seen_domains[d] = ident
        entries.append(
            CryptoEntry(
                ident,
                _str(item, "brand", where),
                kind,
                domains,
                _strs(item, "apps", where),
                _str(item, "source", where),
            )
        )
    return CryptoCatalogue(tuple(entries))


def load_crypto_catalogue(path: str | Path = DEFAULT_PATH) -> CryptoCatalogue:
    """Load a catalogue file.

    Raises:
        ConfigError: see :func:`loads_crypto_catalogue`.
        OSError: the file cannot be read.
    """
    return loads_crypto_catalogue(Path(path).read_text(encoding="utf-8"))


@functools.cache
def default_crypto_catalogue() -> CryptoCatalogue:
    """The packaged catalogue (loaded once)."""
    return load_crypto_catalogue()
