"""The decision log: one JSONL record per decision, in size-rotated segments, fsync as configured.

Theory of operation. A log is a directory of segments ``decisions.000001.jsonl``,
``decisions.000002.jsonl`` ...; the highest number is the one being written. Segments are never
renamed: rotation opens the next number and deletes the oldest beyond ``keep``, so a reader
listing the directory never sees a record move, and a crash during rotation leaves at worst an
empty newest segment.

Each record is one ``os.write`` of a whole line on a descriptor opened with ``O_APPEND`` (no
user-space buffer), so once :meth:`DecisionLog.write` returns the record is in the kernel and a
crash of the *process* (SIGKILL included) cannot lose it, whatever the fsync policy. The fsync
policy decides what survives a crash of the *machine* (power loss, kernel panic):

* ``always``: ``os.fsync`` after every record, before :meth:`~DecisionLog.write` returns - an
  acknowledged record is on disk; costs one disk flush per decision;
* ``interval`` (seconds): ``os.fsync`` on the first write at least that long after the previous
  one, and on rotation and close - at most the last ``interval`` seconds (plus an idle spell with
  no write) can be lost;
* ``never``: the kernel writes back when it likes (typically within 30 s).

A line torn by a machine crash (no final newline) is terminated when the log is reopened, and
:func:`~sluice.decisions.query.read_decisions` skips and counts it, so it never hides the next
record. One process writes a log at a time (an ``flock`` on ``.lock`` refuses a second).

Files are private from the moment they exist: segments are created ``0o640``, the lock ``0o600``
and a new log directory ``0o750`` (whatever the umask), and every open uses ``O_NOFOLLOW``: a
symlink planted in a directory others can write to is refused (:class:`ConfigError`) rather
than followed, so a gateway running as root cannot be made to append to another file.

Several writers (the gateway's worker processes) share a log through subdirectories: writer
``i`` writes the log ``DIR/worker-i`` (:func:`worker_dir`), with its own lock, segments, rotation
and ``keep``; :func:`~sluice.decisions.query.read_decisions` on ``DIR`` reads ``DIR``'s own
segments and every ``worker-*`` subdirectory's, merged by decision time. No two processes ever
append to, rotate or delete the same files.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "SEGMENT_GLOB",
    "DecisionLog",
    "FsyncPolicy",
    "log_dirs",
    "segments",
    "worker_dir",
]

import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from sluice.errors import ConfigError
from sluice.policy.model import Decision

SEGMENT_MODE = 0o640
"""Permissions of a segment (owner writes, group reads, others nothing)."""
LOCK_MODE = 0o600
"""Permissions of the lock file."""
DIR_MODE = 0o750
"""Permissions of a log directory sluice creates."""
DEFAULT_MAX_BYTES = 64 << 20
"""Size at which a segment is closed and the next one started (bytes)."""
DEFAULT_KEEP = 10
"""Segments kept, the one being written included."""
SEGMENT_GLOB = "decisions.*.jsonl"
"""Names of segments in a log directory."""
_SEGMENT = re.compile(r"decisions\.(\d{6,})\.jsonl")
_WORKER = re.compile(r"worker-(\d+)")


@dataclass(frozen=True, slots=True)
class FsyncPolicy:
    """When the log calls ``os.fsync`` (see the module docstring)."""

    mode: Literal["always", "interval", "never"] = "always"
    """``always``, ``interval`` or ``never``."""
    interval_s: float = 0.0
    """Seconds between syncs for ``interval``."""

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        """``always``, ``never``, or a number of seconds (``5``, ``0.5``, ``interval:5``).

        Raises:
            ConfigError: anything else.
        """
        t = text.strip().lower()
        if t in ("always", "never"):
            return cls(t)  # type: ignore[arg-type]
        t = t.removeprefix("interval:").removesuffix("s")
        try:
            secs = float(t)
        except ValueError:
            raise ConfigError("fsync", f"{text!r} is not 'always', 'never' or a number of seconds") from None
        if not secs > 0 or secs != secs or secs == float("inf"):
            raise ConfigError("fsync", f"interval must be a positive number of seconds, not {text!r}")
        return cls("interval", secs)

    def __str__(self) -> str:
        return f"interval:{self.interval_s:g}" if self.mode == "interval" else self.mode


def segments(directory: str | Path) -> list[Path]:
    """The log's segments, oldest first."""
    d = Path(directory)
    found = []
    for p in d.glob(SEGMENT_GLOB):
        m = _SEGMENT.fullmatch(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def worker_dir(directory: str | Path, index: int) -> Path:
    """The log directory of writer (gateway worker) ``index`` within a shared log ``directory``."""
    return Path(directory) / f"worker-{index}"


def log_dirs(directory: str | Path) -> list[Path]:
    """The log directories a reader of ``directory`` reads: itself, then its ``worker-*`` ones."""
    d = Path(directory)
    found = []
    try:
        for p in d.iterdir():
            m = _WORKER.fullmatch(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
    except FileNotFoundError:
        return [d]
    return [d, *(p for _, p in sorted(found))]


class DecisionLog:
    """Writer of a decision log directory (created if missing).

    Args:
        directory: where the segments live.
        max_bytes: a segment is closed before a record would take it past this size.
        keep: segments kept (older ones are deleted at rotation); at least 1.
        fsync: when to sync (see :class:`FsyncPolicy`).
        clock: monotonic clock for ``interval`` (tests may pass their own).

    Raises:
        ConfigError: bad limits, or another process is writing this log.
        OSError: the directory cannot be created or written.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        fsync: FsyncPolicy | str = "always",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 1024:
            raise ConfigError("max_bytes", f"must be at least 1024, not {max_bytes}")
        if keep < 1:
            raise ConfigError("keep", f"must be at least 1, not {keep}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.keep = keep
        self.fsync = fsync if isinstance(fsync, FsyncPolicy) else FsyncPolicy.parse(fsync)
        self._clock = clock
        _make_dir(self.directory)
        self._lock = _open_private(self.directory / ".lock", os.O_RDWR, LOCK_MODE)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise ConfigError("log", f"{self.directory} is being written by another process") from None
        self.records = 0
        """Records written by this writer."""
        self.rotations = 0
        """Segments this writer closed."""
        self._fd = -1
        self._size = 0
        self._last_sync = clock()
        existing = segments(self.directory)
        if existing:
            self._seq = int(_SEGMENT.fullmatch(existing[-1].name).group(1))  # type: ignore[union-attr]
            self._open()
            self._repair_torn_tail()
        else:
            self._seq = 1
            self._open()

    @property
    def current(self) -> Path:
        """The segment being written."""
        return self.directory / f"decisions.{self._seq:06d}.jsonl"

    def _open(self) -> None:
        self._fd = _open_private(self.current, os.O_RDWR | os.O_APPEND, SEGMENT_MODE)
        self._size = os.fstat(self._fd).st_size
        if self.fsync.mode != "never":
            _sync_dir(self.directory)

    def _repair_torn_tail(self) -> None:
        if self._size == 0:
            return
        last = os.pread(self._fd, 1, self._size - 1)  # the descriptor already opened, no symlink
        if last != b"\n":
            self._write_all(b"\n")
            self._sync()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    def _sync(self) -> None:
        os.fsync(self._fd)
        self._last_sync = self._clock()

    def write(self, decision: Decision) -> None:
        """Append one decision; when this returns the record survives the process (see above).

        Raises:
            OSError: the record could not be written (disk full ...).
        """
        self.write_dict(decision.to_dict())

    def write_dict(self, record: dict[str, object]) -> None:
        """Append one JSON object as a line (for records that are already dicts)."""
        line = orjson.dumps(record) + b"\n"
        if self._size and self._size + len(line) > self.max_bytes:
            self.rotate()
        self._write_all(line)
        self.records += 1
        mode = self.fsync.mode
        if mode == "always" or (
            mode == "interval" and self._clock() - self._last_sync >= self.fsync.interval_s
        ):
            self._sync()

    def rotate(self) -> None:
        """Close the current segment, start the next one, delete segments beyond ``keep``."""
        if self.fsync.mode != "never":
            self._sync()
        os.close(self._fd)
        self._seq += 1
        self.rotations += 1
        self._open()
        for old in segments(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)

    def flush(self) -> None:
        """Sync now (whatever the policy)."""
        if self._fd >= 0:
            self._sync()

    def close(self) -> None:
        """Sync (unless ``never``) and close; the log can then be opened by another writer."""
        if self._fd < 0:
            return
        if self.fsync.mode != "never":
            self._sync()
        os.close(self._fd)
        self._fd = -1
        os.close(self._lock)

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_dir(directory: Path) -> None:
    """Create a log directory (and parents) ``DIR_MODE`` from the start, umask notwithstanding."""
    if directory.is_dir():
        return
    old = os.umask(0o077)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
    finally:
        os.umask(old)
    os.chmod(directory, DIR_MODE)  # mkdir's mode was masked by the umask set above


def _open_private(path: Path, flags: int, mode: int) -> int:
    """Open (creating with ``mode``) without following a symlink; refuse one clearly.

    Raises:
        ConfigError: ``path`` is a symlink (or something else that is not a regular file).
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError("log", f"{path} is a symlink; refusing to write through it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConfigError("log", f"{path} is not a regular file")
    if stat.S_IMODE(st.st_mode) & ~mode:  # created by the umask-free mode above, or older: narrow it
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
    return fd


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
