"""Fingerprints of the protocol variants VPN products and circumvention apps use.

Theory of operation: the same contract as :mod:`sluice.detect._vpn` — each rule reads one flow's
first payload heads (64 bytes each way), payload lengths and application metadata, and fires only
on structure random bytes match with negligible probability (a constant *and* a field that must
agree with another one, an echo between the peers). What each product shows on the wire:

* **Cloudflare WARP** speaks WireGuard but writes a 3-byte client id into the header's reserved
  bytes, which WireGuard itself leaves zero (WireGuard paper §5.4: ``type u8, reserved 3×u8``);
  the handshake (148-byte initiation, 92-byte response naming the initiator's index) still fits.
* **nebula** (slackhq/nebula ``header/header.go``): a 16-byte cleartext header ``version<<4 | type,
  subtype, reserved u16, remote index u32, message counter u64``; the IX handshake's first message
  has remote index 0 and counter 1, the answer names the initiator's index and has counter 2.
* **AnyConnect / ocserv / OpenConnect**: CSTP (HTTP ``CONNECT /CSCOSSLC/tunnel`` with ``X-CSTP-*``
  headers, then ``STF\\x01`` framed packets) runs *inside* TLS and is not visible. Its DTLS
  channel is: the client resumes, in the flow's very first ClientHello, a 32-byte session id it
  got over CSTP (``X-DTLS-Session-ID``, ocserv's ``X-DTLS-App-ID``) — a DTLS client opening a
  flow with a session to resume has one from elsewhere (WebRTC never does; DTLS 1.3 forbids it) —
  and Cisco's legacy servers speak the pre-RFC DTLS version 0x0100 (OpenSSL's ``DTLS1_BAD_VER``)
  that nothing else uses.
* **SoftEther / VPN Gate**: the client's HTTPS-like handshake is an HTTP ``POST`` to
  ``/vpnsvc/connect.cgi`` or ``/vpnsvc/vpn.cgi`` (visible when not wrapped in TLS); VPN Gate relays
  send ``IP=<addr>,PORT=<n>`` datagrams; the DDNS / VPN Azure datagrams are SoftEther "PACK"s
  (``u32 count``, then an element name as ``u32 len+1`` and ``host_name``).
* **ZeroTier** (``node/Packet.hpp``): ``packet id u64, destination u40, source u40, flags u8,
  MAC u64, verb u8``; a HELLO (verb 1) travels unencrypted and carries the sender's identity,
  whose first 5 bytes are its address — the header's source address again.
* **Tailscale DERP**: the relay protocol is HTTP ``GET /derp`` with ``Upgrade: DERP``, and the
  server's first frame (type 1, server key) opens with the magic ``DERP🔑``; DERP relays are named
  ``derp<N>[x].tailscale.com``.
* **OpenVPN with an XOR obfuscation patch** (Tunnelblick's ``xormask``/``obfuscate``, NordVPN's
  "obfuscated servers"): every byte is XORed with a key, so the opcodes are hidden, but the reset
  exchange's lengths (client ``22 + HMAC``, server ``34 + HMAC``), the TCP length prefix and the
  fact that both resets' first bytes were XORed with the same key byte (client ``7<<3`` ⊕ server
  ``8<<3`` = ``0x78``) survive.
* **Certificates and names**: Private Internet Access's servers present certificates its own CA
  issued (``O=Private Internet Access``); SoftEther DDNS (``*.softether.net``), VPN Azure
  (``*.vpnazure.net``) and VPN Gate (``*.opengw.net``) names are VPN servers' names.
"""

from __future__ import annotations

__all__ = ["RULES"]

import re

from sluice.detect._rules import TCP, UDP, Rule, RuleMatch, ev, hexs, transports
from sluice.detect.verdict import Evidence
from sluice.features.view import FlowView

_DIR = ("c2s", "s2c")


def _one(
    rule: str,
    label: str,
    family: str,
    conf: float,
    idx: int,
    code: str,
    feature: str,
    observed: object,
    reference: str,
    reason: str,
) -> RuleMatch:
    """A match with one piece of evidence carrying the whole confidence."""
    return RuleMatch(
        rule, label, family, conf, max(idx, 0), (ev(code, feature, observed, reference, conf, reason, idx),)
    )


# -- WireGuard with its reserved bytes in use (Cloudflare WARP) --------------------------------------

_WG_INIT_LEN = 148
_WG_RESP_LEN = 92


