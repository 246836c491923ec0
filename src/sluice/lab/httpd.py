"""The lab's web server: static files over HTTP/1.1 (optionally TLS), one JSON line per request.

Run inside a lab namespace as ``python -m sluice.lab.httpd --bind IP --port N --root DIR --log F``.
The log (``{"client": ip, "port": n, "path": p, "status": s, "bytes": b}``) is what proves that a
request reached the server, and from which address (the tunnel's inner address, a proxy's, ...).
"""

from __future__ import annotations

__all__ = ["main", "read_server_log"]

import argparse
import functools
import json
import os
import ssl
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_file: Any = None
    log_lock = threading.Lock()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.translate_path(self.path)
        status = int(code) if str(code).isdigit() else 0
        nbytes = os.path.getsize(path) if status == 200 and os.path.isfile(path) else 0
        rec = {
            "client": self.client_address[0],
            "port": self.client_address[1],
            "path": self.path,
            "status": status,
            "bytes": nbytes,
        }
        with self.log_lock:
            self.log_file.write(json.dumps(rec) + "\n")
            self.log_file.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""


def read_server_log(path: Path) -> list[dict[str, Any]]:
    """Requests logged by this server (or by nginx with the same JSON format)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    ap = argparse.ArgumentParser(prog="sluice.lab.httpd")
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--tls-min", choices=sorted(_TLS_VERSIONS), default="1.2")
    ap.add_argument("--tls-max", choices=sorted(_TLS_VERSIONS), default="1.3")
    ap.add_argument("--ciphers", help="OpenSSL cipher list for TLS 1.2")
    a = ap.parse_args(argv)
    _Handler.log_file = open(a.log, "a", encoding="utf-8")  # noqa: SIM115 (lives until exit)
    handler = functools.partial(_Handler, directory=a.root)
    srv = ThreadingHTTPServer((a.bind, a.port), handler)
    srv.daemon_threads = True
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.minimum_version = _TLS_VERSIONS[a.tls_min]
        ctx.maximum_version = _TLS_VERSIONS[a.tls_max]
        if a.ciphers:
            ctx.set_ciphers(a.ciphers)
        ctx.set_alpn_protocols(["http/1.1"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"listening on {a.bind}:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
