"""Second and third implementations of the circumvention protocols, alone and mixed.

The detector learns a protocol from one implementation and misses others, so these scenarios
run the same protocol with other programs, and with a client of one implementation talking to
a server of another (variant ``<client>-<server>``; one name when both ends are the same):

* Shadowsocks AEAD: shadowsocks-libev (``libev``), v2ray's shadowsocks inbound/outbound, pproxy.
* Trojan: trojan-gfw (``gfw``), v2ray's trojan inbound/outbound, pproxy (``trojan+ssl``).
* TLS relays (the ``stunnel`` family): stunnel4, socat (``OPENSSL-LISTEN``/``OPENSSL``),
  haproxy (TLS termination in ``mode tcp``, and a TLS ``server`` line on the client side).
* SOCKS5 and HTTP proxies: pproxy.

VMess/VLESS have only v2ray here (pproxy has no vmess; xray and sing-box are not packaged),
and kcptun has only kcptun.  pproxy runs from the sluice virtualenv (``python -m pproxy``,
extra ``lab``); its version goes into the parameter ``pproxy_version``.
"""

from __future__ import annotations

__all__ = ["HttpProxyPproxy", "ShadowsocksAlt", "SocksPproxy", "TlsRelay", "TrojanAlt"]

import importlib.metadata
import importlib.util
import json
import secrets
from typing import Any, ClassVar

from sluice.lab.pki import Issued
from sluice.lab.scenario import PROTO, FlowRule, InnerWeb, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import Role

_SS_CIPHERS = ("chacha20-ietf-poly1305", "aes-256-gcm", "aes-128-gcm")
_V2RAY_SS_NAME = {"chacha20-ietf-poly1305": "chacha20-poly1305"}
_IMPL = {"libev": "shadowsocks-libev", "gfw": "trojan-gfw", "v2ray": "v2ray", "pproxy": "pproxy"}


def _ends(variant: str) -> tuple[str, str]:
    """(client, server) implementation of a variant ``a-b`` or ``a``."""
    c, _, srv = variant.partition("-")
    return c, srv or c


def _impl(client: str, server: str) -> str:
    ci, si = _IMPL.get(client, client), _IMPL.get(server, server)
    return ci if ci == si else f"{ci}+{si}"


class _PproxyScenario(Scenario):
    """A scenario some of whose variants run pproxy from the virtualenv."""

    def missing(self) -> list[str]:
        out = super().missing()
        if importlib.util.find_spec("pproxy") is None:
            out.append("pproxy (pip install -e '.[lab]')")
        return out


def _pproxy(s: Session, role: Role, name: str, args: list[str]) -> None:
    s.params["pproxy_version"] = importlib.metadata.version("pproxy")
    s.topo.spawn(role, name, [s.python, "-u", "-m", "pproxy", *args])


def _v2ray(s: Session, role: Role, name: str, conf: dict[str, Any]) -> None:
    path = s.file(f"{name}.json", json.dumps({"log": {"loglevel": "warning"}, **conf}))
    s.topo.spawn(role, name, ["v2ray", "-config", str(path)])


def _v2ray_client(s: Session, lport: int, outbound: dict[str, Any]) -> None:
    socks = {"listen": "127.0.0.1", "port": lport, "protocol": "socks", "settings": {"udp": False}}
    _v2ray(s, "client", "v2ray-client", {"inbounds": [socks], "outbounds": [outbound]})


def _v2ray_server(s: Session, inbound: dict[str, Any]) -> None:
    _v2ray(s, "server", "v2ray-server", {"inbounds": [inbound], "outbounds": [{"protocol": "freedom"}]})


def _finish(
    s: Session,
    web: InnerWeb,
    socks_port: int,
    rule: FlowRule,
    software: list[str],
    *,
    stack: str,
    impl: str,
) -> Outcome:
    """Run the mix through a SOCKS5 port in the client and check it."""
    s.identify(stack=stack, impl=impl)
    rep = s.web_traffic(web.url, ["--socks5-hostname", f"127.0.0.1:{socks_port}", *web.curl])
    out = Outcome([rule], [*software, "curl", *web.software])
    verify_web(rep, out, web.log, ["127.0.0.1"])
    return out


