"""OpenVPN 2.6: UDP or TCP; static key, or a PKI with tls-auth, tls-crypt or neither."""

from __future__ import annotations

__all__ = ["OpenVpn"]

import subprocess
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web


class OpenVpn(Scenario):
    """Web traffic to a server behind an OpenVPN tunnel."""

    name = "openvpn"
    summary = "OpenVPN 2.6 UDP/TCP, static key or EC/RSA PKI with tls-auth/tls-crypt"
    traffic_class = "vpn"
    family = "openvpn"
    programs: ClassVar[dict[str, str]] = {"openvpn": "openvpn"}
    variants = (
        "udp-static",
        "tcp-pki-tlscrypt",
        "udp-pki-tlsauth",
        "tcp-static",
        "udp-pki-tlscrypt",
        "tcp-pki",
    )
    quick = True

    def run(self, s: Session, variant: str) -> Outcome:
        proto, mode = variant.split("-", 1)
        s.params["proto"] = proto
        port = s.port("port", 1194 if proto == "udp" else 443)
        a = s.addr
        srv_in, cli_in = a.inner(1), a.inner(2)
        common = ["--dev", "tun0", "--verb", "3", "--ping", "1", "--ping-restart", "30"]
        mtu = s.choose("tun_mtu", (1500, 1500, 1400, 1280))
        common += ["--tun-mtu", str(mtu)]
        srv = [
            *common,
            "--local",
            a.server_ip,
            "--port",
            str(port),
            "--proto",
            "udp" if proto == "udp" else "tcp-server",
            "--ifconfig",
            srv_in,
            cli_in,
        ]
        cli = [
            *common,
            "--remote",
            a.server_ip,
            str(port),
            "--proto",
            "udp" if proto == "udp" else "tcp-client",
            "--ifconfig",
            cli_in,
            srv_in,
        ]
        if mode == "static":
            key = s.workdir / "static.key"
            subprocess.run(["openvpn", "--genkey", "secret", str(key)], check=True, capture_output=True)
            cipher = s.choose("cipher", ("AES-256-CBC", "AES-128-CBC"))
            auth = s.choose("auth", ("SHA256", "SHA1", "SHA512"))
            srv += ["--secret", str(key), "0", "--cipher", cipher, "--auth", auth]
            cli += ["--secret", str(key), "1", "--cipher", cipher, "--auth", auth]
        else:
            ca = s.ca
            sc = ca.issue(s.hostname(), server=True)
            cc = ca.issue("client-" + str(s.rng.randrange(1000, 9999)), server=False)
            ciphers = s.choose("data_ciphers", ("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"))
            tls_min = s.choose("tls_version_min", ("1.2", "1.3"))
            srv += [
                "--tls-server",
                "--ca",
                str(ca.cert),
                "--cert",
                str(sc.cert),
                "--key",
                str(sc.key),
                "--dh",
                "none",
                "--data-ciphers",
                ciphers,
                "--tls-version-min",
                tls_min,
            ]
            cli += [
                "--tls-client",
                "--ca",
                str(ca.cert),
                "--cert",
                str(cc.cert),
                "--key",
                str(cc.key),
                "--remote-cert-tls",
                "server",
                "--data-ciphers",
                ciphers,
                "--tls-version-min",
                tls_min,
            ]
            if mode.endswith("tlscrypt") or mode.endswith("tlsauth"):
                kind = "tls-crypt" if mode.endswith("tlscrypt") else "tls-auth"
                key = s.workdir / f"{kind}.key"
                subprocess.run(
                    ["openvpn", "--genkey", kind if kind == "tls-crypt" else "secret", str(key)],
                    check=True,
                    capture_output=True,
                )
                if kind == "tls-crypt":
                    srv += ["--tls-crypt", str(key)]
                    cli += ["--tls-crypt", str(key)]
                else:
                    srv += ["--tls-auth", str(key), "0"]
                    cli += ["--tls-auth", str(key), "1"]
        s.topo.spawn("server", "openvpn-server", ["openvpn", *srv])
        s.topo.wait_port("server", port, "udp" if proto == "udp" else "tcp")
        s.topo.spawn("client", "openvpn-client", ["openvpn", *cli])
        s.topo.wait_log("openvpn-client", "Initialization Sequence Completed", timeout=20)
        web = s.inner_web(srv_in, default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over the openvpn tunnel", impl="openvpn")
        rep = s.web_traffic(web.url, web.curl)
        out = Outcome(
            rules=[FlowRule("carrier", PROTO[proto], a.server_ip, port, "vpn", "openvpn")],
            software=["openvpn", "curl", *web.software],
        )
        verify_web(rep, out, web.log, [cli_in])
        return out
