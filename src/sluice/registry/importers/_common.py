"""What every importer shares: the parse result, input limits, decoding and damage checks.

An importer turns the bytes of one file into a :class:`ParseResult`: the distinct entries the
file names (with every decision behind each), the number of data rows, the rejected lines with
why, and the dump's own time stamp.  Nothing is written anywhere: the sync service compares the
result with the register and applies the difference in one transaction.

Damage is refused before anything changes (:class:`~sluice.registry.model.RegistryError`):

* ``registry.too_large``: the file exceeds :data:`MAX_INPUT_BYTES` (checked before reading).
* ``registry.binary_input``: NUL bytes (UTF-16, images, archives, zero-filled tails).
* ``registry.bad_encoding``: bytes that do not decode as the format's encoding.
* ``registry.truncated``: a last line without its newline that does not parse as a complete
  record, or that ends exactly on a 4 KiB boundary (upstream dumps have been cut so).
* ``registry.damaged``: more than :data:`MAX_REJECT_RATIO` of the rows rejected.
* ``registry.empty_input``: no data rows at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sluice.registry.model import Kind, LegalBasis, RegistryError, RejectedLine
from sluice.registry.names import (
    BadIndicator,
    canon_host,
    canon_ip,
    canon_mask,
    display_indicator,
)

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_LINE_CHARS",
    "MAX_REJECT_RATIO",
    "ParseResult",
    "Progress",
    "check_damage",
    "check_tail",
    "decode_text",
    "iter_lines",
    "read_input",
]

MAX_INPUT_BYTES = 2 * 1024**3
"""Largest input file accepted (the RKN dump is ~100 MB in 2024)."""
MAX_LINE_CHARS = 1024 * 1024
"""Longest line accepted; longer lines are rejected without being parsed."""
MAX_REJECT_RATIO = 0.05
"""Above this share of rejected rows (and more than 10 rows) a file is refused as damaged."""
TRUNCATION_BLOCK_BYTES = 4096
"""Upstream dumps have been cut at multiples of this size."""

Progress = Callable[[int], None]
"""Called with the number of bytes processed so far."""


@dataclass(slots=True)
class ParseResult:
    """The entries one input gives, before any comparison with the register."""

    fmt: str
    """Format parsed (``rkn-csv`` ...)."""
    rows: int = 0
    """Data rows (records) read."""
    entries: dict[tuple[str, str], tuple[str, dict[LegalBasis, None]]] = field(default_factory=dict)
    """``(kind, indicator) -> (display, decisions)``."""
    rejected: list[RejectedLine] = field(default_factory=list)
    """Lines that gave no entry."""
    dump_time: str = ""
    """The dump's own time stamp (``Updated:`` header ...)."""
    declared: int | None = None
    """Entry count a list header declares (``# Domains: 14043``), when it does."""
    path: str = ""
    """File being parsed (for rejected lines)."""

    def add(self, kind: Kind, indicator: str, display: str, basis: LegalBasis) -> None:
        """Record one entry (merging the decisions of repeated indicators)."""
        key = (kind.value, indicator)
        got = self.entries.get(key)
        if got is None:
            if not display and "xn--" in indicator:
                display = display_indicator(kind, indicator)
            self.entries[key] = (display, {basis: None})
        else:
            got[1][basis] = None

    def reject(self, line: int, reason: str, text: str) -> None:
        """Record a line that gave no entry."""
        self.rejected.append(RejectedLine(line, reason, text[:200], self.path))

    def add_name(self, text: str, basis: LegalBasis, *, mask_ok: bool = True) -> None:
        """Add a domain (``*.d`` gives a mask) or, when ``text`` is an address, an IP entry.

        Raises:
            BadIndicator: when ``text`` is neither.
        """
        t = text.strip()
        if mask_ok and t.startswith("*."):
            self.add(Kind.DOMAIN_MASK, canon_mask(t), "", basis)
            return
        if t[-1:].isdigit() or ":" in t:
            try:
                kind, ind = canon_ip(t)
            except BadIndicator:
                pass
            else:
                self.add(kind, ind, "", basis)
                return
        self.add(Kind.DOMAIN, canon_host(t), "", basis)


