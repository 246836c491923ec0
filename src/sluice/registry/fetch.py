"""Lists fetched from URLs, refreshed like Pi-hole's gravity: ``registry source add`` and ``fetch``.

Theory of operation
-------------------
A source fetched from a URL has its settings in the register (:class:`~sluice.registry.sources.
SourceFeed`: URL, format, interval, the ``ETag`` and ``Last-Modified`` of its last good copy)
and its last good copy in a cache directory (beside a SQLite register: ``REGISTER.sources/``).
:func:`fetch_sources` asks each URL:

1. conditionally (``If-None-Match``, ``If-Modified-Since`` of the last good copy, when that copy
   is still in the cache): ``304 Not Modified`` changes nothing - no import, no audit row, the
   copy stays;
2. the body is read into a temporary file within bounds: at most ``max_bytes`` (a larger
   ``Content-Length`` is refused before reading) and ``timeout_s`` in all; a body shorter than
   its ``Content-Length`` is refused as incomplete;
3. a body identical to the last good copy (same SHA-256) is ``unchanged``: no import;
4. otherwise it is imported as a sync of the source (:func:`~sluice.registry.sync.sync_result`),
   so every refusal of an import applies (binary, badly encoded, truncated or damaged input,
   row drop, mass removal, older dump; issue 19's guards): a refused download is kept beside
   the good copy as ``NAME.rejected`` for a person to look at, and the good copy, its
   validators and the register stay as they were;
5. only after the import committed does the download become the good copy (atomic rename) and
   its validators get stored: a bad copy never becomes the one a later ``304`` points to.

Every outcome is reported (:class:`FetchOutcome`); a failure of one source does not stop the
others.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT_S",
    "FetchOutcome",
    "add_source",
    "cache_dir_for",
    "fetch_sources",
    "parse_every",
]

import contextlib
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from sluice.registry.choices import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S
from sluice.registry.importers import FORMATS, parse_files
from sluice.registry.model import ImportSummary, RegistryError
from sluice.registry.sources import SourceFeed, check_name, feed, feeds, save_feed
from sluice.registry.stores import RegistryStore, is_postgres
from sluice.registry.sync import DEFAULT_MAX_DROP, DEFAULT_MAX_REMOVED, sync_result

SOCKET_TIMEOUT_S = 30.0
"""Longest wait for any one read or the connection."""
CHUNK_BYTES = 1 << 16
USER_AGENT = "sluice-registry-fetch/1"
_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What fetching one source did."""

    name: str
    """The source."""
    url: str
    """Its URL."""
    status: str
    """``imported``, ``not-modified``, ``unchanged``, ``refused`` (bad copy), ``failed``
    (no copy: HTTP error, unreachable, too large, too slow), ``not-due``."""
    reason: str = ""
    """Stable code when refused or failed (``registry.truncated``, ``registry.fetch_http`` ...)."""
    detail: str = ""
    """Message when refused or failed."""
    http_status: int = 0
    """The HTTP status (0: none)."""
    bytes: int = 0
    """Bytes downloaded."""
    summary: ImportSummary | None = None
    """The import, when there was one."""
    good_copy: str = ""
    """The last good copy (kept when the download was bad)."""
    rejected_copy: str = ""
    """Where a refused download was kept."""

    @property
    def ok(self) -> bool:
        """Not refused and not failed."""
        return self.status not in ("refused", "failed")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        d = asdict(self)
        d["summary"] = self.summary.as_dict() if self.summary is not None else None
        return d


class _Failed(Exception):
    def __init__(self, reason: str, detail: str, http_status: int = 0) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.http_status = reason, detail, http_status


