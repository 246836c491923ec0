"""Reading one importer input: bounded reads, decoding, line splitting, and the damage checks.

Damage is refused before anything changes (:class:`~sluice.registry.model.RegistryError`):

* ``registry.too_large``: the file exceeds :data:`MAX_INPUT_BYTES` (checked before reading).
* ``registry.binary_input``: NUL bytes (UTF-16, images, archives, zero-filled tails).
* ``registry.bad_encoding``: bytes that do not decode as the format's encoding.
* ``registry.truncated``: a last line without its newline that does not parse as a complete
  record, or that ends exactly on a 4 KiB boundary (upstream dumps have been cut so).
* ``registry.mixed_encoding``: a file read as cp1251 holds lines written in UTF-8
  (:func:`check_mojibake`).
* ``registry.mojibake``: text that was UTF-8 decoded as cp1251 or latin-1 and encoded again
  ("СЃСѓРґ" for "суд", "Ð¿" for "п").
* ``registry.line_too_long``: megabytes without a line end (``/dev/zero``-like sources).
* ``registry.damaged``: more than :data:`MAX_REJECT_RATIO` of the rows rejected, in small files
  as in large ones.
* ``registry.empty_input``: no data rows at all.
"""

from __future__ import annotations

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_LINE_CHARS",
    "MAX_RAW_LINE_BYTES",
    "MAX_REJECT_RATIO",
    "MOJIBAKE_MIN_PAIRS",
    "READ_CHUNK_BYTES",
    "STDIN_NAMES",
    "TRUNCATION_BLOCK_BYTES",
    "Digest",
    "check_damage",
    "check_mojibake",
    "check_tail",
    "count_mojibake",
    "decode_text",
    "iter_lines",
    "read_input",
]

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from sluice.registry.importers._common import ParseResult, Progress
from sluice.registry.model import RegistryError

MAX_INPUT_BYTES = 2 * 1024**3
"""Largest input file accepted (the RKN dump is ~100 MB in 2024)."""
MAX_LINE_CHARS = 1024 * 1024
"""Longest line accepted; longer lines are rejected without being parsed."""
MAX_REJECT_RATIO = 0.05
"""Above this share of rejected rows a file is refused as damaged, whatever its size (a 12-row
list with 10 rejected is not a list of this format; 1 bad row in 20 still passes)."""
TRUNCATION_BLOCK_BYTES = 4096
"""Upstream dumps have been cut at multiples of this size."""
STDIN_NAMES = frozenset({"-", "/dev/stdin"})
"""Input names that mean standard input (read once, like a pipe)."""
READ_CHUNK_BYTES = 1 << 20
"""Inputs are read in chunks of this size (each is hashed, checked and kept once)."""
MAX_RAW_LINE_BYTES = 8 * 1024 * 1024
"""Longest run of bytes without a newline accepted while reading (8 MiB): nothing a register
format writes comes near it (the longest row of the 2016 RKN dump is under 4 KiB, RKN XML puts
each element on a line of its own), while an endless source with no line end (``/dev/zero``
without NUL check, ``yes | tr -d '\\n'``) is refused after reading this much, not after
:data:`MAX_INPUT_BYTES`."""


class Digest(Protocol):
    """What :func:`read_input` needs of a hash object (``hashlib.sha256()``)."""

    def update(self, data: bytes, /) -> None:
        """Add bytes."""
        ...


def read_input(path: str | Path, max_bytes: int = MAX_INPUT_BYTES, digest: Digest | None = None) -> bytes:
    """Read one input whole, once, refusing what is too large, binary or has no line ends.

    Files, pipes, character devices and standard input (``-`` or ``/dev/stdin``) are read the
    same way: in chunks, each fed to ``digest`` as it is read (so the digest is of exactly the
    bytes parsed, and a pipe is never read twice), and each checked before the next is read.

    Args:
        path: the file, or ``-`` for standard input.
        max_bytes: size limit.
        digest: a hash object (``hashlib.sha256()``) to feed the bytes to, or None.

    Returns:
        The input's bytes.

    Raises:
        RegistryError: ``registry.not_found``, ``registry.io_error``, ``registry.too_large``,
            ``registry.binary_input``, ``registry.line_too_long``.
    """
    p = str(path)
    try:
        if p == "-":
            return _read_stream(sys.stdin.buffer, p, max_bytes, digest)
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise RegistryError(
                    "registry.too_large", f"{size} bytes is more than the limit of {max_bytes}", p
                )
            return _read_stream(fh, p, max_bytes, digest)
    except FileNotFoundError as exc:
        raise RegistryError("registry.not_found", "no such file", p) from exc
    except IsADirectoryError as exc:
        raise RegistryError("registry.io_error", "is a directory", p) from exc
    except OSError as exc:
        raise RegistryError("registry.io_error", exc.strerror or str(exc), p) from exc


