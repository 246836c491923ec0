"""The bundled demo capture: a small pcapng that exercises every layer sluice dissects.

``python -m sluice.synth.demo --out examples/demo.pcapng`` writes about fifty flows on two
interfaces (``eth0``: Ethernet with nanosecond timestamps; ``tun0``: raw IP, microseconds) and
the ground truth next to it (``demo.truth.json``): DNS (with CNAME chains, over UDP, TCP and a
fragmented IPv4 answer), HTTPS with TLS 1.3 and 1.2, QUIC v1 and v2, plain HTTP, SSH, SOCKS5,
IPv6, 802.1Q and QinQ tags, and tunnels (VXLAN, GRE, GTP-U, IP-in-IP, 6in4).
"""

from __future__ import annotations

__all__ = ["DEMO_SEED", "build_demo", "main", "write_demo"]

import argparse
import heapq
from pathlib import Path

from sluice.io.pcap_writer import PcapngWriter
from sluice.synth._rand import seeded
from sluice.synth.flows import FlowSpec, build_flow, client_mac, server_address
from sluice.synth.payloads import PayloadPool
from sluice.synth.scenario import GATEWAY_MAC, RESOLVER_V4, RESOLVER_V6, SOCKS_PROXY
from sluice.synth.sessions import EthernetFraming, Framing, RawIpFraming, TunnelFraming
from sluice.synth.truth import GroundTruth
from sluice.wire.frame import LinkType

DEMO_SEED = 20240703
"""Seed of the demo capture."""
DEMO_START_TS = 1_720_000_000.0
"""Time of the first demo flow."""

_ETH, _TUN = 0, 1

# (kind, host, variant, sizes, interface, ipv6, framing tag)
_PLAN: list[tuple[str, str, str, tuple[int, ...], int, bool, str]] = [
    ("dns", "www.wikipedia.org", "A", (), _ETH, False, ""),
    ("https", "www.wikipedia.org", "1.3", (4500,), _ETH, False, ""),
    ("dns", "www.youtube.com", "A", (), _ETH, False, ""),
    ("quic", "www.youtube.com", "1", (), _ETH, False, ""),
    ("dns", "i.ytimg.com", "AAAA", (), _ETH, True, ""),
    ("quic", "i.ytimg.com", "1", (), _ETH, True, ""),
    ("dns", "rutracker.org", "A", (), _ETH, False, "vlan"),
    ("https", "rutracker.org", "1.3", (1200,), _ETH, False, "vlan"),
    ("dns", "www.torproject.org", "A", (), _ETH, False, ""),
    ("https", "www.torproject.org", "1.2", (1500,), _ETH, False, ""),
    ("dns", "www.example.com", "A", (), _ETH, False, ""),
    ("http", "www.example.com", "", (900,), _ETH, False, ""),
    ("http", "deb.debian.org", "", (1200,), _ETH, False, "gre"),
    ("https", "api.github.com", "1.3", (1200,), _ETH, False, "vxlan"),
    ("dns", "www.binance.com", "A", (), _ETH, False, "qinq"),
    ("https", "www.binance.com", "1.3", (1200,), _ETH, False, "qinq"),
    ("dns", "_spf.example.net", "TXT", (700, 700, 700), _ETH, False, "frag"),
    ("dns_tcp", "example.org", "TXT", (900,), _ETH, False, ""),
    ("ssh", "bastion.example.net", "", (), _ETH, False, ""),
    ("socks5", "www.bbc.co.uk", "1.3", (1000,), _ETH, False, ""),
    ("dns", "www.google.com", "AAAA", (), _ETH, True, ""),
    ("https", "www.google.com", "1.3", (1000,), _ETH, True, ""),
    ("quic", "www.google.com", "2", (), _ETH, False, ""),
    ("dns", "web.telegram.org", "A", (), _ETH, False, "gtpu"),
    ("https", "web.telegram.org", "1.3", (1000,), _ETH, False, "gtpu"),
    ("https", "protonvpn.com", "1.3", (900,), _ETH, False, "ipip"),
    ("dns", "www.example.org", "AAAA", (), _ETH, True, "6in4"),
    ("dns", "vk.com", "A", (), _ETH, False, ""),
    ("https", "vk.com", "1.3", (1000,), _ETH, False, ""),
    ("http", "www.example.net", "", (600,), _ETH, True, ""),
    ("dns", "www.reddit.com", "A", (), _ETH, False, ""),
    ("dns", "nordvpn.com", "A", (), _ETH, False, ""),
    ("https", "nordvpn.com", "1.2", (1000,), _ETH, False, ""),
    ("dns", "pypi.org", "A", (), _ETH, False, "vlan"),
    ("dns", "www.coinbase.com", "A", (), _TUN, False, ""),
    ("https", "www.coinbase.com", "1.3", (1000,), _TUN, False, ""),
    ("dns", "fonts.gstatic.com", "A", (), _TUN, False, ""),
    ("quic", "fonts.gstatic.com", "1", (), _TUN, False, ""),
    ("dns", "slack.com", "AAAA", (), _TUN, True, ""),
    ("https", "slack.com", "1.3", (1200,), _TUN, True, ""),
    ("http", "archive.ubuntu.com", "", (800,), _TUN, False, ""),
    ("dns", "discord.com", "A", (), _TUN, False, ""),
    ("https", "discord.com", "1.3", (1000,), _TUN, False, ""),
    ("dns", "duckduckgo.com", "A", (), _TUN, False, ""),
    ("https", "duckduckgo.com", "1.2", (900,), _TUN, False, ""),
    ("dns", "psiphon.ca", "A", (), _TUN, False, ""),
    ("dns", "getlantern.org", "A", (), _TUN, False, ""),
    ("dns", "thepiratebay.org", "A", (), _TUN, False, ""),
    ("dns", "www.kraken.com", "AAAA", (), _TUN, True, ""),
    ("dns", "mail.ru", "A", (), _TUN, False, ""),
]


