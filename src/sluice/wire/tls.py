"""TLS handshake dissector (sans-IO).

Theory of operation
-------------------
Bytes reach this module in one of two framings:

* a TCP stream (after :class:`~sluice.wire.reassembly.StreamReassembler`): TLS records
  (RFC 8446 §5.1, RFC 5246 §6.2.1), each ``type(1) version(2) length(2) fragment``;
* a QUIC CRYPTO stream (RFC 9001 §4): bare handshake messages, no record layer.

:class:`TlsHandshakeReader` takes either, one direction per reader, and yields
:class:`HandshakeMessage` values (``msg_type(1) length(3) body``, RFC 8446 §4). Handshake
messages may be split over several records and several may share a record; the reader
reassembles them in a bounded buffer. It stops at the first ChangeCipherSpec or
application_data record, because everything after that is encrypted (RFC 8446 §5, RFC 5246
§7.1), and after a fatal alert.

The ``decode_*`` functions turn a handshake *body* (after the 4-byte header) into a frozen
record: :func:`decode_client_hello` (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2),
:func:`decode_server_hello` (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3) and
:func:`decode_certificate` (RFC 8446 §4.4.2, RFC 5246 §7.4.2; the leaf certificate is read by
:mod:`sluice.wire.x509`). Extensions are kept in wire order as ``(type, body)``; the ones a
policy engine reads (SNI, ALPN, supported_versions, signature_algorithms, groups, key shares)
are also decoded into fields. A malformed extension that sluice decodes is a DecodeError, not a
silently empty field.

SSLv2-compatible ClientHello (RFC 5246 Appendix E.2; still sent by some scanners) is accepted:
in record mode the reader yields it as a :class:`HandshakeMessage` whose ``msg_type`` is
:data:`SSLV2_CLIENT_HELLO` (``0x100``, outside the 8-bit TLS range so it can never collide),
and :func:`decode_sslv2_client_hello` turns its body into a :class:`TlsClientHello` with
``sslv2=True`` (only the cipher specs that map onto TLS cipher suites are kept). A genuine SSLv2
session (a server answering in SSLv2, or any SSLv2 message other than CLIENT-HELLO) is refused
with ``tls.bad_sslv2``.

The JA4 client fingerprint of a decoded ClientHello is :mod:`sluice.wire.ja4`'s.

Error reasons (public, stable): ``tls.truncated``, ``tls.bad_session_id``,
``tls.bad_cipher_suites``, ``tls.bad_compression``, ``tls.bad_extensions``,
``tls.bad_extension``, ``tls.trailing_data``, ``tls.bad_content_type``,
``tls.bad_record_version``, ``tls.record_overflow``, ``tls.handshake_too_long``,
``tls.bad_sslv2``, ``tls.interleaved_handshake``, and ``x509.*`` from the certificate walker.
"""

from __future__ import annotations

__all__ = [
    "GREASE_VALUES",
    "MAX_HANDSHAKE_BUFFER",
    "MAX_RECORD_LENGTH",
    "SSLV2_CLIENT_HELLO",
    "ContentType",
    "ExtensionType",
    "HandshakeMessage",
    "HandshakeType",
    "TlsCertificate",
    "TlsClientHello",
    "TlsHandshakeReader",
    "TlsServerHello",
    "decode_certificate",
    "decode_client_hello",
    "decode_server_hello",
    "decode_sslv2_client_hello",
    "is_grease",
    "looks_like_tls_client_hello",
]

import struct
from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError
from sluice.wire.cursor import Cursor
from sluice.wire.x509 import decode_x509

MAX_HANDSHAKE_BUFFER = 65536
"""Default bound on buffered record and handshake bytes per direction."""

MAX_RECORD_LENGTH = (1 << 14) + 2048
"""Largest TLSCiphertext fragment allowed (RFC 5246 §6.2.3)."""

SSLV2_CLIENT_HELLO = 0x100
"""``HandshakeMessage.msg_type`` of an SSLv2-compatible ClientHello (RFC 5246 Appendix E.2)."""

GREASE_VALUES = frozenset(0x0A0A + 0x1010 * i for i in range(16))
"""The 16 reserved GREASE code points (RFC 8701 §2)."""

HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
"""ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3)."""


