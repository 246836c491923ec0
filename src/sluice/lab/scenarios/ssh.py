"""OpenSSH: dynamic SOCKS forwarding (``ssh -D``), interactive session with scp, sshuttle."""

from __future__ import annotations

__all__ = ["SshInteractive", "SshSocks", "Sshuttle", "start_sshd"]

import secrets
import subprocess
import time
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import LabError

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


def start_sshd(s: Session, *, forwarding: bool = True) -> tuple[int, list[str]]:
    """Start sshd on the server (random port, host key, cipher, kex); return port and ssh args.

    ``forwarding=False`` forbids TCP forwarding (an interactive login server).
    """
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
                f"AllowTcpForwarding {'yes' if forwarding else 'no'}",
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
        web = s.inner_web("127.0.0.1")
        lport = s.rng.randrange(1025, 60000)
        s.topo.spawn(
            "client", "ssh", ["ssh", *args, "-N", "-D", f"127.0.0.1:{lport}", f"root@{s.addr.server_ip}"]
        )
        s.topo.wait_port("client", lport)
        s.identify(stack="curl-openssl via ssh -D", impl="openssh")
        rep = s.web_traffic(web.url, ["--socks5-hostname", f"127.0.0.1:{lport}", *web.curl])
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], s.addr.server_ip, port, "tunnel", "ssh")],
            software=["ssh", "sshd", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
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
        web = s.inner_web(hidden, default_port=80, p_default=0.5)
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
        s.identify(stack="curl-openssl via sshuttle", impl="sshuttle+openssh")
        rep = s.web_traffic(web.url, web.curl)
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], s.addr.server_ip, port, "tunnel", "ssh")],
            software=["sshuttle", "ssh", "sshd", "curl", *web.software],
        )
        # sshuttle's server side connects from the server itself
        verify_web(rep, out, web.log, [hidden, s.addr.server_ip, "127.0.0.1"])
        return out


class SshInteractive(Scenario):
    """An interactive shell over SSH: typed-like keystrokes with pauses, no forwarding.

    The client types commands one keystroke per write (the server's PTY echoes each one back),
    pastes the first one, and thinks between commands.  The commands append random tokens to a
    file on the server and print digests of the session's site files, so both directions are
    checked: every token must be in the server's file and every digest in the client's output.
    TAXONOMY.md has no family for plain SSH logins; they are ``benign``/``app:ssh`` here
    (``tunnel``/``ssh`` is for forwarding).
    """

    name = "ssh-interactive"
    summary = "OpenSSH interactive shell (PTY, typed keystrokes, think time), no forwarding"
    traffic_class = "benign"
    family = "app:ssh"
    programs: ClassVar[dict[str, str]] = {
        "ssh": "openssh-client",
        "sshd": "openssh-server",
        "ssh-keygen": "openssh-client",
    }
    variants = ("shell",)

    def run(self, s: Session, variant: str) -> Outcome:
        port, args = start_sshd(s, forwarding=False)
        typing_ms = s.choose("keystroke_ms", ((30, 90), (60, 180), (100, 300)))
        think_s = s.choose("think_s", ((0.3, 1.0), (0.8, 2.5)))
        proc = s.topo.spawn(
            "client",
            "ssh-interactive",
            ["ssh", *args, "-tt", "-o", "RequestTTY=force", f"root@{s.addr.server_ip}"],
            stdin_pipe=True,
        )
        stdin = proc.popen.stdin
        if stdin is None:
            raise LabError("lab.no_stdin", "ssh")
        typed_log = s.workdir / "typed.log"
        digests = {}
        tokens = []
        commands = [f"cd {s.site.root}"]
        time.sleep(s.rng.uniform(*think_s))
        stdin.write(commands[0].encode() + b"\n")  # pasted
        stdin.flush()
        must = ["token", "digest"]
        s.rng.shuffle(must)
        t_end = time.monotonic() + max(s.duration_s, 2.0)
        while must or time.monotonic() < t_end:
            kind = must.pop() if must else s.rng.choice(("token", "digest", "ls", "misc"))
            if kind == "token":
                tok = secrets.token_hex(s.rng.randrange(3, 8))
                tokens.append(tok)
                cmd = f"echo {tok} >> ../{typed_log.name}"
            elif kind == "digest":
                f = s.rng.choice(s.site.names("t"))
                digests[f] = s.site.files[f][1]
                cmd = f"sha256sum {f}"
            elif kind == "ls":
                cmd = s.rng.choice(("ls", "ls -l", "ls -la | head", "du -sh ."))
            else:
                cmd = s.rng.choice(("uptime", "date", "id", "uname -a", "pwd", "whoami", "df -h ."))
            commands.append(cmd)
            text = cmd + "\n"
            if s.rng.random() < 0.1:
                stdin.write(text.encode())  # pasted
                stdin.flush()
            else:
                for ch in text:
                    stdin.write(ch.encode())
                    stdin.flush()
                    time.sleep(s.rng.uniform(*typing_ms) / 1000)
            time.sleep(s.rng.uniform(*think_s))
            if not proc.alive():
                raise LabError("lab.ssh_exited", proc.log.read_text(errors="replace")[-300:])
        s.params["commands"] = len(commands) + 1
        for ch in "exit\n":
            stdin.write(ch.encode())
            stdin.flush()
            time.sleep(s.rng.uniform(*typing_ms) / 1000)
        try:
            proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired as exc:
            raise LabError("lab.ssh_no_exit", "ssh did not exit after 'exit'") from exc
        output = proc.log.read_text(errors="replace")
        stored = typed_log.read_text().split() if typed_log.exists() else []
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], s.addr.server_ip, port, "benign", "app:ssh")],
            software=["ssh", "sshd"],
        )
        out.checks["tokens_typed"] = len(tokens)
        out.checks["tokens_on_server"] = sum(1 for tk in tokens if tk in stored)
        out.checks["digests_expected"] = len(digests)
        out.checks["digests_in_output"] = sum(1 for d in digests.values() if d in output)
        out.checks["ssh_exit_code"] = proc.popen.returncode
        if out.checks["tokens_on_server"] != len(tokens):
            out.problems.append(f"server got {out.checks['tokens_on_server']} of {len(tokens)} typed tokens")
        if out.checks["digests_in_output"] != len(digests):
            out.problems.append(f"client saw {out.checks['digests_in_output']} of {len(digests)} digests")
        if proc.popen.returncode != 0:
            out.problems.append(f"ssh exited with {proc.popen.returncode}")
        out.carried_bytes = sum(len(c) + 1 for c in commands)
        return out