def _framing(tag: str, iface: int, cip: str) -> Framing:
    if iface == _TUN:
        return RawIpFraming()
    eth = EthernetFraming(client_mac(cip), GATEWAY_MAC)
    if tag == "vlan":
        return EthernetFraming(client_mac(cip), GATEWAY_MAC, vlans=(100,))
    if tag == "qinq":
        return EthernetFraming(client_mac(cip), GATEWAY_MAC, vlans=(300, 20))
    if tag == "gre":
        return TunnelFraming(eth, "gre", "172.16.0.1", "172.16.9.1", key=42)
    if tag == "vxlan":
        return TunnelFraming(eth, "vxlan", "172.16.0.1", "172.16.9.2", key=5001, sport=51000)
    if tag == "gtpu":
        return TunnelFraming(eth, "gtpu", "172.16.100.1", "172.16.200.1", key=0x1F2E3D4C)
    if tag in ("ipip", "6in4"):
        return TunnelFraming(eth, "ipip", "172.16.0.1", "172.16.9.3")
    return eth


def build_demo(seed: int = DEMO_SEED) -> tuple[list[tuple[int, float, bytes]], GroundTruth]:
    """Build the demo flows.

    Args:
        seed: seed of every random choice (handshake bytes come from OpenSSL/aioquic).

    Returns:
        ``(interface, ts, frame)`` triples in timestamp order, and the ground truth.
    """
    rng = seeded(seed)
    pool = PayloadPool(seed, variants=1, filler_size=1 << 18)
    t = DEMO_START_TS
    per_flow: list[list[tuple[float, int, bytes]]] = []
    truth = GroundTruth(
        meta={
            "generator": "sluice.synth.demo",
            "seed": seed,
            "interfaces": [
                {"name": "eth0", "linktype": int(LinkType.ETHERNET), "tsresol_exp": 9},
                {"name": "tun0", "linktype": int(LinkType.RAW), "tsresol_exp": 6},
            ],
        }
    )
    for fid, (kind, host, variant, sizes, iface, v6, tag) in enumerate(_PLAN):
        t += rng.uniform(0.01, 0.12)
        cip = f"fd00:5::{fid + 0x100:x}" if v6 else f"10.1.0.{fid + 10}"
        if iface == _TUN:
            cip = f"fd00:77::{fid + 2:x}" if v6 else f"10.8.0.{fid + 2}"
        if kind in ("dns", "dns_tcp"):
            server = (RESOLVER_V6 if v6 else RESOLVER_V4, 53)
        elif kind == "socks5":
            server = (SOCKS_PROXY, 1080)
        else:
            port = {"http": 80, "ssh": 22}.get(kind, 443)
            server = (server_address(host, 6 if v6 else 4), port)
        spec = FlowSpec(
            flow_id=fid,
            kind=kind,
            start_ts=t,
            client=(cip, rng.randrange(32768, 61000)),
            server=server,
            host=host,
            rtt_s=rng.uniform(0.008, 0.08),
            sizes=sizes,
            variant=variant,
            seed=rng.randrange(1 << 62),
            framing=_framing(tag, iface, cip),
            interface=iface,
            mtu=1500 if tag == "frag" else None,
            reorder=kind == "https" and fid == 1,
        )
        frames, ft = build_flow(spec, pool)
        truth.append(ft)
        per_flow.append([(ts, iface, fr) for ts, fr in frames])
    merged = heapq.merge(*per_flow, key=lambda x: x[0])
    return [(iface, ts, fr) for ts, iface, fr in merged], truth


def write_demo(out: Path, truth_path: Path | None = None, *, seed: int = DEMO_SEED) -> GroundTruth:
    """Write the demo pcapng and its ground truth.

    Args:
        out: pcapng file to create.
        truth_path: ground-truth JSON (default ``out`` with suffix ``.truth.json``).
        seed: demo seed.

    Returns:
        The ground truth written.
    """
    frames, truth = build_demo(seed)
    with (
        out.open("wb") as fh,
        PcapngWriter(fh, comment="sluice demo capture (synthetic, see demo.truth.json)") as w,
    ):
        w.add_interface(LinkType.ETHERNET, tsresol_exp=9, name="eth0")
        w.add_interface(LinkType.RAW, tsresol_exp=6, name="tun0")
        for i, (iface, ts, frame) in enumerate(frames):
            comment = "first packet of the demo" if i == 0 else None
            w.write(iface, ts, frame, comment=comment)
    truth.meta["packets"] = len(frames)
    truth.meta["flows"] = len(truth)
    if truth_path is None:
        truth_path = out.with_name(out.name.removesuffix(".pcapng") + ".truth.json")
    truth.dump(truth_path)
    return truth


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m sluice.synth.demo --out examples/demo.pcapng``."""
    ap = argparse.ArgumentParser(prog="python -m sluice.synth.demo", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("examples/demo.pcapng"))
    ap.add_argument("--truth", type=Path, default=None, help="default: <out>.truth.json")
    ap.add_argument("--seed", type=int, default=DEMO_SEED)
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    truth = write_demo(args.out, args.truth, seed=args.seed)
    size = args.out.stat().st_size
    print(f"{args.out}: {truth.meta['packets']} packets, {len(truth)} flows, {size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
