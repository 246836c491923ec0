"""Fingerprints of VPN protocols: OpenVPN, WireGuard, IKE/ESP, PPTP, tinc, Tailscale, FortiGate.

Each rule reads what the :mod:`sluice.wire` decoders (``openvpn``, ``wireguard``, ``ipsec``,
``pptp``, ``tinc``, ``tailscale``) make of the first bytes of each direction's first payload
(``c2s_head``/``s2c_head``), the packet sizes and the application metadata of one flow record;
the byte layouts live in those modules, the judgement here. A rule fires only on structure a
random byte string would match with negligible probability (an opcode *and* the zero or counter
fields that must follow it, a length field equal to the datagram's length, an index echoed by the
peer). Sources: OpenVPN ``ssl_pkt.h``/``reliable.c`` and the tls-crypt(-v2) docs; WireGuard paper
§5.4; RFC 7296 §3.1 (IKEv2 header), RFC 3948 §2 (UDP encapsulation of ESP); RFC 2637 §1.4 (PPTP
magic cookie); tinc's ``protocol.c`` (ID request); Tailscale's ``disco`` package (magic).
"""

from __future__ import annotations

__all__ = ["RULES"]

import math

from sluice.detect._rules import AH, ESP, GRE, TCP, UDP, Rule, RuleMatch, ev, hexs, transports
from sluice.detect.verdict import Evidence
from sluice.features.view import FlowView
from sluice.wire.ipsec import NAT_T_PORT, try_decode_esp_in_udp, try_decode_ike
from sluice.wire.openvpn import (
    CLIENT_HARD_RESETS,
    SERVER_HARD_RESETS,
    OpenVpnPacket,
    control_layout,
    first_byte_is_hard_reset,
    hmac_size_by_length,
    try_decode_openvpn,
)
from sluice.wire.pptp import starts_ppp_frame, try_decode_pptp
from sluice.wire.tailscale import DISCO_MAGIC, try_decode_disco
from sluice.wire.tinc import try_decode_tinc_id
from sluice.wire.wireguard import WireGuardMessage, WireGuardType, try_decode_wireguard

# -- OpenVPN ---------------------------------------------------------------------------------------

_OVPN_NAMES: dict[int, str] = {int(op): op.name for op in (*CLIENT_HARD_RESETS, *SERVER_HARD_RESETS)}
_OVPN_OPCODES = {
    "client": sorted(int(op) for op in CLIENT_HARD_RESETS),
    "server": sorted(int(op) for op in SERVER_HARD_RESETS),
}


def _ovpn_role(p: OpenVpnPacket | None) -> str:
    """``client``/``server`` for a hard reset (key id 0, a session id), else ``""``."""
    if p is None or p.key_id or p.session_id == bytes(8):
        return ""
    return "client" if p.opcode in CLIENT_HARD_RESETS else "server" if p.opcode in SERVER_HARD_RESETS else ""


