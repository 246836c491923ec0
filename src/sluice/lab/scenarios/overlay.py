"""Overlay/mesh VPNs on /dev/net/tun: tinc 1.0 (TCP meta + UDP data) and nebula (Noise over UDP)."""

from __future__ import annotations

__all__ = ["Nebula", "Tinc"]

import json
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import LabError, Role


def _wait_ping(s: Session, ip: str, dev: str, timeout: float = 15) -> float:
    """Ping ``ip`` from the client until it answers; returns the seconds it took.

    Pings start once the client's tunnel device ``dev`` has an address (earlier ones would go
    to the gateway as plain ICMP).
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = s.topo.run("client", ["ip", "-4", "-o", "addr", "show", "dev", dev], check=False)
        if "inet " not in r.stdout:
            time.sleep(0.05)
            continue
        r = s.topo.run("client", ["ping", "-c", "1", "-W", "1", ip], check=False)
        if r.returncode == 0:
            return round(time.monotonic() - t0, 2)
    raise LabError("lab.tunnel_down", f"{ip} did not answer through the tunnel in {timeout}s")


class Tinc(Scenario):
    """Web traffic between two tinc 1.0 nodes (router mode), UDP data or TCP only."""

    name = "tinc"
    summary = "tinc 1.0: RSA meta connection over TCP, data over UDP or TCP only; random cipher"
    traffic_class = "vpn"
    family = "tinc"
    programs: ClassVar[dict[str, str]] = {"tincd": "tinc"}
    variants = ("udp", "tcponly")

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo, w = s.addr, s.topo, s.workdir
        port = s.port("port", 655, 0.4)
        cipher = s.choose("cipher", ("aes-256-cbc", "aes-128-cbc", "aes-256-ctr", "camellia-256-cbc"))
        digest = s.choose("digest", ("sha256", "sha1", "sha512"))
        bits = s.choose("rsa_bits", (2048, 3072))
        compression = s.choose("compression", (0, 0, 1, 9))
        tcponly = variant == "tcponly"
        names = {"srv": f"srv{s.rng.randrange(100, 999)}", "cli": f"node{s.rng.randrange(100, 999)}"}
        inner = {"srv": a.inner(1), "cli": a.inner(2)}
        sides: tuple[tuple[Role, str], ...] = (("server", "srv"), ("client", "cli"))
        pubs = {}
        for _, side in sides:
            d = w / f"tinc-{side}"
            (d / "hosts").mkdir(parents=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            (d / "rsa_key.priv").write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                )
            )
            (d / "rsa_key.priv").chmod(0o600)
            pubs[side] = (
                key.public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
                .decode()
            )
        for role, side in sides:
            d = w / f"tinc-{side}"
            lines = [
                f"Name = {names[side]}",
                "Mode = router",
                "AddressFamily = ipv4",
                "DeviceType = tun",
                "Interface = tinc0",
                "PingInterval = 30",
            ]
            if side == "cli":
                lines.append(f"ConnectTo = {names['srv']}")
            (d / "tinc.conf").write_text("\n".join(lines) + "\n")
            for hs in ("srv", "cli"):
                host = [
                    f"Subnet = {inner[hs]}/32",
                    f"Cipher = {cipher}",
                    f"Digest = {digest}",
                    f"Compression = {compression}",
                    f"TCPOnly = {'yes' if tcponly else 'no'}",
                ]
                if hs == "srv":
                    host += [f"Address = {a.server_ip}", f"Port = {port}"]
                else:
                    host += [f"Port = {port if side == 'cli' else 655}"]
                (d / "hosts" / names[hs]).write_text("\n".join(host) + "\n\n" + pubs[hs])
            up = d / "tinc-up"
            up.write_text(
                f'#!/bin/sh\nip addr add {inner[side]}/24 dev "$INTERFACE"\nip link set "$INTERFACE" up\n'
            )
            up.chmod(0o755)
            topo.spawn(
                role,
                f"tincd-{side}",
                ["tincd", "-c", str(d), f"--pidfile={w}/tinc-{side}.pid", "-D", "-d2"],
            )
            if side == "srv":
                topo.wait_port("server", port)
        s.params["ping_wait_s"] = _wait_ping(s, inner["srv"], "tinc0")
        web = s.inner_web(inner["srv"], default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over the tinc tunnel", impl="tinc")
        rep = s.web_traffic(web.url, web.curl)
        cli_log = topo.log_path("tincd-cli").read_text(errors="replace")
        out = Outcome(
            rules=[
                FlowRule("meta", PROTO["tcp"], a.server_ip, port, "vpn", "tinc"),
                FlowRule("carrier", PROTO["udp"], a.server_ip, port, "vpn", "tinc"),
            ],
            software=["tincd", "curl", *web.software],
        )
        out.checks["meta_activated"] = "activated" in cli_log
        if not out.checks["meta_activated"]:
            out.problems.append("tincd client log has no activated meta connection")
        if tcponly:
            # everything (meta and data) goes over the TCP connection
            out.rules = [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "vpn", "tinc")]
        verify_web(rep, out, web.log, [inner["cli"]])
        return out


class Nebula(Scenario):
    """Web traffic between a nebula lighthouse (the server) and a node (the client)."""

    name = "nebula"
    summary = "nebula 1.6: Noise IK over UDP, lighthouse + node, random port, cipher, MTU"
    traffic_class = "vpn"
    family = "nebula"
    programs: ClassVar[dict[str, str]] = {"nebula": "nebula", "nebula-cert": "nebula"}

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo, w = s.addr, s.topo, s.workdir
        port = s.port("port", 4242, 0.4)
        cipher = s.choose("cipher", ("aes", "chachapoly"))
        mtu = s.choose("mtu", (1300, 1300, 1400, 1200))
        cli_port = s.choose("client_port", (0, 4242, s.rng.randrange(1025, 60000)))
        inner = {"srv": a.inner(1), "cli": a.inner(2)}
        pki = w / "nebula"
        pki.mkdir()
        org = s.hostname("ca_name")
        subprocess.run(
            [
                "nebula-cert",
                "ca",
                "-name",
                org,
                "-out-crt",
                str(pki / "ca.crt"),
                "-out-key",
                str(pki / "ca.key"),
            ],
            check=True,
            capture_output=True,
        )
        sides: tuple[tuple[Role, str], ...] = (("server", "srv"), ("client", "cli"))
        for role, side in sides:
            subprocess.run(
                [
                    "nebula-cert",
                    "sign",
                    "-ca-crt",
                    str(pki / "ca.crt"),
                    "-ca-key",
                    str(pki / "ca.key"),
                    "-name",
                    f"{side}{s.rng.randrange(10, 99)}",
                    "-ip",
                    f"{inner[side]}/24",
                    "-out-crt",
                    str(pki / f"{side}.crt"),
                    "-out-key",
                    str(pki / f"{side}.key"),
                ],
                check=True,
                capture_output=True,
            )
            lighthouse = side == "srv"
            conf = {
                "pki": {
                    "ca": str(pki / "ca.crt"),
                    "cert": str(pki / f"{side}.crt"),
                    "key": str(pki / f"{side}.key"),
                },
                "static_host_map": {} if lighthouse else {inner["srv"]: [f"{a.server_ip}:{port}"]},
                "lighthouse": {
                    "am_lighthouse": lighthouse,
                    "interval": 60,
                    "hosts": [] if lighthouse else [inner["srv"]],
                },
                "listen": {
                    "host": a.server_ip if lighthouse else a.client_ip,
                    "port": port if lighthouse else cli_port,
                },
                "punchy": {"punch": True},
                "cipher": cipher,
                "tun": {"disabled": False, "dev": "nebula1", "mtu": mtu},
                "logging": {"level": "info", "format": "text"},
                "firewall": {
                    "outbound": [{"port": "any", "proto": "any", "host": "any"}],
                    "inbound": [{"port": "any", "proto": "any", "host": "any"}],
                },
            }
            # YAML is a superset of JSON
            path = s.file(f"nebula-{side}.yml", json.dumps(conf, indent=1))
            topo.spawn(role, f"nebula-{side}", ["nebula", "-config", str(path)])
            if lighthouse:
                topo.wait_port("server", port, "udp")
        s.params["ping_wait_s"] = _wait_ping(s, inner["srv"], "nebula1")
        web = s.inner_web(inner["srv"], default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over the nebula tunnel", impl="nebula")
        rep = s.web_traffic(web.url, web.curl)
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["udp"], a.server_ip, port, "vpn", "nebula")],
            software=["nebula", "curl", *web.software],
        )
        cli_log = Path(topo.log_path("nebula-cli")).read_text(errors="replace")
        out.checks["handshake"] = "Handshake message received" in cli_log
        if not out.checks["handshake"]:
            out.problems.append("nebula client log shows no handshake")
        verify_web(rep, out, web.log, [inner["cli"]])
        return out
