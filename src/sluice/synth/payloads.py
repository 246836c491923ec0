"""Application payloads made by real software or built to the RFCs.

Theory of operation
-------------------
* **TLS** (:mod:`sluice.synth._tls`): a real handshake between two :class:`ssl.SSLObject` ends
  in memory-BIO mode, a client context with SNI and ALPN against a server context holding a
  certificate chain made by :mod:`cryptography` (one RSA-2048 CA and leaf, generated once per
  process). The recorded bytes are exactly what OpenSSL put on the wire, flight by flight,
  followed by one real encrypted request and response. TLS 1.2 and 1.3 are both available.
* **QUIC** (:mod:`sluice.synth._quic`): a real connection between two sans-IO
  :class:`aioquic.quic.connection.QuicConnection` ends (client with SNI and ALPN ``h3``,
  version 1 or 2), driven on a simulated clock until an HTTP/3 request and response have been
  exchanged. :func:`quic_with_new_ids` gives a recorded exchange fresh connection IDs (Initial
  packets re-encrypted under the new keys) so that reused exchanges stay separate connections.
* **DNS** (RFC 1035 with name compression, EDNS(0) per RFC 6891), **HTTP/1.1** (RFC 9112),
  **SSH** banners and binary packets (RFC 4253), **SOCKS5** (RFC 1928) are built here.

Crypto handshakes are costly (a millisecond for TLS, tens for QUIC), so :class:`PayloadPool`
keeps a few variants per server name and hands them out again; bulk data after a handshake is
filled with records of TLS application data (or QUIC short-header packets) cut from a block of
seeded random bytes, which is indistinguishable from ciphertext to anything without the keys.

OpenSSL and aioquic draw their randomness from the OS, so the bytes of handshakes differ between
processes, though not their sizes (RSA signatures have a fixed length); everything else follows
the seeds. A pool saved with :meth:`PayloadPool.to_json` and loaded again reproduces a capture
byte for byte.
"""

from __future__ import annotations

__all__ = [
    "QUIC_V1",
    "QUIC_V2",
    "TLS_MAX_PLAINTEXT",
    "DnsAnswer",
    "DnsType",
    "Message",
    "PayloadPool",
    "QuicExchange",
    "TlsExchange",
    "dns_query",
    "dns_response",
    "dns_tcp",
    "http_request",
    "http_response",
    "quic_exchange",
    "quic_short_packet",
    "quic_with_new_ids",
    "random_bytes",
    "socks5_connect",
    "socks5_greeting",
    "socks5_method_choice",
    "socks5_reply",
    "ssh_banner",
    "ssh_binary_packet",
    "ssh_ecdh_init",
    "ssh_ecdh_reply",
    "ssh_kexinit",
    "ssh_newkeys",
    "tls_app_records",
    "tls_exchange",
]

import ipaddress
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sluice.synth._quic import (
    QUIC_V1,
    QUIC_V2,
    QuicExchange,
    quic_exchange,
    quic_short_packet,
    quic_with_new_ids,
)
from sluice.synth._rand import seeded
from sluice.synth._tls import (
    TLS_MAX_PLAINTEXT,
    Message,
    TlsExchange,
    random_bytes,
    tls_app_records,
    tls_exchange,
)
from sluice.wire.dns import DnsType

# ---------------------------------------------------------------------------------------------
# DNS (RFC 1035)


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One answer record to build."""

    name: str
    """Owner name."""
    rtype: int
    """Record type (:class:`DnsType`): A, AAAA, CNAME, NS, PTR, MX or TXT are encoded."""
    value: str
    """Address, target name, ``"pref name"`` for MX, or text for TXT."""
    ttl: int = 300
    """Time to live in seconds."""


class _NameWriter:
    """Accumulates a message and compresses names against earlier ones (RFC 1035 §4.1.4)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.offsets: dict[str, int] = {}

    def name(self, name: str, *, compress: bool = True) -> None:
        labels = [lab for lab in name.rstrip(".").split(".") if lab]
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]).lower()
            if compress and suffix in self.offsets:
                self.buf += struct.pack("!H", 0xC000 | self.offsets[suffix])
                return
            if len(self.buf) < 0x3FFF:
                self.offsets.setdefault(suffix, len(self.buf))
            raw = labels[i].encode("idna") if not labels[i].isascii() else labels[i].encode()
            if not 0 < len(raw) < 64:
                raise ValueError(f"bad DNS label in {name!r}")
            self.buf += bytes([len(raw)]) + raw
        self.buf += b"\x00"


