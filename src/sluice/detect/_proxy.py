"""Fingerprints of proxies, SSH, encapsulations, Tor and known circumvention names.

Sources: RFC 1928 (SOCKS5), the SOCKS4/4a memo, RFC 9110 §9.3.6 (CONNECT) and RFC 9112 §3.2.2
(absolute-form, which clients send only to proxies), the HAProxy PROXY protocol spec (v1 text
line, v2 signature), RFC 4253 §4.2 (SSH identification), Tor's ``tortls.c`` (random
``www.<base32>.com`` SNI, ``www.<base32>.net`` subject, ``www.<base32>.com`` issuer) and
tor-spec §3 (fixed-size cells), httptunnel's ``htc`` request line.
"""

from __future__ import annotations

__all__ = ["RULES"]

import re
from collections import Counter

from sluice.detect._rules import TCP, Rule, RuleMatch, ev, transports
from sluice.features.view import FlowView, base32_like
from sluice.wire.socks import SocksAuthMethod, opens_like_socks5, socks_opening

# -- SSH -------------------------------------------------------------------------------------------

SSH_BULK_BYTES = 100_000
"""Payload bytes in one direction above which an SSH flow is carrying more than a terminal."""
SSH_BULK_MEAN_BYTES = 300
"""Mean payload per packet (that direction) above which the SSH traffic is bulk, not keystrokes."""


def ssh(v: FlowView) -> RuleMatch | None:
    """SSH, and whether its shape after the handshake is forwarding/bulk or a terminal."""
    r = v.rec
    m = r.meta
    if m.app != "ssh" and not (m.ssh_client or m.ssh_server):
        return None
    banner = m.ssh_client or m.ssh_server or "SSH-"
    idx = max(v.first_payload_index(1), v.first_payload_index(0))
    base = ev(
        "ssh.banner", "ssh_client/ssh_server", banner, "SSH-2.0-…", 0.5, "both peers identify as SSH", idx
    )
    shape = []
    for d, (nbytes, npk) in enumerate(
        ((r.c2s_payload_bytes, r.c2s_packets), (r.s2c_payload_bytes, r.s2c_packets))
    ):
        mean = nbytes / npk if npk else 0.0
        if nbytes >= SSH_BULK_BYTES and mean >= SSH_BULK_MEAN_BYTES:
            shape.append((d, nbytes, mean))
    if shape:
        d, nbytes, mean = max(shape, key=lambda t: t[1])
        way = "server to client" if d else "client to server"
        last = r.packets - 1
        return RuleMatch(
            "ssh",
            "tunnel",
            "ssh",
            0.8,
            last,
            (
                base,
                ev(
                    "ssh.bulk_after_handshake",
                    f"{'s2c' if d else 'c2s'}_payload_bytes",
                    f"{nbytes} bytes, {mean:.0f} per packet {way}",
                    f">= {SSH_BULK_BYTES} bytes at >= {SSH_BULK_MEAN_BYTES} per packet",
                    0.3,
                    "after the handshake the session moves bulk data, as forwarding (ssh -D/-L, sshuttle)"
                    " does; scp/sftp look the same",
                    last,
                ),
            ),
        )
    if r.early:
        return RuleMatch("ssh", "benign", "app:ssh", 0.4, idx, (base,))
    return RuleMatch(
        "ssh",
        "benign",
        "app:ssh",
        0.7,
        r.packets - 1,
        (
            base,
            ev(
                "ssh.terminal_shape",
                "payload_bytes",
                f"{r.c2s_payload_bytes}/{r.s2c_payload_bytes} bytes",
                f"< {SSH_BULK_BYTES} bytes or small packets",
                0.2,
                "the session stayed small: a terminal, not forwarding",
                r.packets - 1,
            ),
        ),
    )


# -- SOCKS, HTTP proxies, PROXY protocol, httptunnel ------------------------------------------------


def _nth_payload_index(v: FlowView, d: int, n: int) -> int:
    seen = 0
    for i, (dd, size) in enumerate(zip(v.rec.pkt_dirs, v.payload_lens, strict=False)):
        if dd == d and size > 0:
            seen += 1
            if seen == n:
                return i
    return -1


_SOCKS5_MAX_METHODS = 9
"""Methods a real client offers at most (IANA assigns 0-9 and private ones it never sends)."""


