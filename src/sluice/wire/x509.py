"""A minimal, bounds-checked DER walker for the X.509 fields sluice reports.

Theory of operation
-------------------
An X.509 certificate (RFC 5280 §4.1) is DER (ITU-T X.690 §10): nested tag-length-value items.
:func:`decode_x509` walks ``Certificate -> tbsCertificate`` and reads only what a policy engine
looks at: serial number, issuer and subject names (§4.1.2.4, §4.1.2.6), validity (§4.1.2.5) and
the subjectAltName extension (§4.2.1.6). Everything else (keys, signatures, other extensions) is
skipped by length without interpretation, and no signature is verified.

Items are read by a small walker (:class:`_Items`, a Cursor specialised for DER: one call per
tag-length-value instead of five) that checks every length against its enclosing item, so a
truncated or inconsistent certificate raises :class:`~sluice.errors.DecodeError`
(``x509.truncated``, ``x509.bad_tag``, ``x509.bad_length``, ``x509.bad_oid``,
``x509.bad_string``, ``x509.bad_time``, ``x509.bad_san``, ``x509.bad_integer``,
``x509.trailing_data``) and nothing else. Indefinite lengths (BER, not DER) and multi-byte tag
numbers are refused.

Names are rendered the way nDPI prints them (``"C=US, O=Let's Encrypt, CN=R3"``): attributes in
certificate order, ``", "`` between them, and only the six labels nDPI knows (CN, C, L, ST, O,
OU). Every attribute, with its dotted OID, is also kept in ``subject_rdns``/``issuer_rdns``.
"""

from __future__ import annotations

__all__ = ["NDPI_NAME_LABELS", "X509Summary", "decode_x509"]

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from sluice.errors import DecodeError

# Universal tags (X.690 §8.1.2 / X.680 §8.4).
_BOOLEAN = 0x01
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_OID = 0x06
_UTF8_STRING = 0x0C
_NUMERIC_STRING = 0x12
_PRINTABLE_STRING = 0x13
_TELETEX_STRING = 0x14
_IA5_STRING = 0x16
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_VISIBLE_STRING = 0x1A
_UNIVERSAL_STRING = 0x1C
_BMP_STRING = 0x1E
_SEQUENCE = 0x30
_SET = 0x31
_CTX_VERSION = 0xA0  # [0] EXPLICIT Version
_CTX_EXTENSIONS = 0xA3  # [3] EXPLICIT Extensions

# GeneralName choices (RFC 5280 §4.2.1.6), IMPLICIT context tags.
_GN_RFC822 = 0x81
_GN_DNS = 0x82
_GN_IP = 0x87

_OID_SUBJECT_ALT_NAME = b"\x55\x1d\x11"  # 2.5.29.17

NDPI_NAME_LABELS: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
}
"""Attribute OIDs rendered in ``subject``/``issuer`` strings, with nDPI's labels."""

_MAX_LENGTH_OCTETS = 4


@dataclass(frozen=True, slots=True)
class X509Summary:
    """The fields of one X.509 certificate that sluice reports (RFC 5280 §4.1)."""

    serial: int
    """serialNumber (may be negative in broken certificates; kept as signed)."""
    issuer: str
    """Issuer in nDPI's rendering (``"C=US, O=Let's Encrypt, CN=R3"``)."""
    subject: str
    """Subject in nDPI's rendering."""
    issuer_rdns: tuple[tuple[str, str], ...]
    """Every issuer attribute as (dotted OID, value), in certificate order."""
    subject_rdns: tuple[tuple[str, str], ...]
    """Every subject attribute as (dotted OID, value), in certificate order."""
    not_before: int
    """Start of validity, seconds since the epoch (UTC)."""
    not_after: int
    """End of validity, seconds since the epoch (UTC)."""
    san: tuple[str, ...]
    """subjectAltName dNSName, rfc822Name and iPAddress entries, in certificate order."""