@transports(TCP, UDP)
def openvpn(v: FlowView) -> RuleMatch | None:
    """OpenVPN hard-reset exchange over UDP or TCP (plain, tls-auth, tls-crypt, tls-crypt-v2)."""
    if v.rec.proto not in (6, 17):
        return None
    tcp = v.rec.proto == 6
    if not (first_byte_is_hard_reset(v.head(0), tcp=tcp) or first_byte_is_hard_reset(v.head(1), tcp=tcp)):
        return None
    got = [try_decode_openvpn(v.head(0), tcp=tcp), try_decode_openvpn(v.head(1), tcp=tcp)]
    roles = [_ovpn_role(got[0]), _ovpn_role(got[1])]
    if not any(roles):
        return None
    if roles[1] == "client" or (roles[0] == "server" and got[1] is not None):
        return None  # a reset answered by a reset of the same kind: not OpenVPN
    transport = "TCP" if tcp else "UDP"
    sids = [p.session_id if p is not None else None for p in got]
    shapes = ["", ""]
    for d in (0, 1):
        p = got[d]
        if not roles[d] or p is None:
            continue
        server = roles[d] == "server"
        shapes[d] = control_layout(p, server=server, peer_session_id=sids[1 - d] if server else None)
    by_length = False
    if roles[0] and roles[1] and not (shapes[0] and shapes[1]):
        h0 = hmac_size_by_length(_ovpn_length(v, 0, got[0]), server=False) if got[0] else 0
        h1 = hmac_size_by_length(_ovpn_length(v, 1, got[1]), server=True) if got[1] else 0
        if h0 and h0 == h1:
            shapes = [
                shapes[0] or f"tls-auth (HMAC {h0} bytes, by length)",
                shapes[1] or f"tls-auth (HMAC {h1} bytes, by length)",
            ]
            by_length = True
    if not any(shapes) or any(roles[d] and not shapes[d] for d in (0, 1)):
        return None
    evidence: list[Evidence] = []
    conf = 0.0
    decided = -1
    for d in (0, 1):
        p = got[d]
        if not shapes[d] or p is None:
            continue
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        c = 0.9 if shapes[d] == "plain" else 0.6 if by_length else 0.85 if p.opcode != 10 else 0.75
        conf = max(conf, c)
        evidence.append(
            ev(
                f"openvpn.{roles[d]}_reset",
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"{(p.opcode << 3) | p.key_id:02x} ({_OVPN_NAMES[p.opcode]}, key id 0) over {transport},"
                f" {shapes[d]}",
                f"opcode {_OVPN_OPCODES[roles[d]]} << 3, key id 0, then the fields that layout requires",
                c,
                f"the {'client' if d == 0 else 'server'}'s first packet is an OpenVPN {roles[d]} hard"
                f" reset ({shapes[d]})",
                idx,
            )
        )
    if roles[0] == "client" and roles[1] == "server":
        conf = 0.9 if by_length else 0.97
        evidence.append(
            ev(
                "openvpn.reset_exchange",
                "c2s_head,s2c_head",
                "client reset, server reset",
                "client reset answered by server reset",
                conf - 0.85,
                "the peer answered the reset the way an OpenVPN server does",
                decided,
            )
        )
        client_sid = sids[0]
        if client_sid and got[1] is not None and got[1].mentions(client_sid):
            conf = 0.99
            evidence.append(
                ev(
                    "openvpn.session_echo",
                    "s2c_head",
                    client_sid.hex(),
                    "the client's session id in the server's ack",
                    0.02,
                    "the server acknowledged the client's session id",
                    decided,
                )
            )
    return RuleMatch("openvpn", "vpn", "openvpn", conf, decided, tuple(evidence))


def _ovpn_length(v: FlowView, d: int, p: OpenVpnPacket) -> int:
    """The packet's length: its TCP length prefix, or the length of the UDP datagram."""
    return p.length if p.length is not None else v.payload_len(d)


# -- WireGuard -------------------------------------------------------------------------------------


