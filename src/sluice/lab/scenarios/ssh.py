"""OpenSSH: dynamic SOCKS forwarding (``ssh -D``), interactive session with scp, sshuttle."""

from __future__ import annotations

__all__ = ["SshSocks", "Sshuttle", "start_sshd"]

import subprocess
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web

_CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
_KEX = (
    "curve25519-sha256",
    "sntrup761x25519-sha512@openssh.com",
    "ecdh-sha2-nistp256",
    "diffie-hellman-group14-sha256",
)
_HOSTKEYS = ("ed25519", "ecdsa", "rsa")


def start_sshd(s: Session) -> tuple[int, list[str]]:
    """Start sshd on the server (random port, host key, cipher, kex); return port and ssh args."""
    port = s.port("port", 22, 0.5)
    hk_type = s.choose("host_key", _HOSTKEYS)
    cipher = s.choose("cipher", _CIPHERS)
    kex = s.choose("kex", _KEX)
    hk = s.workdir / "ssh_host_key"
    ck = s.workdir / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", hk_type, "-N", "", "-f", str(hk)], check=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", s.choose("client_key", ("ed25519", "ecdsa")), "-N", "", "-f", str(ck)],
        check=True,
    )
    auth = s.file("authorized_keys", (s.workdir / "client_key.pub").read_text(), 0o600)
    conf = s.file(
        "sshd_config",
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {s.addr.server_ip}",
                f"HostKey {hk}",
                "PermitRootLogin prohibit-password",
                f"AuthorizedKeysFile {auth}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PidFile none",
                "AllowTcpForwarding yes",
                "PermitTunnel no",
                f"Ciphers {cipher}",
                f"KexAlgorithms {kex}",
                "LogLevel INFO",
                "",
            ]
        ),
    )
    # sshd needs /run/sshd: give it a private /run so the host's is not touched
    s.topo.spawn(
        "server",
        "sshd",
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f {conf}",
        ],
    )
    s.topo.wait_port("server", port)
    args = [
        "-i",
        str(ck),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        f"Ciphers={cipher}",
        "-o",
        f"KexAlgorithms={kex}",
    ]
    return port, args


class SshSocks(Scenario):
    """Web traffic through ``ssh -D`` (SOCKS5 dynamic forwarding)."""

    name = "ssh-socks"
    summary = "OpenSSH dynamic forwarding (ssh -D), random port, cipher, kex, host key"
    traffic_class = "tunnel"
    family = "ssh"
    programs: ClassVar[dict[str, str]] = {
        "ssh": "openssh-client",
        "sshd": "openssh-server",
        "ssh-keygen": "openssh-client",
    }
    variants = ("dynamic",)
    quick = True

    def run(self, s: Session, variant: str) -> Outcome:
        port, args = start_sshd(s)
        hport = s.port("http_port", 8080, 0.3)
        log = s.start_httpd("127.0.0.1", hport)
        lport = s.rng.randrange(1025, 60000)
        s.topo.spawn(
            "client", "ssh", ["ssh", *args, "-N", "-D", f"127.0.0.1:{lport}", f"root@{s.addr.server_ip}"]
        )
        s.topo.wait_port("client", lport)
        rep = s.web_traffic(f"http://127.0.0.1:{hport}", ["--socks5-hostname", f"127.0.0.1:{lport}"])
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], s.addr.server_ip, port, "tunnel", "ssh")],
            software=["ssh", "sshd", "curl", "python3"],
        )
        verify_web(rep, out, log, ["127.0.0.1"])
        return out


class Sshuttle(Scenario):
    """sshuttle: a transparent "VPN over SSH" (nat REDIRECT in the client, python on the server)."""

    name = "sshuttle"
    summary = "sshuttle 1.1 over OpenSSH to a network only the server reaches"
    traffic_class = "tunnel"
    family = "ssh"
    programs: ClassVar[dict[str, str]] = {
        "sshuttle": "sshuttle",
        "ssh": "openssh-client",
        "sshd": "openssh-server",
        "ssh-keygen": "openssh-client",
        "iptables": "iptables",
    }

    def run(self, s: Session, variant: str) -> Outcome:
        port, args = start_sshd(s)
        hidden = s.addr.inner(1)
        s.topo.run("server", ["ip", "addr", "add", f"{hidden}/32", "dev", "lo"])
        hport = s.port("http_port", 80, 0.5)
        log = s.start_httpd(hidden, hport)
        ssh = "ssh " + " ".join(args)
        s.topo.spawn(
            "client",
            "sshuttle",
            [
                "sshuttle",
                "--disable-ipv6",
                "--method",
                "nat",
                "-e",
                ssh,
                "-r",
                f"root@{s.addr.server_ip}",
                "--python",
                "/usr/bin/python3",
                f"{s.addr.inner_prefix}.0/24",
            ],
        )
        s.topo.wait_log("sshuttle", "Connected", timeout=20)
        rep = s.web_traffic(f"http://{hidden}:{hport}")
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], s.addr.server_ip, port, "tunnel", "ssh")],
            software=["sshuttle", "ssh", "sshd", "curl", "python3"],
        )
        # sshuttle's server side connects from the server itself
        verify_web(rep, out, log, [hidden, s.addr.server_ip, "127.0.0.1"])
        return out