def _dns_header(txid: int, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return struct.pack("!HHHHHH", txid & 0xFFFF, flags, qd, an, ns, ar)


def _opt_rr(udp_size: int) -> bytes:
    return b"\x00" + struct.pack("!HHIH", DnsType.OPT, udp_size, 0, 0)


def dns_query(
    qname: str,
    qtype: int = DnsType.A,
    *,
    txid: int,
    rd: bool = True,
    edns: bool = True,
    udp_size: int = 1232,
) -> bytes:
    """A DNS query message (RFC 1035 §4.1), optionally with an EDNS(0) OPT record.

    Args:
        qname: name asked for.
        qtype: :class:`DnsType` asked for.
        txid: transaction ID.
        rd: recursion desired.
        edns: add an OPT pseudo-record.
        udp_size: UDP payload size the OPT record advertises.
    """
    w = _NameWriter()
    w.buf += _dns_header(txid, 0x0100 if rd else 0, 1, 0, 0, 1 if edns else 0)
    w.name(qname, compress=False)
    w.buf += struct.pack("!HH", qtype, 1)
    if edns:
        w.buf += _opt_rr(udp_size)
    return bytes(w.buf)


def _rdata(w: _NameWriter, ans: DnsAnswer) -> None:
    start = len(w.buf)
    w.buf += b"\x00\x00"
    if ans.rtype in (DnsType.A, DnsType.AAAA):
        w.buf += ipaddress.ip_address(ans.value).packed
    elif ans.rtype in (DnsType.CNAME, DnsType.NS, DnsType.PTR):
        w.name(ans.value)
    elif ans.rtype == DnsType.MX:
        pref, host = ans.value.split(None, 1)
        w.buf += struct.pack("!H", int(pref))
        w.name(host)
    elif ans.rtype == DnsType.TXT:
        raw = ans.value.encode()
        for i in range(0, max(len(raw), 1), 255):
            chunk = raw[i : i + 255]
            w.buf += bytes([len(chunk)]) + chunk
    else:
        raise ValueError(f"cannot encode record type {ans.rtype}")
    struct.pack_into("!H", w.buf, start, len(w.buf) - start - 2)


def dns_response(
    qname: str,
    qtype: int,
    answers: Sequence[DnsAnswer],
    *,
    txid: int,
    rcode: int = 0,
    edns: bool = True,
    authoritative: bool = False,
) -> bytes:
    """A DNS response with compressed names in the answers (RFC 1035 §4.1.4).

    Args:
        qname: the question's name (repeated from the query).
        qtype: the question's type.
        answers: answer records, in order (CNAME chain first, as resolvers send it).
        txid: transaction ID of the query.
        rcode: response code (0 NOERROR, 3 NXDOMAIN ...).
        edns: add an OPT pseudo-record.
        authoritative: set the AA bit.

    Returns:
        The message bytes.

    Raises:
        ValueError: a record type that cannot be encoded or a bad label.
    """
    flags = 0x8180 | (0x0400 if authoritative else 0) | (rcode & 0xF)
    w = _NameWriter()
    w.buf += _dns_header(txid, flags, 1, len(answers), 0, 1 if edns else 0)
    w.name(qname, compress=False)
    w.buf += struct.pack("!HH", qtype, 1)
    for ans in answers:
        w.name(ans.name)
        w.buf += struct.pack("!HHI", ans.rtype, 1, ans.ttl)
        _rdata(w, ans)
    if edns:
        w.buf += _opt_rr(1232)
    return bytes(w.buf)


def dns_tcp(message: bytes) -> bytes:
    """A DNS message framed for TCP (2-byte length prefix, RFC 1035 §4.2.2)."""
    return struct.pack("!H", len(message)) + message


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 (RFC 9112)

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)