class _Items:
    """The DER items in ``data[pos:end]``, read one at a time with every length checked."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def __bool__(self) -> bool:
        return self.pos < self.end

    def peek_tag(self) -> int:
        return self.data[self.pos] if self.pos < self.end else -1

    def next(self) -> tuple[int, int, int]:
        """Read one item; return its tag and the bounds of its contents."""
        data, pos, end = self.data, self.pos, self.end
        if end - pos < 2:
            raise DecodeError("x509.truncated", pos, "item header")
        tag, first = data[pos], data[pos + 1]
        if tag & 0x1F == 0x1F:
            raise DecodeError("x509.bad_tag", pos, f"multi-byte tag 0x{tag:02x}")
        pos += 2
        if first & 0x80:
            n = first & 0x7F
            if n == 0 or n > _MAX_LENGTH_OCTETS:
                raise DecodeError("x509.bad_length", pos - 1, f"length form 0x{first:02x}")
            if end - pos < n:
                raise DecodeError("x509.truncated", pos, "length octets")
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        else:
            length = first
        if length > end - pos:
            raise DecodeError("x509.truncated", pos, f"item of {length} bytes, {end - pos} left")
        self.pos = pos + length
        return tag, pos, pos + length

    def expect(self, want: int) -> _Items:
        """The contents of the next item, which must have tag ``want``."""
        at = self.pos
        tag, start, stop = self.next()
        if tag != want:
            raise DecodeError("x509.bad_tag", at, f"expected 0x{want:02x}, got 0x{tag:02x}")
        return _Items(self.data, start, stop)

    def expect_bytes(self, want: int) -> bytes:
        inner = self.expect(want)
        return self.data[inner.pos : inner.end]


def _oid(raw: bytes, at: int) -> str:
    """Dotted form of an OBJECT IDENTIFIER's contents (X.690 §8.19)."""
    if not raw or raw[-1] & 0x80:
        raise DecodeError("x509.bad_oid", at, raw.hex())
    return _oid_text(raw)


