"""Fingerprints of covert tunnels: data carried in DNS names, in ICMP echo payloads, and behind
a made-up HTTP request.

DNS: tunnels (iodine, dnscat2, dns2tcp, exfiltration malware) encode data in long, random-looking
query names under one domain, and ask for record types ordinary clients never ask for (NULL,
private-use types). ICMP: ``ping`` sends the same payload size every time, filled with a counter
pattern or a timestamp; tunnels (ptunnel, icmptunnel, hans) send payloads of varying size and high
entropy, and ptunnel marks every payload with a magic number.
"""

from __future__ import annotations

__all__ = ["RULES", "dns_name_stats"]

from sluice.detect._rules import ICMP, ICMPV6, Rule, RuleMatch, ev, transports
from sluice.features.view import FlowView, label_entropy

DNS_TUNNEL_QTYPES = {10: "NULL", 65399: "PRIVATE (iodine)"}
"""Query types asked for almost only by tunnels."""
DNS_SUBDOMAIN_LEN = 40
"""Characters of name left of the registered domain above which a name carries data."""
DNS_SUBDOMAIN_ENTROPY = 3.6
"""Bits per character of that part above which it looks encoded rather than chosen."""
DNS_LABEL_LEN = 30
"""A single label this long is data, not a host name (when also high in entropy)."""


def dns_name_stats(name: str) -> tuple[int, float, int]:
    """(length, entropy in bits per character, longest label) of a name's part left of its last
    two labels — the part a tunnel fills with data."""
    labels = [lab for lab in name.lower().rstrip(".").split(".") if lab]
    sub = labels[:-2]
    text = ".".join(sub)
    return len(text), label_entropy(text.replace(".", "")), max((len(lab) for lab in sub), default=0)


def dns_tunnel(v: FlowView) -> RuleMatch | None:
    """Data in DNS query names (length, entropy) or tunnel-only record types."""
    m = v.rec.meta
    if not m.dns_query or m.app != "dns":
        return None
    if (
        m.dns_qtype not in DNS_TUNNEL_QTYPES
        and len(m.dns_query) < min(DNS_SUBDOMAIN_LEN, DNS_LABEL_LEN)
        and m.dns_query.isascii()
    ):
        return None  # no tunnel type, and too short for either name shape (ASCII: lower() keeps length)
    name = m.dns_query.lower().rstrip(".")
    if name.endswith(".arpa") or name.startswith("_"):
        return None
    idx = v.first_payload_index(0)
    evidence = []
    conf = 0.0
    if m.dns_qtype in DNS_TUNNEL_QTYPES:
        conf = 0.9
        evidence.append(
            ev(
                "dns_tunnel.qtype",
                "dns_qtype",
                f"{m.dns_qtype} ({DNS_TUNNEL_QTYPES[m.dns_qtype]})",
                "NULL or private-use types",
                0.9,
                "ordinary clients never ask for this record type; DNS tunnels do",
                idx,
            )
        )
    length, entropy, longest = dns_name_stats(name)
    if (length >= DNS_SUBDOMAIN_LEN or longest >= DNS_LABEL_LEN) and entropy >= DNS_SUBDOMAIN_ENTROPY:
        c = 0.85
        conf = max(conf, c) + (0.05 if conf else 0.0)
        evidence.append(
            ev(
                "dns_tunnel.name_shape",
                "dns_query",
                f"{length} chars, {entropy:.2f} bits/char, longest label {longest}",
                f">= {DNS_SUBDOMAIN_LEN} chars (or a label >= "
                f"{DNS_LABEL_LEN}) at >= {DNS_SUBDOMAIN_ENTROPY} bits/char",
                c,
                "the name left of the domain is long and random: it carries data",
                idx,
            )
        )
    if not evidence:
        return None
    r = v.rec
    if r.c2s_packets >= 16 and r.proto == 17:
        conf = min(0.99, conf + 0.04)
        evidence.append(
            ev(
                "dns_tunnel.many_queries",
                "c2s_packets",
                r.c2s_packets,
                ">= 16 on one 5-tuple",
                0.04,
                "one socket keeps asking: a session, not lookups",
                15,
            )
        )
    return RuleMatch("dns-tunnel", "tunnel", "dns-tunnel", min(conf, 0.99), idx, tuple(evidence))


_PTUNNEL_MAGIC = {b"\xd5\x20\x08\x80": "ptunnel", b"\xde\xad\xc0\xde": "ptunnel-ng"}
ICMP_ENTROPY = 6.0
"""Bits per byte of an echo payload above which it is not a ping pattern."""


