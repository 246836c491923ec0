"""v2ray 4.34 (VMess over TCP or WebSocket+TLS, VLESS over TLS) and trojan 1.16."""

from __future__ import annotations

__all__ = ["Trojan", "V2ray"]

import json
import secrets
import uuid
from typing import Any, ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web


class V2ray(Scenario):
    """Web traffic through v2ray (SOCKS inbound on the client, freedom outbound on the server)."""

    name = "v2ray"
    summary = "v2ray 4.34: VMess TCP, VMess WS+TLS, VLESS TLS"
    traffic_class = "circumvention"
    family = "vmess"
    programs: ClassVar[dict[str, str]] = {"v2ray": "v2ray"}
    variants = ("vmess-tcp", "vless-tls", "vmess-ws-tls")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        proto = variant.split("-")[0]
        port = s.port("port", 443 if "tls" in variant else 10086, 0.4)
        lport = s.rng.randrange(1025, 60000)
        uid = str(uuid.UUID(int=s.rng.getrandbits(128), version=4))
        stream_s: dict[str, Any] = {"network": "tcp"}
        stream_c: dict[str, Any] = {"network": "tcp"}
        if "ws" in variant:
            path = s.choose("ws_path", ("/", "/ws", "/ray", "/v2", "/api/stream"))
            stream_s = {"network": "ws", "wsSettings": {"path": path}}
            stream_c = {"network": "ws", "wsSettings": {"path": path}}
        if "tls" in variant:
            cert = s.ca.issue(s.hostname())
            stream_s |= {
                "security": "tls",
                "tlsSettings": {
                    "certificates": [{"certificateFile": str(cert.cert), "keyFile": str(cert.key)}]
                },
            }
            stream_c |= {"security": "tls", "tlsSettings": {"serverName": cert.name, "allowInsecure": True}}
        if proto == "vmess":
            security = s.choose("vmess_security", ("aes-128-gcm", "chacha20-poly1305", "auto"))
            in_settings: dict[str, Any] = {"clients": [{"id": uid, "alterId": 0}]}
            user: dict[str, Any] = {"id": uid, "alterId": 0, "security": security}
        else:
            in_settings = {"clients": [{"id": uid}], "decryption": "none"}
            user = {"id": uid, "encryption": "none"}
        srv = {
            "log": {"loglevel": "warning"},
            "inbounds": [
                {
                    "listen": a.server_ip,
                    "port": port,
                    "protocol": proto,
                    "settings": in_settings,
                    "streamSettings": stream_s,
                }
            ],
            "outbounds": [{"protocol": "freedom"}],
        }
        cli = {
            "log": {"loglevel": "warning"},
            "inbounds": [
                {"listen": "127.0.0.1", "port": lport, "protocol": "socks", "settings": {"udp": False}}
            ],
            "outbounds": [
                {
                    "protocol": proto,
                    "settings": {"vnext": [{"address": a.server_ip, "port": port, "users": [user]}]},
                    "streamSettings": stream_c,
                }
            ],
        }
        sc = s.file("v2ray-srv.json", json.dumps(srv))
        cc = s.file("v2ray-cli.json", json.dumps(cli))
        web = s.inner_web("127.0.0.1")
        s.topo.spawn("server", "v2ray-server", ["v2ray", "-config", str(sc)])
        s.topo.wait_port("server", port)
        s.topo.spawn("client", "v2ray-client", ["v2ray", "-config", str(cc)])
        s.topo.wait_port("client", lport)
        s.identify(stack="curl-openssl via v2ray socks inbound", impl="v2ray")
        rep = s.web_traffic(web.url, ["--socks5-hostname", f"127.0.0.1:{lport}", *web.curl])
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "circumvention", proto)],
            ["v2ray", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out


class Trojan(Scenario):
    """Web traffic through trojan (TLS with a password; other clients get a fallback site)."""

    name = "trojan"
    summary = "trojan 1.16 over TLS with HTTP fallback"
    traffic_class = "circumvention"
    family = "trojan"
    programs: ClassVar[dict[str, str]] = {"trojan": "trojan"}

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 443, 0.6)
        lport = s.rng.randrange(1025, 60000)
        pw = secrets.token_urlsafe(12)
        cert = s.ca.issue(s.hostname())
        web = s.inner_web("127.0.0.1")
        srv = {
            "run_type": "server",
            "local_addr": a.server_ip,
            "local_port": port,
            "remote_addr": "127.0.0.1",
            "remote_port": web.port,
            "password": [pw],
            "log_level": 1,
            "ssl": {"cert": str(cert.cert), "key": str(cert.key), "alpn": ["http/1.1"]},
        }
        cli = {
            "run_type": "client",
            "local_addr": "127.0.0.1",
            "local_port": lport,
            "remote_addr": a.server_ip,
            "remote_port": port,
            "password": [pw],
            "log_level": 1,
            "ssl": {"verify": True, "cert": str(s.ca.cert), "sni": cert.name, "alpn": ["http/1.1"]},
        }
        sc = s.file("trojan-srv.json", json.dumps(srv))
        cc = s.file("trojan-cli.json", json.dumps(cli))
        s.topo.spawn("server", "trojan-server", ["trojan", "-c", str(sc)])
        s.topo.wait_port("server", port)
        s.topo.spawn("client", "trojan-client", ["trojan", "-c", str(cc)])
        s.topo.wait_port("client", lport)
        s.identify(stack="curl-openssl via trojan-gfw client", impl="trojan-gfw")
        rep = s.web_traffic(web.url, ["--socks5-hostname", f"127.0.0.1:{lport}", *web.curl])
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "circumvention", "trojan")],
            ["trojan", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out
