"""JA4: FoxIO's TLS client fingerprint of a decoded ClientHello (sans-IO).

:func:`ja4` computes FoxIO's JA4 client fingerprint as JA4.md specifies it
(technical_details/JA4.md), with GREASE (RFC 8701) ignored everywhere. That is the default
(``variant="foxio"``): a first ALPN value whose first or last byte is not an ASCII letter or
digit is rendered by the first and last characters of its hex form (JA4.md's examples: ``0xAB``
gives ``ab``, ``0x30 0xAB`` gives ``3b``, ``0x30 0xAB 0xCD 0x31`` gives ``01``), and the SNI
flag is ``d`` when the server_name extension is present. ``variant="ndpi"`` reproduces what
nDPI prints, for comparing with ndpiReader output only: the first *two* characters of the
first ALPN value (``ht`` for ``http/1.1``), and ``i`` when the server name is an IP literal.

The ClientHello comes from :func:`sluice.wire.tls.decode_client_hello` (TLS over TCP, DTLS) or
from a QUIC Initial's CRYPTO data (:mod:`sluice.wire.quic`); ``transport`` says which.
"""

from __future__ import annotations

__all__ = ["Ja4Variant", "Transport", "ja4", "ja4_raw"]

import hashlib
import ipaddress
import struct
from typing import Literal

from sluice.wire.tls import GREASE_VALUES, ExtensionType, TlsClientHello

_EXT_SNI = int(ExtensionType.SERVER_NAME)
_EXT_ALPN = int(ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION)

Transport = Literal["t", "q", "d"]
Ja4Variant = Literal["foxio", "ndpi"]

_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0x0200: "s2",
    0x0100: "s1",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_JA4_EMPTY_HASH = "000000000000"


def _hex_list(values: list[int]) -> str:
    """``[0x1301, 0xc02b]`` -> ``"1301,c02b"`` (4 lowercase hex digits each)."""
    return struct.pack(f">{len(values)}H", *values).hex(",", 2)


def _ja4_version(hello: TlsClientHello) -> str:
    versions = [v for v in hello.supported_versions if v not in GREASE_VALUES]
    if not versions:
        version = hello.legacy_version
    elif all(v >= 0xFE00 for v in versions):
        version = min(versions)  # DTLS counts down: 0xfefc (1.3) is newer than 0xfefd (1.2)
    else:
        version = max(versions)
    return _JA4_VERSIONS.get(version, "00")


def _ja4_alpn(hello: TlsClientHello) -> str:
    if not hello.alpn or not hello.alpn[0]:
        return "00"
    first = hello.alpn[0]
    a, z = first[0], first[-1]
    if a.isascii() and a.isalnum() and z.isascii() and z.isalnum():
        return a + z
    hexed = first.encode("latin-1").hex()
    return hexed[0] + hexed[-1]


def _ndpi_alpn(hello: TlsClientHello) -> str:
    if not hello.alpn or not hello.alpn[0]:
        return "00"
    first = hello.alpn[0]
    return (first[:2] if len(first) > 1 else first * 2).encode("latin-1").decode("ascii", "replace")


def _is_ip_literal(name: str | None) -> bool:
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _ja4_fields(
    hello: TlsClientHello, transport: str, original: bool, variant: Ja4Variant = "foxio"
) -> tuple[str, str, str]:
    if transport not in ("t", "q", "d"):
        raise ValueError(f"JA4 transport must be 't', 'q' or 'd', not {transport!r}")
    grease = GREASE_VALUES
    ciphers = [c for c in hello.cipher_suites if c not in grease]
    exts = [t for t, _ in hello.extensions if t not in grease]
    sigs = [s for s in hello.signature_algorithms if s not in grease]
    if variant not in ("foxio", "ndpi"):
        raise ValueError(f"JA4 variant must be 'foxio' or 'ndpi', not {variant!r}")
    sni = "d" if _EXT_SNI in exts else "i"
    alpn = _ja4_alpn(hello)
    if variant == "ndpi":
        alpn = _ndpi_alpn(hello)
        if sni == "d" and _is_ip_literal(hello.sni):
            sni = "i"
    counts = f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}"
    head = f"{transport}{_ja4_version(hello)}{sni}{counts}{alpn}"
    if not original:
        ciphers.sort()
        exts = sorted(t for t in exts if t != _EXT_SNI and t != _EXT_ALPN)
    cipher_str = _hex_list(ciphers)
    ext_str = _hex_list(exts)
    if sigs:
        ext_str += "_" + _hex_list(sigs)
    return head, cipher_str, ext_str


def _hash12(text: str) -> str:
    if not text:
        return _JA4_EMPTY_HASH
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def ja4(
    hello: TlsClientHello,
    transport: Transport = "t",
    *,
    original: bool = False,
    variant: Ja4Variant = "foxio",
) -> str:
    """FoxIO JA4 fingerprint of a ClientHello (``t13d1516h2_8daaf6152771_e5627efa2ab1``).

    Part a: transport, version (highest non-GREASE supported_versions, else legacy_version),
    ``d``/``i`` for SNI extension present/absent, cipher and extension counts (non-GREASE,
    capped at 99; extensions include SNI and ALPN), first and last character of the first ALPN
    value (``00`` if none). Part b: sha256 of the sorted cipher list, 12 hex digits. Part c:
    sha256 of the sorted extension list without SNI and ALPN, then ``_`` and the signature
    algorithms in wire order (no ``_`` if there are none). An empty list hashes to
    ``000000000000``.

    Args:
        hello: the decoded ClientHello.
        transport: ``"t"`` TLS over TCP, ``"q"`` QUIC, ``"d"`` DTLS.
        original: JA4_o: ciphers and extensions in wire order, SNI and ALPN kept.
        variant: ``"foxio"`` (JA4.md, the default) or ``"ndpi"`` (what ndpiReader prints:
            first two ALPN characters, ``i`` for an IP-literal SNI).

    Returns:
        The 36-character fingerprint.

    Raises:
        ValueError: ``transport`` is not one of ``t``, ``q``, ``d``, or an unknown variant.
    """
    head, ciphers, exts = _ja4_fields(hello, transport, original, variant)
    return f"{head}_{_hash12(ciphers)}_{_hash12(exts)}"


def ja4_raw(
    hello: TlsClientHello,
    transport: Transport = "t",
    *,
    original: bool = False,
    variant: Ja4Variant = "foxio",
) -> str:
    """The unhashed JA4_r (or, with ``original``, JA4_ro) form of :func:`ja4`.

    Args:
        hello: the decoded ClientHello.
        transport: ``"t"``, ``"q"`` or ``"d"``.
        original: wire order, SNI and ALPN kept (JA4_ro).
        variant: ``"foxio"`` (default) or ``"ndpi"``, as for :func:`ja4`.

    Returns:
        ``<part a>_<cipher list>_<extension list>[_<signature algorithms>]``.

    Raises:
        ValueError: ``transport`` is not one of ``t``, ``q``, ``d``, or an unknown variant.
    """
    head, ciphers, exts = _ja4_fields(hello, transport, original, variant)
    return f"{head}_{ciphers}_{exts}"
