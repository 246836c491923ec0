"""Ordinary web traffic: HTTPS page loads, bulk and small requests (nginx or Python TLS), plain HTTP."""

from __future__ import annotations

__all__ = ["Http", "Https", "run_nginx", "start_nginx"]

from typing import ClassVar

from sluice.lab.nginx import run_nginx, start_nginx
from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web

_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
    "HIGH:!aNULL:!MD5",
)


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