def read_input(path: str | Path, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """Read one input file whole, refusing what is too large or binary.

    Args:
        path: the file.
        max_bytes: size limit.

    Returns:
        The file's bytes.

    Raises:
        RegistryError: ``registry.not_found``, ``registry.io_error``, ``registry.too_large``,
            ``registry.binary_input``.
    """
    p = str(path)
    try:
        size = os.stat(p).st_size
        if size > max_bytes:
            raise RegistryError(
                "registry.too_large", f"{size} bytes is more than the limit of {max_bytes}", p
            )
        with open(p, "rb") as fh:
            head = fh.read(65536)
            if b"\x00" in head:
                raise RegistryError("registry.binary_input", "NUL bytes: not a text list", p)
            data = head + fh.read(max_bytes + 1 - len(head))
    except FileNotFoundError as exc:
        raise RegistryError("registry.not_found", "no such file", p) from exc
    except IsADirectoryError as exc:
        raise RegistryError("registry.io_error", "is a directory", p) from exc
    except OSError as exc:
        raise RegistryError("registry.io_error", exc.strerror or str(exc), p) from exc
    if len(data) > max_bytes:
        raise RegistryError("registry.too_large", f"more than {max_bytes} bytes", p)
    if b"\x00" in data:
        raise RegistryError("registry.binary_input", "NUL bytes: not a text list", p)
    return data


def decode_text(data: bytes, path: str, fallback: str | None = None) -> str:
    """Decode as UTF-8 (BOM dropped), else as ``fallback`` (``cp1251`` for RKN dumps).

    Raises:
        RegistryError: ``registry.bad_encoding``.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if fallback is None:
            raise RegistryError("registry.bad_encoding", f"not UTF-8 at byte {exc.start}", path) from exc
    try:
        return data.decode(fallback)
    except UnicodeDecodeError as exc:
        raise RegistryError(
            "registry.bad_encoding", f"neither UTF-8 nor {fallback} at byte {exc.start}", path
        ) from exc


def iter_lines(
    text: str, result: ParseResult, progress: Progress | None = None
) -> Iterator[tuple[int, str, bool]]:
    """Yield ``(line_number, line, terminated)`` with ``\\r`` stripped; long lines rejected.

    ``terminated`` is False only for a last line that has no newline.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    last = len(lines) - 1
    total = len(text)
    for n, line in enumerate(lines):
        if progress is not None and n % 65536 == 0:
            progress(total * n // max(1, len(lines)))
        if len(line) > MAX_LINE_CHARS:
            result.reject(n + 1, f"{result.fmt}.line_too_long", line[:80])
            if n == last and not text.endswith("\n"):
                raise RegistryError(
                    "registry.truncated", "last line is too long and unterminated", result.path
                )
            continue
        yield n + 1, line.rstrip("\r"), n != last or text.endswith("\n")
    if progress is not None:
        progress(total)


def check_tail(data: bytes) -> bool:
    """True when the file looks cut: no final newline and a size that is a multiple of 4 KiB."""
    return bool(data) and not data.endswith(b"\n") and len(data) % TRUNCATION_BLOCK_BYTES == 0


def check_damage(result: ParseResult) -> None:
    """Refuse a parse whose reject share says it is not this format or is damaged.

    Raises:
        RegistryError: ``registry.empty_input`` or ``registry.damaged``.
    """
    if result.rows == 0 or not result.entries:
        raise RegistryError("registry.empty_input", f"no {result.fmt} entries", result.path)
    bad = len(result.rejected)
    if bad > 10 and bad > MAX_REJECT_RATIO * result.rows:
        first = result.rejected[0]
        raise RegistryError(
            "registry.damaged",
            f"{bad} of {result.rows} rows rejected (first: line {first.line}, {first.reason})",
            result.path,
        )
    if result.declared is not None and len(result.entries) < result.declared * 0.98:
        raise RegistryError(
            "registry.truncated",
            f"header declares {result.declared} entries, file gives {len(result.entries)}",
            result.path,
        )
