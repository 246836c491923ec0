"""Helpers of the end-to-end gateway tests: a server certificate, a register, an HTTPS server, the gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sluice.lab.pki import LabCA
from sluice.registry import import_files, open_store
from tests.gateway.conftest import PY, Topo, wait_port

SERVER = """
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # /bytes/N: N bytes; anything else: b"hello"
        size = int(self.path[7:]) if self.path.startswith("/bytes/") else -1
        body = b"hello" if size < 0 else bytes(65536)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if size < 0 else size))
        self.end_headers()
        if size < 0:
            self.wfile.write(body)
            return
        while size > 0:
            self.wfile.write(body[: min(size, len(body))])
            size -= len(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def finish_request(self, request, client_address):  # TLS handshake in the thread, not in accept
        request.settimeout(5)
        super().finish_request(ctx.wrap_socket(request, server_side=True), client_address)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
S(("0.0.0.0", 443), H).serve_forever()
"""
"""A Python HTTPS server on port 443 (argv: cert, key); ``GET /bytes/N`` sends N zero bytes."""


def make_cert(d: Path) -> tuple[Path, Path]:
    """A server certificate and its key (the lab's CA, in ``d/pki``); clients do not verify it."""
    issued = LabCA(d / "pki").issue("sluice.test")
    return issued.cert, issued.key


def make_register(d: Path, lists: Sequence[tuple[str, str, str]]) -> Path:
    """A register ``d/register.sqlite`` with each (text, format, source) imported as a list."""
    db = d / "register.sqlite"
    store = open_store(db, create=True)
    try:
        for i, (text, fmt, source) in enumerate(lists):
            path = d / f"list-{i}.txt"
            path.write_text(text)
            import_files(store, [path], fmt, source=source)
    finally:
        store.close()
    return db


@contextmanager
def https_server(topo: Topo, script: Path, cert: Path, key: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run :data:`SERVER` (written to ``script``) in the server namespace until the block ends."""
    p = subprocess.Popen(
        topo.ex(topo.srv, PY, str(script), str(cert), str(key)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(topo, topo.srv, 443)
        yield p
    finally:
        p.kill()
        p.wait(5)


def start_gateway(
    topo: Topo, args: Sequence[str], *, lines: list[str] | None = None, timeout: float = 15
) -> subprocess.Popen[str]:
    """``python -m sluice.cli.gateway run ARGS`` in the gateway namespace, once it says it is ready.

    Args:
        lines: receives what it printed on stderr up to ``ready``.
    """
    cmd = [PY, "-m", "sluice.cli.gateway", "run", *args]
    p = subprocess.Popen(topo.ex(topo.gw, *cmd), stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert p.stderr is not None
    early = [] if lines is None else lines
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stderr.readline()
        early.append(line)
        if "ready on queue" in line:
            return p
        if not line and p.poll() is not None:
            break
    p.kill()
    raise AssertionError(f"gateway did not start: {''.join(early)}{p.stderr.read()}")


def stop_gateway(p: subprocess.Popen[str], timeout: float = 10) -> str:
    """SIGTERM (SIGKILL after ``timeout`` s); what it printed on stderr since."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return err