@transports(UDP)
def warp(v: FlowView) -> RuleMatch | None:
    """A WireGuard handshake whose reserved header bytes are not zero (WARP's client id)."""
    r = v.rec
    if r.proto != 17:
        return None
    c, s = v.head(0), v.head(1)
    if len(c) < 16 or len(s) < 16 or c[0] != 1 or s[0] != 2:
        return None
    if v.payload_len(0) != _WG_INIT_LEN or v.payload_len(1) != _WG_RESP_LEN:
        return None
    if c[1:4] == b"\x00\x00\x00" and s[1:4] == b"\x00\x00\x00":
        return None  # plain WireGuard: the wireguard rule's
    if s[8:12] != c[4:8]:
        return None
    idx = v.first_payload_index(1)
    evidence: tuple[Evidence, ...] = (
        ev(
            "wireguard.reserved_nonzero",
            "c2s_head[1:4],s2c_head[1:4]",
            f"{c[1:4].hex()} / {s[1:4].hex()}",
            "000000 in WireGuard; a client id in Cloudflare WARP",
            0.5,
            "the reserved bytes after the message type carry a value: Cloudflare WARP's client id",
            v.first_payload_index(0),
        ),
        ev(
            "wireguard.index_echo",
            "s2c_head[8:12]",
            s[8:12].hex(),
            f"initiator's sender index {c[4:8].hex()}",
            0.45,
            "a 148-byte initiation answered by a 92-byte response naming the initiator's index",
            idx,
        ),
    )
    return RuleMatch("warp", "vpn", "commercial:cloudflarewarp", 0.95, idx, evidence)


# -- nebula ----------------------------------------------------------------------------------------

_NEBULA_TYPES = {0: "handshake", 1: "message", 2: "recv_error", 3: "lighthouse", 4: "test", 5: "close"}


def _nebula_header(h: bytes) -> tuple[int, int, int, int] | None:
    """(type, subtype, remote index, counter) of a nebula v1 header, or None."""
    if len(h) < 16 or h[0] >> 4 != 1 or (h[0] & 0x0F) not in _NEBULA_TYPES or h[2:4] != b"\x00\x00":
        return None
    return h[0] & 0x0F, h[1], int.from_bytes(h[4:8], "big"), int.from_bytes(h[8:16], "big")


@transports(UDP)
def nebula(v: FlowView) -> RuleMatch | None:
    """nebula's IX handshake (counter 1 with remote index 0, answered with counter 2 and an index)."""
    if v.rec.proto != 17:
        return None
    c = _nebula_header(v.head(0))
    if c is None or c[0] != 0 or c[1] != 0 or c[2] != 0 or c[3] != 1:
        return None
    idx0 = v.first_payload_index(0)
    evidence = [
        ev(
            "nebula.handshake_init",
            "c2s_head[0:16]",
            hexs(v.head(0)[:16]),
            "10 00 0000 00000000 0000000000000001",
            0.9,
            "a nebula v1 header: handshake type, IX subtype, no remote index yet, message counter 1",
            idx0,
        )
    ]
    conf, decided = 0.9, idx0
    s = _nebula_header(v.head(1))
    if s is not None and s[0] == 0 and s[1] == 0 and s[2] != 0 and s[3] == 2:
        conf, decided = 0.98, v.first_payload_index(1)
        evidence.append(
            ev(
                "nebula.handshake_reply",
                "s2c_head[0:16]",
                hexs(v.head(1)[:16]),
                "10 00 0000 <initiator index> 0000000000000002",
                0.08,
                "the peer answered with the handshake's second message, naming the initiator's index",
                decided,
            )
        )
    return RuleMatch("nebula", "vpn", "nebula", conf, decided, tuple(evidence))


# -- AnyConnect / ocserv DTLS ---------------------------------------------------------------------

_DTLS_BAD_VER = b"\x01\x00"
_DTLS_VERSIONS = (b"\xfe\xff", b"\xfe\xfd", _DTLS_BAD_VER)
_SID_AT = 59
"""Offset of the session id length in a DTLS ClientHello record: record header 13, handshake
header 12, client version 2, random 32 (RFC 6347 §4.1, §4.2.2)."""


def _dtls_client_hello(h: bytes) -> bool:
    return (
        len(h) > _SID_AT
        and h[0] == 22
        and h[1:3] in _DTLS_VERSIONS
        and h[3:5] == b"\x00\x00"
        and h[13] == 1
        and h[25:27] in _DTLS_VERSIONS
    )


