"""The bounded fetcher: one page per candidate, limited in size, time, redirects and concurrency.

Theory of operation
-------------------
Every fetch resolves the host first and refuses private, loopback, link-local, multicast and
reserved addresses unless the policy allows them (a candidate name may point anywhere; the
fetcher must not become a way into the operator's own network).  Redirects are followed by hand,
each hop checked the same way, at most ``max_redirects``; the body is read in chunks and cut at
``max_bytes``; the whole fetch has one deadline.  Results are cached on disk (one JSON document
and one body file per URL, keyed by the URL's SHA-256) and every fetch, cached or not, is logged
as one JSON line.  Failures are results with a stable reason code (``fetch.private_address``,
``fetch.timeout``, ``fetch.too_many_redirects`` ...), never exceptions.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

__all__ = ["FetchPolicy", "FetchResult", "Fetcher", "is_public"]

Resolver = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Limits of one fetcher."""

    max_bytes: int = 2 * 1024 * 1024
    """Body bytes kept at most (the rest is not read)."""
    timeout_s: float = 10.0
    """Deadline of one fetch, redirects included (seconds)."""
    max_redirects: int = 5
    """Redirect hops followed at most."""
    concurrency: int = 4
    """Fetches in flight at once."""
    allow_private: bool = False
    """Fetch private, loopback and link-local addresses too (tests, lab networks)."""
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) sluice-mirrors/0.1"
    """User-Agent header sent."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch gave."""

    url: str
    """The URL asked for."""
    final_url: str = ""
    """The URL the body came from (after redirects)."""
    status: int = 0
    """HTTP status of the last response (0 when none)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Headers of the last response (lower-case names)."""
    body: bytes = b""
    """The body, at most ``max_bytes``."""
    redirects: tuple[str, ...] = ()
    """Every URL redirected to, in order."""
    address: str = ""
    """The address the last hop's host resolved to."""
    error: str = ""
    """Reason code when the fetch failed ("" when it did not)."""
    truncated: bool = False
    """True when the body was cut at ``max_bytes``."""
    elapsed_s: float = 0.0
    """Time taken."""
    cached: bool = False
    """True when the result came from the cache."""

    @property
    def ok(self) -> bool:
        """A response was received (any status)."""
        return not self.error and self.status > 0

    def meta(self) -> dict[str, object]:
        """JSON-ready form without the body."""
        d = asdict(self)
        d.pop("body")
        d["body_bytes"] = len(self.body)
        return d


