"""Tor client to a private bridge, on its ORPort (Tor's TLS link protocol) or wrapped in obfs4.

The lab has no route out, so there is no Tor network and no consensus: the client connects to the
bridge, completes the link handshake (TLS, then VERSIONS/CERTS/AUTH_CHALLENGE/NETINFO cells),
builds a one-hop directory circuit over that link, fetches the bridge's descriptor and stops at
"Bootstrapped 30%" (loading_status) for want of a consensus.  No web payload can flow, so the
verification is different from the other scenarios:

1. tor's client log shows the link handshake with the bridge done (``Bootstrapped 15%
   (handshake_done)``) and the bridge's descriptor fetched over it (``new bridge descriptor``);
2. the kernel's TCP counters (``ss -ti``: ``bytes_acked`` and ``bytes_received``) of the client's
   connection to the bridge show bytes flowing in both directions, and the capture must hold at
   least their sum on the labeled flow.

The connection then stays open for the session's duration (Tor's keep-alive and channel padding).
"""

from __future__ import annotations

__all__ = ["TorBridge", "TorObfs4"]

import re
import time
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session
from sluice.lab.topology import LabError

_OBFS4PROXY = "/usr/bin/obfs4proxy"
_HANDSHAKE_RX = r"Bootstrapped (1[5-9]|[2-9]\d)%"
_NICKS = ("Lantern", "Rivendell", "Quokka", "Blueberry", "NightOwl", "Pinecone", "Marmot", "Helix")


def _tcp_counters(s: Session, dst: str, port: int) -> tuple[int, int]:
    """(bytes acked, bytes received) of the client's TCP connections to ``dst``:``port``."""
    r = s.topo.run("client", ["ss", "-tin", "state", "established", "dst", f"{dst}:{port}"], check=False)
    acked = sum(int(x) for x in re.findall(r"bytes_acked:(\d+)", r.stdout))
    received = sum(int(x) for x in re.findall(r"bytes_received:(\d+)", r.stdout))
    return acked, received


class TorBridge(Scenario):
    """Tor client bootstrapping (as far as it can) through a private bridge's ORPort."""

    name = "tor"
    summary = "tor 0.4.9 client to a private bridge ORPort (link handshake + descriptor; no consensus)"
    traffic_class = "circumvention"
    family = "tor"
    programs: ClassVar[dict[str, str]] = {"tor": "tor"}
    variants: ClassVar[tuple[str, ...]] = ("plain",)
    obfs4: ClassVar[bool] = False

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo, w = s.addr, s.topo, s.workdir
        bdir, cdir = w / "tor-bridge", w / "tor-client"
        for d in (bdir, cdir):
            d.mkdir(mode=0o700)
        orport = s.port("orport", 9001, 0.4)
        nick = s.rng.choice(_NICKS) + str(s.rng.randrange(1, 99))
        s.params["nickname"] = nick
        bridge = [
            f"DataDirectory {bdir}",
            "SocksPort 0",
            f"ORPort {a.server_ip}:{orport}",
            f"Address {a.server_ip}",
            "BridgeRelay 1",
            "PublishServerDescriptor 0",
            "AssumeReachable 1",
            "ExitPolicy reject *:*",
            f"Nickname {nick}",
            "ContactInfo none",
            "Log notice stdout",
            f"Log info file {w}/tor-bridge-info.log",
        ]
        port = orport
        iat = 0
        if self.obfs4:
            iat = int(variant[-1])
            port = s.port("obfs4_port", 443, 0.3)
            bridge += [
                "ExtORPort auto",
                f"ServerTransportPlugin obfs4 exec {_OBFS4PROXY}",
                f"ServerTransportListenAddr obfs4 {a.server_ip}:{port}",
                f"ServerTransportOptions obfs4 iat-mode={iat}",
            ]
        s.params["iat_mode"] = iat if self.obfs4 else None
        s.file("bridge.torrc", "\n".join(bridge) + "\n")
        topo.spawn("server", "tor-bridge", ["tor", "-f", str(w / "bridge.torrc")])
        fp_file = bdir / "fingerprint"
        line_file = bdir / "pt_state" / "obfs4_bridgeline.txt"
        deadline = time.monotonic() + 40
        while not (fp_file.exists() and (not self.obfs4 or line_file.exists())):
            if time.monotonic() > deadline or not topo.procs[-1].alive():
                raise LabError("lab.start_timeout", "tor bridge wrote no fingerprint/bridge line")
            time.sleep(0.1)
        topo.wait_port("server", port, timeout=20)
        fingerprint = fp_file.read_text().split()[1]
        if self.obfs4:
            m = re.search(r"cert=(\S+)", line_file.read_text())
            if m is None:
                raise LabError("lab.start_timeout", "no obfs4 cert in the bridge line")
            bridge_line = f"obfs4 {a.server_ip}:{port} {fingerprint} cert={m.group(1)} iat-mode={iat}"
        else:
            bridge_line = f"{a.server_ip}:{port} {fingerprint}"
        client = [
            f"DataDirectory {cdir}",
            f"SocksPort 127.0.0.1:{s.rng.randrange(1025, 60000)}",
            "UseBridges 1",
            f"Bridge {bridge_line}",
            "Log notice stdout",
        ]
        if self.obfs4:
            client.append(f"ClientTransportPlugin obfs4 exec {_OBFS4PROXY}")
        s.file("client.torrc", "\n".join(client) + "\n")
        t0 = time.monotonic()
        topo.spawn("client", "tor-client", ["tor", "-f", str(w / "client.torrc")])
        topo.wait_log("tor-client", _HANDSHAKE_RX, timeout=40)
        s.params["handshake_s"] = round(time.monotonic() - t0, 2)
        desc = True
        try:
            topo.wait_log("tor-client", r"new bridge descriptor", timeout=20)
        except LabError:
            desc = False
        rest = s.duration_s - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
        acked, received = _tcp_counters(s, a.server_ip, port)
        log = topo.log_path("tor-client").read_text(errors="replace")
        steps = re.findall(r"Bootstrapped (\d+)%", log)
        family = "obfs4" if self.obfs4 else "tor"
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "circumvention", family)],
            software=["tor", "obfs4proxy"] if self.obfs4 else ["tor"],
        )
        out.checks["link_handshake_done"] = True
        out.checks["bridge_descriptor_fetched"] = desc
        out.checks["bootstrapped_pct"] = max((int(x) for x in steps), default=0)
        out.checks["tcp_bytes_acked"] = acked
        out.checks["tcp_bytes_received"] = received
        out.carried_bytes = acked + received
        if not desc:
            out.problems.append("tor client fetched no bridge descriptor over the link")
        if acked < 500 or received < 500:
            out.problems.append(f"too few bytes on the link: sent {acked}, received {received}")
        return out


class TorObfs4(TorBridge):
    """Tor client to a private bridge through obfs4 (obfs4proxy on both ends, run by tor)."""

    name = "tor-obfs4"
    summary = "tor 0.4.9 client to a private obfs4 bridge, iat-mode 0/1/2 (handshake + descriptor)"
    family = "obfs4"
    programs: ClassVar[dict[str, str]] = {"tor": "tor", "obfs4proxy": "obfs4proxy"}
    variants = ("iat0", "iat1", "iat2")
    obfs4 = True
