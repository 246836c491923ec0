"""Lists from URLs (``registry source add``, ``registry fetch``) against a real local HTTP server.

The server (``http.server``, in a thread) serves each path with an ``ETag`` and a
``Last-Modified``, answers ``If-None-Match`` / ``If-Modified-Since`` with ``304`` when they match,
and can serve a damaged copy: cut short of its ``Content-Length``, cut at a line end (a list
that lost most of its entries), binary, a server error, or a body without validators.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.registry import registry
from sluice.registry.fetch import add_source, fetch_sources, parse_every
from sluice.registry.model import RegistryError
from sluice.registry.sources import feed
from sluice.registry.stores import RegistryStore, SqliteStore


@dataclass
class Served:
    """What the server answers for one path."""

    body: bytes
    etag: str = ""
    last_modified: str = ""
    mode: str = "ok"
    """``ok``, ``short`` (body cut before its Content-Length), ``error`` (500), ``drip`` (a line
    every 0.1 s: slower than any bound the test sets)."""


@dataclass
class Site:
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


class _Handler(BaseHTTPRequestHandler):
    site: Site

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        site = self.server.site  # type: ignore[attr-defined]
        site.requests.append((self.path, {k: v for k, v in self.headers.items()}))
        s = site.files.get(self.path)
        if s is None:
            self.send_error(404)
            return
        if s.mode == "error":
            self.send_error(500, "broken upstream")
            return
        inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
        if (s.etag and inm == s.etag) or (not inm and s.last_modified and ims == s.last_modified):
            self.send_response(304)
            self.send_header("ETag", s.etag) if s.etag else None
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if s.etag:
            self.send_header("ETag", s.etag)
        if s.last_modified:
            self.send_header("Last-Modified", s.last_modified)
        body = s.body
        if s.mode == "drip":
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for line in body.splitlines(keepends=True):
                    self.wfile.write(line)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client gave up: what the test wants
                self.close_connection = True
            return
        if s.mode == "short":
            self.send_header("Content-Length", str(len(body) + 1000))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site() -> Iterator[Site]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    s = Site()
    server.site = s  # type: ignore[attr-defined]
    s.url = f"http://127.0.0.1:{server.server_address[1]}"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield s
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=60)


def _list(n: int, start: int = 0) -> bytes:
    return "".join(f"0.0.0.0 host{i}.example\n" for i in range(start, start + n)).encode()


def _run(db: Path, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(registry, [*args, "--register", str(db)])
    return res.exit_code, res.stdout, res.stderr


def _audit_rows(db: Path) -> int:
    st = SqliteStore(db)
    try:
        return int(st.conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
    finally:
        st.close()


def test_fetch_cli_conditional_and_bad_copies(site: Site, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    assert _run(db, "init")[0] == 0
    site.files["/hosts.txt"] = Served(
        _list(100), etag='"v1"', last_modified=formatdate(1_700_000_000, usegmt=True)
    )
    code, out, _ = _run(db, "source", "add", "fake-hosts", f"{site.url}/hosts.txt", "--format", "hosts")
    assert code == 0
    # 1. the first fetch imports, unconditionally
    code, out, err = _run(db, "fetch")
    assert code == 0, err
    assert "fake-hosts: imported" in out and "+100 -0" in out
    assert "If-None-Match" not in site.requests[-1][1]
    good = tmp_path / "r.db.sources" / "fake-hosts"
    assert good.read_bytes() == _list(100)
    imports, audit = _imports(db), _audit_rows(db)
    # 2. not modified: a conditional request, a 304, nothing changes
    code, out, _ = _run(db, "fetch", "fake-hosts")
    assert code == 0 and "not modified (HTTP 304): nothing changed" in out
    sent = site.requests[-1][1]
    assert (
        sent["If-None-Match"] == '"v1"'
        and sent["If-Modified-Since"] == site.files["/hosts.txt"].last_modified
    )
    assert (_imports(db), _audit_rows(db)) == (imports, audit)
    assert good.read_bytes() == _list(100)
    # 3. a new version: imported as a sync (one added, one removed)
    site.files["/hosts.txt"] = Served(_list(100, 1), etag='"v2"')
    code, out, _ = _run(db, "fetch", "fake-hosts")
    assert code == 0 and "+1 -1" in out
    assert good.read_bytes() == _list(100, 1)
    # 4. a copy cut at a line end (most entries gone): the import guard refuses it, the good copy stays
    site.files["/hosts.txt"] = Served(_list(30, 1), etag='"v3-cut"')
    code, out, _ = _run(db, "fetch", "fake-hosts")
    assert code == 3 and "fake-hosts: REFUSED" in out and "[registry.row_drop]" in out
    assert f"kept the last good copy {good}" in out
    assert (tmp_path / "r.db.sources" / "fake-hosts.rejected").read_bytes() == _list(30, 1)
    assert good.read_bytes() == _list(100, 1)
    assert _entries(db) == 100
    # the validators are still the good copy's: the next request asks for v2, not v3
    _run(db, "fetch", "fake-hosts")
    assert site.requests[-1][1]["If-None-Match"] == '"v2"'
    # 5. binary garbage
    site.files["/hosts.txt"] = Served(bytes(range(256)) * 64, etag='"v4-bin"')
    code, out, _ = _run(db, "fetch", "fake-hosts")
    assert code == 3 and "[registry.binary_input]" in out and _entries(db) == 100
    # 6. a body cut short of its Content-Length
    site.files["/hosts.txt"] = Served(_list(100, 2), etag='"v5-short"', mode="short")
    code, out, _ = _run(db, "fetch", "fake-hosts")
    assert code == 3 and "FAILED" in out and "[registry.fetch_incomplete]" in out and _entries(db) == 100
    # 7. a server error, and a download over the size bound
    site.files["/hosts.txt"] = Served(b"", mode="error")
    code, out, _ = _run(db, "fetch", "fake-hosts")
    assert code == 3 and "[registry.fetch_http]" in out and "HTTP 500" in out
    site.files["/hosts.txt"] = Served(_list(100, 2), etag='"v6"')
    code, out, _ = _run(db, "fetch", "fake-hosts", "--max-bytes", "1000")
    assert code == 3 and "[registry.fetch_too_large]" in out and _entries(db) == 100
    # every refusal is in `sources list` too
    code, out, _ = _run(db, "sources", "list", "--json")
    (src,) = json.loads(out)
    assert src["origin"] == f"{site.url}/hosts.txt" and src["fetch"]["status"] == "failed"
    assert src["fetch"]["etag"] == '"v2"'
    # 8. the good copy of v6
    code, out, _ = _run(db, "fetch", "fake-hosts", "--json")
    (o,) = json.loads(out)
    assert code == 0 and o["status"] == "imported" and o["summary"]["added"] == 1


def _imports(db: Path) -> int:
    st = SqliteStore(db)
    try:
        return len(st.imports(limit=1000))
    finally:
        st.close()


def _entries(db: Path) -> int:
    st = SqliteStore(db)
    try:
        return sum(sum(k.values()) for k in st.stats().values())
    finally:
        st.close()


def test_last_modified_only_and_unchanged_bodies(site: Site, store: RegistryStore, tmp_path: Path) -> None:
    lm = formatdate(1_700_000_000, usegmt=True)
    site.files["/a.txt"] = Served(b"a.example\nb.example\n", last_modified=lm)
    site.files["/b.txt"] = Served(b"c.example\n")  # no validators at all
    add_source(store, "a", f"{site.url}/a.txt", "domains")
    add_source(store, "b", f"{site.url}/b.txt", "domains")
    cache = tmp_path / "cache"
    first = {o.name: o.status for o in fetch_sources(store, [], cache)}
    assert first == {"a": "imported", "b": "imported"}
    n = len(store.imports(limit=100))
    again = {o.name: o.status for o in fetch_sources(store, [], cache)}
    assert again == {"a": "not-modified", "b": "unchanged"}  # If-Modified-Since; same digest
    assert len(store.imports(limit=100)) == n
    a_req = [h for p, h in site.requests if p == "/a.txt"][-1]
    assert a_req["If-Modified-Since"] == lm and "If-None-Match" not in a_req
    # the good copy gone from the cache: asked again without conditions, and kept again
    (cache / "a").unlink()
    (o,) = fetch_sources(store, ["a"], cache)
    assert o.status == "unchanged" and (cache / "a").is_file()


def test_interval_and_bad_settings(site: Site, store: RegistryStore, tmp_path: Path) -> None:
    assert parse_every("12h") == 43200 and parse_every("30m") == 1800 and parse_every("90") == 90
    with pytest.raises(RegistryError):
        parse_every("soon")
    site.files["/l.txt"] = Served(b"x.example\n", etag='"1"')
    add_source(store, "l", f"{site.url}/l.txt", "domains", every_s=3600)
    (o,) = fetch_sources(store, [], tmp_path)
    assert o.status == "imported"
    (o,) = fetch_sources(store, [], tmp_path)
    assert o.status == "not-due"  # within its --every
    (o,) = fetch_sources(store, ["l"], tmp_path)
    assert o.status == "not-modified"  # named: fetched anyway
    f = feed(store, "l")
    assert f is not None and f.etag == '"1"' and f.every_s == 3600
    for url, fmt, why in (
        ("ftp://x/y", "domains", "registry.bad_url"),
        (f"{site.url}/l.txt", "nope", "registry.bad_format"),
    ):
        with pytest.raises(RegistryError) as err:
            add_source(store, "m", url, fmt)
        assert err.value.reason == why
    with pytest.raises(RegistryError) as err:
        fetch_sources(store, ["unknown"], tmp_path)
    assert err.value.reason == "registry.unknown_source"
    # unreachable: reported, nothing else changes
    add_source(store, "gone", "http://127.0.0.1:9/none.txt", "domains")
    (o,) = fetch_sources(store, ["gone"], tmp_path)
    assert o.status == "failed" and o.reason == "registry.fetch_unreachable"


def test_slow_download_is_bounded(site: Site, store: RegistryStore, tmp_path: Path) -> None:
    """A server that sends a line every 0.1 s (10 s in all) is given up on after --timeout."""
    site.files["/slow.txt"] = Served(_list(100), etag='"s"', mode="drip")
    add_source(store, "slow", f"{site.url}/slow.txt", "hosts")
    (o,) = fetch_sources(store, ["slow"], tmp_path, timeout_s=1.0)
    assert (o.status, o.reason) == ("failed", "registry.fetch_timeout")
    assert store.stats() == {} and not (tmp_path / "slow").exists()
