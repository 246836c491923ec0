"""obfs4proxy as a standalone pluggable transport (managed mode driven by TOR_PT_* variables)."""

from __future__ import annotations

__all__ = ["Obfs4"]

from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web


class Obfs4(Scenario):
    """Web traffic through an obfs4 client/server pair without tor."""

    name = "obfs4"
    summary = "obfs4proxy client/server (no tor), iat-mode 0/1/2"
    traffic_class = "circumvention"
    family = "obfs4"
    programs: ClassVar[dict[str, str]] = {"obfs4proxy": "obfs4proxy"}
    variants = ("iat0", "iat1", "iat2")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        iat = int(variant[-1])
        port = s.port("port", 443, 0.3)
        web = s.inner_web("127.0.0.1", reach=(a.server_ip, port))
        sd, cd = s.workdir / "obfs4-srv", s.workdir / "obfs4-cli"
        sd.mkdir()
        cd.mkdir()
        s.topo.spawn(
            "server",
            "obfs4-server",
            ["obfs4proxy", "-enableLogging", "-logLevel", "INFO"],
            stdin_pipe=True,
            env={
                "TOR_PT_MANAGED_TRANSPORT_VER": "1",
                "TOR_PT_STATE_LOCATION": str(sd),
                "TOR_PT_SERVER_TRANSPORTS": "obfs4",
                "TOR_PT_SERVER_BINDADDR": f"obfs4-{a.server_ip}:{port}",
                "TOR_PT_ORPORT": f"127.0.0.1:{web.port}",
                "TOR_PT_SERVER_TRANSPORT_OPTIONS": f"obfs4:iat-mode={iat}",
            },
        )
        s.topo.spawn(
            "client",
            "obfs4-client",
            ["obfs4proxy", "-enableLogging", "-logLevel", "INFO"],
            stdin_pipe=True,
            env={
                "TOR_PT_MANAGED_TRANSPORT_VER": "1",
                "TOR_PT_STATE_LOCATION": str(cd),
                "TOR_PT_CLIENT_TRANSPORTS": "obfs4",
            },
        )
        cert = s.topo.wait_log("obfs4-server", r"cert=([^,\s]+)").group(1)
        socks = s.topo.wait_log("obfs4-client", r"CMETHOD obfs4 socks5 (\S+)").group(1)
        s.identify(stack="curl-openssl via obfs4proxy client", impl="obfs4proxy")
        rep = s.web_traffic(
            web.url,
            ["--socks5", socks, "--proxy-user", f"cert={cert};:iat-mode={iat}", *web.curl],
        )
        out = Outcome(
            [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "circumvention", "obfs4")],
            ["obfs4proxy", "curl", *web.software],
        )
        verify_web(rep, out, web.log, ["127.0.0.1"])
        return out
