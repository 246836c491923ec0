"""Proxies: SOCKS5 (dante, microsocks) and HTTP (squid forward and CONNECT, tinyproxy CONNECT)."""

from __future__ import annotations

__all__ = ["HttpProxy", "Socks"]

import os
import pwd
import secrets
from pathlib import Path
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web

SQUID_USERS = ("proxy", "nobody")
"""Accounts squid may drop to (the first that exists); it writes its logs as that user."""


def _squid_user() -> str:
    for name in SQUID_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError(f"none of the users {SQUID_USERS} exists for squid")


def squid_dir(workdir: Path) -> Path:
    """Squid's log and pid directory: ``0o700`` from creation, owned by the user squid runs as
    (it was ``0o777``: anyone on the host could plant files there)."""
    d = workdir / "squid"
    old = os.umask(0o077)
    try:
        d.mkdir(mode=0o700)
    finally:
        os.umask(old)
    if os.geteuid() == 0:
        user = pwd.getpwnam(_squid_user())
        os.chown(d, user.pw_uid, user.pw_gid)
    return d


class Socks(Scenario):
    """Web traffic through a SOCKS5 server (with or without user/password)."""

    name = "socks"
    summary = "SOCKS5: dante-server or microsocks, optional user/password"
    traffic_class = "proxy"
    family = "socks"
    programs: ClassVar[dict[str, str]] = {"danted": "dante-server", "microsocks": "microsocks"}
    variants = ("microsocks", "dante", "microsocks-auth")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 1080, 0.5)
        web = s.inner_web(a.server_ip, default_port=80, p_default=0.5)
        curl = [
            "--socks5" if s.choose("remote_dns", (False, True)) is False else "--socks5-hostname",
            f"{a.server_ip}:{port}",
        ]
        if variant == "dante":
            conf = s.file(
                "sockd.conf",
                f"""logoutput: stderr
internal: {a.server_ip} port = {port}
external: {a.server_ip}
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}
socks pass {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}
""",
            )
            s.topo.spawn("server", "danted", ["danted", "-f", str(conf), "-p", str(s.workdir / "sockd.pid")])
            software = ["danted"]
        else:
            auth: list[str] = []
            if variant.endswith("auth"):
                user, pw = f"u{secrets.token_hex(3)}", secrets.token_hex(6)
                auth = ["-u", user, "-P", pw]
                curl += ["--proxy-user", f"{user}:{pw}"]
            s.topo.spawn("server", "microsocks", ["microsocks", "-i", a.server_ip, "-p", str(port), *auth])
            software = ["microsocks"]
        s.topo.wait_port("server", port)
        s.identify(stack="curl-openssl", impl=software[0])
        rep = s.web_traffic(web.url, [*curl, *web.curl])
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "proxy", "socks")],
            [*software, "curl", *web.software],
        )
        verify_web(rep, out, web.log, [a.server_ip, "127.0.0.1"])
        return out


class HttpProxy(Scenario):
    """Web traffic through an HTTP proxy: plain forwarding or CONNECT to an HTTPS server."""

    name = "http-proxy"
    summary = "HTTP proxies: squid forward and CONNECT, tinyproxy CONNECT"
    traffic_class = "proxy"
    family = "http-proxy"
    programs: ClassVar[dict[str, str]] = {"squid": "squid", "tinyproxy": "tinyproxy"}
    variants = ("squid-forward", "squid-connect", "tinyproxy-connect", "tinyproxy-forward")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        prog, mode = variant.split("-")
        port = s.port("port", 3128 if prog == "squid" else 8888, 0.5)
        # forwarding is for plain HTTP (curl would CONNECT for https)
        inner = ("http", "https") if mode == "connect" else ("http",)
        web = s.inner_web(a.server_ip, default_port=80, p_default=0.5, inner=inner)
        hport = web.port
        curl = ["--proxytunnel"] if mode == "connect" else []
        curl += ["-x", f"http://{a.server_ip}:{port}", *web.curl]
        if prog == "squid":
            sq = squid_dir(s.workdir)
            conf = s.file(
                "squid.conf",
                f"""http_port {a.server_ip}:{port}
http_access allow all
cache deny all
cache_effective_user {_squid_user()}
access_log stdio:{sq}/access.log
cache_log {sq}/cache.log
pid_filename {sq}/squid.pid
coredump_dir {sq}
dns_nameservers 127.0.0.1
hosts_file none
shutdown_lifetime 0 seconds
""",
            )
            s.topo.spawn("server", "squid", ["squid", "-N", "-f", str(conf)])
        else:
            conf = s.file(
                "tinyproxy.conf",
                f"Port {port}\nListen {a.server_ip}\nAllow 0.0.0.0/0\n"
                f'ConnectPort {hport}\nLogLevel Info\nPidFile "{s.workdir}/tp.pid"\n'
                "MaxClients 50\n",
            )
            s.topo.spawn("server", "tinyproxy", ["tinyproxy", "-d", "-c", str(conf)])
        s.topo.wait_port("server", port, timeout=20)
        s.identify(stack="curl-openssl", impl=prog)
        rep = s.web_traffic(web.url, curl)
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "proxy", "http-proxy")],
            [prog, "curl", *web.software],
        )
        verify_web(rep, out, web.log, [a.server_ip, "127.0.0.1"])
        return out
