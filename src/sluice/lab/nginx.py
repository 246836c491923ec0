"""nginx in the lab's server namespace: one ``server`` block, a JSON request log.

Below :mod:`sluice.lab.scenario` (which starts it for carriers' inner web servers) and the
scenarios (which start it for their own pages): it only needs a running session.
"""

from __future__ import annotations

__all__ = ["run_nginx", "start_nginx"]

from pathlib import Path
from typing import Protocol

from sluice.lab.topology import Topology
from sluice.lab.traffic import Site


class Session(Protocol):
    """What nginx needs of a :class:`sluice.lab.scenario.Session`."""

    workdir: Path
    topo: Topology

    @property
    def site(self) -> Site: ...

    def file(self, name: str, text: str, mode: int = 0o644) -> Path: ...


def run_nginx(
    s: Session, port: int, listen: str, server: str, *, http: str = "keepalive_timeout 30;"
) -> Path:
    """Start nginx on the server with one ``server`` block; returns its JSON request log.

    ``listen`` is the ``listen`` directive's value (on ``port``), ``server`` the rest of the block, ``http``
    extra ``http``-level directives. The log has one JSON object per request (client address
    and port, method, path, status, bytes sent and received).
    """
    w = s.workdir
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (w / "nginx" / d).mkdir(parents=True, exist_ok=True)
    log = w / "nginx-requests.jsonl"
    conf = s.file(
        "nginx.conf",
        f"""
user root; worker_processes 1; pid {w}/nginx.pid; error_log {w}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
  log_format lab escape=json '{{"client":"$remote_addr","port":$remote_port,"method":"$request_method",'
    '"path":"$request_uri","status":$status,"bytes":$body_bytes_sent,"received":$request_length}}';
  access_log {log} lab;
  client_body_temp_path {w}/nginx/client_body; proxy_temp_path {w}/nginx/proxy;
  fastcgi_temp_path {w}/nginx/fastcgi; uwsgi_temp_path {w}/nginx/uwsgi;
  scgi_temp_path {w}/nginx/scgi;
  {http}
  server {{ listen {listen}; server_name _; root {s.site.root};
{server}
  }}
}}
""",
    )
    s.topo.spawn("server", "nginx", ["nginx", "-p", str(w), "-c", str(conf), "-g", "daemon off;"])
    s.topo.wait_port("server", port)
    return log


def start_nginx(
    s: Session,
    bind: str,
    port: int,
    *,
    tls: tuple[Path, Path] | None,
    http2: bool = False,
    protocols: str = "TLSv1.2 TLSv1.3",
    ciphers: str = "HIGH:!aNULL:!MD5",
) -> Path:
    """Start nginx serving the session's site; returns the JSON request log."""
    listen = f"{bind}:{port}" + (" ssl" if tls else "") + (" http2" if http2 else "")
    tls_conf = (
        ""
        if tls is None
        else (
            f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; "
            f"ssl_protocols {protocols}; ssl_ciphers {ciphers};"
        )
    )
    return run_nginx(s, port, listen, tls_conf)
