"""Limits on everything sluice reads from a file, and bounded readers that enforce them.

Theory of operation: no input may make memory grow with what the input *claims* rather than
with what the user chose to give. Each limit is a named constant with its unit, overridable by an
environment variable (read when the limit is used, so a CLI option can set it too):

==============================  ===============================  ================================
limit                           environment variable             default
==============================  ===============================  ================================
policy file size                ``SLUICE_MAX_POLICY_BYTES``      :data:`MAX_POLICY_BYTES`
each file of a model directory  ``SLUICE_MAX_MODEL_BYTES``       :data:`MAX_MODEL_BYTES`
gzip expansion ratio            ``SLUICE_MAX_GZIP_RATIO``        :data:`MAX_GZIP_RATIO`
capture held in memory          ``SLUICE_MAX_CAPTURE_BYTES``     :data:`MAX_CAPTURE_BYTES`
==============================  ===============================  ================================

The gzip ratio is checked once the decompressed output passes :data:`GZIP_RATIO_FLOOR_BYTES`
(small captures of zeros are fine; a 260 KB file that inflates to 256 MiB is not). "Held in
memory" applies where a capture cannot be memory-mapped: a decompressed gzip capture on the batch
path, and standard input or a pipe. Plain files are mapped, and the streaming path reads any size
in constant memory, so neither needs a size limit.
"""

from __future__ import annotations

__all__ = [
    "GZIP_RATIO_FLOOR_BYTES",
    "MAX_CAPTURE_BYTES",
    "MAX_GZIP_RATIO",
    "MAX_MODEL_BYTES",
    "MAX_POLICY_BYTES",
    "STDIN_NAMES",
    "BoundedGunzip",
    "CountingReader",
    "LimitExceeded",
    "ReadLimits",
    "env_limit",
    "is_stdin",
    "read_bounded",
]

import gzip
import os
import sys
from dataclasses import dataclass
from typing import BinaryIO

from sluice.errors import ConfigError

MAX_POLICY_BYTES = 4 * 1024 * 1024
"""Largest policy file read (bytes); the shipped ones are a few KB."""
MAX_MODEL_BYTES = 256 * 1024 * 1024
"""Largest file of a model directory read (bytes); the shipped model.txt is 2.3 MB."""
MAX_GZIP_RATIO = 100
"""Largest decompressed/compressed size ratio of a gzip capture (captures compress 2-20x)."""
GZIP_RATIO_FLOOR_BYTES = 16 * 1024 * 1024
"""The ratio is only checked once this much has been decompressed (bytes)."""
MAX_CAPTURE_BYTES = 2 * 1024 * 1024 * 1024
"""Largest capture held in memory (decompressed gzip on the batch path, standard input), bytes."""
STDIN_NAMES = ("-", "/dev/stdin")
"""Capture paths that mean standard input."""


class LimitExceeded(ValueError):
    """Input larger than a limit; ``env`` names the variable that raises it."""

    def __init__(self, what: str, limit: int, env: str) -> None:
        self.what, self.limit, self.env = what, limit, env
        super().__init__(f"{what} exceeds the limit of {limit:,} (raise it with {env}=N)")


def env_limit(name: str, default: int) -> int:
    """The integer in environment variable ``name``, else ``default`` (0 or less: no limit).

    Raises:
        ConfigError: the variable is set but is not an integer.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not an integer") from None
    return value if value > 0 else sys.maxsize


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """The limits of one capture read (see the module docstring)."""

    max_gzip_ratio: int = MAX_GZIP_RATIO
    """Decompressed/compressed ratio at most."""
    gzip_ratio_floor_bytes: int = GZIP_RATIO_FLOOR_BYTES
    """Ratio checked past this many decompressed bytes."""
    max_capture_bytes: int = MAX_CAPTURE_BYTES
    """Bytes held in memory at most where a capture cannot be mapped."""

    @classmethod
    def from_env(
        cls, *, max_gzip_ratio: int | None = None, max_capture_bytes: int | None = None
    ) -> ReadLimits:
        """Explicit values first, then ``SLUICE_MAX_GZIP_RATIO`` / ``SLUICE_MAX_CAPTURE_BYTES``."""
        return cls(
            max_gzip_ratio
            if max_gzip_ratio is not None
            else env_limit("SLUICE_MAX_GZIP_RATIO", MAX_GZIP_RATIO),
            GZIP_RATIO_FLOOR_BYTES,
            max_capture_bytes
            if max_capture_bytes is not None
            else env_limit("SLUICE_MAX_CAPTURE_BYTES", MAX_CAPTURE_BYTES),
        )


def is_stdin(path: str) -> bool:
    """Whether a capture path names standard input (``-`` or ``/dev/stdin``)."""
    return path in STDIN_NAMES


class CountingReader:
    """A binary stream that serves ``prefix`` first and counts the bytes it hands out."""

    def __init__(self, f: BinaryIO, prefix: bytes = b"") -> None:
        self.f = f
        self.prefix = prefix
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        if self.prefix:
            take = self.prefix if n < 0 else self.prefix[:n]
            self.prefix = self.prefix[len(take) :]
            if n < 0:
                take += self.f.read()
            self.consumed += len(take)
            return take
        data = self.f.read(n)
        self.consumed += len(data)
        return data

    def close(self) -> None:
        self.f.close()

    def read1(self, n: int = -1) -> bytes:
        if self.prefix:
            return self.read(n)
        read = getattr(self.f, "read1", self.f.read)
        data: bytes = read(n)
        self.consumed += len(data)
        return data


class BoundedGunzip:
    """Decompress a gzip stream, refusing to inflate beyond the ratio and size limits.

    Args:
        compressed: the compressed stream (counted: the ratio uses the bytes consumed so far).
        limits: the limits.
        max_bytes: total decompressed bytes allowed (None: no size limit, streaming).

    Raises (from :meth:`read1`):
        LimitExceeded: the ratio or the size went past its limit.
        EOFError, gzip.BadGzipFile, zlib.error: damaged stream, as :class:`gzip.GzipFile`.
    """

    def __init__(self, compressed: CountingReader, limits: ReadLimits, max_bytes: int | None = None) -> None:
        self.src = compressed
        self.g = gzip.GzipFile(fileobj=compressed, mode="rb")  # type: ignore[call-overload]
        self.limits = limits
        self.max_bytes = max_bytes
        self.produced = 0

    def read1(self, n: int = 1 << 20) -> bytes:
        data: bytes = self.g.read1(n)
        self.produced += len(data)
        lim = self.limits
        if self.produced > lim.gzip_ratio_floor_bytes and self.produced > lim.max_gzip_ratio * max(
            self.src.consumed, 1
        ):
            raise LimitExceeded(
                f"gzip expansion ratio ({self.produced:,} bytes from {self.src.consumed:,})",
                lim.max_gzip_ratio,
                "SLUICE_MAX_GZIP_RATIO",
            )
        if self.max_bytes is not None and self.produced > self.max_bytes:
            raise LimitExceeded("decompressed capture size", self.max_bytes, "SLUICE_MAX_CAPTURE_BYTES")
        return data

    read = read1

    def close(self) -> None:
        self.g.close()


def read_bounded(f: BinaryIO, limit: int, what: str, env: str) -> bytes:
    """At most ``limit`` bytes of ``f`` (which may be a pipe or a device that never ends).

    Raises:
        LimitExceeded: ``f`` holds more than ``limit`` bytes.
    """
    parts = []
    got = 0
    while got <= limit:
        chunk = f.read(min(1 << 20, limit + 1 - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    if got > limit:
        raise LimitExceeded(what, limit, env)
    return b"".join(parts)
