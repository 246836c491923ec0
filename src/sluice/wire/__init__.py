"""Sans-IO protocol decoders and encoders: bytes in, typed records out (and back), no sockets,
no clock. Every decoder raises only :class:`~sluice.errors.DecodeError`, which the one packet
loop counts by reason.
"""

__all__ = [
    "cursor",
    "dns",
    "encode",
    "ethernet",
    "frame",
    "gquic",
    "http",
    "ip",
    "ipsec",
    "ja4",
    "openvpn",
    "packet",
    "pptp",
    "quic",
    "quic_crypto",
    "reassembly",
    "socks",
    "ssh",
    "tailscale",
    "tinc",
    "tls",
    "transport",
    "tunnel",
    "wireguard",
    "x509",
]