class ContentType(IntEnum):
    """TLS record content types (RFC 8446 §5.1, RFC 6520 §3)."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24


class HandshakeType(IntEnum):
    """Handshake message types (RFC 8446 §4, RFC 5246 §7.4, RFC 6347 §4.2.2)."""

    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    HELLO_VERIFY_REQUEST = 3
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    CERTIFICATE_STATUS = 22
    KEY_UPDATE = 24
    MESSAGE_HASH = 254


class ExtensionType(IntEnum):
    """TLS extension types sluice names (IANA TLS ExtensionType Values)."""

    SERVER_NAME = 0
    MAX_FRAGMENT_LENGTH = 1
    STATUS_REQUEST = 5
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    USE_SRTP = 14
    HEARTBEAT = 15
    APPLICATION_LAYER_PROTOCOL_NEGOTIATION = 16
    SIGNED_CERTIFICATE_TIMESTAMP = 18
    PADDING = 21
    ENCRYPT_THEN_MAC = 22
    EXTENDED_MASTER_SECRET = 23
    COMPRESS_CERTIFICATE = 27
    RECORD_SIZE_LIMIT = 28
    SESSION_TICKET = 35
    PRE_SHARED_KEY = 41
    EARLY_DATA = 42
    SUPPORTED_VERSIONS = 43
    COOKIE = 44
    PSK_KEY_EXCHANGE_MODES = 45
    CERTIFICATE_AUTHORITIES = 47
    POST_HANDSHAKE_AUTH = 49
    SIGNATURE_ALGORITHMS_CERT = 50
    KEY_SHARE = 51
    QUIC_TRANSPORT_PARAMETERS = 57
    APPLICATION_SETTINGS_OLD = 0x4469
    APPLICATION_SETTINGS = 0x44CD
    ENCRYPTED_CLIENT_HELLO = 0xFE0D
    QUIC_TRANSPORT_PARAMETERS_DRAFT = 0xFFA5
    ENCRYPTED_SERVER_NAME = 0xFFCE
    RENEGOTIATION_INFO = 0xFF01


_EXT_SNI = 0
_EXT_GROUPS = 10
_EXT_POINT_FORMATS = 11
_EXT_SIG_ALGS = 13
_EXT_ALPN = 16
_EXT_VERSIONS = 43
_EXT_KEY_SHARE = 51
_EXT_QUIC_TP = 57
_EXT_QUIC_TP_DRAFT = 0xFFA5
_EXT_ECH = 0xFE0D
_EXT_ESNI = 0xFFCE


def is_grease(value: int) -> bool:
    """Whether a 16-bit code point is a GREASE value (RFC 8701 §2: 0x?A?A, both bytes equal)."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """One handshake message (RFC 8446 §4), header removed."""

    msg_type: int
    """HandshakeType, or :data:`SSLV2_CLIENT_HELLO` for an SSLv2-compatible hello."""
    body: bytes
    """The message body, without the 4-byte type/length header."""


@dataclass(frozen=True, slots=True)
class TlsClientHello:
    """A ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2)."""

    legacy_version: int
    """client_version / legacy_version field (0x0303 for TLS 1.2 and 1.3)."""
    random: bytes
    """The 32-byte client random (SSLv2: the challenge, left-padded with zeros)."""
    session_id: bytes
    """legacy_session_id (0..32 bytes)."""
    cipher_suites: tuple[int, ...]
    """Offered cipher suites in wire order, GREASE included."""
    compression_methods: bytes
    """legacy_compression_methods, one byte each."""
    extensions: tuple[tuple[int, bytes], ...]
    """Every extension as (type, body) in wire order, GREASE included."""
    sni: str | None
    """First host_name of server_name (RFC 6066 §3), decoded as Latin-1 (lossless)."""
    alpn: tuple[str, ...]
    """ALPN protocol names (RFC 7301 §3.1) in order, decoded as Latin-1 (lossless)."""
    supported_versions: tuple[int, ...]
    """supported_versions (RFC 8446 §4.2.1) in wire order, GREASE included."""
    signature_algorithms: tuple[int, ...]
    """signature_algorithms (RFC 8446 §4.2.3) in wire order."""
    supported_groups: tuple[int, ...]
    """supported_groups (RFC 8446 §4.2.7, RFC 8422 §5.1.1) in wire order."""
    ec_point_formats: tuple[int, ...]
    """ec_point_formats (RFC 8422 §5.1.2)."""
    key_share_groups: tuple[int, ...]
    """Groups of the key_share entries (RFC 8446 §4.2.8) in wire order."""
    ech: bool
    """encrypted_client_hello (0xfe0d) present."""
    esni: bool
    """Draft encrypted_server_name (0xffce) present."""
    quic_transport_parameters: bytes | None
    """quic_transport_parameters body (RFC 9001 §8.2; 0xffa5 for drafts), if present."""
    cookie: bytes = b""
    """DTLS HelloVerifyRequest cookie (RFC 6347 §4.2.1); empty for TLS."""
    sslv2: bool = False
    """Sent as an SSLv2-compatible ClientHello (RFC 5246 Appendix E.2)."""

    def extension(self, ext_type: int) -> bytes | None:
        """Body of the first extension of ``ext_type``, or None."""
        for t, body in self.extensions:
            if t == ext_type:
                return body
        return None


@dataclass(frozen=True, slots=True)
class TlsServerHello:
    """A ServerHello or HelloRetryRequest (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3)."""

    version: int
    """legacy_version / server_version field."""
    random: bytes
    """The 32-byte server random."""
    session_id: bytes
    """legacy_session_id_echo."""
    cipher_suite: int
    """The selected cipher suite."""
    compression_method: int
    """The selected compression method."""
    extensions: tuple[tuple[int, bytes], ...]
    """Every extension as (type, body) in wire order."""
    selected_version: int | None
    """supported_versions.selected_version (RFC 8446 §4.2.1), if the extension is present."""
    alpn: str | None
    """The selected ALPN protocol (RFC 7301 §3.1), Latin-1 decoded."""
    key_share_group: int | None
    """Group of the key_share entry (or selected_group in a HelloRetryRequest)."""
    hello_retry_request: bool
    """random is the HelloRetryRequest magic value (RFC 8446 §4.1.3)."""

    @property
    def negotiated_version(self) -> int:
        """selected_version if present (TLS 1.3), else the legacy version field."""
        return self.version if self.selected_version is None else self.selected_version


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    """A Certificate message (RFC 8446 §4.4.2, RFC 5246 §7.4.2) and its leaf's names."""

    certificates: tuple[bytes, ...]
    """The DER certificates in message order (leaf first)."""
    subject: str | None
    """Leaf subject as nDPI prints it (``"CN=www.ntop.org"``); None if the list is empty."""
    issuer: str | None
    """Leaf issuer as nDPI prints it (``"C=US, O=Let's Encrypt, CN=R3"``)."""
    san: tuple[str, ...]
    """Leaf subjectAltName DNS, e-mail and IP entries."""
    not_before: int | None
    """Leaf validity start, seconds since the epoch (UTC)."""
    not_after: int | None
    """Leaf validity end, seconds since the epoch (UTC)."""
    request_context: bytes = b""
    """certificate_request_context (TLS 1.3 only)."""


