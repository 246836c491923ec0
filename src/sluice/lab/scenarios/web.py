"""Ordinary web traffic: HTTPS page loads, bulk and small requests (nginx or Python TLS), plain HTTP."""

from __future__ import annotations

__all__ = ["Http", "Https", "run_nginx", "start_nginx"]

from pathlib import Path
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web

_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
    "HIGH:!aNULL:!MD5",
)


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


class Https(Scenario):
    """HTTPS page loads, bulk downloads and small requests, direct to the server."""

    name = "https"
    summary = "HTTPS TLS 1.2/1.3, HTTP/2 or 1.1, nginx or Python ssl server"
    traffic_class = "benign"
    family = "tls"
    programs: ClassVar[dict[str, str]] = {"nginx": "nginx-light"}
    variants = ("nginx-h2-tls13", "python-tls12", "nginx-h1-tls12", "python-tls13", "nginx-h2-tls12")
    quick = True

    def run(self, s: Session, variant: str) -> Outcome:
        server, *rest = variant.split("-")
        tls_v = rest[-1]
        a = s.addr
        name = s.hostname()
        cert = s.ca.issue(name)
        port = s.port("port", 443, 0.7)
        curl = ["--cacert", str(s.ca.cert), "--resolve", f"{name}:{port}:{a.server_ip}"]
        ciphers = s.choose("tls12_ciphers", _TLS12_CIPHERS)
        if tls_v == "tls12":
            curl += ["--tlsv1.2", "--tls-max", "1.2"]
        else:
            curl += ["--tlsv1.3"]
        if server == "nginx":
            h2 = rest[0] == "h2"
            curl += ["--http2"] if h2 else ["--http1.1"]
            log = start_nginx(
                s,
                a.server_ip,
                port,
                tls=(cert.cert, cert.key),
                http2=h2,
                protocols="TLSv1.2" if tls_v == "tls12" else "TLSv1.2 TLSv1.3",
                ciphers=ciphers,
            )
            software = ["nginx"]
        else:
            ver = "1.2" if tls_v == "tls12" else "1.3"
            log = s.start_httpd(
                a.server_ip,
                port,
                tls=(cert.cert, cert.key),
                tls_args=["--tls-max", ver, "--tls-min", ver, "--ciphers", ciphers],
            )
            software = ["python3"]
        rep = s.web_traffic(f"https://{name}:{port}", curl)
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "tls")],
            software=[*software, "curl"],
        )
        verify_web(rep, out, log, [a.client_ip])
        return out


class Http(Scenario):
    """Plain HTTP/1.1 page loads and downloads, direct to the server."""

    name = "http"
    summary = "plain HTTP/1.1 (nginx or Python), random port"
    traffic_class = "benign"
    family = "http"
    programs: ClassVar[dict[str, str]] = {"nginx": "nginx-light"}
    variants = ("nginx", "python")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 80, 0.6)
        if variant == "nginx":
            log = start_nginx(s, a.server_ip, port, tls=None)
        else:
            log = s.start_httpd(a.server_ip, port)
        rep = s.web_traffic(f"http://{a.server_ip}:{port}")
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "http")],
            software=[variant if variant == "nginx" else "python3", "curl"],
        )
        verify_web(rep, out, log, [a.client_ip])
        return out