def is_public(addr: str) -> bool:
    """True for a globally routable unicast address."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


def _system_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(i[4][0]) for i in infos))


class Fetcher:
    """Fetches pages within a :class:`FetchPolicy`, with a disk cache and a JSON-lines log.

    Args:
        policy: the limits.
        cache_dir: where results are kept (None: no cache).
        log_path: JSON-lines log of every fetch (None: no log).
        resolver: host name -> addresses (default: the system resolver).
        transport: an httpx transport (tests); default: the network.
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        cache_dir: Path | None = None,
        log_path: Path | None = None,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self.cache_dir = cache_dir
        self.log_path = log_path
        self.resolver = resolver or _system_resolver
        self._transport = transport
        self._log_lock = threading.Lock()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        p = self.policy
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(p.timeout_s),
            headers={"User-Agent": p.user_agent, "Accept": "text/html,*/*;q=0.5"},
            limits=httpx.Limits(max_connections=max(1, p.concurrency)),
            verify=False,  # noqa: S501 - a mirror's certificate is evidence, not a trust decision
        )

    # -- cache and log ----------------------------------------------------------------------
    def _key(self, url: str) -> str:
        return hashlib.sha256(url.encode()).hexdigest()

    def _cached(self, url: str) -> FetchResult | None:
        if self.cache_dir is None:
            return None
        meta = self.cache_dir / f"{self._key(url)}.json"
        body = self.cache_dir / f"{self._key(url)}.body"
        try:
            d = json.loads(meta.read_text(encoding="utf-8"))
            data = body.read_bytes()
        except (OSError, ValueError):
            return None
        return FetchResult(
            url=url,
            final_url=str(d.get("final_url", "")),
            status=int(d.get("status", 0)),
            headers={str(k): str(v) for k, v in dict(d.get("headers", {})).items()},
            body=data,
            redirects=tuple(str(r) for r in d.get("redirects", [])),
            address=str(d.get("address", "")),
            error=str(d.get("error", "")),
            truncated=bool(d.get("truncated", False)),
            elapsed_s=float(d.get("elapsed_s", 0.0)),
            cached=True,
        )

    def _store(self, r: FetchResult) -> None:
        if self.cache_dir is None:
            return
        k = self._key(r.url)
        (self.cache_dir / f"{k}.body").write_bytes(r.body)
        (self.cache_dir / f"{k}.json").write_text(json.dumps(r.meta()), encoding="utf-8")

    def _log(self, r: FetchResult) -> None:
        if self.log_path is None:
            return
        line = json.dumps({"at": time.time(), **r.meta()}, ensure_ascii=False)
        with self._log_lock, self.log_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    # -- fetching ---------------------------------------------------------------------------
    def fetch(self, url: str) -> FetchResult:
        """Fetch one URL (``http://`` or ``https://``; a bare name means ``http://name/``)."""
        if "://" not in url:
            url = f"http://{url}/"
        got = self._cached(url)
        if got is None:
            got = self._fetch(url)
            if got.error not in ("fetch.timeout", "fetch.connect"):
                self._store(got)
        self._log(got)
        return got

    def fetch_many(self, urls: Sequence[str]) -> list[FetchResult]:
        """Fetch several URLs, at most ``concurrency`` at once; results in the order given."""
        with ThreadPoolExecutor(max_workers=max(1, self.policy.concurrency)) as pool:
            return list(pool.map(self.fetch, urls))

    def _check_host(self, url: str) -> tuple[str, str]:
        """(address, error) for the URL's host."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return "", "fetch.bad_scheme"
        host = parts.hostname or ""
        if not host:
            return "", "fetch.bad_url"
        try:
            addrs = [host] if _is_ip(host) else self.resolver(host)
        except (OSError, UnicodeError):
            return "", "fetch.no_address"
        if not addrs:
            return "", "fetch.no_address"
        if not self.policy.allow_private and not all(is_public(a) for a in addrs):
            return addrs[0], "fetch.private_address"
        return addrs[0], ""

    def _fetch(self, url: str) -> FetchResult:
        p = self.policy
        start = time.monotonic()
        deadline = start + p.timeout_s
        redirects: list[str] = []
        current = url
        client = self._client
        try:
            while True:
                addr, err = self._check_host(current)
                if err:
                    return FetchResult(
                        url, current, 0, {}, b"", tuple(redirects), addr, err, False, _t(start)
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    return FetchResult(url, current, 0, {}, b"", tuple(redirects), addr, "fetch.timeout")
                with client.stream("GET", current, timeout=left) as resp:
                    if resp.is_redirect and "location" in resp.headers:
                        if len(redirects) >= p.max_redirects:
                            return FetchResult(
                                url, current, resp.status_code, {}, b"", tuple(redirects), addr,
                                "fetch.too_many_redirects", False, _t(start),
                            )  # fmt: skip
                        current = urljoin(current, resp.headers["location"])
                        redirects.append(current)
                        continue
                    body, truncated = _read(resp, p.max_bytes, deadline)
                    headers = {k.lower(): v for k, v in resp.headers.items()}
                    return FetchResult(
                        url, current, resp.status_code, headers, body, tuple(redirects), addr, "", truncated,
                        _t(start),
                    )  # fmt: skip
        except httpx.TimeoutException:
            return FetchResult(
                url, current, 0, {}, b"", tuple(redirects), "", "fetch.timeout", False, _t(start)
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            return FetchResult(
                url, current, 0, {}, b"", tuple(redirects), "", "fetch.connect", False, _t(start)
            )
        except (httpx.HTTPError, ValueError):
            return FetchResult(
                url, current, 0, {}, b"", tuple(redirects), "", "fetch.error", False, _t(start)
            )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _t(start: float) -> float:
    return round(time.monotonic() - start, 4)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _read(resp: httpx.Response, max_bytes: int, deadline: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    n = 0
    for chunk in resp.iter_bytes(65536):
        chunks.append(chunk)
        n += len(chunk)
        if n >= max_bytes:
            return b"".join(chunks)[:max_bytes], True
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("deadline")
    return b"".join(chunks), False