def http_request(
    method: str,
    host: str,
    path: str = "/",
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    user_agent: str = DEFAULT_USER_AGENT,
) -> bytes:
    """An HTTP/1.1 request with Host, User-Agent, Accept and (for a body) Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {user_agent}"]
    lines.append("Accept: text/html,application/xhtml+xml,*/*;q=0.8")
    lines.append("Accept-Encoding: gzip, deflate")
    lines.extend(f"{k}: {v}" for k, v in headers)
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 404: "Not Found"}


def http_response(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "text/html; charset=utf-8",
    headers: Sequence[tuple[str, str]] = (),
    server: str = "nginx/1.22.1",
) -> bytes:
    """An HTTP/1.1 response with Content-Length framing."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Server: {server}"]
    lines.append("Date: Mon, 01 Jul 2024 12:00:00 GMT")
    lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{k}: {v}" for k, v in headers)
    lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ---------------------------------------------------------------------------------------------
# SSH (RFC 4253)

SSH_CLIENT_SOFTWARE = "OpenSSH_9.2p1 Debian-2+deb12u3"
SSH_SERVER_SOFTWARE = "OpenSSH_8.9p1 Ubuntu-3ubuntu0.10"

_KEX = (
    "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"
    "diffie-hellman-group14-sha256,ext-info-c"
)
_HOSTKEY = "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256"
_CIPHERS = "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"
_MACS = "umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-256,hmac-sha1"
_COMP = "none,zlib@openssh.com"


def ssh_banner(software: str = SSH_CLIENT_SOFTWARE) -> bytes:
    """An SSH identification string (RFC 4253 §4.2)."""
    return f"SSH-2.0-{software}\r\n".encode()