@transports(UDP)
def anyconnect_dtls(v: FlowView) -> RuleMatch | None:
    """AnyConnect's DTLS channel: pre-RFC version 0x0100, or a session resumed in the first hello."""
    if v.rec.proto != 17:
        return None
    c = v.head(0)
    if not _dtls_client_hello(c):
        return None
    idx = v.first_payload_index(0)
    if c[1:3] == _DTLS_BAD_VER and c[25:27] == _DTLS_BAD_VER:
        return _one(
            "anyconnect",
            "vpn",
            "anyconnect",
            0.95,
            idx,
            "anyconnect.dtls_bad_version",
            "c2s_head[1:3],c2s_head[25:27]",
            "0100 / 0100",
            "DTLS 0x0100 (pre-RFC 4347, OpenSSL DTLS1_BAD_VER)",
            "a DTLS ClientHello in Cisco's pre-standard version, which only AnyConnect gateways and"
            " their clients (OpenConnect) speak",
        )
    if c[_SID_AT] != 32:
        return None
    evidence = [
        ev(
            "anyconnect.dtls_session_resumed",
            "c2s_head[59]",
            f"session id {hexs(c[60:64])}… (32 bytes) in the flow's first ClientHello",
            "empty in a fresh DTLS handshake (WebRTC, DTLS 1.3)",
            0.8,
            "the client resumes a DTLS session it never negotiated on this flow: the session id the"
            " gateway handed out over CSTP/TLS (X-DTLS-Session-ID / X-DTLS-App-ID)",
            idx,
        )
    ]
    conf, decided = 0.8, idx
    s = v.head(1)
    if len(s) > 13 and s[0] == 22 and s[1:3] in _DTLS_VERSIONS and s[13] == 2:
        conf, decided = 0.85, v.first_payload_index(1)
        evidence.append(
            ev(
                "anyconnect.dtls_no_cookie",
                "s2c_head[13]",
                "ServerHello",
                "HelloVerifyRequest from a server that does not know the client",
                0.05,
                "the server accepted the hello without a cookie exchange: it knew the session",
                decided,
            )
        )
    return RuleMatch("anyconnect", "vpn", "anyconnect", conf, decided, tuple(evidence))


# -- SoftEther / VPN Gate --------------------------------------------------------------------------

_SOFTETHER_POST = re.compile(rb"^POST /vpnsvc/(connect|vpn)\.cgi HTTP/1\.[01]\r\n")
_VPNGATE_IP_PORT = re.compile(rb"^IP=[0-9A-Fa-f.:]{2,45},PORT=\d{1,5}$")
_PACK_HOST_NAME = (10).to_bytes(4, "big") + b"host_name"


@transports(TCP, UDP)
def softether(v: FlowView) -> RuleMatch | None:
    """SoftEther's HTTP handshake, VPN Gate's ``IP=…,PORT=…`` datagrams, its DDNS PACK datagrams."""
    r = v.rec
    if r.proto == 6:
        c = v.head(0)
        if not c.startswith(b"POST /vpnsvc/") or not (m := _SOFTETHER_POST.match(c)):
            return None
        line = c.split(b"\r\n", 1)[0].decode("ascii")
        return _one(
            "softether",
            "vpn",
            "softether",
            0.97,
            v.first_payload_index(0),
            "softether.connect_cgi",
            "c2s_head",
            line,
            "POST /vpnsvc/connect.cgi | /vpnsvc/vpn.cgi",
            f"SoftEther's client uploads its signature and session request to /vpnsvc/"
            f"{m.group(1).decode()}.cgi before the VPN session starts",
        )
    if r.proto != 17:
        return None
    for d in (0, 1):
        h = v.head(d)
        n = v.payload_len(d)
        if 10 <= n <= 29 and len(h) == n and h.startswith(b"IP=") and _VPNGATE_IP_PORT.match(h):
            i = v.first_payload_index(d)
            return _one(
                "softether",
                "vpn",
                "softether",
                0.9,
                i,
                "softether.vpngate_ip_port",
                f"{_DIR[d]}_head",
                h.decode("ascii"),
                "IP=<address>,PORT=<port>, the whole datagram",
                "VPN Gate / SoftEther tells its peer the address and port it sees (NAT traversal)",
            )
        if len(h) >= 17 and h[4:17] == _PACK_HOST_NAME and 1 <= int.from_bytes(h[:4], "big") <= 64:
            i = v.first_payload_index(d)
            return _one(
                "softether",
                "vpn",
                "softether",
                0.9,
                i,
                "softether.pack_host_name",
                f"{_DIR[d]}_head[0:17]",
                hexs(h[:17]),
                "u32 element count, u32 10, 'host_name' (a SoftEther PACK)",
                "a SoftEther PACK naming the host: its DDNS / VPN Azure keep-alive",
            )
    return None


