"""nDPI's expected outputs (``corpus/ndpi/*.out``) read as a peer's verdicts, per ``TAXONOMY.md``.

nDPI is not ground truth: it names 3 of the 7 Tor flows of ``tor.pcap`` and flags some benign apps
as fully encrypted. Where a capture's file name says what it is, the name is the better label for
the flows carrying that protocol (:data:`NAMED_CAPTURES`).
"""

from __future__ import annotations

__all__ = [
    "NAMED_CAPTURES",
    "NdpiFlow",
    "ndpi_class",
    "read_ndpi_out",
]

import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

_VPN = {
    "OpenVPN": "openvpn",
    "WireGuard": "wireguard",
    "IPSec": "ipsec",
    "PPTP": "pptp",
    "CiscoVPN": "anyconnect",
    "FortiClient": "fortinet",
    "Softether": "softether",
    "TINC": "tinc",
    "Tailscale": "commercial:tailscale",
    "CloudflareWarp": "commercial:cloudflarewarp",
    "HotspotShield": "commercial:hotspotshield",
    "TunnelBear": "commercial:tunnelbear",
    "OperaVPN": "commercial:operavpn",
    "ProtonVPN": "commercial:protonvpn",
    "Mullvad": "commercial:mullvad",
    "NordVPN": "commercial:nordvpn",
    "SurfShark": "commercial:surfshark",
    "CactusVPN": "commercial:cactusvpn",
    "Windscribe": "commercial:windscribe",
    "PIA": "commercial:pia",
}
_CIRCUMVENTION = {"Tor": "tor", "Psiphon": "psiphon", "UltraSurf": "ultrasurf"}
_PROXY = {"SOCKS": "socks", "HTTP_Connect": "http-proxy", "HTTP_Proxy": "http-proxy", "HAProxy": "relay"}
_TUNNEL = {"GRE": "gre", "Teredo": "teredo"}
_CRYPTO = {
    "BITCOIN": "bitcoin",
    "Bitcoin": "bitcoin",
    "Ethereum": "ethereum",
    "Monero": "monero",
    "Mining": "stratum",
    "Nano": "nano",
}
"""nDPI names of coin and mining protocols (TAXONOMY.md: crypto); nDPI's Mining is Stratum."""

NAMED_CAPTURES: dict[str, tuple[str, str]] = {
    "openvpn.pcap": ("vpn", "openvpn"),
    "openvpn-tlscrypt.pcap": ("vpn", "openvpn"),
    "openvpn_nohmac.pcapng": ("vpn", "openvpn"),
    "openvpn_obfuscated.pcapng": ("vpn", "openvpn"),
    "443-opvn.pcap": ("vpn", "openvpn"),
    "wireguard.pcap": ("vpn", "wireguard"),
    "tor.pcap": ("circumvention", "tor"),
    "shadowsocks.pcap": ("circumvention", "shadowsocks"),
    "tls_heur__shadowsocks-tcp.pcapng": ("circumvention", "shadowsocks"),
    "tls_heur__vmess-tcp.pcapng": ("circumvention", "vmess"),
    "tls_heur__vmess-tcp-tls.pcapng": ("circumvention", "vmess"),
    "dns-tunnel-iodine.pcap": ("tunnel", "dns-tunnel"),
    "tinc.pcap": ("vpn", "tinc"),
}
"""Captures whose name says what they carry: (class, family) of the flows carrying it."""


@dataclass(frozen=True, slots=True)
class NdpiFlow:
    """One flow line of an nDPI ``.out`` file."""

    l4: str
    """TCP, UDP, ICMP ..."""
    a: tuple[str, int]
    """First endpoint (address, port)."""
    b: tuple[str, int]
    """Second endpoint."""
    proto: str
    """nDPI's protocol, ``id/Name`` or ``id.id/Master.App``."""
    risk: str
    """nDPI's risk list (empty when none)."""
    label: str
    """Class per TAXONOMY.md's reading of nDPI."""
    family: str
    """Family per that reading."""
    hostname: str = ""
    """``Hostname/SNI`` as nDPI printed it (TLS/QUIC SNI, DNS query, HTTP Host, SSH banner)."""
    vlan: str = ""
    """``VLAN`` field, when present."""
    fields: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Every ``[Key: value]`` field of the line."""

    @property
    def endpoints(self) -> frozenset[tuple[str, int]]:
        """Both endpoints, order-free."""
        return frozenset((self.a, self.b))


_FLOW = re.compile(r"^\s*\d+\s+(?P<l4>\S+)\s+(?P<a>\S+)\s+(?:<->|->)\s+(?P<b>\S+)\s+(?P<rest>\[.*)$")
_FIELD = re.compile(r"\[(?P<k>[^:\]]+): (?P<v>[^\]]*)\]")


def _endpoint(text: str) -> tuple[str, int]:
    if text.startswith("["):
        addr, _, port = text[1:].partition("]:")
    elif text.count(":") == 1:
        addr, port = text.split(":")
    else:
        addr, port = text, "0"
    with contextlib.suppress(ValueError):
        addr = str(ipaddress.ip_address(addr))
    return addr, int(port or 0)


def ndpi_class(proto: str, risk: str = "", ssh_is_tunnel: bool = False) -> tuple[str, str]:
    """(class, family) of an nDPI protocol name and risk list, per TAXONOMY.md.

    SSH counts as a tunnel only when used for forwarding, which nDPI does not say: by default it
    is ``benign``/``app:ssh``.
    """
    names = re.split(r"[./:]", proto)
    for table, label in (
        (_VPN, "vpn"),
        (_CIRCUMVENTION, "circumvention"),
        (_PROXY, "proxy"),
        (_TUNNEL, "tunnel"),
        (_CRYPTO, "crypto"),
    ):
        for name in reversed(names):
            if name in table:
                return label, table[name]
    if "SSH" in names:
        return ("tunnel", "ssh") if ssh_is_tunnel else ("benign", "app:ssh")
    if "Fully Encrypted" in risk or "Obfuscated" in risk:
        return "circumvention", ""
    return "benign", ""


def read_ndpi_out(path: str | Path) -> list[NdpiFlow]:
    """The flows of one nDPI expected-output file."""
    out = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = _FLOW.match(line)
        if not m:
            continue
        fields = {f.group("k"): f.group("v") for f in _FIELD.finditer(m.group("rest"))}
        proto = fields.get("proto", "")
        risk = fields.get("Risk", "")
        label, family = ndpi_class(proto, risk)
        out.append(
            NdpiFlow(
                m.group("l4"),
                _endpoint(m.group("a")),
                _endpoint(m.group("b")),
                proto,
                risk,
                label,
                family,
                fields.get("Hostname/SNI", ""),
                fields.get("VLAN", ""),
                fields,
            )
        )
    return out