@transports(UDP)
def wireguard(v: FlowView) -> RuleMatch | None:
    """WireGuard handshake (types 1/2 with index echo) or transport data (type 4) over UDP."""
    if v.rec.proto != 17:
        return None
    msgs: list[WireGuardMessage | None] = [None, None]
    for d in (0, 1):
        m = try_decode_wireguard(v.head(d))
        if m is None or not m.fits(v.payload_len(d)):
            continue
        if m.message_type == WireGuardType.TRANSPORT_DATA and m.counter >= 1 << 32:
            continue  # a counter this high is not a tunnel's first packet
        msgs[d] = m
    kinds = [m.kind if m is not None else "" for m in msgs]
    if not any(kinds):
        return None
    evidence = []
    conf = 0.0
    decided = -1
    for d in (0, 1):
        m = msgs[d]
        if m is None:
            continue
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        c = 0.9 if kinds[d] != "transport data" else 0.8
        conf = max(conf, c)
        evidence.append(
            ev(
                f"wireguard.{kinds[d].replace(' ', '_')}",
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"{m.message_type:02x}000000, {v.payload_len(d)} bytes",
                "type 1/148, 2/92, 3/64 bytes or 4 (data, 16-byte multiple); 3 zero bytes",
                c,
                f"message type and size of a WireGuard {kinds[d]}",
                idx,
            )
        )
    init, resp = msgs
    if (
        init is not None
        and resp is not None
        and init.message_type == WireGuardType.INITIATION
        and resp.message_type == WireGuardType.RESPONSE
        and resp.receiver_index == init.sender_index
    ):
        conf = 0.99
        evidence.append(
            ev(
                "wireguard.index_echo",
                "s2c_head[8:12]",
                _le_hex(resp.receiver_index),
                f"initiator's sender index {_le_hex(init.sender_index)}",
                0.09,
                "the response names the initiator's sender index",
                decided,
            )
        )
    elif kinds[0] == kinds[1] == "transport data":
        conf = 0.95
        evidence.append(
            ev(
                "wireguard.data_both_ways",
                "c2s_head,s2c_head",
                "type 4 both ways",
                "type 4 both ways",
                0.15,
                "both peers send WireGuard transport data",
                decided,
            )
        )
    return RuleMatch("wireguard", "vpn", "wireguard", conf, decided, tuple(evidence))


def _le_hex(index: int) -> str:
    """An index as its four wire bytes in hex (WireGuard's indices are little-endian)."""
    return index.to_bytes(4, "little").hex()


# -- OpenVPN static-key mode ------------------------------------------------------------------------

_STATIC_MIN_PACKETS = 6
"""Payload packets (at least 2 each way) the static-key rule needs before it speaks."""
_STATIC_RESIDUES = {0: "HMAC-SHA256/512 + 16-byte IV", 4: "HMAC-SHA1 + 16-byte IV"}
"""Payload length mod 16 of a static-key packet with a 16-byte-block cipher (AES-CBC) by HMAC."""
_STATIC_MIN_LEN = 52
"""The shortest such packet: a 20-byte HMAC, a 16-byte IV and one cipher block."""
_STATIC_ENTROPY = 0.85
"""First payloads' entropy, as a fraction of the most their length allows."""


@transports(UDP)
def openvpn_static(v: FlowView) -> RuleMatch | None:
    """OpenVPN's static-key mode over UDP: no opcode, but HMAC + IV + CBC blocks in every datagram.

    With ``--secret`` every datagram is ``HMAC || IV || AES-CBC(packet id, time, payload)``, so
    every payload length has the same remainder mod 16 (0 with SHA-256/512, 4 with SHA-1), the
    bytes look random from the first, and no cleartext protocol is there. Other CBC+HMAC tunnels
    share the shape: the family is a guess, the class is not.
    """
    r = v.rec
    if r.proto != 17 or r.meta.app:
        return None
    lens = [(i, d, n) for i, (d, n) in enumerate(zip(r.pkt_dirs, v.payload_lens, strict=False)) if n > 0]
    if len(lens) < _STATIC_MIN_PACKETS:
        return None
    upto = lens[_STATIC_MIN_PACKETS - 1][0]
    rest = {n % 16 for _i, _d, n in lens}
    if len(rest) != 1 or min(n for _i, _d, n in lens) < _STATIC_MIN_LEN:
        return None
    residue = rest.pop()
    if residue not in _STATIC_RESIDUES or min(sum(1 for x in lens if x[1] == d) for d in (0, 1)) < 2:
        return None
    for d, entropy in ((0, r.c2s_entropy), (1, r.s2c_entropy)):
        first = next(n for _i, dd, n in lens if dd == d)
        if entropy < _STATIC_ENTROPY * math.log2(min(first, 256)):
            return None
    sizes = sorted({n for _i, _d, n in lens})
    return RuleMatch(
        "openvpn_static",
        "vpn",
        "openvpn",
        0.75,
        upto,
        (
            ev(
                "openvpn.static_key_lengths",
                "payload lengths",
                f"{len(lens)} datagrams, all {residue} mod 16: {', '.join(map(str, sizes[:8]))}",
                f"{residue} mod 16 ({_STATIC_RESIDUES[residue]} + AES-CBC blocks)",
                0.6,
                "every datagram is HMAC || IV || whole cipher blocks, as OpenVPN's --secret mode sends",
                upto,
            ),
            ev(
                "openvpn.static_key_random",
                "c2s_entropy, s2c_entropy",
                f"{r.c2s_entropy:.2f}, {r.s2c_entropy:.2f} bits/byte",
                f">= {_STATIC_ENTROPY:g} of log2(length)",
                0.15,
                "no cleartext header: random-looking from the first byte, both ways",
                v.first_payload_index(1),
            ),
        ),
    )