@lru_cache(maxsize=1024)
def _oid_text(raw: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _string(tag: int, raw: bytes, at: int) -> str:
    try:
        if tag == _UTF8_STRING:
            return raw.decode("utf-8")
        if tag in (_PRINTABLE_STRING, _IA5_STRING, _NUMERIC_STRING, _VISIBLE_STRING):
            return raw.decode("ascii")
        if tag == _TELETEX_STRING:
            return raw.decode("latin-1")
        if tag == _BMP_STRING:
            return raw.decode("utf-16-be")
        if tag == _UNIVERSAL_STRING:
            return raw.decode("utf-32-be")
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("x509.bad_string", at, str(exc)) from None
    # Any other type (rare in names): keep the bytes visible without guessing an encoding.
    return raw.hex()


def _name(items: _Items) -> tuple[tuple[str, str], ...]:
    """Name ::= SEQUENCE OF RelativeDistinguishedName (RFC 5280 §4.1.2.4)."""
    seq = items.expect(_SEQUENCE)
    data = seq.data
    out: list[tuple[str, str]] = []
    while seq:
        rdn = seq.expect(_SET)
        while rdn:
            atv = rdn.expect(_SEQUENCE)
            at = atv.pos
            oid = _oid(atv.expect_bytes(_OID), at)
            tag, start, stop = atv.next()
            out.append((oid, _string(tag, data[start:stop], start)))
    return tuple(out)


def _render(rdns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{NDPI_NAME_LABELS[oid]}={value}" for oid, value in rdns if oid in NDPI_NAME_LABELS)


def _time(items: _Items) -> int:
    """UTCTime or GeneralizedTime in RFC 5280 §4.1.2.5 form, as seconds since the epoch."""
    tag, start, stop = items.next()
    raw = items.data[start:stop]
    if tag == _UTC_TIME and len(raw) == 13 and raw[-1:] == b"Z":
        year2 = int(raw[:2]) if raw[:2].isdigit() else -1
        year = year2 + (2000 if year2 < 50 else 1900)
        rest = raw[2:12]
    elif tag == _GENERALIZED_TIME and len(raw) == 15 and raw[-1:] == b"Z":
        year = int(raw[:4]) if raw[:4].isdigit() else -1
        rest = raw[4:14]
    else:
        raise DecodeError("x509.bad_time", start, f"tag 0x{tag:02x}, {raw!r}")
    if year < 0 or not rest.isdigit():
        raise DecodeError("x509.bad_time", start, repr(raw))
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    try:
        return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())
    except ValueError as exc:
        raise DecodeError("x509.bad_time", start, str(exc)) from None


def _general_names(items: _Items) -> tuple[str, ...]:
    """GeneralNames ::= SEQUENCE OF GeneralName, keeping DNS, e-mail and IP entries."""
    seq = items.expect(_SEQUENCE)
    data = seq.data
    out: list[str] = []
    while seq:
        tag, start, stop = seq.next()
        if tag in (_GN_DNS, _GN_RFC822):
            out.append(_string(_IA5_STRING, data[start:stop], start))
        elif tag == _GN_IP:
            if stop - start == 4:
                out.append(str(ipaddress.IPv4Address(data[start:stop])))
            elif stop - start == 16:
                out.append(str(ipaddress.IPv6Address(data[start:stop])))
            else:
                raise DecodeError("x509.bad_san", start, f"iPAddress of {stop - start} bytes")
    return tuple(out)


def _extensions(items: _Items) -> tuple[str, ...]:
    """Extensions (RFC 5280 §4.1.2.9); returns the subjectAltName entries."""
    seq = items.expect(_CTX_EXTENSIONS).expect(_SEQUENCE)
    san: tuple[str, ...] = ()
    while seq:
        ext = seq.expect(_SEQUENCE)
        oid = ext.expect_bytes(_OID)
        if ext.peek_tag() == _BOOLEAN:  # critical flag
            ext.next()
        value = ext.expect(_OCTET_STRING)
        if oid == _OID_SUBJECT_ALT_NAME:  # compared in DER form: most extensions are skipped
            san = _general_names(value)
    return san


def decode_x509(der: bytes | memoryview) -> X509Summary:
    """Decode the reported fields of one DER certificate (RFC 5280 §4.1).

    Args:
        der: one certificate, DER-encoded.

    Returns:
        An :class:`X509Summary`.

    Raises:
        DecodeError: ``x509.*`` for anything truncated, mis-tagged or undecodable.
    """
    data = der if isinstance(der, bytes) else bytes(der)
    top = _Items(data, 0, len(data))
    cert = top.expect(_SEQUENCE)
    if top:
        raise DecodeError("x509.trailing_data", top.pos, f"{top.end - top.pos} bytes after the certificate")
    tbs = cert.expect(_SEQUENCE)
    if tbs.peek_tag() == _CTX_VERSION:
        tbs.next()
    at = tbs.pos
    serial_raw = tbs.expect_bytes(_INTEGER)
    if not serial_raw:
        raise DecodeError("x509.bad_integer", at, "empty serialNumber")
    tbs.expect(_SEQUENCE)  # signature AlgorithmIdentifier
    issuer = _name(tbs)
    validity = tbs.expect(_SEQUENCE)
    not_before = _time(validity)
    not_after = _time(validity)
    subject = _name(tbs)
    tbs.expect(_SEQUENCE)  # subjectPublicKeyInfo
    san: tuple[str, ...] = ()
    while tbs:
        if tbs.peek_tag() == _CTX_EXTENSIONS:
            san = _extensions(tbs)
        else:
            tbs.next()  # [1]/[2] unique identifiers
    cert.expect(_SEQUENCE)  # signatureAlgorithm
    cert.expect(_BIT_STRING)  # signatureValue
    return X509Summary(
        serial=int.from_bytes(serial_raw, "big", signed=True),
        issuer=_render(issuer),
        subject=_render(subject),
        issuer_rdns=issuer,
        subject_rdns=subject,
        not_before=not_before,
        not_after=not_after,
        san=san,
    )
