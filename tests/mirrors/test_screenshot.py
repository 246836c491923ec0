"""Screenshots in the page evidence: Debian's headless Chromium renders real pages, their DCT
pHashes are compared (the design trait).  Loopback without root; nginx in a network namespace
with root, through ``find_candidates(..., screenshots=N)``."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image, ImageDraw

from sluice.mirrors.fetch import Fetcher, FetchPolicy
from sluice.mirrors.screenshot import CHROMIUM, page_phash, phash, phash_distance
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

NO_CHROMIUM = "" if shutil.which(CHROMIUM) else f"{CHROMIUM} not installed (Debian package chromium)"


def test_phash_is_stable_under_resizing_and_tells_designs_apart() -> None:
    img = Image.new("RGB", (640, 480), "white")
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, 640, 80), fill="navy")
    d.rectangle((40, 120, 400, 440), fill="orange")
    other = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(other).ellipse((200, 40, 620, 460), fill="black")
    assert phash_distance(phash(img), phash(img.resize((1280, 960)))) <= 2
    assert phash_distance(phash(img), phash(other)) >= 16


class _Pages(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, str]] = {
        "/a/": landing(),
        "/b/": landing(),
        "/c/": edited(landing(), 0.05),
        "/d/": unrelated(),
    }

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.pages.get(self.path, "not found").encode()
        self.send_response(200 if self.path in self.pages else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        try:
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass


@pytest.fixture()
def pages() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.timeout(600)
@pytest.mark.skipif(bool(NO_CHROMIUM), reason=NO_CHROMIUM or "ok")
def test_page_phash_of_real_renderings(pages: int) -> None:
    """Chromium reaches the page's host only at the address given (any name works)."""
    h = {k: page_phash(f"http://site-{k}.test:{pages}/{k}/", "127.0.0.1") for k in "abcd"}
    assert phash_distance(h["a"], h["b"]) <= 4  # the same page twice
    assert phash_distance(h["a"], h["c"]) <= 8  # 5 % of the words changed
    assert phash_distance(h["a"], h["d"]) >= 16  # another design
    with pytest.raises(OSError):
        page_phash(f"http://site-a.test:{pages}/a/", "")  # no address: nothing is rendered


_PROBLEM = NO_CHROMIUM or namespace_problem("nginx")


@pytest.mark.root
@pytest.mark.timeout(900)
@pytest.mark.skipif(bool(_PROBLEM), reason=_PROBLEM or "ok")
def test_screenshots_in_the_pipeline_against_nginx(tmp_path: Path) -> None:
    from sluice.mirrors.discover import find_candidates

    ns, host, peer = f"slshot{os.getpid() % 100000}", "10.201.9.1", "10.201.9.2"
    sites = {
        "fonbet.test": landing(),
        "fonbet-zerkalo.test": landing(),  # exact copy
        "fonbet11.test": edited(landing(), 0.05),  # 5 % of words changed
        "fonbet-garden.test": unrelated(),  # look-alike name, unrelated page
    }
    for name, html in sites.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text(html)
        (tmp_path / name / "favicon.ico").write_bytes(ICON if name != "fonbet-garden.test" else b"other")
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, peer, {n: tmp_path / n for n in sites}))
    with Namespace(ns, host, peer) as space:
        space.start(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
        wait_port(peer, 80)
        fetcher = Fetcher(
            FetchPolicy(allow_private=True, timeout_s=20.0, concurrency=2),
            resolver=lambda name: [peer],
            transport=peer_transport(peer, {}),  # type: ignore[arg-type]
            cache_dir=tmp_path / "cache",
        )
        observed = {n: {peer} for n in sites if n != "fonbet.test"}
        with fetcher:
            found = {
                c.domain: c
                for c in find_candidates(["fonbet.test"], observed, fetcher=fetcher, screenshots=3)
            }
    shot = {d: c.traits.design.values["screenshot_similarity"] for d, c in found.items() if c.fetched}
    assert set(shot) == {"fonbet-zerkalo.test", "fonbet11.test", "fonbet-garden.test"}, shot
    assert all(isinstance(v, float) for v in shot.values()), {
        d: c.traits.design.values for d, c in found.items()
    }
    sim = {d: float(v) for d, v in shot.items() if isinstance(v, float)}
    assert sim["fonbet-zerkalo.test"] >= 0.93 and sim["fonbet11.test"] >= 0.87, sim
    assert sim["fonbet-garden.test"] <= 0.75, sim
    print("screenshot similarity to the blocked page:", sim)
    assert found["fonbet-zerkalo.test"].copy and not found["fonbet-garden.test"].copy