@transports(UDP)
def tailscale(v: FlowView) -> RuleMatch | None:
    """Tailscale's disco messages (magic ``TS💬``) on its WireGuard UDP flows."""
    if v.rec.proto != 17:
        return None
    for d in (0, 1):
        if try_decode_disco(v.head(d)) is not None:
            idx = v.first_payload_index(d)
            return RuleMatch(
                "tailscale",
                "vpn",
                "commercial:tailscale",
                0.95,
                idx,
                (
                    ev(
                        "tailscale.disco_magic",
                        f"{'c2s' if d == 0 else 's2c'}_head",
                        DISCO_MAGIC.hex(),
                        DISCO_MAGIC.hex(),
                        0.95,
                        "Tailscale's disco protocol magic opens the datagram",
                        idx,
                    ),
                ),
            )
    return None


# -- IPsec -----------------------------------------------------------------------------------------


@transports(UDP, ESP, AH)
def ipsec(v: FlowView) -> RuleMatch | None:
    """IKE (UDP, with or without the NAT-T non-ESP marker), ESP and AH (IP protocols 50/51)."""
    r = v.rec
    if r.proto in (50, 51):
        name = "ESP" if r.proto == 50 else "AH"
        return RuleMatch(
            "ipsec",
            "vpn",
            "ipsec",
            0.97,
            0,
            (
                ev(
                    f"ipsec.{name.lower()}",
                    "proto",
                    r.proto,
                    "50 (ESP) or 51 (AH)",
                    0.97,
                    f"IP protocol {r.proto} is IPsec {name}",
                    0,
                ),
            ),
        )
    if r.proto != 17:
        return None
    hdr = try_decode_ike(v.head(0))
    if hdr is None or (r.c2s_first_payload_len and not hdr.fits(r.c2s_first_payload_len)):
        return _esp_in_udp(v)
    idx = v.first_payload_index(0)
    evidence = [
        ev(
            "ipsec.ike_header",
            "c2s_head",
            hexs(v.head(0)[:20]),
            "IKE header: SPI, version 1.0/2.0, known exchange, length = datagram",
            0.95,
            f"the first datagram is an IKE {hdr.exchange} message whose length field fits",
            idx,
        )
    ]
    if hdr.non_esp_marker:
        evidence.append(
            ev(
                "ipsec.nat_t",
                "c2s_head[0:4]",
                "00000000",
                "non-ESP marker",
                0.02,
                "IKE behind the NAT-T marker: ESP follows in this UDP flow (RFC 3948)",
                idx,
            )
        )
    return RuleMatch("ipsec", "vpn", "ipsec", 0.97, idx, tuple(evidence))


def _esp_in_udp(v: FlowView) -> RuleMatch | None:
    """ESP in UDP on the NAT-T port (a flow seen without its IKE exchange)."""
    r = v.rec
    if NAT_T_PORT not in (r.client_port, r.server_port):
        return None
    esp = try_decode_esp_in_udp(v.head(0))
    if esp is None or not 1 <= esp.sequence < 1 << 31 or r.c2s_first_payload_len < 24:
        return None
    return RuleMatch(
        "ipsec",
        "vpn",
        "ipsec",
        0.85,
        0,
        (
            ev(
                "ipsec.esp_in_udp",
                "c2s_head[0:8]",
                f"SPI {esp.spi:08x}, sequence {esp.sequence}",
                "UDP port 4500, SPI != 0, sequence number from 1",
                0.85,
                "ESP packets (SPI, sequence number) in UDP on the NAT-T port (RFC 3948)",
                0,
            ),
        ),
    )