# -- ZeroTier --------------------------------------------------------------------------------------

_ZT_VERB_HELLO = 1
_ZT_HEADER = 27
"""Bytes before the verb: packet id 8, destination 5, source 5, flags 1, MAC 8."""


@transports(UDP)
def zerotier(v: FlowView) -> RuleMatch | None:
    """ZeroTier's HELLO: verb 1, and the identity it carries starts with the header's source address."""
    if v.rec.proto != 17:
        return None
    for d in (0, 1):
        h = v.head(d)
        if len(h) < 46 or h[_ZT_HEADER] & 0x1F != _ZT_VERB_HELLO:
            continue
        src = h[13:18]
        # verb 27, protocol version 28, major 29, minor 30, revision 31-32, timestamp 33-40,
        # identity address 41-45
        if src == bytes(5) or src[0] == 0xFF or h[41:46] != src or h[28] == 0:
            continue
        i = v.first_payload_index(d)
        return _one(
            "zerotier",
            "vpn",
            "zerotier",
            0.95,
            i,
            "zerotier.hello",
            f"{_DIR[d]}_head",
            f"verb {h[_ZT_HEADER]:#04x}, source {src.hex()}, identity {h[41:46].hex()}, protocol {h[28]}",
            "verb HELLO (1), identity address = header source address",
            "a ZeroTier HELLO: the sender's identity, in clear, names the address in the header",
        )
    return None


# -- Tailscale DERP --------------------------------------------------------------------------------

_DERP_MAGIC = "DERP\N{KEY}".encode()
_DERP_NAME = re.compile(r"^derp\d+[a-z]?(-all)?\.tailscale\.com$")


@transports(TCP)
def tailscale_derp(v: FlowView) -> RuleMatch | None:
    """Tailscale's DERP relay: ``Upgrade: DERP`` / ``GET /derp``, the server-key frame, the relay's name."""
    r = v.rec
    if r.proto != 6:
        return None
    c, s = v.head(0), v.head(1)
    m = r.meta
    idx = v.first_payload_index(0)
    if c.startswith(b"GET /derp") and (b"\r\nUpgrade: DERP" in c or c.startswith(b"GET /derp HTTP/1.1\r\n")):
        return _one(
            "tailscale-derp",
            "vpn",
            "commercial:tailscale",
            0.9,
            idx,
            "tailscale.derp_upgrade",
            "c2s_head",
            c.split(b"\r\n", 1)[0].decode("ascii", "replace"),
            "GET /derp, Upgrade: DERP",
            "the client asks a Tailscale DERP relay to switch the connection to DERP",
        )
    at = s.find(_DERP_MAGIC)
    if at >= 5 and s[at - 5] == 1:
        i = v.first_payload_index(1)
        return _one(
            "tailscale-derp",
            "vpn",
            "commercial:tailscale",
            0.95,
            i,
            "tailscale.derp_server_key",
            "s2c_head",
            hexs(s[at - 5 : at + 8]),
            "frame type 1 (server key), length, 'DERP🔑'",
            "the server's first DERP frame announces its key behind DERP's magic",
        )
    name = m.sni.lower()
    if name and _DERP_NAME.match(name):
        return _one(
            "tailscale-derp",
            "vpn",
            "commercial:tailscale",
            0.9,
            idx,
            "tailscale.derp_name",
            "sni",
            name,
            "derp<N>[x].tailscale.com",
            "the TLS server name is one of Tailscale's DERP relays, which carry tunnel packets",
        )
    return None


# -- OpenVPN behind an XOR obfuscation patch ---------------------------------------------------------

_XOR_RESET_PAIR = (7 << 3) ^ (8 << 3)
"""Client reset V2 opcode byte XOR server reset V2 opcode byte (key id 0): the key byte cancels."""
_OVPN_HMACS = (20, 32, 48, 64)


