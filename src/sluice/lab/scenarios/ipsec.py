"""IPsec IKEv2 with strongSwan's charon and kernel-libipsec (userspace ESP, always in UDP).

This kernel has no XFRM crypto, so charon runs with the ``kernel-libipsec`` plugin: ESP is done in
userspace on a TUN device (``ipsec0``) and always UDP-encapsulated (``encap = yes``).  On the wire
that is IKE_SA_INIT on UDP/500 and then IKE plus ESP-in-UDP on the NAT-T port (or everything on one
port when the initiator starts on the NAT-T port).  Each side's charon gets its own
``strongswan.conf`` (explicit plugin list; ``kdf`` is needed for IKEv2 PRFs), a private ``/run``
(its pid file) and a VICI socket in the session's work directory for ``swanctl``.
"""

from __future__ import annotations

__all__ = ["Ipsec"]

import base64
import secrets
import time
from pathlib import Path
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import LabError, Role

_PLUGINS = (
    "random nonce aes sha1 sha2 hmac gcm chapoly curve25519 gmp x509 pubkey pem pkcs1 pkcs8 "
    "openssl kdf constraints revocation kernel-libipsec kernel-netlink socket-default vici"
)
_IKE_PROPOSALS = (
    "aes128-sha256-x25519",
    "aes256-sha256-modp2048",
    "aes256gcm16-prfsha384-ecp384",
    "chacha20poly1305-prfsha256-x25519",
    "aes128gcm16-prfsha256-ecp256",
)
_ESP_PROPOSALS = (
    "aes128gcm16",
    "aes256gcm16",
    "chacha20poly1305",
    "aes128-sha256",
    "aes256-sha1",
)
_CHARON = "/usr/lib/ipsec/charon"


def _strongswan_conf(s: Session, side: str, vici: Path, port: int, port_nat_t: int) -> Path:
    return s.file(
        f"{side}/strongswan.conf",
        f"""charon {{
  load = {_PLUGINS}
  port = {port}
  port_nat_t = {port_nat_t}
  install_virtual_ip = no
  filelog {{
    stderr {{
      default = 1
      ike = 1
      time_format = %H:%M:%S
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{vici}
    }}
    kernel-libipsec {{
      allow_peer_ts = yes
    }}
  }}
}}
swanctl {{
  load = pem pkcs1 pkcs8 x509 pubkey openssl random
}}
""",
    )