# -- PPTP, GRE, tinc, FortiGate ----------------------------------------------------------------------


@transports(TCP, GRE)
def pptp(v: FlowView) -> RuleMatch | None:
    """PPTP control connection (magic cookie) and PPP carried in enhanced GRE."""
    r = v.rec
    if r.proto != 6 and r.proto != 47:
        return None
    head = v.head(0)
    if r.proto == 6 and try_decode_pptp(head) is not None:
        idx = v.first_payload_index(0)
        return RuleMatch(
            "pptp",
            "vpn",
            "pptp",
            0.99,
            idx,
            (
                ev(
                    "pptp.magic_cookie",
                    "c2s_head[4:8]",
                    "1a2b3c4d",
                    "1a2b3c4d (control message)",
                    0.99,
                    "PPTP control messages carry the magic cookie 0x1A2B3C4D",
                    idx,
                ),
            ),
        )
    if r.proto == 47 and starts_ppp_frame(head):
        return RuleMatch(
            "pptp",
            "vpn",
            "pptp",
            0.9,
            0,
            (
                ev(
                    "pptp.gre_ppp",
                    "c2s_head[0:2]",
                    "ff03",
                    "ff03 (PPP in enhanced GRE)",
                    0.9,
                    "GRE carrying PPP frames is PPTP's data channel",
                    0,
                ),
            ),
        )
    return None


@transports(TCP)
def tinc(v: FlowView) -> RuleMatch | None:
    """tinc's meta protocol: both peers open with an ID request ``0 <name> 17.<minor>``."""
    if v.rec.proto != 6:
        return None
    if try_decode_tinc_id(v.head(0)) is None:
        return None
    hits = [True, try_decode_tinc_id(v.head(1)) is not None]
    idx = v.first_payload_index(1 if hits[1] else 0)
    conf = 0.97 if hits[1] else 0.85
    return RuleMatch(
        "tinc",
        "vpn",
        "tinc",
        conf,
        idx,
        (
            ev(
                "tinc.id_request",
                "c2s_head",
                v.head(0)[:24].decode("ascii", "replace").strip(),
                "'0 <name> 17[.minor]\\n' from both peers",
                conf,
                "tinc peers open the meta connection with an ID request naming protocol 17",
                idx,
            ),
        ),
    )


def fortinet(v: FlowView) -> RuleMatch | None:
    """FortiGate SSL-VPN: the gateway's factory certificate names Fortinet/FortiGate."""
    m = v.rec.meta
    if not m.cert_subject and not m.cert_issuer:
        return None
    text = f"{m.cert_subject} {m.cert_issuer}"
    if "OU=FortiGate" not in text and "O=Fortinet" not in text:
        return None
    idx = v.first_payload_index(1)
    return RuleMatch(
        "fortinet",
        "vpn",
        "fortinet",
        0.8,
        max(idx, 0),
        (
            ev(
                "fortinet.certificate",
                "cert_subject",
                m.cert_subject,
                "O=Fortinet / OU=FortiGate",
                0.8,
                "the server presents a FortiGate certificate (SSL-VPN portal or its admin interface)",
                idx,
            ),
        ),
    )


RULES: tuple[tuple[str, Rule], ...] = (
    ("openvpn", openvpn),
    ("wireguard", wireguard),
    ("openvpn_static", openvpn_static),
    ("tailscale", tailscale),
    ("ipsec", ipsec),
    ("pptp", pptp),
    ("tinc", tinc),
    ("fortinet", fortinet),
)
"""VPN rules in the order they are tried."""