class ShadowsocksAlt(_PproxyScenario):
    """Shadowsocks AEAD with v2ray and pproxy, and mixed with shadowsocks-libev."""

    name = "shadowsocks-alt"
    summary = "Shadowsocks AEAD by v2ray 4.34 and pproxy, alone and mixed with shadowsocks-libev"
    traffic_class = "circumvention"
    family = "shadowsocks"
    programs: ClassVar[dict[str, str]] = {
        "v2ray": "v2ray",
        "ss-server": "shadowsocks-libev",
        "ss-local": "shadowsocks-libev",
    }
    variants = (
        "v2ray",
        "pproxy",
        "v2ray-libev",
        "libev-pproxy",
        "pproxy-v2ray",
        "libev-v2ray",
        "pproxy-libev",
    )

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        client, server = _ends(variant)
        port = s.port("port", 8388, 0.2)
        method = s.choose("method", _SS_CIPHERS)
        # a letter first: a token starting with "-" would be an option to ss-server -k
        pw = "k" + secrets.token_urlsafe(s.rng.randrange(8, 24))
        lport = s.rng.randrange(1025, 60000)
        web = s.inner_web("127.0.0.1")
        if server == "libev":
            argv = ["ss-server", "-s", a.server_ip, "-p", str(port), "-k", pw, "-m", method, "-v"]
            s.topo.spawn("server", "ss-server", argv)
        elif server == "v2ray":
            settings = {"method": _V2RAY_SS_NAME.get(method, method), "password": pw, "network": "tcp"}
            _v2ray_server(
                s, {"listen": a.server_ip, "port": port, "protocol": "shadowsocks", "settings": settings}
            )
        else:
            _pproxy(s, "server", "pproxy-server", ["-l", f"ss://{method}:{pw}@{a.server_ip}:{port}"])
        s.topo.wait_port("server", port)
        if client == "libev":
            argv = ["ss-local", "-s", a.server_ip, "-p", str(port), "-b", "127.0.0.1", "-l", str(lport)]
            s.topo.spawn("client", "ss-local", [*argv, "-k", pw, "-m", method, "-v"])
        elif client == "v2ray":
            srv = {"address": a.server_ip, "port": port, "method": _V2RAY_SS_NAME.get(method, method)}
            _v2ray_client(
                s, lport, {"protocol": "shadowsocks", "settings": {"servers": [srv | {"password": pw}]}}
            )
        else:
            remote = f"ss://{method}:{pw}@{a.server_ip}:{port}"
            _pproxy(s, "client", "pproxy-client", ["-l", f"socks5://127.0.0.1:{lport}", "-r", remote])
        s.topo.wait_port("client", lport)
        progs = {"libev": ["ss-server", "ss-local"], "v2ray": ["v2ray"], "pproxy": ["python3"]}
        software = sorted({*progs[client], *progs[server]})
        rule = FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "circumvention", "shadowsocks")
        stack = {"libev": "ss-local", "v2ray": "v2ray socks inbound", "pproxy": "pproxy socks5"}[client]
        return _finish(
            s, web, lport, rule, software, stack=f"curl-openssl via {stack}", impl=_impl(client, server)
        )


class TrojanAlt(_PproxyScenario):
    """Trojan with v2ray and pproxy, and mixed with trojan-gfw."""

    name = "trojan-alt"
    summary = "Trojan by v2ray 4.34 and pproxy, alone and mixed with trojan-gfw 1.16"
    traffic_class = "circumvention"
    family = "trojan"
    programs: ClassVar[dict[str, str]] = {"v2ray": "v2ray", "trojan": "trojan"}
    variants = ("v2ray", "pproxy", "v2ray-gfw", "gfw-v2ray", "pproxy-gfw", "gfw-pproxy", "pproxy-v2ray")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        client, server = _ends(variant)
        port = s.port("port", 443, 0.6)
        lport = s.rng.randrange(1025, 60000)
        pw = secrets.token_urlsafe(12)
        cert = s.ca.issue(s.hostname())
        web = s.inner_web("127.0.0.1")
        self._server(s, server, port, pw, cert, web)
        s.topo.wait_port("server", port)
        if client == "gfw":
            conf = {
                "run_type": "client",
                "local_addr": "127.0.0.1",
                "local_port": lport,
                "remote_addr": a.server_ip,
                "remote_port": port,
                "password": [pw],
                "log_level": 1,
                "ssl": {"verify": True, "cert": str(s.ca.cert), "sni": cert.name, "alpn": ["http/1.1"]},
            }
            s.topo.spawn(
                "client", "trojan-client", ["trojan", "-c", str(s.file("trojan-cli.json", json.dumps(conf)))]
            )
        elif client == "v2ray":
            server_ = {"address": a.server_ip, "port": port, "password": pw}
            tls = {"serverName": cert.name, "allowInsecure": True}
            _v2ray_client(
                s,
                lport,
                {
                    "protocol": "trojan",
                    "settings": {"servers": [server_]},
                    "streamSettings": {"network": "tcp", "security": "tls", "tlsSettings": tls},
                },
            )
        else:
            # pproxy's "ssl" client does not check the certificate and sends no SNI for an address
            remote = f"trojan+ssl://{a.server_ip}:{port}#{pw}"
            _pproxy(s, "client", "pproxy-client", ["-l", f"socks5://127.0.0.1:{lport}", "-r", remote])
        s.topo.wait_port("client", lport)
        progs = {"gfw": ["trojan"], "v2ray": ["v2ray"], "pproxy": ["python3"]}
        software = sorted({*progs[client], *progs[server]})
        rule = FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "circumvention", "trojan")
        stack = {"gfw": "trojan-gfw client", "v2ray": "v2ray socks inbound", "pproxy": "pproxy socks5"}[
            client
        ]
        return _finish(
            s, web, lport, rule, software, stack=f"curl-openssl via {stack}", impl=_impl(client, server)
        )

    @staticmethod
    def _server(s: Session, server: str, port: int, pw: str, cert: Issued, web: InnerWeb) -> None:
        a = s.addr
        if server == "gfw":
            conf = {
                "run_type": "server",
                "local_addr": a.server_ip,
                "local_port": port,
                "remote_addr": "127.0.0.1",
                "remote_port": web.port,
                "password": [pw],
                "log_level": 1,
                "ssl": {"cert": str(cert.cert), "key": str(cert.key), "alpn": ["http/1.1"]},
            }
            s.topo.spawn(
                "server", "trojan-server", ["trojan", "-c", str(s.file("trojan-srv.json", json.dumps(conf)))]
            )
        elif server == "v2ray":
            tls = {"certificates": [{"certificateFile": str(cert.cert), "keyFile": str(cert.key)}]}
            _v2ray_server(
                s,
                {
                    "listen": a.server_ip,
                    "port": port,
                    "protocol": "trojan",
                    "settings": {"clients": [{"password": pw}], "fallbacks": [{"dest": web.port}]},
                    "streamSettings": {"network": "tcp", "security": "tls", "tlsSettings": tls},
                },
            )
        else:
            args = ["-l", f"trojan+ssl://{a.server_ip}:{port}#{pw}", "--ssl", f"{cert.cert},{cert.key}"]
            _pproxy(s, "server", "pproxy-server", args)