def parse_every(text: str) -> float:
    """Seconds of an interval: ``90``, ``30m``, ``12h``, ``1d``, ``1w``.

    Raises:
        RegistryError: ``registry.bad_interval``.
    """
    m = _EVERY.fullmatch(text.strip().lower())
    if m is None:
        raise RegistryError("registry.bad_interval", f"{text!r} is not an interval (90, 30m, 12h, 1d, 1w)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def cache_dir_for(register: str) -> Path:
    """Where the last good copies of a register's fetched lists are kept by default.

    Beside a SQLite register: ``REGISTER.sources/``; for a PostgreSQL register: a directory
    named after the URL's digest under ``$XDG_CACHE_HOME/sluice`` (``~/.cache/sluice``).
    """
    if is_postgres(register):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice"
        return base / ("register-" + hashlib.sha256(register.encode()).hexdigest()[:16])
    return Path(register + ".sources")


def add_source(store: RegistryStore, name: str, url: str, fmt: str, every_s: float = 0.0) -> SourceFeed:
    """Fetch ``name`` from ``url`` from now on (its settings; nothing is downloaded yet).

    A source already fetched keeps its last good copy's validators when the URL and format
    stay the same.

    Raises:
        RegistryError: ``registry.bad_url``, ``registry.bad_format``, ``registry.bad_source``.
    """
    check_name(name)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError("registry.bad_url", f"{url!r} is not an http:// or https:// URL")
    if fmt not in FORMATS:
        raise RegistryError("registry.bad_format", f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if every_s < 0:
        raise RegistryError("registry.bad_interval", "the interval must not be negative")
    old = feed(store, name)
    f = SourceFeed(url, fmt, every_s)
    if old is not None and (old.url, old.fmt) == (url, fmt):
        f = SourceFeed(url, fmt, every_s, old.etag, old.last_modified, old.sha256, old.checked_at,
                       old.good_at, old.status, old.detail)  # fmt: skip
    save_feed(store, name, f)
    return f


def _due(f: SourceFeed, now: datetime) -> bool:
    if f.every_s <= 0 or not f.checked_at:
        return True
    try:
        last = datetime.fromisoformat(f.checked_at)
    except ValueError:
        return True
    return (now - last).total_seconds() >= f.every_s


def fetch_sources(
    store: RegistryStore,
    names: Sequence[str],
    cache_dir: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_drop: float = DEFAULT_MAX_DROP,
    max_removed: float = DEFAULT_MAX_REMOVED,
    force: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> list[FetchOutcome]:
    """Fetch sources and import what changed (see the module's theory of operation).

    Args:
        store: the register.
        names: the sources to fetch (whether due or not); empty: every source whose interval
            has passed.
        cache_dir: where the last good copies are kept (made when absent).
        max_bytes: largest download.
        timeout_s: longest download.
        max_drop: see :func:`~sluice.registry.sync.sync_result`.
        max_removed: see :func:`~sluice.registry.sync.sync_result`.
        force: accept what the import guards refuse (see ``registry import --force``).
        clock: the time (default: now, UTC).

    Returns:
        One outcome per source, in name order.

    Raises:
        RegistryError: ``registry.unknown_source`` (a name without a URL), ``registry.io_error``
            (the cache directory cannot be made).
    """
    now = clock or (lambda: datetime.now(UTC))
    known = feeds(store)
    for n in names:
        if n not in known:
            raise RegistryError(
                "registry.unknown_source",
                f"source {n!r} has no URL (sluice registry source add {n} URL --format F)",
            )
    cache = Path(cache_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError("registry.io_error", exc.strerror or str(exc), str(cache)) from exc
    out = []
    for name in sorted(names or known):
        f = known[name]
        if not names and not _due(f, now()):
            out.append(FetchOutcome(name, f.url, "not-due", detail=f"checked {f.checked_at}"))
            continue
        limits = (max_bytes, timeout_s, max_drop, max_removed, force)
        out.append(_fetch_one(store, name, f, cache, limits, now))
    return out


def _fetch_one(
    store: RegistryStore,
    name: str,
    f: SourceFeed,
    cache: Path,
    limits: tuple[int, float, float, float, bool],
    now: Callable[[], datetime],
) -> FetchOutcome:
    max_bytes, timeout_s, max_drop, max_removed, force = limits
    stem = quote(name, safe="")
    good, rejected = cache / stem, cache / f"{stem}.rejected"
    tmp = cache / f"{stem}.download.{os.getpid()}"
    have = good.is_file()
    f.checked_at = now().isoformat(timespec="seconds")
    try:
        try:
            code, headers, size, sha = _download(f, have, tmp, max_bytes, timeout_s)
        except _Failed as exc:
            f.status, f.detail = "failed", f"{exc.reason}: {exc.detail}"
            save_feed(store, name, f)
            return FetchOutcome(name, f.url, "failed", exc.reason, exc.detail, exc.http_status,
                                good_copy=str(good) if have else "")  # fmt: skip
        if code == 304 and not have:
            f.status, f.detail = "failed", "registry.fetch_http: 304 to an unconditional request"
            save_feed(store, name, f)
            return FetchOutcome(name, f.url, "failed", "registry.fetch_http",
                                "304 Not Modified to a request that was not conditional", 304)  # fmt: skip
        if code == 304:
            f.status, f.detail = "not-modified", ""
            save_feed(store, name, f)
            return FetchOutcome(name, f.url, "not-modified", http_status=304, good_copy=str(good))
        if f.sha256 and sha == f.sha256:  # what the register holds (the copy is put back if gone)
            os.replace(tmp, good)
            _take_validators(f, headers, sha)
            f.status, f.detail = "unchanged", ""
            save_feed(store, name, f)
            return FetchOutcome(name, f.url, "unchanged", http_status=code, bytes=size, good_copy=str(good))
        try:
            result = parse_files([tmp], f.fmt, source=name, max_bytes=max_bytes)
            result.path = f.url
            summary = sync_result(
                store, result, name, path=f.url, sha256=sha, max_drop=max_drop,
                max_removed=max_removed, force=force, now=now(),
            )  # fmt: skip
        except RegistryError as exc:
            os.replace(tmp, rejected)
            f.status, f.detail = "refused", f"{exc.reason}: {exc.detail}"
            save_feed(store, name, f)
            return FetchOutcome(name, f.url, "refused", exc.reason, exc.detail, code, size,
                                good_copy=str(good) if have else "", rejected_copy=str(rejected))  # fmt: skip
        os.replace(tmp, good)
        _take_validators(f, headers, sha)
        f.status, f.detail = "imported", ""
        save_feed(store, name, f)
        return FetchOutcome(name, f.url, "imported", http_status=code, bytes=size, summary=summary,
                            good_copy=str(good))  # fmt: skip
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _take_validators(f: SourceFeed, headers: Any, sha: str) -> None:
    f.etag = headers.get("ETag", "") or ""
    f.last_modified = headers.get("Last-Modified", "") or ""
    f.sha256 = sha
    f.good_at = f.checked_at


def _download(
    f: SourceFeed, conditional: bool, dest: Path, max_bytes: int, timeout_s: float
) -> tuple[int, Any, int, str]:
    """GET the URL into ``dest``: ``(status, headers, bytes, sha256)``; 304 writes nothing.

    Raises:
        _Failed: HTTP error, unreachable, too large, too slow, incomplete.
    """
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if conditional and f.etag:
        headers["If-None-Match"] = f.etag
    if conditional and f.last_modified:
        headers["If-Modified-Since"] = f.last_modified
    req = urllib.request.Request(f.url, headers=headers)  # noqa: S310 - http(s) only (add_source)
    deadline = time.monotonic() + timeout_s
    try:
        resp = urllib.request.urlopen(req, timeout=min(SOCKET_TIMEOUT_S, timeout_s))  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, exc.headers, 0, ""
        raise _Failed("registry.fetch_http", f"HTTP {exc.code} {exc.reason}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        if isinstance(why, TimeoutError):
            raise _Failed("registry.fetch_timeout", f"no answer within {SOCKET_TIMEOUT_S:g} s") from None
        raise _Failed("registry.fetch_unreachable", str(why)) from None
    with resp:
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise _Failed("registry.fetch_too_large", f"{length} bytes is more than {max_bytes}", resp.status)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(dest, "wb") as out:
                while chunk := resp.read1(CHUNK_BYTES):  # what has arrived: the deadline is checked often
                    size += len(chunk)
                    if size > max_bytes:
                        raise _Failed("registry.fetch_too_large", f"more than {max_bytes} bytes", resp.status)
                    if time.monotonic() > deadline:
                        raise _Failed(
                            "registry.fetch_timeout", f"not done within {timeout_s:g} s", resp.status
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except http.client.IncompleteRead as exc:
            raise _Failed(
                "registry.fetch_incomplete",
                f"the body ended after {size + len(exc.partial)} of {length} bytes",
                resp.status,
            ) from None
        except TimeoutError:
            raise _Failed(
                "registry.fetch_timeout", f"a read waited more than {SOCKET_TIMEOUT_S:g} s"
            ) from None
        except OSError as exc:
            raise _Failed("registry.fetch_unreachable", str(exc), resp.status) from None
        if length is not None and length.isdigit() and size != int(length):
            raise _Failed("registry.fetch_incomplete", f"{size} of {length} bytes", resp.status)
        return int(resp.status), resp.headers, size, digest.hexdigest()