# --------------------------------------------------------------------------- helpers


# Extension bodies are small, already-copied ``bytes``; these helpers index them directly after
# an explicit length check (faster than a Cursor per extension on the per-flow hot path) and
# raise ``tls.bad_extension`` with the offset inside the extension body.


def _bad(what: str, offset: int = 0) -> DecodeError:
    return DecodeError("tls.bad_extension", offset, what)


def _u16s(raw: bytes, start: int, what: str) -> tuple[int, ...]:
    """``raw[start:]`` as big-endian 16-bit values."""
    n = len(raw) - start
    if n & 1:
        raise _bad(f"{what}: odd length {n}", start)
    return struct.unpack_from(f">{n >> 1}H", raw, start)


def _vec16_u16s(body: bytes, what: str) -> tuple[int, ...]:
    """A body that is exactly one ``uint16 list<..2^16-1>``."""
    if len(body) < 2 or (body[0] << 8) | body[1] != len(body) - 2:
        raise _bad(f"{what}: list length does not match the extension")
    return _u16s(body, 2, what)


def _vec16_inner(body: bytes, what: str) -> int:
    """Check that ``body`` is exactly one 16-bit-length vector; return its end."""
    if len(body) < 2 or (body[0] << 8) | body[1] != len(body) - 2:
        raise _bad(f"{what}: list length does not match the extension")
    return len(body)


def _sni(body: bytes) -> str | None:
    """ServerNameList (RFC 6066 §3); the first host_name entry."""
    if not body:
        return None
    end = _vec16_inner(body, "server_name")
    pos = 2
    found: str | None = None
    while pos < end:
        if end - pos < 3:
            raise _bad("server_name: truncated entry", pos)
        length = (body[pos + 1] << 8) | body[pos + 2]
        if pos + 3 + length > end:
            raise _bad("server_name: name overruns the list", pos)
        if body[pos] == 0 and found is None:
            found = body[pos + 3 : pos + 3 + length].decode("latin-1")
        pos += 3 + length
    return found


