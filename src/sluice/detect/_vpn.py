"""Fingerprints of VPN protocols: OpenVPN, WireGuard, IKE/ESP, PPTP, tinc, Tailscale, FortiGate.

Each rule reads the first bytes of each direction's first payload (``c2s_head``/``s2c_head``),
the packet sizes and the application metadata of one flow record, and fires only on structure a
random byte string would match with negligible probability (an opcode *and* the zero or counter
fields that must follow it, a length field equal to the datagram's length, an index echoed by the
peer). Sources: OpenVPN ``ssl_pkt.h``/``reliable.c`` and the tls-crypt(-v2) docs; WireGuard paper
§5.4; RFC 7296 §3.1 (IKEv2 header), RFC 3948 §2 (UDP encapsulation of ESP); RFC 2637 §1.4 (PPTP
magic cookie); tinc's ``protocol.c`` (ID request); Tailscale's ``disco`` package (magic).
"""

from __future__ import annotations

__all__ = ["RULES"]

import math
import re

from sluice.detect._rules import Rule, RuleMatch, ev, hexs
from sluice.detect.verdict import Evidence
from sluice.features.view import FlowView

# -- OpenVPN ---------------------------------------------------------------------------------------

_OVPN_CLIENT_RESET = {
    1: "P_CONTROL_HARD_RESET_CLIENT_V1",
    7: "P_CONTROL_HARD_RESET_CLIENT_V2",
    10: "P_CONTROL_HARD_RESET_CLIENT_V3",
}
_OVPN_SERVER_RESET = {2: "P_CONTROL_HARD_RESET_SERVER_V1", 8: "P_CONTROL_HARD_RESET_SERVER_V2"}
_PID1 = b"\x00\x00\x00\x01"
_ZERO4 = bytes(4)
_HMAC_SIZES = (20, 32, 16, 48)


def _ovpn_packet(v: FlowView, d: int) -> tuple[bytes, int] | None:
    """The OpenVPN packet at the start of direction ``d`` and its length (TCP: after the prefix)."""
    head = v.head(d)
    if v.rec.proto == 6:
        if len(head) < 11:
            return None
        plen = int.from_bytes(head[:2], "big")
        if not 14 <= plen <= 1700:
            return None
        return head[2:], plen
    if v.rec.proto == 17 and len(head) >= 9:
        return head, v.payload_len(d)
    return None


_T_MIN, _T_MAX = 946684800, 4102444800  # 2000-01-01 .. 2100-01-01, the packet-id timestamp


def _pid_at(pkt: bytes, off: int) -> bool:
    """A replay packet id of 1 followed by a plausible Unix time at ``off``."""
    if len(pkt) < off + 8 or pkt[off : off + 4] != _PID1:
        return False
    return _T_MIN <= int.from_bytes(pkt[off + 4 : off + 8], "big") <= _T_MAX


def _ovpn_shape(pkt: bytes, length: int, server: bool, peer_sid: bytes | None) -> str:
    """Which control-channel protection the packet's layout shows ("" when none fits).

    Client reset: ``op sid [hmac pid time | pid time hmac] acks=0 msg-pid=0``; server reset: the
    same with one or more acks followed by the client's session id.
    """
    if _pid_at(pkt, 9):
        return "tls-crypt"
    for h in _HMAC_SIZES:
        if _pid_at(pkt, 9 + h):
            return f"tls-auth (HMAC {h} bytes)"
    if not server:
        if len(pkt) >= 14 and pkt[9] == 0 and pkt[10:14] == _ZERO4:
            return "plain"
    else:
        n = pkt[9] if len(pkt) > 9 else 0
        if 1 <= n <= 8 and len(pkt) >= 18 + 4 * n:
            sid = pkt[10 + 4 * n : 18 + 4 * n]
            if (peer_sid is None and sid != bytes(8)) or sid == peer_sid:
                return "plain"
    return ""


def _hmac_by_length(length: int, server: bool) -> int:
    """HMAC size a tls-auth reset of this length implies (0 when none): the HMAC may hide the
    packet id beyond the bytes kept, but the reset's length still gives the layout away."""
    fixed = 34 if server else 22
    for h in (*_HMAC_SIZES, 64):
        if length == fixed + h:
            return h
    return 0


_OVPN_RESET_BYTES = frozenset(op << 3 for op in (*_OVPN_CLIENT_RESET, *_OVPN_SERVER_RESET))
"""First packet byte (opcode << 3 | key id 0) of a hard reset: a flow with none in either
direction has no role, and the rule cannot fire."""


