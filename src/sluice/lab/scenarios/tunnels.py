"""Generic tunnels: stunnel (TLS), httptunnel (HTTP), kcptun (KCP/UDP), ptunnel-ng (ICMP),
iodine (DNS) and kernel VXLAN."""

from __future__ import annotations

__all__ = ["HttpTunnel", "Iodine", "Kcptun", "Ptunnel", "Stunnel", "Vxlan"]

import secrets
import time
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import Role


class Stunnel(Scenario):
    """Plain HTTP wrapped in TLS by stunnel on both ends."""

    name = "stunnel"
    summary = "stunnel4 client/server TLS wrapper, random port and TLS version"
    traffic_class = "tunnel"
    family = "stunnel"
    programs: ClassVar[dict[str, str]] = {"stunnel4": "stunnel4"}

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 443, 0.4)
        lport = s.rng.randrange(1025, 60000)
        cert = s.ca.issue(s.hostname())
        tls_max = s.choose("tls_max", ("TLSv1.2", "TLSv1.3"))
        web = s.inner_web("127.0.0.1", reach=("127.0.0.1", lport))
        hport = web.port
        srv = s.file(
            "stunnel-srv.conf",
            f"foreground = yes\npid =\n[web]\naccept = {a.server_ip}:"
            f"{port}\nconnect = 127.0.0.1:{hport}\ncert = {cert.cert}\nkey = {cert.key}\n"
            f"sslVersionMax = {tls_max}\n",
        )
        cli = s.file(
            "stunnel-cli.conf",
            f"foreground = yes\npid =\n[web]\nclient = yes\naccept = "
            f"127.0.0.1:{lport}\nconnect = {a.server_ip}:{port}\nCAfile = {s.ca.cert}\n"
            f"verifyChain = yes\ncheckHost = {cert.name}\nsni = {cert.name}\n",
        )
        s.topo.spawn("server", "stunnel-server", ["stunnel4", str(srv)])
        s.topo.wait_port("server", port)
        s.topo.spawn("client", "stunnel-client", ["stunnel4", str(cli)])
        s.topo.wait_port("client", lport)
        s.identify(stack="curl-openssl via stunnel client", impl="stunnel")
        rep = s.web_traffic(web.url, web.curl)
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "tunnel", "stunnel")],
            ["stunnel4", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out


class HttpTunnel(Scenario):
    """TCP carried in HTTP requests and responses (httptunnel's hts/htc)."""

    name = "httptunnel"
    summary = "httptunnel hts/htc: TCP over HTTP POST/GET"
    traffic_class = "tunnel"
    family = "http-tunnel"
    programs: ClassVar[dict[str, str]] = {"hts": "httptunnel", "htc": "httptunnel"}

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 80, 0.4)
        lport = s.rng.randrange(1025, 60000)
        clen = s.choose("content_length", ("100K", "1M", "10M"))
        web = s.inner_web("127.0.0.1", reach=("127.0.0.1", lport))
        hport = web.port
        s.topo.spawn("server", "hts", ["hts", "-F", f"127.0.0.1:{hport}", "-N", f"{a.server_ip}:{port}"])
        s.topo.wait_port("server", port)
        s.topo.spawn("client", "htc", ["htc", "-F", str(lport), "-N", "-c", clen, f"{a.server_ip}:{port}"])
        s.topo.wait_port("client", lport)
        s.identify(stack="curl-openssl via htc", impl="httptunnel")
        rep = s.web_traffic(web.url, web.curl, bulk=False)
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "tunnel", "http-tunnel")],
            ["hts", "htc", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out


class Kcptun(Scenario):
    """TCP over KCP (reliable UDP) with kcptun."""

    name = "kcptun"
    summary = "kcptun client/server: KCP over UDP, random crypt and mode"
    traffic_class = "tunnel"
    family = "kcp"
    programs: ClassVar[dict[str, str]] = {"kcptun-server": "kcptun", "kcptun-client": "kcptun"}

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.port("port", 29900, 0.3)
        lport = s.rng.randrange(1025, 60000)
        crypt = s.choose("crypt", ("aes", "aes-128", "salsa20", "blowfish", "twofish", "xtea", "none"))
        mode = s.choose("mode", ("fast", "fast2", "fast3", "normal"))
        key = secrets.token_hex(8)
        web = s.inner_web("127.0.0.1", reach=("127.0.0.1", lport))
        hport = web.port
        common = ["--key", key, "--crypt", crypt, "--mode", mode]
        s.topo.spawn(
            "server",
            "kcptun-server",
            ["kcptun-server", "-l", f"{a.server_ip}:{port}", "-t", f"127.0.0.1:{hport}", *common],
        )
        s.topo.wait_port("server", port, "udp")
        s.topo.spawn(
            "client",
            "kcptun-client",
            ["kcptun-client", "-l", f"127.0.0.1:{lport}", "-r", f"{a.server_ip}:{port}", *common],
        )
        s.topo.wait_port("client", lport)
        s.identify(stack="curl-openssl via kcptun-client", impl="kcptun")
        rep = s.web_traffic(web.url, web.curl)
        out = Outcome(
            [FlowRule("carrier", PROTO["udp"], a.server_ip, port, "tunnel", "kcp")],
            ["kcptun-server", "kcptun-client", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out


class Ptunnel(Scenario):
    """TCP over ICMP echo with ptunnel-ng (slow by design: small transfers only)."""

    name = "ptunnel"
    summary = "ptunnel-ng: TCP over ICMP echo, optional password"
    traffic_class = "tunnel"
    family = "icmp-tunnel"
    programs: ClassVar[dict[str, str]] = {"ptunnel-ng": "ptunnel-ng"}

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        lport = s.rng.randrange(1025, 60000)
        pw = ["-P", secrets.token_hex(6)] if s.choose("password", (True, False)) else []
        web = s.inner_web("127.0.0.1", reach=("127.0.0.1", lport))
        hport = web.port
        s.topo.spawn("server", "ptunnel-server", ["ptunnel-ng", "-r127.0.0.1", f"-R{hport}", "-v", "1", *pw])
        time.sleep(0.5)  # it listens on a raw ICMP socket: nothing for wait_port to see
        s.topo.spawn(
            "client",
            "ptunnel-client",
            ["ptunnel-ng", f"-p{a.server_ip}", f"-l{lport}", "-r127.0.0.1", f"-R{hport}", "-v", "1", *pw],
        )
        s.topo.wait_port("client", lport)
        s.identify(stack="curl-openssl via ptunnel-ng", impl="ptunnel-ng")
        rep = s.web_traffic(web.url, web.curl, bulk=False, timeout=12)
        out = Outcome(
            [FlowRule("carrier", PROTO["icmp"], a.server_ip, None, "tunnel", "icmp-tunnel")],
            ["ptunnel-ng", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out


class Iodine(Scenario):
    """IP over DNS with iodine (raw mode off, so everything goes as DNS queries)."""

    name = "iodine"
    summary = "iodine/iodined: IPv4 over DNS queries (slow; small transfers)"
    traffic_class = "tunnel"
    family = "dns-tunnel"
    programs: ClassVar[dict[str, str]] = {"iodine": "iodine", "iodined": "iodine"}

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        domain = s.hostname("tunnel_domain")
        pw = secrets.token_hex(6)
        srv_in = a.inner(1)
        s.topo.spawn(
            "server", "iodined", ["iodined", "-f", "-c", "-P", pw, "-l", a.server_ip, f"{srv_in}/27", domain]
        )
        s.topo.wait_port("server", 53, "udp")
        s.topo.spawn("client", "iodine", ["iodine", "-f", "-r", "-P", pw, a.server_ip, domain])
        s.topo.wait_log("iodine", "Connection setup complete", timeout=30)
        web = s.inner_web(srv_in, default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over iodine tun", impl="iodine")
        rep = s.web_traffic(web.url, web.curl, bulk=False, timeout=30)
        cli_in = [f"{a.inner_prefix}.{h}" for h in range(2, 31)]
        out = Outcome(
            [FlowRule("carrier", PROTO["udp"], a.server_ip, 53, "tunnel", "dns-tunnel")],
            ["iodine", "iodined", "curl", *web.software],
        )
        verify_web(rep, out, web.log, cli_in)
        return out


class Vxlan(Scenario):
    """Ethernet over UDP with the kernel's VXLAN (the one kernel tunnel this machine has)."""

    name = "vxlan"
    summary = "kernel VXLAN point-to-point, random VNI and port"
    traffic_class = "tunnel"
    family = "vxlan"
    programs: ClassVar[dict[str, str]] = {"ip": "iproute2"}

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        port = s.choose("port", (4789, 4789, 8472))
        vni = s.rng.randrange(1, 1 << 24)
        s.params["vni"] = vni
        mtu = s.choose("mtu", (1450, 1400))
        ends: tuple[tuple[Role, str, str, str], ...] = (
            ("client", a.client_ip, a.server_ip, a.inner(2)),
            ("server", a.server_ip, a.client_ip, a.inner(1)),
        )
        for role, local, remote, inner in ends:
            s.topo.run(
                role,
                [
                    "ip",
                    "link",
                    "add",
                    "vx0",
                    "type",
                    "vxlan",
                    "id",
                    str(vni),
                    "remote",
                    remote,
                    "local",
                    local,
                    "dstport",
                    str(port),
                ],
            )
            s.topo.run(role, ["ip", "addr", "add", f"{inner}/24", "dev", "vx0"])
            s.topo.run(role, ["ip", "link", "set", "vx0", "mtu", str(mtu), "up"])
        web = s.inner_web(a.inner(1), default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over kernel vxlan", impl="linux-vxlan")
        rep = s.web_traffic(web.url, web.curl)
        out = Outcome(
            [
                FlowRule("carrier", PROTO["udp"], a.server_ip, port, "tunnel", "vxlan"),
                FlowRule("carrier", PROTO["udp"], a.client_ip, port, "tunnel", "vxlan"),
            ],
            ["ip", "curl", *web.software],
        )
        verify_web(rep, out, web.log, [a.inner(2)])
        return out