def _alpn(body: bytes) -> tuple[str, ...]:
    """ProtocolNameList (RFC 7301 §3.1)."""
    end = _vec16_inner(body, "alpn")
    pos = 2
    names: list[str] = []
    while pos < end:
        length = body[pos]
        if pos + 1 + length > end:
            raise _bad("alpn: name overruns the list", pos)
        names.append(body[pos + 1 : pos + 1 + length].decode("latin-1"))
        pos += 1 + length
    return tuple(names)


def _key_share_groups(body: bytes) -> tuple[int, ...]:
    """KeyShareClientHello (RFC 8446 §4.2.8): the group of each entry."""
    end = _vec16_inner(body, "key_share")
    pos = 2
    groups: list[int] = []
    while pos < end:
        if end - pos < 4:
            raise _bad("key_share: truncated entry", pos)
        groups.append((body[pos] << 8) | body[pos + 1])
        pos += 4 + ((body[pos + 2] << 8) | body[pos + 3])
        if pos > end:
            raise _bad("key_share: key overruns the list", pos)
    return tuple(groups)


def _vec8_body(body: bytes, what: str) -> int:
    """Check that ``body`` is exactly one 8-bit-length vector; return its length."""
    if not body or body[0] != len(body) - 1:
        raise _bad(f"{what}: list length does not match the extension")
    return body[0]


def _extensions(cur: Cursor) -> tuple[tuple[int, bytes], ...]:
    """``Extension extensions<0..2^16-1>`` (RFC 8446 §4.2); absent means none (RFC 5246)."""
    if not cur.remaining:
        return ()
    block = cur.sub(cur.u16())
    if cur.remaining:
        raise cur.error("trailing_data", f"{cur.remaining} bytes after the extensions")
    out: list[tuple[int, bytes]] = []
    data = block.data
    pos, end = block.pos, block.end
    while pos < end:
        if end - pos < 4:
            raise DecodeError("tls.bad_extensions", pos, "truncated extension header")
        ext_type = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4
        if pos + length > end:
            raise DecodeError("tls.bad_extensions", pos, f"extension 0x{ext_type:04x} overruns")
        out.append((ext_type, bytes(data[pos : pos + length])))
        pos += length
    return tuple(out)


# --------------------------------------------------------------------------- decoders


def decode_client_hello(body: bytes | memoryview, *, dtls: bool = False) -> TlsClientHello:
    """Decode a ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2, RFC 6347 §4.2.1).

    Args:
        body: the handshake message body, after the 4-byte handshake header.
        dtls: the body is a DTLS ClientHello, which carries a cookie after the session id.

    Returns:
        The decoded :class:`TlsClientHello`.

    Raises:
        DecodeError: ``tls.*`` if the body is truncated or inconsistent.
    """
    cur = Cursor(body, "tls")
    legacy_version = cur.u16()
    random = cur.take(32)
    session_id = cur.vec8()
    if len(session_id) > 32:
        raise cur.error("bad_session_id", f"{len(session_id)} bytes")
    cookie = cur.vec8() if dtls else b""
    raw_suites = cur.vec16()
    if len(raw_suites) & 1:
        raise cur.error("bad_cipher_suites", f"odd length {len(raw_suites)}")
    suites: tuple[int, ...] = struct.unpack(f">{len(raw_suites) >> 1}H", raw_suites)
    compression = cur.vec8()
    if not compression:
        raise cur.error("bad_compression", "no compression methods")
    extensions = _extensions(cur)
    return _client_hello(legacy_version, random, session_id, suites, compression, extensions, cookie, False)