def openvpn(v: FlowView) -> RuleMatch | None:
    """OpenVPN hard-reset exchange over UDP or TCP (plain, tls-auth, tls-crypt, tls-crypt-v2)."""
    at = 0 if v.rec.proto == 17 else 2 if v.rec.proto == 6 else -1
    if at < 0:
        return None
    if not any(len(h) > at and h[at] in _OVPN_RESET_BYTES for h in (v.head(0), v.head(1))):
        return None
    got = [_ovpn_packet(v, 0), _ovpn_packet(v, 1)]
    roles: list[str] = ["", ""]
    for d, item in enumerate(got):
        if item is None or item[0][0] & 7 or item[0][1:9] == bytes(8):
            continue
        op = item[0][0] >> 3
        roles[d] = "client" if op in _OVPN_CLIENT_RESET else "server" if op in _OVPN_SERVER_RESET else ""
    if roles[1] == "client" or (roles[0] == "server" and got[1] is not None):
        return None  # a reset answered by a reset of the same kind: not OpenVPN
    if not any(roles):
        return None
    transport = "TCP" if v.rec.proto == 6 else "UDP"
    sids = [item[0][1:9] if item is not None else None for item in got]
    shapes = ["", ""]
    for d in (0, 1):
        item = got[d]
        if not roles[d] or item is None:
            continue
        server = roles[d] == "server"
        shapes[d] = _ovpn_shape(item[0], item[1], server, sids[1 - d] if server else None)
        if not shapes[d] and item[0][0] >> 3 == 10 and len(item[0]) >= 49:
            shapes[d] = "tls-crypt-v2"
    by_length = False
    if roles[0] and roles[1] and not (shapes[0] and shapes[1]):
        h0 = _hmac_by_length(got[0][1], False) if got[0] else 0
        h1 = _hmac_by_length(got[1][1], True) if got[1] else 0
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
        item = got[d]
        if not shapes[d] or item is None:
            continue
        pkt = item[0]
        op = pkt[0] >> 3
        names = _OVPN_CLIENT_RESET if roles[d] == "client" else _OVPN_SERVER_RESET
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        c = 0.9 if shapes[d] == "plain" else 0.6 if by_length else 0.85 if op != 10 else 0.75
        conf = max(conf, c)
        evidence.append(
            ev(
                f"openvpn.{roles[d]}_reset",
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"{hexs(pkt[:1])} ({names[op]}, key id 0) over {transport}, {shapes[d]}",
                f"opcode {sorted(names)} << 3, key id 0, then the fields that layout requires",
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
        server_pkt = got[1][0] if got[1] else b""
        client_sid = sids[0]
        if client_sid and client_sid in server_pkt[9:]:
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


# -- WireGuard -------------------------------------------------------------------------------------

_WG_TYPES = {1: ("initiation", 148), 2: ("response", 92), 3: ("cookie reply", 64)}


def wireguard(v: FlowView) -> RuleMatch | None:
    """WireGuard handshake (types 1/2 with index echo) or transport data (type 4) over UDP."""
    if v.rec.proto != 17:
        return None
    heads = (v.head(0), v.head(1))
    kinds: list[str] = ["", ""]
    for d in (0, 1):
        h = heads[d]
        if len(h) < 16 or h[1:4] != b"\x00\x00\x00":
            continue
        n = v.payload_len(d)
        t = h[0]
        if t in _WG_TYPES and n == _WG_TYPES[t][1]:
            kinds[d] = _WG_TYPES[t][0]
        elif t == 4 and n >= 32 and n % 16 == 0 and h[12:16] == _ZERO4:
            kinds[d] = "transport data"
    if not any(kinds):
        return None
    evidence = []
    conf = 0.0
    decided = -1
    for d in (0, 1):
        if not kinds[d]:
            continue
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        c = 0.9 if kinds[d] != "transport data" else 0.8
        conf = max(conf, c)
        evidence.append(
            ev(
                f"wireguard.{kinds[d].replace(' ', '_')}",
                f"{'c2s' if d == 0 else 's2c'}_head",
                f"{hexs(heads[d][:4])}, {v.payload_len(d)} bytes",
                "type 1/148, 2/92, 3/64 bytes or 4 (data, 16-byte multiple); 3 zero bytes",
                c,
                f"message type and size of a WireGuard {kinds[d]}",
                idx,
            )
        )
    if kinds[0] == "initiation" and kinds[1] == "response" and heads[1][8:12] == heads[0][4:8]:
        conf = 0.99
        evidence.append(
            ev(
                "wireguard.index_echo",
                "s2c_head[8:12]",
                heads[1][8:12].hex(),
                f"initiator's sender index {heads[0][4:8].hex()}",
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


# -- OpenVPN static-key mode ------------------------------------------------------------------------

_STATIC_MIN_PACKETS = 6
"""Payload packets (at least 2 each way) the static-key rule needs before it speaks."""
_STATIC_RESIDUES = {0: "HMAC-SHA256/512 + 16-byte IV", 4: "HMAC-SHA1 + 16-byte IV"}
"""Payload length mod 16 of a static-key packet with a 16-byte-block cipher (AES-CBC) by HMAC."""
_STATIC_MIN_LEN = 52
"""The shortest such packet: a 20-byte HMAC, a 16-byte IV and one cipher block."""
_STATIC_ENTROPY = 0.85
"""First payloads' entropy, as a fraction of the most their length allows."""


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


_TS_MAGIC = "TS\N{SPEECH BALLOON}".encode()


def tailscale(v: FlowView) -> RuleMatch | None:
    """Tailscale's disco messages (magic ``TS💬``) on its WireGuard UDP flows."""
    if v.rec.proto != 17:
        return None
    magic = _TS_MAGIC
    for d in (0, 1):
        if v.head(d).startswith(magic):
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
                        hexs(v.head(d)[:6]),
                        magic.hex(),
                        0.95,
                        "Tailscale's disco protocol magic opens the datagram",
                        idx,
                    ),
                ),
            )
    return None


# -- IPsec -----------------------------------------------------------------------------------------

_IKE_EXCHANGES = {
    2: "IKEv1 identity protection",
    4: "IKEv1 aggressive",
    5: "IKEv1 informational",
    32: "IKEv1 quick mode",
    34: "IKE_SA_INIT",
    35: "IKE_AUTH",
    36: "CREATE_CHILD_SA",
    37: "INFORMATIONAL",
}


def _ike(head: bytes, length: int) -> tuple[str, bool] | None:
    marker = head[:4] == _ZERO4
    pkt = head[4:] if marker else head
    if len(pkt) < 28 or pkt[:8] == bytes(8) or pkt[17] not in (0x10, 0x20):
        return None
    if pkt[18] not in _IKE_EXCHANGES:
        return None
    declared = int.from_bytes(pkt[24:28], "big")
    if length and declared != length - (4 if marker else 0):
        return None
    return _IKE_EXCHANGES[pkt[18]], marker


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
    if len(v.head(0)) < 28 and NAT_T_PORT not in (r.client_port, r.server_port):
        return None  # too short for an IKE header (_ike), not on the NAT-T port (_esp_in_udp)
    got = _ike(v.head(0), r.c2s_first_payload_len)
    if got is None:
        return _esp_in_udp(v)
    exchange, marker = got
    idx = v.first_payload_index(0)
    evidence = [
        ev(
            "ipsec.ike_header",
            "c2s_head",
            hexs(v.head(0)[:20]),
            "IKE header: SPI, version 1.0/2.0, known exchange, length = datagram",
            0.95,
            f"the first datagram is an IKE {exchange} message whose length field fits",
            idx,
        )
    ]
    if marker:
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


NAT_T_PORT = 4500
"""The UDP port RFC 3948 assigns to ESP-in-UDP and IKE behind NAT."""


def _esp_in_udp(v: FlowView) -> RuleMatch | None:
    """ESP in UDP on the NAT-T port (a flow seen without its IKE exchange)."""
    r = v.rec
    if NAT_T_PORT not in (r.client_port, r.server_port):
        return None
    h = v.head(0)
    if len(h) < 16 or h[:4] == _ZERO4 or h[:1] == b"\xff":
        return None
    seq = int.from_bytes(h[4:8], "big")
    if not 1 <= seq < 1 << 31 or r.c2s_first_payload_len < 24:
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
                f"SPI {h[:4].hex()}, sequence {seq}",
                "UDP port 4500, SPI != 0, sequence number from 1",
                0.85,
                "ESP packets (SPI, sequence number) in UDP on the NAT-T port (RFC 3948)",
                0,
            ),
        ),
    )


# -- PPTP, GRE, tinc, FortiGate ----------------------------------------------------------------------


def pptp(v: FlowView) -> RuleMatch | None:
    """PPTP control connection (magic cookie) and PPP carried in enhanced GRE."""
    r = v.rec
    if r.proto != 6 and r.proto != 47:
        return None
    head = v.head(0)
    if r.proto == 6 and len(head) >= 8 and head[2:4] == b"\x00\x01" and head[4:8] == b"\x1a\x2b\x3c\x4d":
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
    if r.proto == 47 and head[:2] == b"\xff\x03":
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


_TINC_ID = re.compile(rb"^0 [A-Za-z0-9_]{1,64} 17(\.\d+)?\n")


def tinc(v: FlowView) -> RuleMatch | None:
    """tinc's meta protocol: both peers open with an ID request ``0 <name> 17.<minor>``."""
    if v.rec.proto != 6 or not v.head(0).startswith(b"0 "):
        return None  # _TINC_ID needs "0 " at the start of the client's head
    hits = [bool(_TINC_ID.match(v.head(d))) for d in (0, 1)]
    if not hits[0]:
        return None
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
