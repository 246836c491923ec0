"""The bounded fetcher against real HTTP servers: Python's on loopback (no root), nginx and caddy
in a network namespace (root), serving a site and its clones."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sluice.mirrors.fetch import Fetcher, FetchPolicy, is_public
from tests.mirrors.sites import (
    ICON,
    Namespace,
    edited,
    landing,
    namespace_problem,
    nginx_conf,
    peer_transport,
    unrelated,
    wait_port,
)

PAGES = {
    "/": landing().encode(),
    "/clone": edited(landing(), 0.05).encode(),
    "/other": unrelated().encode(),
    "/favicon.ico": ICON,
    "/big": b"x" * 300_000,
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/loop"):
            n = int(self.path[5:] or 0)
            self.send_response(302)
            self.send_header("Location", f"/loop{n + 1}")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(3)
        body = PAGES.get(self.path, b"not found")
        self.send_response(200 if self.path in PAGES or self.path == "/slow" else 404)
        self.send_header("Content-Length", str(len(body)))
        try:
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (/slow): a traceback would land in a later test's stderr


@pytest.fixture()
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_private_refused_by_default(server: str) -> None:
    with Fetcher() as f:
        r = f.fetch(server + "/")
    assert r.error == "fetch.private_address" and not r.body
    assert not is_public("10.1.2.3") and not is_public("::1") and is_public("8.8.8.8")


def test_limits_cache_and_log(server: str, tmp_path: Path) -> None:
    f = Fetcher(
        FetchPolicy(
            allow_private=True, max_bytes=100_000, max_redirects=3, timeout_s=1.0, user_agent="ua-test"
        ),
        cache_dir=tmp_path / "cache",
        log_path=tmp_path / "log.jsonl",
    )
    ok = f.fetch(server + "/")
    assert ok.ok and ok.status == 200 and ok.body == PAGES["/"] and not ok.cached
    assert f.fetch(server + "/").cached
    big = f.fetch(server + "/big")
    assert big.truncated and len(big.body) == 100_000
    loop = f.fetch(server + "/loop0")
    assert loop.error == "fetch.too_many_redirects" and len(loop.redirects) == 3
    slow = f.fetch(server + "/slow")
    assert slow.error == "fetch.timeout"
    many = f.fetch_many([server + "/clone", server + "/other", server + "/nothing"])
    assert [r.status for r in many] == [200, 200, 404]
    f.close()
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all("body" not in x and "at" in x for x in lines)


# -- real nginx and caddy in a network namespace (root) --------------------------------------


_PROBLEM = namespace_problem("nginx", "caddy")


@pytest.mark.root
@pytest.mark.skipif(bool(_PROBLEM), reason=_PROBLEM or "ok")
def test_nginx_and_caddy_clones_in_namespace(tmp_path: Path) -> None:
    from sluice.mirrors.discover import find_candidates

    ns, host, peer = f"slmir{os.getpid() % 100000}", "10.201.7.1", "10.201.7.2"
    sites = {
        "fonbet.test": landing(),
        "fonbet-zerkalo.test": landing(),  # exact copy (nginx)
        "10fonbet.test": landing(skin="red", title="FonBet зеркало"),  # re-skinned (caddy)
        "fonbet11.test": edited(landing(), 0.05),  # 5 % of words changed (nginx)
        "fonbet-garden.test": unrelated(),  # look-alike name, unrelated page (caddy)
    }
    for name, html in sites.items():
        d = tmp_path / name
        d.mkdir()
        (d / "index.html").write_text(html)
        (d / "favicon.ico").write_bytes(ICON if name != "fonbet-garden.test" else b"other icon")
    nginx_names = ["fonbet.test", "fonbet-zerkalo.test", "fonbet11.test", "old-fonbet.test"]
    redirect = (
        f"server {{ listen {peer}:80; server_name old-fonbet.test; return 302 http://fonbet-zerkalo.test/; }}"
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, peer, {n: tmp_path / n for n in nginx_names[:3]}, redirect))
    caddy = tmp_path / "Caddyfile"
    caddy.write_text(
        "{\n admin off\n auto_https off\n}\n"
        + "".join(f"http://{n}:8080 {{\n bind {peer}\n root * {tmp_path / n}\n file_server\n}}\n"
                  for n in ("10fonbet.test", "fonbet-garden.test"))
    )  # fmt: skip
    with Namespace(ns, host, peer) as space:
        space.start(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
        space.start(
            ["caddy", "run", "--config", str(caddy), "--adapter", "caddyfile"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        wait_port(peer, 80)
        wait_port(peer, 8080)
        port = {n: 80 for n in nginx_names} | {"10fonbet.test": 8080, "fonbet-garden.test": 8080}

        fetcher = Fetcher(
            FetchPolicy(allow_private=True, timeout_s=20.0, concurrency=2),
            resolver=lambda name: [peer],
            transport=peer_transport(peer, port),  # type: ignore[arg-type]
            cache_dir=tmp_path / "cache",
        )
        observed = {n: {peer} for n in (*sites, "old-fonbet.test") if n != "fonbet.test"}
        with fetcher:
            found = {c.domain: c for c in find_candidates(["fonbet.test"], observed, fetcher=fetcher)}
        for name in ("fonbet-zerkalo.test", "10fonbet.test", "fonbet11.test"):
            c = found[name]
            assert c.fetched and c.traits.content.holds and c.traits.design.holds, (name, c.to_dict())
            assert c.copy, c.to_dict()
        garden = found["fonbet-garden.test"]
        assert garden.fetched and not garden.traits.content.holds and not garden.copy
        assert found["10fonbet.test"].traits.design.values["favicon_same"]
