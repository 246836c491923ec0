"""Cut the lab excerpts in ``lab/`` from a full labeled lab run (``sluice lab run``).

Each excerpt is the first ``PACKETS`` frames of one session's capture (real traffic of the real
programs, captured by the project's own lab; same licence as the project) plus the session's
labels for the flows those frames belong to, in ``lab/index.json``. Run from the repository root:

    .venv/bin/python tests/detect/data/make_lab_excerpts.py /tmp/labfull
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sluice.io.capture import open_capture
from sluice.io.pcap_writer import open_writer

PACKETS = 40
SESSIONS = (
    "openvpn-udp-static-s1-000",
    "openvpn-tcp-pki-tlscrypt-s1-001",
    "openvpn-udp-pki-tlsauth-s1-002",
    "wireguard-default-s1-000",
    "wireguard-psk-s1-001",
    "socks-dante-s1-001",
    "socks-microsocks-s1-000",
    "socks-microsocks-auth-s1-002",
    "http-proxy-squid-forward-s1-000",
    "http-proxy-squid-connect-s1-001",
    "http-proxy-tinyproxy-connect-s1-002",
    "https-nginx-h2-tls13-s1-000",
    "https-python-tls12-s1-001",
    "https-nginx-h1-tls12-s1-002",
    "http-nginx-s1-000",
    "http-python-s1-001",
    "dns-udp-s1-000",
    "dns-tcp-s1-001",
    "dns-dot-s1-002",
    "ssh-socks-dynamic-s1-000",
    "sshuttle-default-s1-001",
    "ptunnel-default-s1-000",
    "iodine-default-s1-000",
    "vxlan-default-s1-001",
    "httptunnel-default-s1-000",
    "stunnel-default-s1-000",
    "trojan-default-s1-000",
    "v2ray-vmess-tcp-s1-000",
    "v2ray-vless-tls-s1-001",
    "v2ray-vmess-ws-tls-s1-002",
    "shadowsocks-aead-s1-000",
    "shadowsocks-plugin-obfs-http-s1-000",
    "shadowsocks-plugin-obfs-tls-s1-002",
    "obfs4-iat0-s1-000",
    "kcptun-default-s1-000",
)


def main(src: str) -> None:
    out_dir = Path(__file__).parent / "lab"
    out_dir.mkdir(exist_ok=True)
    index = {}
    for session in SESSIONS:
        cap = next(Path(src).rglob(f"{session}.pcap"))
        labels = json.loads(cap.with_name(f"{session}.labels.json").read_text())
        with open_capture(cap) as reader, open_writer(out_dir / f"{session}.pcap") as writer:
            for n, raw in enumerate(reader):
                if n >= PACKETS:
                    break
                writer.write(raw.ts, raw.data, raw.wirelen)
        index[session] = {
            "scenario": labels["scenario"],
            "variant": labels.get("variant", ""),
            "class": labels["class"],
            "family": labels["family"],
            "flows": [
                [f["proto"], f["src"], f["sport"], f["dst"], f["dport"], f["class"], f["family"]]
                for f in labels["flows"]
            ],
        }
    (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
