"""AnyConnect: ocserv and openconnect; CSTP over TLS with DTLS for data, or TLS only."""

from __future__ import annotations

__all__ = ["AnyConnect"]

import re
import secrets
import subprocess
import time
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import LabError, Role

_TLS_PRIORITIES = (
    "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1:-VERS-TLS1.3",
    "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1",
    "SECURE256:%SERVER_PRECEDENCE:-VERS-TLS1.0:-VERS-TLS1.1",
    "NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM",
)
# openconnect calls this instead of vpnc-script (which touches resolv.conf and is not installed
# without recommends): address, MTU and a route to the VPN's network on the tun device
_SCRIPT = """#!/bin/sh
case "$reason" in
  connect)
    ip link set dev "$TUNDEV" up mtu "${{INTERNAL_IP4_MTU:-1300}}"
    ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
    ip route add {net} dev "$TUNDEV" ;;
  disconnect) ip link set dev "$TUNDEV" down 2>/dev/null ;;
esac
exit 0
"""


def _ipv4_of(s: Session, role: Role, dev: str, timeout: float = 15) -> str:
    """The IPv4 address of ``dev`` in ``role`` once it has one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = s.topo.run(role, ["ip", "-4", "-o", "addr", "show", "dev", dev], check=False)
        m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)", r.stdout)
        if m:
            return m.group(1)
        time.sleep(0.1)
    raise LabError("lab.no_address", f"{dev} in {role} got no IPv4 address in {timeout}s")


class AnyConnect(Scenario):
    """Web traffic through an AnyConnect-protocol VPN (ocserv server, openconnect client)."""

    name = "anyconnect"
    summary = "ocserv 1.1 + openconnect 9: CSTP/TLS with DTLS, or TLS only; random port, TLS, MTU"
    traffic_class = "vpn"
    family = "anyconnect"
    programs: ClassVar[dict[str, str]] = {
        "ocserv": "ocserv",
        "openconnect": "openconnect",
        "openssl": "openssl",
    }
    variants = ("dtls", "tcp")

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo, w = s.addr, s.topo, s.workdir
        dtls = variant == "dtls"
        port = s.port("port", 443, 0.4)
        name = s.hostname()
        cert = s.ca.issue(name)
        prio = s.choose("tls_priorities", _TLS_PRIORITIES)
        legacy = s.choose("dtls_legacy", (True, False))
        mtu = s.choose("mtu", (1434, 1400, 1300))
        dpd = s.choose("dpd_s", (30, 90))
        user = s.choose("user", ("alice", "bob", "vpnuser", "j.smith"))
        pw = secrets.token_urlsafe(12)
        digest = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=pw, capture_output=True, text=True, check=True
        ).stdout.strip()
        passwd = s.file("ocpasswd.txt", f"{user}:lab:{digest}\n", 0o600)
        pwfile = s.file("oc-password.txt", pw + "\n", 0o600)
        net = f"{a.inner_prefix}.0/24"
        conf = s.file(
            "ocserv.conf",
            f"""auth = "plain[passwd={passwd}]"
listen-host = {a.server_ip}
tcp-port = {port}
{"udp-port = " + str(port) if dtls else ""}
run-as-user = nobody
run-as-group = nogroup
socket-file = {w}/ocserv-socket
occtl-socket-file = {w}/occtl.socket
use-occtl = false
pid-file = {w}/ocserv.pid
isolate-workers = false
server-cert = {cert.cert}
server-key = {cert.key}
ca-cert = {s.ca.cert}
max-clients = 16
max-same-clients = 2
keepalive = 32400
dpd = {dpd}
mobile-dpd = 1800
try-mtu-discovery = false
mtu = {mtu}
tls-priorities = "{prio}"
auth-timeout = 240
cookie-timeout = 300
deny-roaming = false
rekey-time = 172800
rekey-method = ssl
log-level = 2
device = vpns
predictable-ips = true
default-domain = {name.split(".", 1)[1]}
ipv4-network = {a.inner_prefix}.0
ipv4-netmask = 255.255.255.0
ping-leases = false
route = {net}
cisco-client-compat = true
dtls-legacy = {"true" if legacy else "false"}
""",
        )
        script = s.file("oc-script.sh", _SCRIPT.format(net=net), 0o755)
        topo.spawn("server", "ocserv", ["ocserv", "-f", "-d", "2", "-c", str(conf)])
        topo.wait_port("server", port)
        if dtls:
            topo.wait_port("server", port, "udp")
        oc = [
            "openconnect",
            "--protocol=anyconnect",
            f"--user={user}",
            "--passwd-on-stdin",
            "--non-inter",
            f"--cafile={s.ca.cert}",
            f"--resolve={name}:{a.server_ip}",
            f"--script={script}",
            "--interface=oc0",
            "-v",
        ]
        if not dtls:
            oc.append("--no-dtls")
        oc.append(f"https://{name}:{port}/")
        topo.spawn("client", "openconnect", ["sh", "-c", f'exec "$@" < {pwfile}', "sh", *oc])
        cli_in = _ipv4_of(s, "client", "oc0")
        srv_in = _ipv4_of(s, "server", "vpns0")
        if dtls:
            topo.wait_log("openconnect", r"Established DTLS connection", timeout=15)
        web = s.inner_web(srv_in, default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over the openconnect+ocserv tunnel", impl="openconnect+ocserv")
        rep = s.web_traffic(web.url, web.curl)
        oclog = topo.log_path("openconnect").read_text(errors="replace")
        out = Outcome(
            rules=[
                FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "vpn", "anyconnect"),
                FlowRule("carrier", PROTO["udp"], a.server_ip, port, "vpn", "anyconnect"),
            ],
            software=["ocserv", "openconnect", "curl", *web.software],
        )
        out.checks["cstp_connected"] = "CSTP connected" in oclog or "Connected as" in oclog
        out.checks["dtls_established"] = "Established DTLS connection" in oclog
        if out.checks["dtls_established"] != dtls:
            out.problems.append(f"DTLS established = {out.checks['dtls_established']} in variant {variant}")
        for key, rx in (
            ("tls_ciphersuite", r"with ciphersuite (\S+)"),
            ("dtls_ciphersuite", r"Established DTLS connection.*?Ciphersuite (\S+?)\.?$"),
        ):
            m = re.search(rx, oclog, re.MULTILINE)
            if m:
                out.checks[key] = m.group(1)
        verify_web(rep, out, web.log, [cli_in])
        return out