@transports(TCP, UDP)
def openvpn_xor(v: FlowView) -> RuleMatch | None:
    """OpenVPN reset exchange hidden by an XOR key: lengths, TCP length prefix, opcode relation."""
    r = v.rec
    if r.proto not in (6, 17):
        return None
    c, s = v.head(0), v.head(1)
    if len(c) < 4 or len(s) < 4:
        return None
    tcp = r.proto == 6
    at = 2 if tcp else 0  # the first bytes after TCP's length prefix
    if c[at] ^ s[at] != _XOR_RESET_PAIR:
        return None  # the cheapest of the tests below, and the one most flows fail
    if tcp:
        lc, ls = int.from_bytes(c[:2], "big"), int.from_bytes(s[:2], "big")
        if lc != v.payload_len(0) - 2 or ls != v.payload_len(1) - 2:
            return None
        c, s = c[2:], s[2:]
    else:
        lc, ls = v.payload_len(0), v.payload_len(1)
    h = lc - 22
    if h not in _OVPN_HMACS or ls != 34 + h:
        return None
    if c[0] == 7 << 3:
        return None  # not obfuscated: the openvpn rule reads it
    idx = v.first_payload_index(1)
    conf = 0.85 if tcp else 0.75
    evidence = [
        ev(
            "openvpn.xor_reset_lengths",
            "payload lengths",
            f"{lc} / {ls} bytes" + (" (= the 2-byte length prefixes)" if tcp else ""),
            f"client 22 + HMAC, server 34 + HMAC (HMAC {h} bytes)",
            conf - 0.1,
            "the first two packets have the lengths of an OpenVPN tls-auth reset exchange",
            idx,
        ),
        ev(
            "openvpn.xor_opcode_pair",
            "c2s_head[0] ^ s2c_head[0]",
            f"{c[0]:#04x} ^ {s[0]:#04x} = {c[0] ^ s[0]:#04x}",
            f"{_XOR_RESET_PAIR:#04x} (client reset V2 ^ server reset V2)",
            0.1,
            "both first bytes are reset opcodes XORed with one key byte: an XOR-obfuscated OpenVPN",
            idx,
        ),
    ]
    return RuleMatch("openvpn-xor", "vpn", "openvpn", conf, idx, tuple(evidence))


# -- certificates and server names -----------------------------------------------------------------

VPN_CERT_ORGS: tuple[tuple[str, str], ...] = (("O=Private Internet Access", "commercial:pia"),)
"""Certificate subject/issuer attributes only a VPN service's own CA writes: (attribute, family)."""

VPN_NAMES: tuple[tuple[str, str], ...] = (
    ("opengw.net", "softether"),
    ("vpnazure.net", "softether"),
    ("softether.net", "softether"),
)
"""Name suffixes whose hosts are VPN servers: VPN Gate relays (``*.opengw.net``), SoftEther's
VPN Azure relays and its DDNS names for SoftEther servers. Not brand web sites (those belong in
the register)."""
_VPN_NAME_ENDINGS = tuple("." + suffix for suffix, _family in VPN_NAMES)


def vpn_certificate(v: FlowView) -> RuleMatch | None:
    """A server certificate a VPN service's private CA issued (subject or issuer organisation)."""
    m = v.rec.meta
    if not m.cert_subject and not m.cert_issuer:
        return None
    for attr, family in VPN_CERT_ORGS:
        where = "cert_subject" if attr in m.cert_subject else "cert_issuer" if attr in m.cert_issuer else ""
        if where:
            idx = v.first_payload_index(1)
            return _one(
                "vpn-certificate",
                "vpn",
                family,
                0.85,
                idx,
                f"{family.split(':')[-1]}.certificate",
                where,
                getattr(m, where),
                attr,
                f"the server presents a certificate from {attr[2:]}'s own CA, as its VPN servers do",
            )
    return None


def vpn_names(v: FlowView) -> RuleMatch | None:
    """A server name under a suffix whose hosts are VPN servers (VPN Gate, SoftEther DDNS/Azure)."""
    name = v.rec.meta.server_name.lower().rstrip(".")
    if not name.endswith(_VPN_NAME_ENDINGS):
        return None  # each entry needs the name to end with "." and its suffix
    for suffix, family in VPN_NAMES:
        if name.endswith("." + suffix):
            idx = v.first_payload_index(0)
            return _one(
                "vpn-name",
                "vpn",
                family,
                0.85,
                idx,
                f"{family}.server_name",
                "server_name",
                name,
                f"*.{suffix}",
                f"hosts under {suffix} are {family} VPN servers",
            )
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("warp", warp),
    ("nebula", nebula),
    ("anyconnect", anyconnect_dtls),
    ("softether", softether),
    ("zerotier", zerotier),
    ("tailscale-derp", tailscale_derp),
    ("openvpn-xor", openvpn_xor),
    ("vpn-certificate", vpn_certificate),
    ("vpn-name", vpn_names),
)
"""Rules for the variants commercial VPN apps and overlay networks use."""