def _read_stream(fh: BinaryIO, p: str, max_bytes: int, digest: Digest | None) -> bytes:
    parts: list[bytes] = []
    total = 0
    run = 0  # bytes since the last newline
    while chunk := fh.read(READ_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise RegistryError("registry.too_large", f"more than {max_bytes} bytes", p)
        if b"\x00" in chunk:
            raise RegistryError(
                "registry.binary_input", f"NUL bytes within the first {total} bytes: not a text list", p
            )
        nl = chunk.rfind(b"\n")
        run = run + len(chunk) if nl < 0 else len(chunk) - nl - 1
        if run > MAX_RAW_LINE_BYTES:
            raise RegistryError(
                "registry.line_too_long",
                f"more than {MAX_RAW_LINE_BYTES} bytes without a line end (at byte {total}):"
                " not a register dump",
                p,
            )
        if digest is not None:
            digest.update(chunk)
        parts.append(chunk)
    return b"".join(parts)


def decode_text(data: bytes, path: str, fallback: str | None = None) -> str:
    """Decode as UTF-8 (BOM dropped), else as ``fallback`` (``cp1251`` for RKN dumps).

    The text is then checked for mojibake and mixed encodings (:func:`check_mojibake`).

    Raises:
        RegistryError: ``registry.bad_encoding``, ``registry.mixed_encoding``,
            ``registry.mojibake``.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if fallback is None:
            raise RegistryError("registry.bad_encoding", f"not UTF-8 at byte {exc.start}", path) from exc
    else:
        check_mojibake(data, "utf-8", path)
        return text
    check_mojibake(data, fallback, path)  # first: UTF-8 lines may hold bytes it leaves undefined
    try:
        return data.decode(fallback)
    except UnicodeDecodeError as exc:
        raise RegistryError(
            "registry.bad_encoding", f"neither UTF-8 nor {fallback} at byte {exc.start}", path
        ) from exc


def _continuation_chars(*encodings: str) -> str:
    """What the UTF-8 continuation bytes 0x80-0xBF become when decoded as ``encodings``."""
    chars = {bytes([b]).decode(e, "ignore") for e in encodings for b in range(0x80, 0xC0)}
    return re.escape("".join(sorted(c for c in chars if c)))


_CYR = _continuation_chars("cp1251")
_LAT = _continuation_chars("latin-1", "cp1252")
MOJIBAKE = re.compile(f"[РС][{_CYR}]|в[{_CYR}]{{2}}|[ÐÑÂÃ][{_LAT}]|â[{_LAT}]{{2}}")
"""One character of UTF-8 decoded as cp1251 (``Р°`` for ``а``, ``СЃ`` for ``с``, ``в„–`` for
``№``) or as latin-1/cp1252 (``Ð°``, ``Ã©``, ``â€™``): the lead byte's character followed by
what continuation bytes (0x80-0xBF) decode to.  Real cp1251 Russian never has these pairs in
a word: its letters are 0xC0-0xFF, and 0x80-0xBF are punctuation and rare letters."""
MOJIBAKE_MIN_PAIRS = 2
"""Pairs of :data:`MOJIBAKE` a line needs to count as garbled: every garbled Cyrillic word
gives one per letter, while one pair can be real text (an abbreviation ending in ``Р``
before ``»``)."""


def count_mojibake(text: str) -> int:
    """Number of :data:`MOJIBAKE` pairs in ``text``."""
    return sum(1 for _ in MOJIBAKE.finditer(text))


MOJIBAKE_SCAN_BYTES = 16 * 1024 * 1024
"""The byte pre-filter of :func:`check_mojibake` works on chunks of this size."""

_CONT = np.zeros(256, np.bool_)
_CONT[0x80:0xC0] = True
_AFTER_LEAD_UTF8 = np.zeros(256, np.bool_)
_AFTER_LEAD_UTF8[[0xC2, 0xC5, 0xC6, 0xCB, 0xD0, 0xD1, 0xD2, 0xE2]] = True


def _candidates(a: npt.NDArray[np.uint8], utf8: bool) -> npt.NDArray[np.int64]:
    """Byte positions where :data:`MOJIBAKE` may match (a superset), in one chunk.

    In a cp1251 file a garbled character is a UTF-8 lead byte (0xD0, 0xD1; 0xE2) followed by
    continuation bytes.  In UTF-8 text it is the UTF-8 form of ``Р``, ``С``, ``в``, ``Ð``,
    ``Ñ``, ``Â``, ``Ã`` or ``â`` followed by the first byte of a character of the set (never
    ASCII and never a plain Cyrillic letter, which is what follows them in real text).
    """
    n = a.shape[0]
    if n < 4:
        return np.zeros(0, np.int64)
    x0, x1, x2, x3 = a[: n - 3], a[1 : n - 2], a[2 : n - 1], a[3:]
    if not utf8:
        hit = (((x0 == 0xD0) | (x0 == 0xD1)) & _CONT[x1]) | ((x0 == 0xE2) & _CONT[x1] & _CONT[x2])
        return np.flatnonzero(hit).astype(np.int64)
    lead = ((x0 == 0xD0) & ((x1 == 0xA0) | (x1 == 0xA1) | (x1 == 0xB2))) | (
        (x0 == 0xC3) & ((x1 == 0x82) | (x1 == 0x83) | (x1 == 0x90) | (x1 == 0x91) | (x1 == 0xA2))
    )
    after = _AFTER_LEAD_UTF8[x2] & ~((x2 == 0xD0) & ((x3 < 0x81) | (x3 > 0x8F)))
    after &= ~((x2 == 0xD1) & ((x3 < 0x91) | (x3 > 0x9F)))
    return np.flatnonzero(lead & after).astype(np.int64)


def check_mojibake(
    data: bytes, encoding: str, path: str, *, keep: Callable[[str], str] | None = None
) -> None:
    """Refuse input of which any line was garbled by a wrong decode (see :data:`MOJIBAKE`).

    A vectorised pass over the bytes (:func:`_candidates`) finds the few lines where the
    pattern may occur; only those are decoded and counted, so clean input costs one pass.

    Args:
        data: the input's bytes.
        encoding: how the input is decoded: ``utf-8`` (text double-encoded is
            ``registry.mojibake``) or ``cp1251`` (UTF-8 lines in it are
            ``registry.mixed_encoding``).
        path: for messages.
        keep: the part of a line to check (an RKN row without its URL field: URLs are data,
            and the register holds some written in raw UTF-8), or None for the whole line.

    Raises:
        RegistryError: ``registry.mixed_encoding`` or ``registry.mojibake``.
    """
    utf8 = encoding.startswith("utf")
    arr = np.frombuffer(data, np.uint8)
    found: list[npt.NDArray[np.int64]] = []
    for off in range(0, arr.shape[0], MOJIBAKE_SCAN_BYTES):
        found.append(_candidates(arr[off : off + MOJIBAKE_SCAN_BYTES + 3], utf8) + off)
    pos = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    if not pos.shape[0]:
        return
    nl = np.flatnonzero(arr == 10)
    bad: list[tuple[int, str]] = []
    for k in np.unique(np.searchsorted(nl, pos)).tolist():  # line index of each candidate
        start = 0 if k == 0 else int(nl[k - 1]) + 1
        end = int(nl[k]) if k < nl.shape[0] else len(data)
        line = data[start:end].decode("utf-8" if utf8 else encoding, "replace").rstrip("\r")
        if count_mojibake(keep(line) if keep is not None else line) >= MOJIBAKE_MIN_PAIRS:
            bad.append((k + 1, line))
    if not bad:
        return
    lineno, line = bad[0]
    sample = MOJIBAKE.search(keep(line) if keep is not None else line)
    word = line if sample is None else line[max(0, sample.start() - 10) : sample.end() + 20]
    if not utf8:
        raise RegistryError(
            "registry.mixed_encoding",
            f"{len(bad)} lines are UTF-8 inside a cp1251 file (first: line {lineno}: {word!r})",
            path,
        )
    raise RegistryError(
        "registry.mojibake",
        f"{len(bad)} lines hold UTF-8 text decoded as cp1251/latin-1 and encoded again"
        f" (first: line {lineno}: {word!r})",
        path,
    )


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
    if result.rows == 0 or not result.n_entries:
        raise RegistryError("registry.empty_input", f"no {result.fmt} entries", result.path)
    bad = len(result.rejected)
    if bad > MAX_REJECT_RATIO * result.rows:
        first = result.rejected[0]
        raise RegistryError(
            "registry.damaged",
            f"{bad} of {result.rows} rows rejected (first: line {first.line}, {first.reason})",
            result.path,
        )
    if result.declared is not None and result.n_entries < result.declared * 0.98:
        raise RegistryError(
            "registry.truncated",
            f"header declares {result.declared} entries, file gives {result.n_entries}",
            result.path,
        )