@transports(ICMP, ICMPV6)
def icmp_tunnel(v: FlowView) -> RuleMatch | None:
    """Data in ICMP echo payloads: ptunnel's magic, or varying sizes and random-looking bytes."""
    r = v.rec
    if r.proto not in (1, 58):
        return None
    head = v.head(0)
    if len(head) >= 9 and head[:4] == b"\x00\x00\x00\x00" and head[4] >> 4 in (4, 6):
        return None  # an ICMP error quoting an IP header
    for d in (0, 1):
        h = v.head(d)
        magic = _PTUNNEL_MAGIC.get(h[4:8])
        if magic:
            idx = v.first_payload_index(d)
            return RuleMatch(
                "icmp-tunnel",
                "tunnel",
                "icmp-tunnel",
                0.97,
                idx,
                (
                    ev(
                        "icmp_tunnel.ptunnel_magic",
                        f"{'c2s' if d == 0 else 's2c'}_head[4:8]",
                        h[4:8].hex(),
                        "d5200880 (ptunnel) or deadc0de (ptunnel-ng)",
                        0.97,
                        f"{magic} marks every echo payload with its magic number",
                        idx,
                    ),
                ),
            )
    if r.proto != 1 or not r.s2c_packets:
        return None
    sizes = v.payload_sizes(0)
    distinct = len(set(sizes))
    evidence = []
    conf = 0.0
    if len(sizes) >= 4 and distinct >= 3:
        conf = 0.8
        evidence.append(
            ev(
                "icmp_tunnel.size_variety",
                "pkt_sizes",
                f"{distinct} sizes in {len(sizes)} echoes",
                ">= 3 different sizes",
                0.8,
                "ping repeats one size; a tunnel's payloads vary",
                min(len(r.pkt_sizes) - 1, 31),
            )
        )
    if r.c2s_entropy >= ICMP_ENTROPY and r.c2s_first_payload_len >= 64:
        conf = max(conf, 0.6) + (0.1 if conf else 0.0)
        evidence.append(
            ev(
                "icmp_tunnel.payload_entropy",
                "c2s_entropy",
                f"{r.c2s_entropy:.2f}",
                f">= {ICMP_ENTROPY} bits/byte",
                0.1 if len(evidence) else 0.6,
                "ping payloads are patterns or timestamps, not random bytes",
                0,
            )
        )
    if not evidence:
        return None
    return RuleMatch(
        "icmp-tunnel", "tunnel", "icmp-tunnel", min(conf, 0.95), evidence[0].packet, tuple(evidence)
    )


HTTP_BODYLESS = ("GET", "HEAD")
"""Methods whose requests carry no body (RFC 9110 §9.3.1-2: a body has no defined meaning)."""
HTTP_DISGUISE_PRINTABLE = 0.8
"""Printable share of a bodiless request's first payload below which binary rides with it (every
GET and HEAD of the lab's 29 client stacks and of nDPI's captures is at 1.0: its head is text)."""
HTTP_DISGUISE_ENTROPY = 6.0
"""Bits per byte of that payload above which the binary part is encrypted, not an odd encoding."""


def http_disguise(v: FlowView) -> RuleMatch | None:
    """An HTTP GET/HEAD whose first payload carries encrypted bytes after its head.

    simple-obfs's HTTP mode (the Shadowsocks plugin ``obfs=http``) sends a made-up ``GET`` with
    ``Upgrade: websocket`` and appends the encrypted stream to it in the same write; a real
    WebSocket client waits for ``101`` and then sends framed messages, and no browser or library
    sends a body with a GET.
    """
    rec = v.rec
    m = rec.meta
    if (
        m.http_method not in HTTP_BODYLESS
        or rec.c2s_printable < 0
        or rec.c2s_printable >= HTTP_DISGUISE_PRINTABLE
    ):
        return None
    if rec.c2s_entropy < HTTP_DISGUISE_ENTROPY:
        return None
    idx = v.first_payload_index(0)
    evidence = (
        ev(
            "http_disguise.binary_body",
            "c2s_printable",
            f"{rec.c2s_printable:.2f} printable, {rec.c2s_entropy:.2f} bits/byte over "
            f"{rec.c2s_first_payload_len} bytes",
            f"a {m.http_method} is text: printable 1.0",
            0.85,
            f"encrypted bytes ride with a {m.http_method} request, as simple-obfs's HTTP disguise sends them",
            idx,
        ),
    )
    return RuleMatch("http-disguise", "circumvention", "shadowsocks", 0.85, idx, evidence)


RULES: tuple[tuple[str, Rule], ...] = (
    ("dns-tunnel", dns_tunnel),
    ("icmp-tunnel", icmp_tunnel),
    ("http-disguise", http_disguise),
)
"""Covert-channel rules."""