class TlsRelay(Scenario):
    """TCP wrapped in TLS by socat or haproxy, alone and mixed with stunnel."""

    name = "tls-relay"
    summary = "TLS port forwarding by socat 1.7 and haproxy 2.6, alone and mixed with stunnel4"
    traffic_class = "tunnel"
    family = "stunnel"
    programs: ClassVar[dict[str, str]] = {"socat": "socat", "haproxy": "haproxy", "stunnel4": "stunnel4"}
    variants = ("socat", "haproxy", "stunnel-socat", "socat-haproxy", "haproxy-stunnel", "socat-stunnel")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        client, server = _ends(variant)
        port = s.port("port", 443, 0.4)
        lport = s.rng.randrange(1025, 60000)
        tls_max = s.choose("tls_max", ("1.2", "1.3"))
        # socat 1.7.4 pins ECDHE to P-256: as a TLS 1.2 server it then refuses a P-384
        # certificate, and as a TLS 1.2 client it offers no curve a P-384 certificate can use
        # ("no shared cipher" at the server)
        p384_fix = "socat" in (client, server) and tls_max == "1.2" and s.ca.key_type == "ec-p384"
        cert = s.ca.issue(s.hostname(), key_type="ec-p256" if p384_fix else None)
        web = s.inner_web("127.0.0.1", reach=("127.0.0.1", lport))
        target = f"127.0.0.1:{web.port}"
        if server == "stunnel":
            conf = (
                f"foreground = yes\npid =\n[web]\naccept = {a.server_ip}:{port}\nconnect = {target}\n"
                f"cert = {cert.cert}\nkey = {cert.key}\nsslVersionMax = TLSv{tls_max}\n"
            )
            s.topo.spawn("server", "stunnel-server", ["stunnel4", str(s.file("stunnel-srv.conf", conf))])
        elif server == "socat":
            listen = (
                f"OPENSSL-LISTEN:{port},bind={a.server_ip},reuseaddr,fork,cert={cert.cert},"
                f"key={cert.key},verify=0,max-version=TLS{tls_max}"
            )
            s.topo.spawn("server", "socat-server", ["socat", listen, f"TCP:{target}"])
        else:
            pem = s.file("haproxy-srv.pem", cert.cert.read_text() + cert.key.read_text(), 0o600)
            self._haproxy(
                s,
                "server",
                f"bind {a.server_ip}:{port} ssl crt {pem} ssl-max-ver TLSv{tls_max}",
                f"server web {target}",
            )
        s.topo.wait_port("server", port)
        if client == "stunnel":
            conf = (
                f"foreground = yes\npid =\n[web]\nclient = yes\naccept = 127.0.0.1:{lport}\n"
                f"connect = {a.server_ip}:{port}\nCAfile = {s.ca.cert}\nverifyChain = yes\n"
                f"checkHost = {cert.name}\nsni = {cert.name}\n"
            )
            s.topo.spawn("client", "stunnel-client", ["stunnel4", str(s.file("stunnel-cli.conf", conf))])
        elif client == "socat":
            remote = (
                f"OPENSSL:{a.server_ip}:{port},cafile={s.ca.cert},commonname={cert.name},snihost={cert.name}"
            )
            s.topo.spawn(
                "client",
                "socat-client",
                ["socat", f"TCP-LISTEN:{lport},bind=127.0.0.1,reuseaddr,fork", remote],
            )
        else:
            self._haproxy(
                s,
                "client",
                f"bind 127.0.0.1:{lport}",
                f"server relay {a.server_ip}:{port} ssl verify required ca-file {s.ca.cert} "
                f"sni str({cert.name}) verifyhost {cert.name}",
            )
        s.topo.wait_port("client", lport)
        s.identify(stack=f"curl-openssl via {client} client", impl=_impl(client, server))
        rep = s.web_traffic(web.url, web.curl)
        progs = {"stunnel": "stunnel4", "socat": "socat", "haproxy": "haproxy"}
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "tunnel", "stunnel")],
            [*sorted({progs[client], progs[server]}), "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out

    @staticmethod
    def _haproxy(s: Session, role: Role, bind: str, server: str) -> None:
        conf = (
            "global\n  maxconn 256\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
            f"frontend relay\n  {bind}\n  default_backend out\n"
            f"backend out\n  {server}\n"
        )
        path = s.file(f"haproxy-{role}.cfg", conf)
        s.topo.spawn(role, f"haproxy-{role}", ["haproxy", "-db", "-f", str(path)])


class SocksPproxy(_PproxyScenario):
    """Web traffic through pproxy's SOCKS5 server."""

    name = "socks-pproxy"
    summary = "SOCKS5 by pproxy (asyncio Python), optional user/password"
    traffic_class = "proxy"
    family = "socks"
    programs: ClassVar[dict[str, str]] = {"curl": "curl"}  # and pproxy from PyPI (missing())
    variants = ("noauth", "auth")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 1080, 0.5)
        web = s.inner_web(a.server_ip, default_port=80, p_default=0.5)
        remote_dns = s.choose("remote_dns", (False, True))
        curl = ["--socks5-hostname" if remote_dns else "--socks5", f"{a.server_ip}:{port}"]
        auth = ""
        if variant == "auth":
            user, pw = f"u{secrets.token_hex(3)}", secrets.token_hex(6)
            auth = f"#{user}:{pw}"
            curl += ["--proxy-user", f"{user}:{pw}"]
        _pproxy(s, "server", "pproxy", ["-l", f"socks5://{a.server_ip}:{port}{auth}"])
        s.topo.wait_port("server", port)
        s.identify(stack="curl-openssl", impl="pproxy")
        rep = s.web_traffic(web.url, [*curl, *web.curl])
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "proxy", "socks")],
            ["python3", "curl", *web.software],
        )
        verify_web(rep, out, web.log, [a.server_ip, "127.0.0.1"])
        return out


