"""The bounded fetcher against real HTTP servers: Python's on loopback (no root), nginx and caddy
in a network namespace (root), serving a site and its clones."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sluice.mirrors.fetch import Fetcher, FetchPolicy, is_public
from tests.mirrors.sites import ICON, edited, landing, unrelated

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


def _root_ok() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nginx", "caddy"):
        if not shutil.which(tool):
            return f"{tool} not installed"
    return ""


def _wait_port(ns: str, addr: str, port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((addr, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {addr}:{port} in {ns}")


@pytest.mark.root
@pytest.mark.skipif(bool(_root_ok()), reason=_root_ok() or "ok")
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
    servers = "\n".join(
        f"server {{ listen {peer}:80; server_name {n}; root {tmp_path / n}; }}" for n in nginx_names[:3]
    )
    redirect = (
        f"server {{ listen {peer}:80; server_name old-fonbet.test; return 302 http://fonbet-zerkalo.test/; }}"
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off; user root; worker_processes 1; pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/err.log;\n"
        f"events {{ worker_connections 64; }}\nhttp {{ access_log off; {servers}\n{redirect} }}\n"
    )
    caddy = tmp_path / "Caddyfile"
    caddy.write_text(
        "{\n admin off\n auto_https off\n}\n"
        + "".join(f"http://{n}:8080 {{\n bind {peer}\n root * {tmp_path / n}\n file_server\n}}\n"
                  for n in ("10fonbet.test", "fonbet-garden.test"))
    )  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    sh = ["ip", "netns", "exec", ns]
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", f"{ns}a", "type", "veth", "peer", "name", f"{ns}b"], check=True)
        subprocess.run(["ip", "link", "set", f"{ns}b", "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", f"{host}/30", "dev", f"{ns}a"], check=True)
        subprocess.run(["ip", "link", "set", f"{ns}a", "up"], check=True)
        subprocess.run([*sh, "ip", "addr", "add", f"{peer}/30", "dev", f"{ns}b"], check=True)
        subprocess.run([*sh, "ip", "link", "set", f"{ns}b", "up"], check=True)
        subprocess.run([*sh, "ip", "link", "set", "lo", "up"], check=True)
        procs.append(subprocess.Popen([*sh, "nginx", "-c", str(conf)], stderr=subprocess.DEVNULL))
        procs.append(
            subprocess.Popen(
                [*sh, "caddy", "run", "--config", str(caddy), "--adapter", "caddyfile"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "HOME": str(tmp_path)},
            )
        )  # fmt: skip
        _wait_port(ns, peer, 80)
        _wait_port(ns, peer, 8080)
        port = {n: 80 for n in nginx_names} | {"10fonbet.test": 8080, "fonbet-garden.test": 8080}

        class _Transport(__import__("httpx").HTTPTransport):  # type: ignore[misc]
            def handle_request(self, request):  # type: ignore[no-untyped-def]
                h = request.url.host
                request.url = request.url.copy_with(host=peer, port=port.get(h, 80))
                request.headers["Host"] = h if port.get(h, 80) == 80 else f"{h}:8080"
                return super().handle_request(request)

        fetcher = Fetcher(
            FetchPolicy(allow_private=True, timeout_s=20.0, concurrency=2),
            resolver=lambda name: [peer],
            transport=_Transport(),
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
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", ns], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", f"{ns}a"], check=False, stderr=subprocess.DEVNULL)