@transports(TCP)
def socks(v: FlowView) -> RuleMatch | None:
    """SOCKS4/4a/5: the inspector's decoded request, or the SOCKS5 greeting and method reply."""
    r = v.rec
    if r.proto != 6:
        return None
    target = r.meta.socks_target
    if not target and not opens_like_socks5(v.head(0)):
        return None  # no decoded request and no SOCKS5 greeting
    opening = socks_opening(v.head(0), v.head(1))
    selection = opening.selection
    if target:
        version = f"{opening.version:02x}" if opening.version is not None else "?"
        userpass = selection is not None and selection.method == SocksAuthMethod.USERNAME_PASSWORD
        nth = 1 if opening.version == 4 else 3 if userpass else 2
        idx = _nth_payload_index(v, 0, nth)
        idx = idx if idx >= 0 else v.first_payload_index(0)
        return RuleMatch(
            "socks",
            "proxy",
            "socks",
            0.97,
            idx,
            (
                ev(
                    "socks.request",
                    "socks_target",
                    target,
                    "a SOCKS CONNECT request naming a target",
                    0.97,
                    f"the client asked a SOCKS{version[-1:]} proxy to connect to {target}",
                    idx,
                ),
            ),
        )
    greeting = opening.greeting
    if (
        greeting is not None
        and len(greeting.methods) <= _SOCKS5_MAX_METHODS
        and selection is not None
        and opening.selection_alone
        and (selection.method in greeting.methods or selection.method == SocksAuthMethod.NO_ACCEPTABLE)
    ):
        idx = v.first_payload_index(1)
        return RuleMatch(
            "socks",
            "proxy",
            "socks",
            0.9,
            idx,
            (
                ev(
                    "socks.greeting",
                    "c2s_head,s2c_head",
                    f"{v.head(0).hex()} / {v.head(1).hex()}",
                    "05 <n> <n methods> answered by 05 <one of them>",
                    0.9,
                    "a SOCKS5 method negotiation",
                    idx,
                ),
            ),
        )
    return None


_ABSOLUTE_FORM = re.compile(rb"^(GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH) (http|ftp)://", re.I)
_HTTP_OK = re.compile(rb"^HTTP/1\.[01] 2\d\d")
_PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
_HTTP_PROXY_FIRST = frozenset(b"CGPHDOgphdo\r")
"""First bytes of ``CONNECT``, of an absolute-form request (any case), of ``PROXY`` and of the
PROXY v2 signature: a client head starting otherwise fires nothing here without a CONNECT target."""


