"""Helpers of the end-to-end gateway tests: a self-signed certificate, an HTTPS server, the gateway."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
    """A self-signed EC certificate and its key, written to ``d`` (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    c, k = d / "cert.pem", d / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return c, k


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


def stop_gateway(p: subprocess.Popen[str]) -> str:
    """SIGTERM (SIGKILL after 10 s); what it printed on stderr since."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return err
