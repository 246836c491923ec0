"""Real TLS handshakes from OpenSSL in memory-BIO mode (see :mod:`sluice.synth.payloads`)."""

from __future__ import annotations

__all__ = [
    "TLS_MAX_PLAINTEXT",
    "Message",
    "TlsExchange",
    "credentials",
    "random_bytes",
    "tls_app_records",
    "tls_exchange",
]

import base64
import datetime
import random
import ssl
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sluice.synth._rand import seeded

Message = tuple[bool, bytes]
"""One message of a conversation: ``(from_client, bytes)``."""

TLS_MAX_PLAINTEXT = 16384
"""Largest TLS record plaintext (RFC 8446 §5.1)."""

# ---------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True, slots=True)
class _Credentials:
    ca: x509.Certificate
    leaf: x509.Certificate
    key: rsa.RSAPrivateKey


@cache
def credentials() -> _Credentials:
    """A CA and a leaf certificate, generated once per process.

    RSA-2048 (the most common web server key) with fixed serial numbers and dates: RSA
    signatures always have the modulus length, so every handshake has the same size from one
    process to the next (ECDSA's DER signatures vary by a byte or two), which keeps packet
    and byte counts of generated captures a function of the seed.
    """
    not_before = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    not_after = not_before + datetime.timedelta(days=3650)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sluice synthetic traffic"),
            x509.NameAttribute(NameOID.COMMON_NAME, "sluice synthetic CA"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(0x51_1CE_CA)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice-synth")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(0x51_1CE_01)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("sluice-synth"), x509.DNSName("*.test")]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _Credentials(ca=ca, leaf=leaf, key=key)


@cache
def _server_context() -> ssl.SSLContext:
    creds = credentials()
    pem = (
        creds.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + creds.leaf.public_bytes(serialization.Encoding.PEM)
        + creds.ca.public_bytes(serialization.Encoding.PEM)
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl can only load a chain from a file: write it to a private temporary directory.
    with tempfile.TemporaryDirectory(prefix="sluice-synth-") as tmp:
        path = Path(tmp) / "chain.pem"
        path.write_bytes(pem)
        ctx.load_cert_chain(path)
    ctx.set_alpn_protocols(["h2", "http/1.1", "spdy/3", "http/1.0"])
    return ctx


@cache
def _client_context(version: str, alpn: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


# ---------------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True, slots=True)
class TlsExchange:
    """A real TLS connection: handshake flights, one request and one response."""

    sni: str | None
    """Server name sent in the ClientHello (``None``: no SNI extension)."""
    alpn_offered: tuple[str, ...]
    """ALPN protocols the client offered, in order."""
    alpn_selected: str | None
    """ALPN protocol the server chose."""
    version: str
    """Negotiated version as OpenSSL names it (``TLSv1.3``)."""
    cipher: str
    """Negotiated cipher suite (OpenSSL name)."""
    messages: tuple[Message, ...]
    """The conversation in order, consecutive bytes of one direction merged."""
    record_overhead: int
    """Bytes an application-data record adds to its plaintext (header excluded)."""

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable form (bytes as base64)."""
        return {
            "sni": self.sni,
            "alpn_offered": list(self.alpn_offered),
            "alpn_selected": self.alpn_selected,
            "version": self.version,
            "cipher": self.cipher,
            "messages": [[c, base64.b64encode(b).decode()] for c, b in self.messages],
            "record_overhead": self.record_overhead,
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> TlsExchange:
        """Inverse of :meth:`to_json`."""
        msgs = obj["messages"]
        assert isinstance(msgs, list)
        sni, alpn_sel = obj["sni"], obj["alpn_selected"]
        alpn = obj["alpn_offered"]
        assert isinstance(alpn, list)
        return cls(
            sni=str(sni) if sni is not None else None,
            alpn_offered=tuple(str(a) for a in alpn),
            alpn_selected=str(alpn_sel) if alpn_sel is not None else None,
            version=str(obj["version"]),
            cipher=str(obj["cipher"]),
            messages=tuple((bool(c), base64.b64decode(str(b))) for c, b in msgs),
            record_overhead=int(str(obj["record_overhead"])),
        )


def _append(msgs: list[tuple[bool, bytearray]], from_client: bool, data: bytes) -> None:
    if not data:
        return
    if msgs and msgs[-1][0] == from_client:
        msgs[-1][1].extend(data)
    else:
        msgs.append((from_client, bytearray(data)))


def tls_exchange(
    sni: str | None,
    *,
    alpn: Sequence[str] = ("h2", "http/1.1"),
    version: Literal["1.2", "1.3"] = "1.3",
    request: bytes = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    response: bytes = b"HTTP/1.1 204 No Content\r\n\r\n",
    server_context: ssl.SSLContext | None = None,
) -> TlsExchange:
    """Run a real TLS handshake in memory and one request/response over it.

    Args:
        sni: server name for the ClientHello (``None`` for none).
        alpn: protocols the client offers (empty for no ALPN extension).
        version: highest version the client offers (``1.3`` or ``1.2``).
        request: plaintext the client sends after the handshake.
        response: plaintext the server answers.
        server_context: the server's context (its certificate chain); default the synthetic CA's
            leaf (:func:`credentials`).

    Returns:
        The recorded exchange. In TLS 1.3 the request follows the client Finished in the same
        message, as browsers do.

    Raises:
        ssl.SSLError: the handshake failed (a bug: both ends are ours).
    """
    alpn_t = tuple(alpn)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = _client_context(version, alpn_t).wrap_bio(c_in, c_out, server_hostname=sni)
    server = (server_context or _server_context()).wrap_bio(s_in, s_out, server_side=True)
    msgs: list[tuple[bool, bytearray]] = []
    c_done = s_done = sent = False
    overhead = 0
    for _ in range(16):
        if not c_done:
            try:
                client.do_handshake()
                c_done = True
            except ssl.SSLWantReadError:
                pass
        out = c_out.read()
        if c_done and not sent:
            # a client sends its request right behind its Finished (TLS 1.3: same flight)
            client.write(request)
            rec = c_out.read()
            overhead = len(rec) - 5 - len(request) if len(request) <= TLS_MAX_PLAINTEXT else 0
            out += rec
            sent = True
        _append(msgs, True, out)
        s_in.write(out)
        if not s_done:
            try:
                server.do_handshake()
                s_done = True
            except ssl.SSLWantReadError:
                pass
        back = s_out.read()
        if s_done and sent:
            got = b""
            while len(got) < len(request):
                got += server.read(len(request) - len(got))
            server.write(response)
            back += s_out.read()
        _append(msgs, False, back)
        c_in.write(back)
        if sent and s_done:
            break
    else:  # pragma: no cover - both ends are ours
        raise ssl.SSLError("in-memory TLS handshake did not finish")
    return TlsExchange(
        sni=sni,
        alpn_offered=alpn_t,
        alpn_selected=server.selected_alpn_protocol(),
        version=client.version() or "",
        cipher=(client.cipher() or ("", "", 0))[0],
        messages=tuple((c, bytes(b)) for c, b in msgs),
        record_overhead=overhead,
    )


def random_bytes(seed: int, size: int = 1 << 22) -> bytes:
    """Seeded random bytes standing in for ciphertext."""
    return seeded(seed).randbytes(size)


def tls_app_records(
    size: int, rng: random.Random, filler: bytes, *, overhead: int = 17, max_plain: int = 16384
) -> bytes:
    """TLS application-data records carrying ``size`` bytes of (pretend) plaintext.

    Args:
        size: plaintext bytes to carry.
        rng: chooses where in ``filler`` each record's body is cut.
        filler: random bytes standing in for ciphertext (at least ``max_plain + overhead``).
        overhead: ciphertext expansion per record (tag, explicit nonce, inner content type).
        max_plain: plaintext per full record.

    Returns:
        Concatenated records (content type 23, legacy version 0x0303).
    """
    parts = []
    limit = len(filler) - max_plain - overhead
    while size > 0:
        n = min(size, max_plain)
        body = n + overhead
        off = rng.randrange(limit)
        parts.append(struct.pack("!BHH", 23, 0x0303, body) + filler[off : off + body])
        size -= n
    return b"".join(parts)