def _ssh_string(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def ssh_binary_packet(payload: bytes, rng: random.Random, *, block: int = 8) -> bytes:
    """An unencrypted SSH binary packet (RFC 4253 §6) with random padding."""
    pad = block - (5 + len(payload)) % block
    if pad < 4:
        pad += block
    return struct.pack("!IB", 1 + len(payload) + pad, pad) + payload + rng.randbytes(pad)


def ssh_kexinit(rng: random.Random, *, client: bool = True) -> bytes:
    """An SSH_MSG_KEXINIT packet with OpenSSH-like algorithm lists (RFC 4253 §7.1)."""
    kex = _KEX if client else _KEX.replace(",ext-info-c", ",kex-strict-s-v00@openssh.com")
    lists = [kex, _HOSTKEY, _CIPHERS, _CIPHERS, _MACS, _MACS, _COMP, _COMP, "", ""]
    body = bytes([20]) + rng.randbytes(16)
    body += b"".join(_ssh_string(x.encode()) for x in lists) + b"\x00" + b"\x00\x00\x00\x00"
    return ssh_binary_packet(body, rng)


def ssh_ecdh_init(rng: random.Random) -> bytes:
    """SSH_MSG_KEX_ECDH_INIT with a 32-byte curve25519 public key (RFC 5656 §4)."""
    return ssh_binary_packet(bytes([30]) + _ssh_string(rng.randbytes(32)), rng)


def ssh_ecdh_reply(rng: random.Random) -> bytes:
    """SSH_MSG_KEX_ECDH_REPLY: ed25519 host key, server public key, signature."""
    hostkey = _ssh_string(b"ssh-ed25519") + _ssh_string(rng.randbytes(32))
    sig = _ssh_string(b"ssh-ed25519") + _ssh_string(rng.randbytes(64))
    body = bytes([31]) + _ssh_string(hostkey) + _ssh_string(rng.randbytes(32)) + _ssh_string(sig)
    return ssh_binary_packet(body, rng)


def ssh_newkeys(rng: random.Random) -> bytes:
    """SSH_MSG_NEWKEYS."""
    return ssh_binary_packet(bytes([21]), rng)


# ---------------------------------------------------------------------------------------------
# SOCKS5 (RFC 1928)


def socks5_greeting(methods: Sequence[int] = (0,)) -> bytes:
    """The client's version/method selection message."""
    return bytes([5, len(methods), *methods])


def socks5_method_choice(method: int = 0) -> bytes:
    """The server's method selection (0: no authentication)."""
    return bytes([5, method])


def _socks_addr(host: str) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("idna")
        return bytes([3, len(raw)]) + raw
    return bytes([1 if ip.version == 4 else 4]) + ip.packed


def socks5_connect(host: str, port: int) -> bytes:
    """A CONNECT request to a domain name or an IP address."""
    return bytes([5, 1, 0]) + _socks_addr(host) + struct.pack("!H", port)


def socks5_reply(rep: int = 0, bind: tuple[str, int] = ("0.0.0.0", 0)) -> bytes:  # noqa: S104
    """The server's reply (0: succeeded) with the bound address."""
    return bytes([5, rep, 0]) + _socks_addr(bind[0]) + struct.pack("!H", bind[1])


# ---------------------------------------------------------------------------------------------
# Pool


class PayloadPool:
    """Caches real TLS and QUIC exchanges per server name and a block of random filler.

    Each request picks one of ``variants`` slots for its key with the pool's seeded random
    source and makes the real exchange only when that slot is still empty, so the sequence of
    choices does not depend on what is already cached: a pool saved with :meth:`to_json` and
    loaded again reproduces the same capture byte for byte.

    Args:
        seed: seeds the filler bytes and the choice among variants.
        variants: distinct real handshakes kept per key.
        filler_size: bytes of random filler.
    """

    def __init__(self, seed: int = 0, *, variants: int = 2, filler_size: int = 1 << 22) -> None:
        if variants < 1:
            raise ValueError(f"variants must be at least 1, got {variants}")
        self.seed = seed
        self.variants = variants
        self.rng = seeded(seed)
        """Chooses variants."""
        self.filler = random_bytes(seed, filler_size)
        """Random bytes standing in for ciphertext."""
        self._tls: dict[tuple[str | None, str, tuple[str, ...]], dict[int, TlsExchange]] = {}
        self._quic: dict[tuple[str | None, int], dict[int, QuicExchange]] = {}
        self.handshakes_made = 0
        """Real handshakes performed by this pool (TLS and QUIC)."""

    def tls(
        self,
        sni: str | None,
        *,
        version: Literal["1.2", "1.3"] = "1.3",
        alpn: Sequence[str] = ("h2", "http/1.1"),
    ) -> TlsExchange:
        """A real TLS exchange for ``sni``, made on first use of its variant slot."""
        slot = self.rng.randrange(self.variants)
        have = self._tls.setdefault((sni, version, tuple(alpn)), {})
        if slot not in have:
            have[slot] = tls_exchange(sni, alpn=alpn, version=version)
            self.handshakes_made += 1
        return have[slot]

    def quic(self, sni: str | None, *, version: int = QUIC_V1) -> QuicExchange:
        """A real QUIC exchange for ``sni``, made on first use of its variant slot."""
        slot = self.rng.randrange(self.variants)
        have = self._quic.setdefault((sni, version), {})
        if slot not in have:
            size = 1500 + seeded(f"{self.seed}/{sni}/{version}/{slot}").randrange(6000)
            have[slot] = quic_exchange(sni, version=version, response_size=size)
            self.handshakes_made += 1
        return have[slot]

    def to_json(self) -> dict[str, object]:
        """The cached exchanges in a JSON-serialisable form."""
        return {
            "seed": self.seed,
            "variants": self.variants,
            "filler_size": len(self.filler),
            "tls": [
                {"key": [k[1], slot], **x.to_json()} for k, v in self._tls.items() for slot, x in v.items()
            ],
            "quic": [{"slot": slot, **x.to_json()} for v in self._quic.values() for slot, x in v.items()],
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> PayloadPool:
        """Rebuild a pool saved with :meth:`to_json` (same seed, same exchanges)."""
        pool = cls(
            int(str(obj["seed"])),
            variants=int(str(obj["variants"])),
            filler_size=int(str(obj["filler_size"])),
        )
        tls_list, quic_list = obj["tls"], obj["quic"]
        assert isinstance(tls_list, list) and isinstance(quic_list, list)
        for t in tls_list:
            ex = TlsExchange.from_json(t)
            ver, slot = t["key"]
            pool._tls.setdefault((ex.sni, str(ver), ex.alpn_offered), {})[int(slot)] = ex
        for q in quic_list:
            qx = QuicExchange.from_json(q)
            pool._quic.setdefault((qx.sni, qx.version), {})[int(q["slot"])] = qx
        return pool