def _client_hello(
    legacy_version: int,
    random: bytes,
    session_id: bytes,
    suites: tuple[int, ...],
    compression: bytes,
    extensions: tuple[tuple[int, bytes], ...],
    cookie: bytes,
    sslv2: bool,
) -> TlsClientHello:
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    sig_algs: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    formats: tuple[int, ...] = ()
    shares: tuple[int, ...] = ()
    quic_tp: bytes | None = None
    ech = esni = False
    seen: set[int] = set()
    for ext_type, ext in extensions:
        if ext_type in seen:  # a repeated extension is kept in `extensions` only
            continue
        seen.add(ext_type)
        if ext_type == _EXT_SNI:
            sni = _sni(ext)
        elif ext_type == _EXT_ALPN:
            alpn = _alpn(ext)
        elif ext_type == _EXT_VERSIONS:
            _vec8_body(ext, "supported_versions")
            versions = _u16s(ext, 1, "supported_versions")
        elif ext_type == _EXT_SIG_ALGS:
            sig_algs = _vec16_u16s(ext, "signature_algorithms")
        elif ext_type == _EXT_GROUPS:
            groups = _vec16_u16s(ext, "supported_groups")
        elif ext_type == _EXT_POINT_FORMATS:
            _vec8_body(ext, "ec_point_formats")
            formats = tuple(ext[1:])
        elif ext_type == _EXT_KEY_SHARE:
            shares = _key_share_groups(ext)
        elif ext_type in (_EXT_QUIC_TP, _EXT_QUIC_TP_DRAFT):
            quic_tp = ext if quic_tp is None else quic_tp
        elif ext_type == _EXT_ECH:
            ech = True
        elif ext_type == _EXT_ESNI:
            esni = True
    return TlsClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=suites,
        compression_methods=compression,
        extensions=extensions,
        sni=sni,
        alpn=alpn,
        supported_versions=versions,
        signature_algorithms=sig_algs,
        supported_groups=groups,
        ec_point_formats=formats,
        key_share_groups=shares,
        ech=ech,
        esni=esni,
        quic_transport_parameters=quic_tp,
        cookie=cookie,
        sslv2=sslv2,
    )


def decode_sslv2_client_hello(body: bytes | memoryview) -> TlsClientHello:
    """Decode an SSLv2-compatible ClientHello body (RFC 5246 Appendix E.2).

    Args:
        body: the bytes after ``msg_type`` (version, three lengths, specs, session id,
            challenge), as yielded by :class:`TlsHandshakeReader` with
            ``msg_type == SSLV2_CLIENT_HELLO``.

    Returns:
        A :class:`TlsClientHello` with ``sslv2=True``; cipher specs whose first byte is 0 become
        TLS cipher suites, SSLv2-only specs are dropped; there are no extensions.

    Raises:
        DecodeError: ``tls.truncated``, ``tls.bad_sslv2`` or ``tls.trailing_data``.
    """
    cur = Cursor(body, "tls")
    version = cur.u16()
    spec_len, sid_len, chal_len = cur.u16(), cur.u16(), cur.u16()
    if spec_len % 3 or chal_len == 0 or chal_len > 32:
        raise cur.error("bad_sslv2", f"cipher_spec_length {spec_len}, challenge {chal_len}")
    specs = cur.take(spec_len)
    session_id = cur.take(sid_len)
    challenge = cur.take(chal_len)
    if cur.remaining:
        raise cur.error("trailing_data", f"{cur.remaining} bytes after the challenge")
    suites = tuple((specs[i + 1] << 8) | specs[i + 2] for i in range(0, spec_len, 3) if specs[i] == 0)
    random = challenge.rjust(32, b"\0")
    return _client_hello(version, random, session_id, suites, b"\0", (), b"", True)


def decode_server_hello(body: bytes | memoryview) -> TlsServerHello:
    """Decode a ServerHello body (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3).

    Args:
        body: the handshake message body, after the 4-byte handshake header.

    Returns:
        The decoded :class:`TlsServerHello` (also for a HelloRetryRequest).

    Raises:
        DecodeError: ``tls.*`` if the body is truncated or inconsistent.
    """
    cur = Cursor(body, "tls")
    version = cur.u16()
    random = cur.take(32)
    session_id = cur.vec8()
    if len(session_id) > 32:
        raise cur.error("bad_session_id", f"{len(session_id)} bytes")
    suite = cur.u16()
    compression = cur.u8()
    extensions = _extensions(cur)
    selected: int | None = None
    alpn: str | None = None
    group: int | None = None
    for ext_type, ext in extensions:
        if ext_type == _EXT_VERSIONS and selected is None:
            c = Cursor(ext, "tls")
            selected = c.u16()
            if c.remaining:
                raise c.error("bad_extension", "supported_versions longer than 2 bytes")
        elif ext_type == _EXT_ALPN and alpn is None:
            names = _alpn(ext)
            if len(names) != 1:
                raise DecodeError("tls.bad_extension", 0, f"server ALPN with {len(names)} names")
            alpn = names[0]
        elif ext_type == _EXT_KEY_SHARE and group is None and len(ext) >= 2:
            group = (ext[0] << 8) | ext[1]
    return TlsServerHello(
        version=version,
        random=random,
        session_id=session_id,
        cipher_suite=suite,
        compression_method=compression,
        extensions=extensions,
        selected_version=selected,
        alpn=alpn,
        key_share_group=group,
        hello_retry_request=random == HELLO_RETRY_REQUEST_RANDOM,
    )