def http_proxy(v: FlowView) -> RuleMatch | None:
    """HTTP CONNECT, forward-proxy requests (absolute-form), and the HAProxy PROXY protocol."""
    r = v.rec
    m = r.meta
    c = v.head(0)
    if not m.connect_target and (not c or c[0] not in _HTTP_PROXY_FIRST):
        return None
    s = v.head(1)
    if m.connect_target or c.startswith(b"CONNECT "):
        target = m.connect_target or c[8:].split(b" ")[0].decode("ascii", "replace")
        accepted = bool(_HTTP_OK.match(s))
        idx = v.first_payload_index(1) if accepted else v.first_payload_index(0)
        conf = 0.97 if accepted else 0.9
        evidence = [
            ev(
                "http_proxy.connect",
                "connect_target",
                target,
                "CONNECT host:port",
                conf,
                f"the client asked an HTTP proxy to open a tunnel to {target}",
                v.first_payload_index(0),
            )
        ]
        if accepted:
            evidence.append(
                ev(
                    "http_proxy.connect_accepted",
                    "s2c_head",
                    s[:32].decode("ascii", "replace").strip(),
                    "HTTP/1.x 2xx",
                    0.07,
                    "the proxy accepted the tunnel",
                    idx,
                )
            )
        return RuleMatch("http-proxy", "proxy", "http-proxy", conf, idx, tuple(evidence))
    if _ABSOLUTE_FORM.match(c):
        line = c.split(b"\r\n")[0][:60].decode("ascii", "replace")
        idx = v.first_payload_index(0)
        return RuleMatch(
            "http-proxy",
            "proxy",
            "http-proxy",
            0.9,
            idx,
            (
                ev(
                    "http_proxy.absolute_form",
                    "c2s_head",
                    line,
                    "METHOD http://host/… (absolute-form)",
                    0.9,
                    "clients send absolute-form request targets only to a forward proxy",
                    idx,
                ),
            ),
        )
    if c.startswith((b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN")) or c.startswith(_PROXY_V2):
        idx = v.first_payload_index(0)
        return RuleMatch(
            "proxy-protocol",
            "proxy",
            "relay",
            0.9,
            idx,
            (
                ev(
                    "http_proxy.proxy_protocol",
                    "c2s_head",
                    c[:40].decode("ascii", "replace").strip(),
                    "PROXY TCP4|TCP6|UNKNOWN … or the v2 signature",
                    0.9,
                    "a relay (HAProxy PROXY protocol) forwards a client's connection",
                    idx,
                ),
            ),
        )
    return None


_HTC = re.compile(rb"^(POST|GET) /index\.html\?crap=\d+ HTTP/1\.[01]\r\n")


def httptunnel(v: FlowView) -> RuleMatch | None:
    """httptunnel (htc/hts): TCP carried in HTTP POST/GET on ``/index.html?crap=<n>``."""
    c = v.head(0)
    if not c.startswith((b"POST ", b"GET ")) or not _HTC.match(c):
        return None
    idx = v.first_payload_index(0)
    return RuleMatch(
        "httptunnel",
        "tunnel",
        "http-tunnel",
        0.97,
        idx,
        (
            ev(
                "http_tunnel.htc_request",
                "c2s_head",
                c.split(b"\r\n")[0].decode("ascii", "replace"),
                "POST|GET /index.html?crap=<n>",
                0.97,
                "httptunnel's client opens both of its HTTP legs with this request line",
                idx,
            ),
        ),
    )


# -- encapsulations ---------------------------------------------------------------------------------

_ENCAP_FAMILY = {
    "gre": "gre",
    "vxlan": "vxlan",
    "teredo": "teredo",
    "ipip": "ip-in-ip",
    "6in4": "ip-in-ip",
    "4in6": "ip-in-ip",
    "6in6": "ip-in-ip",
}


def encapsulation(v: FlowView) -> RuleMatch | None:
    """A flow carried in GRE, VXLAN, Teredo or IP-in-IP (GTP-U, the mobile core's, is not one)."""
    tunnels = v.rec.tunnels
    if not tunnels:
        return _vxlan_udp(v)
    for layer in tunnels.split("|"):
        kind = layer.split(":", 1)[0].split("/", 1)[0]
        family = _ENCAP_FAMILY.get(kind)
        if family:
            return RuleMatch(
                "encapsulation",
                "tunnel",
                family,
                0.95,
                0,
                (
                    ev(
                        f"tunnel.{kind}",
                        "tunnels",
                        layer,
                        "gre, vxlan, teredo, ipip, 6in4, 4in6, 6in6",
                        0.95,
                        f"the flow's packets are encapsulated in {kind}",
                        0,
                    ),
                ),
            )
    return None


_ETHERTYPES = (b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00")


def _vxlan_udp(v: FlowView) -> RuleMatch | None:
    """VXLAN on a port the packet decoder does not treat as VXLAN (Linux's default 8472)."""
    if v.rec.proto != 17:
        return None
    h = v.head(0)
    if len(h) < 22 or h[0] != 0x08 or h[1:4] != b"\x00\x00\x00" or h[7] != 0:
        return None
    if h[20:22] not in _ETHERTYPES:
        return None
    vni = int.from_bytes(h[4:7], "big")
    return RuleMatch(
        "encapsulation",
        "tunnel",
        "vxlan",
        0.95,
        v.first_payload_index(0),
        (
            ev(
                "tunnel.vxlan_header",
                "c2s_head",
                h[:8].hex(),
                "08 000000 <VNI> 00, then an Ethernet header",
                0.95,
                f"the datagram is a VXLAN header (VNI {vni}) followed by an Ethernet frame",
                v.first_payload_index(0),
            ),
        ),
    )


# -- Tor -------------------------------------------------------------------------------------------

_TOR_SNI = re.compile(r"^www\.([a-z2-7]{4,32})\.(com|net)$")
_TOR_CERT = re.compile(r"^CN=www\.([a-z2-7]{4,32})\.(com|net)$")
TOR_CELL_SHARE = 0.5
"""Share of post-handshake packets of one size above which the sizes look like Tor cells."""


def _cell_regularity(v: FlowView) -> tuple[int, float, int]:
    sizes = v.payload_sizes(start=8)
    if len(sizes) < 4:
        return 0, 0.0, 0
    size, n = Counter(sizes).most_common(1)[0]
    return size, n / len(sizes), len(sizes)


def tor(v: FlowView) -> RuleMatch | None:
    """Tor's link TLS: random ``www.<base32>.com`` SNI, matching certificate names, fixed cells."""
    m = v.rec.meta
    if m.app != "tls":
        return None
    sni = _TOR_SNI.match(m.sni)
    if sni is None:
        return None
    subj = _TOR_CERT.match(m.cert_subject)
    issuer = _TOR_CERT.match(m.cert_issuer)
    cert_shape = bool(
        subj and issuer and subj.group(2) == "net" and issuer.group(2) == "com" and not m.cert_san
    )
    random_label = base32_like(sni.group(1))
    if not cert_shape and not (not m.alpn and random_label):
        return None
    idx_hello = v.first_payload_index(0)
    evidence = [
        ev(
            "tor.sni_shape",
            "sni",
            m.sni,
            "www.<4–32 base32 chars>.com|net",
            0.5,
            "Tor clients send a random www.<base32>.com name",
            idx_hello,
        )
    ]
    conf = 0.8
    decided = idx_hello
    if cert_shape:
        conf = 0.97
        decided = max(decided, v.first_payload_index(1))
        evidence.append(
            ev(
                "tor.cert_shape",
                "cert_subject/cert_issuer",
                f"{m.cert_subject} / {m.cert_issuer}",
                "CN=www.<base32>.net issued by CN=www.<base32>.com, no SAN",
                0.47,
                "Tor relays make throwaway certificates with random names",
                decided,
            )
        )
    else:
        evidence.append(
            ev(
                "tor.no_alpn",
                "alpn",
                "none",
                "none; label looks random",
                0.3,
                "no ALPN and a random-looking label: browsers always offer ALPN",
                idx_hello,
            )
        )
    size, share, n = _cell_regularity(v)
    if share >= TOR_CELL_SHARE and size >= 500:
        conf = min(0.99, conf + 0.05)
        evidence.append(
            ev(
                "tor.cell_regularity",
                "pkt_sizes",
                f"{share:.0%} of {n} packets are {size} B",
                f">= {TOR_CELL_SHARE:.0%} of packets one size >= 500 B",
                0.05,
                "Tor moves data in fixed 512/514-byte cells",
                min(31, len(v.rec.pkt_sizes) - 1),
            )
        )
    return RuleMatch("tor", "circumvention", "tor", conf, decided, tuple(evidence))


# -- known names -----------------------------------------------------------------------------------

KNOWN_NAMES: tuple[tuple[str, str, str], ...] = (
    ("bridges.torproject.org", "circumvention", "tor"),
    ("snowflake-broker.torproject.net", "circumvention", "snowflake"),
    ("snowflake-broker.freehaven.net", "circumvention", "snowflake"),
    ("snowflake-broker.bamsoftware.com", "circumvention", "snowflake"),
    ("meek.azureedge.net", "circumvention", "meek"),
    ("psiphon.ca", "circumvention", "psiphon"),
    ("psiphon3.com", "circumvention", "psiphon"),
    ("ultrasurf.us", "circumvention", "ultrasurf"),
    ("sec-tunnel.com", "vpn", "commercial:operavpn"),
)
"""Server names (and their subdomains) used only by circumvention tools or as a VPN service's
tunnel endpoints (not its web site): (suffix, class, family). Brand web sites belong in the
register (``--register``), not here."""
_KNOWN_SUFFIXES = tuple(suffix for suffix, _label, _family in KNOWN_NAMES)


def known_names(v: FlowView) -> RuleMatch | None:
    """A server name that belongs to a circumvention tool's infrastructure."""
    name = v.rec.meta.server_name.lower().rstrip(".")
    if not name or not name.endswith(_KNOWN_SUFFIXES):
        return None  # each entry needs the name to end with its suffix
    for suffix, label, family in KNOWN_NAMES:
        if name == suffix or name.endswith("." + suffix):
            idx = v.first_payload_index(0)
            return RuleMatch(
                "known-name",
                label,
                family,
                0.9,
                idx,
                (
                    ev(
                        "known.server_name",
                        "server_name",
                        name,
                        suffix,
                        0.9,
                        f"{suffix} serves {family} and nothing else",
                        idx,
                    ),
                ),
            )
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("socks", socks),
    ("http-proxy", http_proxy),
    ("httptunnel", httptunnel),
    ("encapsulation", encapsulation),
    ("tor", tor),
    ("known-name", known_names),
    ("ssh", ssh),
)
"""Proxy, tunnel and circumvention rules in the order they are tried."""
