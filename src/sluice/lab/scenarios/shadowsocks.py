"""shadowsocks-libev: plain AEAD, and with SIP003 plugins (simple-obfs http/tls, v2ray-plugin ws/wss)."""

from __future__ import annotations

__all__ = ["Shadowsocks", "ShadowsocksPlugin"]

import secrets
import time
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web

AEAD_CIPHERS = (
    "chacha20-ietf-poly1305",
    "aes-256-gcm",
    "aes-128-gcm",
    "aes-192-gcm",
    "xchacha20-ietf-poly1305",
)


def run_shadowsocks(s: Session, variant: str) -> Outcome:
    """ss-local (SOCKS5) in the client -> ss-server -> web server on the server's loopback."""
    a, topo = s.addr, s.topo
    port = s.port("port", 8388, 0.2)
    method = s.choose("method", AEAD_CIPHERS)
    password = secrets.token_urlsafe(s.rng.randrange(8, 24))
    lport = s.rng.randrange(1025, 60000)
    srv_plugin: list[str] = []
    cli_plugin: list[str] = []
    software = ["ss-server", "ss-local"]
    if variant in ("obfs-http", "obfs-tls"):
        mode = variant.split("-")[1]
        host = s.hostname("obfs_host")
        srv_plugin = ["--plugin", "obfs-server", "--plugin-opts", f"obfs={mode}"]
        cli_plugin = ["--plugin", "obfs-local", "--plugin-opts", f"obfs={mode};obfs-host={host}"]
        software += ["obfs-server", "obfs-local"]
    elif variant in ("v2ray-ws", "v2ray-wss"):
        host = s.hostname("ws_host")
        path = s.choose("ws_path", ("/", "/ws", "/ray", "/api/v1/stream", "/socket"))
        sopts = f"server;host={host};path={path}"
        copts = f"host={host};path={path}"
        if variant == "v2ray-wss":
            cert = s.ca.issue(host)
            sopts += f";tls;cert={cert.cert};key={cert.key}"
            copts += f";tls;cert={s.ca.cert}"
        srv_plugin = ["--plugin", "ss-v2ray-plugin", "--plugin-opts", sopts]
        cli_plugin = ["--plugin", "ss-v2ray-plugin", "--plugin-opts", copts]
        software += ["ss-v2ray-plugin"]
    web = s.inner_web("127.0.0.1")
    topo.spawn(
        "server",
        "ss-server",
        ["ss-server", "-s", a.server_ip, "-p", str(port), "-k", password, "-m", method, *srv_plugin, "-v"],
    )
    topo.wait_port("server", port)
    topo.spawn(
        "client",
        "ss-local",
        [
            "ss-local",
            "-s",
            a.server_ip,
            "-p",
            str(port),
            "-b",
            "127.0.0.1",
            "-l",
            str(lport),
            "-k",
            password,
            "-m",
            method,
            *cli_plugin,
            "-v",
        ],
    )
    topo.wait_port("client", lport)
    if cli_plugin:
        time.sleep(0.8)  # the SIP003 plugin starts after ss-local listens
    s.identify(stack="curl-openssl via ss-local", impl="shadowsocks-libev")
    rep = s.web_traffic(web.url, ["--socks5-hostname", f"127.0.0.1:{lport}", *web.curl])
    out = Outcome(
        rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "circumvention", "shadowsocks")],
        software=[*software, "curl", *web.software],
    )
    verify_web(rep, out, web.log, ["127.0.0.1"])
    return out


class Shadowsocks(Scenario):
    """Web traffic through shadowsocks-libev with a random AEAD cipher."""

    name = "shadowsocks"
    summary = "shadowsocks-libev AEAD (chacha20/aes-gcm), random port and password"
    traffic_class = "circumvention"
    family = "shadowsocks"
    programs: ClassVar[dict[str, str]] = {"ss-server": "shadowsocks-libev", "ss-local": "shadowsocks-libev"}
    variants = ("aead",)
    quick = True

    def run(self, s: Session, variant: str) -> Outcome:
        return run_shadowsocks(s, variant)


class ShadowsocksPlugin(Scenario):
    """Shadowsocks behind simple-obfs or v2ray-plugin."""

    name = "shadowsocks-plugin"
    summary = "shadowsocks-libev + simple-obfs (http/tls) or v2ray-plugin (ws/wss)"
    traffic_class = "circumvention"
    family = "shadowsocks"
    programs: ClassVar[dict[str, str]] = {
        "ss-server": "shadowsocks-libev",
        "ss-local": "shadowsocks-libev",
        "obfs-server": "simple-obfs",
        "obfs-local": "simple-obfs",
        "ss-v2ray-plugin": "shadowsocks-v2ray-plugin",
    }
    variants = ("obfs-http", "v2ray-ws", "obfs-tls", "v2ray-wss")

    def run(self, s: Session, variant: str) -> Outcome:
        return run_shadowsocks(s, variant)