def decode_certificate(body: bytes | memoryview, tls13: bool = False) -> TlsCertificate:
    """Decode a Certificate body and the leaf certificate's names.

    TLS 1.2 (RFC 5246 §7.4.2): ``ASN.1Cert certificate_list<0..2^24-1>``. TLS 1.3
    (RFC 8446 §4.4.2): a ``certificate_request_context`` then ``CertificateEntry`` items, each
    ``cert_data<1..2^24-1>`` plus per-entry extensions. Only the first (leaf) certificate is
    parsed, by :func:`sluice.wire.x509.decode_x509`; the rest are length-delimited only.

    Args:
        body: the handshake message body, after the 4-byte handshake header.
        tls13: use the TLS 1.3 layout.

    Returns:
        The decoded :class:`TlsCertificate`.

    Raises:
        DecodeError: ``tls.*`` for framing errors, ``x509.*`` for a malformed leaf.
    """
    cur = Cursor(body, "tls")
    context = cur.vec8() if tls13 else b""
    chain = cur.sub(cur.u24())
    if cur.remaining:
        raise cur.error("trailing_data", f"{cur.remaining} bytes after certificate_list")
    certs: list[bytes] = []
    while chain.remaining:
        certs.append(chain.take(chain.u24()))
        if tls13:
            chain.skip(chain.u16())
    if not certs:
        return TlsCertificate((), None, None, (), None, None, context)
    leaf = decode_x509(certs[0])
    return TlsCertificate(
        certificates=tuple(certs),
        subject=leaf.subject,
        issuer=leaf.issuer,
        san=leaf.san,
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        request_context=context,
    )


def looks_like_tls_client_hello(first_bytes: bytes | memoryview) -> bool:
    """Cheap test of the first stream bytes: a handshake record (22, 3.0-3.4) holding type 1.

    Args:
        first_bytes: the first bytes of a TCP stream (at least 6 are needed).

    Returns:
        True if they start ``16 03 0[0-4] ?? ?? 01``.
    """
    return (
        len(first_bytes) >= 6
        and first_bytes[0] == 0x16
        and first_bytes[1] == 0x03
        and first_bytes[2] <= 0x04
        and first_bytes[5] == 0x01
    )


# --------------------------------------------------------------------------- stream reader


