"""The lab's upload sink and paced stream server (HTTP/1.1, optionally TLS), one JSON line per request.

Run inside a lab namespace as ``python -m sluice.lab.bulkd --bind IP --port N --log F
[--cert C --key K]``.

* ``PUT`` or ``POST /up/<name>``: reads the body (``Content-Length`` or chunked), hashes it and
  logs ``{"client", "method", "path", "status", "bytes", "sha256"}``; the reply is that record.
* ``GET /live/<seed>/<total>/<chunk>/<interval_ms>``: a chunked response of ``total`` bytes from
  :func:`paced_bytes`, one ``chunk`` every ``interval_ms`` milliseconds (a live stream paced by
  the server); logs the same record with the bytes sent.
"""

from __future__ import annotations

__all__ = ["main", "paced_bytes", "paced_digest"]

import argparse
import hashlib
import json
import random
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def paced_bytes(seed: int, total: int, chunk: int) -> Iterator[bytes]:
    """The chunks of the live stream ``seed`` (the same on both ends)."""
    rng = random.Random(seed)  # noqa: S311 (content, not secrecy)
    left = total
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def paced_digest(seed: int, total: int, chunk: int) -> str:
    """SHA-256 of the whole live stream ``seed``."""
    h = hashlib.sha256()
    for c in paced_bytes(seed, total, chunk):
        h.update(c)
    return h.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_file: Any = None
    log_lock = threading.Lock()

    def _log(self, rec: dict[str, Any]) -> None:
        with self.log_lock:
            self.log_file.write(json.dumps(rec) + "\n")
            self.log_file.flush()

    def _body(self) -> tuple[int, str]:
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    part = self.rfile.read(min(left, 1 << 16))
                    if not part:
                        raise ConnectionError("body cut short")
                    h.update(part)
                    left -= len(part)
                    n += len(part)
                self.rfile.readline()
        else:
            if self.headers.get("Expect", "").lower() == "100-continue":
                self.send_response_only(100)
                self.end_headers()
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                part = self.rfile.read(min(left, 1 << 16))
                if not part:
                    raise ConnectionError("body cut short")
                h.update(part)
                left -= len(part)
                n += len(part)
        return n, h.hexdigest()

    def _upload(self) -> None:
        if not self.path.startswith("/up/"):
            self.send_error(404)
            return
        n, digest = self._body()
        rec = {
            "client": self.client_address[0],
            "method": self.command,
            "path": self.path,
            "status": 201,
            "bytes": n,
            "sha256": digest,
        }
        self._log(rec)
        body = json.dumps(rec).encode() + b"\n"
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = _upload
    do_POST = _upload

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) != 5 or parts[0] != "live" or not all(p.isdigit() for p in parts[1:]):
            self.send_error(404)
            return
        seed, total, chunk, interval_ms = (int(p) for p in parts[1:])
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        h = hashlib.sha256()
        n = 0
        nxt = time.monotonic()
        for c in paced_bytes(seed, total, chunk):
            self.wfile.write(f"{len(c):x}\r\n".encode() + c + b"\r\n")
            self.wfile.flush()
            h.update(c)
            n += len(c)
            nxt += interval_ms / 1000
            time.sleep(max(0.0, nxt - time.monotonic()))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self._log(
            {
                "client": self.client_address[0],
                "method": "GET",
                "path": self.path,
                "status": 200,
                "bytes": n,
                "sha256": h.hexdigest(),
            }
        )

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    ap = argparse.ArgumentParser(prog="sluice.lab.bulkd")
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args(argv)
    _Handler.log_file = open(a.log, "a", encoding="utf-8")  # noqa: SIM115 (lives until exit)
    srv = ThreadingHTTPServer((a.bind, a.port), _Handler)
    srv.daemon_threads = True
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["http/1.1"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"listening on {a.bind}:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
