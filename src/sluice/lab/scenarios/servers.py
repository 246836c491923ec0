"""HTTPS servers for benign client sessions (nginx, caddy, apache2, the lab's Python server).

:func:`start_web_server` starts one of them on the server address with the session's site and
certificate; :meth:`WebServer.request_log` gives its requests in the lab server's JSON log format,
so :func:`sluice.lab.scenario.verify_web` can check them.  :func:`resolve_in_client` gives the
client namespace an ``/etc/hosts`` of its own (``ip netns exec`` bind-mounts
``/etc/netns/<ns>/hosts``), so every client resolves the session's server name as a browser would.
"""

from __future__ import annotations

__all__ = ["SERVER_IMPLS", "WebServer", "resolve_in_client", "start_web_server"]

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sluice.lab.nginx import start_nginx
from sluice.lab.pki import Issued
from sluice.lab.scenario import Session
from sluice.lab.scenarios.quic import _caddy_log_to_lab

SERVER_IMPLS = ("nginx", "caddy", "apache2", "python")
"""Server implementations (``impl`` of :meth:`Session.identify`)."""
_APACHE_MODULES = ("mpm_event", "authz_core", "mime", "socache_shmcb", "ssl", "http2")


@dataclass(frozen=True, slots=True)
class WebServer:
    """A started HTTPS server."""

    impl: str
    """``nginx``, ``caddy``, ``apache2`` or ``python``."""
    port: int
    """TCP (and for caddy with HTTP/3, UDP) port."""
    protocols: tuple[str, ...]
    """ALPN protocols it offers: ``h1``, ``h2``, ``h3``."""
    software: tuple[str, ...]
    """Program names for the label's software list."""
    log: Path
    """Request log in the lab format (for caddy: written by :meth:`request_log`)."""
    native_log: Path | None = None
    """caddy's own JSON access log."""

    def request_log(self) -> Path:
        """The request log in the lab format (converts caddy's log first)."""
        if self.native_log is not None:
            time.sleep(0.3)  # caddy writes its access log after the response
            _caddy_log_to_lab(self.native_log, self.log)
        return self.log


def resolve_in_client(s: Session, names: dict[str, str]) -> None:
    """Make ``names`` (name -> address) resolve in the client namespace, for this session only.

    Other names do not resolve (the namespace's resolver is 127.0.0.1, where nothing listens).
    """
    d = Path("/etc/netns") / s.topo.ns["client"]
    d.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", *(f"{ip} {name}" for name, ip in names.items())]
    (d / "hosts").write_text("\n".join(lines) + "\n")
    # other names fail at once instead of leaving DNS queries to a server that is not there
    (d / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    s.topo.on_down(lambda: shutil.rmtree(d, ignore_errors=True))


def _caddy(s: Session, name: str, cert: Issued, port: int, protos: tuple[str, ...], tls12: bool) -> WebServer:
    w = s.workdir
    home = w / "caddy-home"
    home.mkdir(exist_ok=True)
    native = w / "caddy-access.log"
    tls_max = "tls1.2" if tls12 else "tls1.3"
    conf = s.file(
        "Caddyfile",
        f"""{{
  admin off
  auto_https off
  storage file_system {home}
  servers {{
    protocols {" ".join(protos)}
  }}
}}
https://{name}:{port} {{
  bind {s.addr.server_ip}
  tls {cert.cert} {cert.key} {{
    protocols tls1.2 {tls_max}
  }}
  root * {s.site.root}
  file_server
  log {{
    output file {native}
    format json
  }}
}}
""",
    )
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    s.topo.spawn(
        "server", "caddy", ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"], env=env
    )
    if "h3" in protos:
        s.topo.wait_port("server", port, "udp")
    s.topo.wait_port("server", port)
    return WebServer("caddy", port, protos, ("caddy",), w / "caddy-requests.jsonl", native)


def _apache(s: Session, name: str, cert: Issued, port: int, h2: bool, tls12: bool) -> WebServer:
    w = s.workdir
    run = w / "apache"
    run.mkdir(exist_ok=True)
    log = w / "apache-requests.jsonl"
    mods = "\n".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in _APACHE_MODULES)
    fmt = r'"{\"client\":\"%a\",\"port\":%{remote}p,\"path\":\"%U%q\",\"status\":%>s,\"bytes\":%B}"'
    conf = s.file(
        "apache2.conf",
        f"""ServerRoot {run}
ServerName {name}
DefaultRuntimeDir {run}
PidFile {run}/apache2.pid
Mutex file:{run} default
{mods}
User www-data
Group www-data
Listen {s.addr.server_ip}:{port}
ErrorLog {w}/apache-error.log
LogLevel warn
TypesConfig /etc/mime.types
LogFormat {fmt} lab
CustomLog {log} lab
KeepAliveTimeout 30
SSLSessionCache shmcb:{run}/ssl_scache(512000)
Protocols {"h2 " if h2 else ""}http/1.1
SSLProtocol -all +TLSv1.2{"" if tls12 else " +TLSv1.3"}
<VirtualHost {s.addr.server_ip}:{port}>
  ServerName {name}
  DocumentRoot {s.site.root}
  SSLEngine on
  SSLCertificateFile {cert.cert}
  SSLCertificateKeyFile {cert.key}
  <Directory {s.site.root}>
    Require all granted
  </Directory>
</VirtualHost>
""",
    )
    s.topo.spawn("server", "apache2", ["apache2", "-f", str(conf), "-DFOREGROUND"])
    s.topo.wait_port("server", port)
    protos = ("h2", "h1") if h2 else ("h1",)
    return WebServer("apache2", port, protos, ("apache2",), log)


def start_web_server(
    s: Session,
    impl: str,
    name: str,
    port: int,
    *,
    h2: bool = True,
    h3: bool = False,
    tls12: bool = False,
) -> WebServer:
    """Start ``impl`` serving the session's site over HTTPS as ``name`` on ``port``.

    Args:
        s: the session (its site, CA and server address).
        impl: one of :data:`SERVER_IMPLS`.
        name: server name of the certificate.
        port: TCP port (and UDP for HTTP/3).
        h2: offer HTTP/2 (the Python server never does).
        h3: offer HTTP/3 as well (caddy only).
        tls12: TLS 1.2 only (else TLS 1.2 and 1.3).
    """
    cert = s.ca.issue(name)
    ip = s.addr.server_ip
    if impl == "nginx":
        log = start_nginx(
            s,
            ip,
            port,
            tls=(cert.cert, cert.key),
            http2=h2,
            protocols="TLSv1.2" if tls12 else "TLSv1.2 TLSv1.3",
        )
        return WebServer("nginx", port, ("h2", "h1") if h2 else ("h1",), ("nginx",), log)
    if impl == "caddy":
        protos = ("h1",) + (("h2",) if h2 else ()) + (("h3",) if h3 else ())
        return _caddy(s, name, cert, port, protos, tls12)
    if impl == "apache2":
        return _apache(s, name, cert, port, h2, tls12)
    ver = "1.2" if tls12 else "1.3"
    log = s.start_httpd(ip, port, tls=(cert.cert, cert.key), tls_args=["--tls-max", ver])
    return WebServer("python", port, ("h1",), ("python3",), log)