class TlsHandshakeReader:
    """Sans-IO reader of the handshake messages of one direction of a TLS connection.

    Args:
        record_layer: True for a TCP stream of TLS records; False for bare handshake bytes
            (a QUIC CRYPTO stream, RFC 9001 §4.1.3).
        max_buffer: largest handshake message accepted, and bound on buffered bytes.

    Attributes:
        done: True once nothing more can be read in clear (ChangeCipherSpec, application
            data, a fatal alert, or an error); later input is ignored.
        error: the DecodeError that stopped the reader, if any.
        record_version: version field of the first record (record mode).
        alerts: (level, description) of the plaintext alerts seen (RFC 8446 §6).

    Errors: :meth:`feed` raises the DecodeError when the input stops being TLS. Messages
    completed earlier in the same call are returned first and the error is raised by the next
    call; either way ``error`` holds it and the reader is ``done``.
    """

    __slots__ = (
        "_hs",
        "_raise_pending",
        "_rec",
        "_started",
        "alerts",
        "done",
        "error",
        "max_buffer",
        "record_layer",
        "record_version",
    )

    def __init__(self, *, record_layer: bool = True, max_buffer: int = MAX_HANDSHAKE_BUFFER) -> None:
        self.record_layer = record_layer
        self.max_buffer = max_buffer
        self.done = False
        self.error: DecodeError | None = None
        self.record_version: int | None = None
        self.alerts: list[tuple[int, int]] = []
        self._rec = bytearray()
        self._hs = bytearray()
        self._started = False
        self._raise_pending = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes held while waiting for the rest of a record or handshake message."""
        return len(self._rec) + len(self._hs)

    def feed(self, stream_bytes: bytes | bytearray | memoryview) -> list[HandshakeMessage]:
        """Add contiguous stream bytes; return the handshake messages they completed.

        Args:
            stream_bytes: the next bytes of this direction's stream.

        Returns:
            Complete messages, in stream order (possibly empty).

        Raises:
            DecodeError: once, when the stream stops being a TLS handshake (see class doc).
        """
        if self._raise_pending and self.error is not None:
            self._raise_pending = False
            raise self.error
        if self.done or not stream_bytes:
            return []
        out: list[HandshakeMessage] = []
        try:
            if self.record_layer:
                self._feed_records(stream_bytes, out)
            else:
                self._hs += stream_bytes
                self._split_handshake(out)
        except DecodeError as exc:
            self.error = exc
            self.done = True
            self._rec.clear()
            self._hs.clear()
            if not out:
                raise
            self._raise_pending = True
        return out

    def _feed_records(self, data: bytes | bytearray | memoryview, out: list[HandshakeMessage]) -> None:
        rec = self._rec
        rec += data
        pos, n = 0, len(rec)
        if not self._started and n and rec[0] & 0x80:
            pos = self._sslv2(rec, out)
            if pos == 0:
                return
        while n - pos >= 5 and not self.done:
            ctype = rec[pos]
            version = (rec[pos + 1] << 8) | rec[pos + 2]
            length = (rec[pos + 3] << 8) | rec[pos + 4]
            if not 20 <= ctype <= 24:
                raise DecodeError("tls.bad_content_type", pos, f"content type {ctype}")
            if rec[pos + 1] != 3 or rec[pos + 2] > 4:
                raise DecodeError("tls.bad_record_version", pos + 1, f"0x{version:04x}")
            if length > MAX_RECORD_LENGTH:
                raise DecodeError("tls.record_overflow", pos + 3, f"record of {length} bytes")
            if n - pos - 5 < length:
                break
            if not self._started:
                self._started = True
                self.record_version = version
            frag = rec[pos + 5 : pos + 5 + length]
            pos += 5 + length
            self._record(ctype, frag, pos, out)
        del rec[:pos]
        if self.done:
            rec.clear()

    def _record(self, ctype: int, frag: bytearray, pos: int, out: list[HandshakeMessage]) -> None:
        if ctype == ContentType.HANDSHAKE:
            self._hs += frag
            self._split_handshake(out)
            return
        if self._hs:
            raise DecodeError("tls.interleaved_handshake", pos, f"content type {ctype}")
        if ctype in (ContentType.CHANGE_CIPHER_SPEC, ContentType.APPLICATION_DATA):
            self.done = True
        elif ctype == ContentType.ALERT:
            for i in range(0, len(frag) - 1, 2):
                self.alerts.append((frag[i], frag[i + 1]))
                if frag[i] == 2:  # fatal (RFC 5246 §7.2)
                    self.done = True

    def _sslv2(self, rec: bytearray, out: list[HandshakeMessage]) -> int:
        """Frame an SSLv2-compatible ClientHello at the stream start; 0 if incomplete."""
        if len(rec) < 3:
            return 0
        length = ((rec[0] & 0x7F) << 8) | rec[1]
        if rec[2] != 1 or length < 9:
            raise DecodeError("tls.bad_sslv2", 0, f"SSLv2 message type {rec[2]}, length {length}")
        if len(rec) - 2 < length:
            return 0
        self._started = True
        out.append(HandshakeMessage(SSLV2_CLIENT_HELLO, bytes(rec[3 : 2 + length])))
        return 2 + length

    def _split_handshake(self, out: list[HandshakeMessage]) -> None:
        hs = self._hs
        pos, n = 0, len(hs)
        while n - pos >= 4:
            length = (hs[pos + 1] << 16) | (hs[pos + 2] << 8) | hs[pos + 3]
            if length > self.max_buffer:
                raise DecodeError("tls.handshake_too_long", pos, f"message of {length} bytes")
            if n - pos - 4 < length:
                break
            out.append(HandshakeMessage(hs[pos], bytes(hs[pos + 4 : pos + 4 + length])))
            pos += 4 + length
        del hs[:pos]
        if len(hs) > self.max_buffer:
            raise DecodeError("tls.handshake_too_long", 0, f"{len(hs)} bytes buffered")
