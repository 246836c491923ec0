"""WireGuard through wireguard-go (userspace; this kernel has no WireGuard module)."""

from __future__ import annotations

__all__ = ["WireGuard"]

import subprocess
import time
from pathlib import Path
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import LabError, Role

_UAPI_DIR = Path("/var/run/wireguard")
_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}


def _wg(*args: str, stdin: str | None = None) -> str:
    r = subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True, check=True)
    return r.stdout.strip()


class WireGuard(Scenario):
    """Web traffic to a server behind a WireGuard tunnel."""

    name = "wireguard"
    summary = "WireGuard (wireguard-go userspace), random port, MTU, keepalive, PSK"
    traffic_class = "vpn"
    family = "wireguard"
    programs: ClassVar[dict[str, str]] = {"wireguard-go": "wireguard-go", "wg": "wireguard-tools"}
    variants = ("default", "psk")
    quick = True

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo = s.addr, s.topo
        # the UAPI socket lives in the shared file system: interface names must be unique
        ifs, ifc = f"wgs{topo.tag}", f"wgc{topo.tag}"
        for ifn in (ifs, ifc):
            topo.on_down((_UAPI_DIR / f"{ifn}.sock").unlink)
        keys = {}
        for side in ("s", "c"):
            priv = _wg("genkey")
            keys[side] = (s.file(f"wg-{side}.key", priv + "\n", 0o600), _wg("pubkey", stdin=priv))
        port = s.port("port", 51820)
        mtu = s.choose("mtu", (1420, 1420, 1380, 1280))
        keepalive = s.choose("persistent_keepalive", (0, 5, 25))
        psk: list[str] = []
        if variant == "psk":
            psk = ["preshared-key", str(s.file("wg-psk.key", _wg("genpsk") + "\n", 0o600))]
        topo.spawn("server", "wireguard-go-server", ["wireguard-go", "-f", ifs], env=_ENV)
        topo.spawn("client", "wireguard-go-client", ["wireguard-go", "-f", ifc], env=_ENV)
        deadline = time.monotonic() + 10
        while not all((_UAPI_DIR / f"{i}.sock").exists() for i in (ifs, ifc)):
            if time.monotonic() > deadline:
                raise LabError("lab.start_timeout", "wireguard-go UAPI sockets did not appear")
            time.sleep(0.05)
        srv_in, cli_in = a.inner(1), a.inner(2)
        topo.run(
            "server",
            [
                "wg",
                "set",
                ifs,
                "listen-port",
                str(port),
                "private-key",
                str(keys["s"][0]),
                "peer",
                keys["c"][1],
                *psk,
                "allowed-ips",
                f"{cli_in}/32",
            ],
        )
        topo.run(
            "client",
            [
                "wg",
                "set",
                ifc,
                "private-key",
                str(keys["c"][0]),
                "peer",
                keys["s"][1],
                *psk,
                "endpoint",
                f"{a.server_ip}:{port}",
                "allowed-ips",
                f"{a.inner_prefix}.0/24",
                "persistent-keepalive",
                str(keepalive) if keepalive else "off",
            ],
        )
        sides: tuple[tuple[Role, str, str], ...] = (("server", ifs, srv_in), ("client", ifc, cli_in))
        for role, ifn, ip in sides:
            topo.run(role, ["ip", "addr", "add", f"{ip}/24", "dev", ifn])
            topo.run(role, ["ip", "link", "set", ifn, "mtu", str(mtu), "up"])
        web = s.inner_web(srv_in, default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over the wireguard-go tunnel", impl="wireguard-go")
        rep = s.web_traffic(web.url, web.curl)
        shown = topo.run("client", ["wg", "show", ifc, "latest-handshakes"]).stdout.split()
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["udp"], a.server_ip, port, "vpn", "wireguard")],
            software=["wireguard-go", "wg", "curl", *web.software],
        )
        if len(shown) < 2 or shown[1] == "0":
            raise LabError("lab.no_handshake", f"wireguard: {shown}")
        out.checks["handshake"] = True
        verify_web(rep, out, web.log, [cli_in])
        return out