class Ipsec(Scenario):
    """Web traffic between two inner addresses protected by an IKEv2 CHILD_SA."""

    name = "ipsec"
    summary = "strongSwan IKEv2 PSK or certificates, kernel-libipsec ESP-in-UDP, random proposals"
    traffic_class = "vpn"
    family = "ipsec"
    programs: ClassVar[dict[str, str]] = {
        "charon": "strongswan-charon",
        "swanctl": "strongswan-swanctl",
    }
    variants = ("psk", "cert", "psk-natt-only")

    def missing(self) -> list[str]:
        """The binaries, plus the kernel-libipsec plugin (in libcharon-extra-plugins)."""
        out = super().missing()
        for plugin in ("kernel-libipsec", "gcm", "openssl", "curve25519", "kdf"):
            if not Path(f"/usr/lib/ipsec/plugins/libstrongswan-{plugin}.so").exists():
                out.append(f"strongSwan plugin {plugin}")
        return out

    def packages(self) -> list[str]:
        """charon, swanctl and the packages of the plugins it loads."""
        return [
            "libcharon-extra-plugins",
            "libstrongswan-extra-plugins",
            "libstrongswan-standard-plugins",
            "strongswan-charon",
            "strongswan-swanctl",
        ]

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo = s.addr, s.topo
        auth = "psk" if variant.startswith("psk") else "pubkey"
        s.params["auth"] = auth
        natt_only = variant.endswith("natt-only")
        # the responder's IKE port is 500 or a random one; the initiator starts there and floats
        # to 4500 (charon floats to 4500 whatever the NAT-T port is set to, so that stays 4500),
        # or (natt-only) talks to 4500 from the first packet on
        port_nat_t = 4500
        ike_port = 500 if natt_only else s.port("ike_port", 500, 0.6)
        remote_port = port_nat_t if natt_only else ike_port
        s.params["remote_port"] = remote_port
        ike = s.choose("ike_proposal", _IKE_PROPOSALS)
        esp = s.choose("esp_proposal", _ESP_PROPOSALS)
        dpd = s.choose("dpd_delay_s", (0, 5, 30))
        srv_in, cli_in = a.inner(1), a.inner(2)
        srv_id = s.hostname("server_id")
        cli_id = f"client-{s.rng.randrange(1000, 9999)}.{srv_id.split('.', 1)[1]}"
        s.params["client_id"] = cli_id
        psk = "0s" + base64.b64encode(secrets.token_bytes(32)).decode()
        creds: dict[str, tuple[str, str]] = {}
        if auth == "pubkey":
            sc, cc = s.ca.issue(srv_id), s.ca.issue(cli_id, server=False)
            creds = {"srv": (str(sc.cert), str(sc.key)), "cli": (str(cc.cert), str(cc.key))}
        sides: tuple[tuple[Role, str, str, str, str, str, str], ...] = (
            ("server", "srv", a.server_ip, a.client_ip, srv_in, cli_in, srv_id),
            ("client", "cli", a.client_ip, a.server_ip, cli_in, srv_in, cli_id),
        )
        vicis: dict[str, Path] = {}
        for role, side, local, remote, l_in, r_in, my_id in sides:
            peer_id = cli_id if side == "srv" else srv_id
            topo.run(role, ["ip", "addr", "add", f"{l_in}/32", "dev", "lo"])
            vici = s.workdir / side / "charon.vici"
            vicis[side] = vici
            conf = _strongswan_conf(s, side, vici, ike_port if side == "srv" else 500, port_nat_t)
            if auth == "psk":
                local_auth = f"auth = psk\n      id = {my_id}"
                remote_auth = f"auth = psk\n      id = {peer_id}"
                secret = f"ike-lab {{\n    id-1 = {srv_id}\n    id-2 = {cli_id}\n    secret = {psk}\n  }}"
            else:
                # swanctl loads keys only from its directory tree (SWANCTL_DIR)
                cert, key = creds[side]
                for sub, src in (("x509", cert), ("pkcs8", key), ("x509ca", s.ca.cert)):
                    dst = s.workdir / side / "swanctl" / sub / Path(src).name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(Path(src).read_bytes())
                    dst.chmod(0o600)
                local_auth = f"auth = pubkey\n      id = {my_id}\n      certs = {Path(cert).name}"
                remote_auth = f"auth = pubkey\n      id = {peer_id}"
                secret = ""
            port_line = f"remote_port = {remote_port}" if side == "cli" else ""
            swanctl = s.file(
                f"{side}/swanctl/swanctl.conf",
                f"""connections {{
  lab {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    {port_line}
    encap = yes
    proposals = {ike}
    dpd_delay = {dpd}s
    local {{
      {local_auth}
    }}
    remote {{
      {remote_auth}
    }}
    children {{
      net {{
        local_ts = {l_in}/32
        remote_ts = {r_in}/32
        esp_proposals = {esp}
        mode = tunnel
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  {secret}
}}
""",
            )
            topo.spawn(
                role,
                f"charon-{side}",
                [
                    "unshare",
                    "-m",
                    "sh",
                    "-c",
                    f"mount -t tmpfs tmpfs /run && exec {_CHARON}",
                ],
                env={"STRONGSWAN_CONF": str(conf)},
            )
            deadline = time.monotonic() + 10
            while not vici.exists():
                if time.monotonic() > deadline:
                    raise LabError("lab.start_timeout", f"charon ({side}) made no VICI socket")
                time.sleep(0.05)
            topo.run(
                role,
                ["swanctl", "--load-all", "--noprompt", "--file", str(swanctl), "--uri", f"unix://{vici}"],
                env={"STRONGSWAN_CONF": str(conf), "SWANCTL_DIR": str(swanctl.parent)},
            )
        topo.wait_port("server", port_nat_t, "udp")
        init = topo.run(
            "client",
            ["swanctl", "--initiate", "--child", "net", "--timeout", "15", "--uri", f"unix://{vicis['cli']}"],
            env={"STRONGSWAN_CONF": str(s.workdir / "cli" / "strongswan.conf")},
            timeout=25,
            check=False,
        )
        (s.workdir / "swanctl-initiate.log").write_text(init.stdout + init.stderr)
        if "CHILD_SA net{" not in init.stdout or "established" not in init.stdout:
            raise LabError("lab.no_handshake", f"ipsec: {(init.stdout + init.stderr)[-400:]}")
        web = s.inner_web(srv_in, default_port=80, p_default=0.5)
        s.identify(stack="curl-openssl over the strongswan tunnel", impl="strongswan")
        rep = s.web_traffic(web.url, ["--interface", cli_in, *web.curl])
        sas = topo.run("client", ["swanctl", "--list-sas", "--uri", f"unix://{vicis['cli']}"], check=False)
        out = Outcome(
            rules=[
                FlowRule("ike", PROTO["udp"], a.server_ip, ike_port, "vpn", "ipsec", carrier=False),
                FlowRule("carrier", PROTO["udp"], a.server_ip, port_nat_t, "vpn", "ipsec"),
            ],
            software=["charon", "swanctl", "curl", *web.software],
        )
        out.checks["child_sa_established"] = True
        # swanctl shows "INSTALLED, TUNNEL-in-UDP, ESP:..." for a UDP-encapsulated CHILD_SA
        out.checks["esp_in_udp"] = "-in-UDP" in sas.stdout
        if not out.checks["esp_in_udp"]:
            out.problems.append(f"CHILD_SA is not ESP-in-UDP: {sas.stdout[-300:]!r}")
        verify_web(rep, out, web.log, [cli_in])
        return out