class HttpProxyPproxy(_PproxyScenario):
    """Web traffic through pproxy's HTTP proxy: CONNECT (HTTP or HTTPS inside) or forwarding."""

    name = "http-proxy-pproxy"
    summary = "HTTP proxy by pproxy: CONNECT and plain forwarding, optional Basic auth"
    traffic_class = "proxy"
    family = "http-proxy"
    programs: ClassVar[dict[str, str]] = {"curl": "curl"}  # and pproxy from PyPI (missing())
    variants = ("connect", "forward", "connect-auth")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 8080, 0.5)
        connect = variant.startswith("connect")
        inner = ("http", "https") if connect else ("http",)
        web = s.inner_web(a.server_ip, default_port=80, p_default=0.5, inner=inner)
        curl = ["--proxytunnel"] if connect else []
        curl += ["-x", f"http://{a.server_ip}:{port}"]
        auth = ""
        if variant.endswith("auth"):
            user, pw = f"u{secrets.token_hex(3)}", secrets.token_hex(6)
            auth = f"#{user}:{pw}"
            curl += ["--proxy-user", f"{user}:{pw}"]
        # "http" alone is CONNECT plus forwarding of absolute-URI requests
        _pproxy(s, "server", "pproxy", ["-l", f"http://{a.server_ip}:{port}{auth}"])
        s.topo.wait_port("server", port)
        s.identify(stack="curl-openssl", impl="pproxy")
        rep = s.web_traffic(web.url, [*curl, *web.curl])
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "proxy", "http-proxy")],
            ["python3", "curl", *web.software],
        )
        verify_web(rep, out, web.log, [a.server_ip, "127.0.0.1"])
        return out
