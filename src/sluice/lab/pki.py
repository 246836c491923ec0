"""Throw-away certificate authorities, certificates and names for lab servers."""

from __future__ import annotations

__all__ = ["CHAINS", "KEY_TYPES", "Issued", "LabCA", "random_hostname"]

import datetime
import ipaddress
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048")
"""Key types the lab picks from."""

CHAINS = ("leaf", "public", "public-cross")
"""What a server certificate file holds, so what the server sends in its handshake:

- ``leaf``: the certificate alone, one name, signed by the root (0.4-0.8 KB on the wire);
- ``public``: the shape of the public web PKI - a leaf with the extensions public CAs add
  (several names, OCSP and CA-issuer URLs, a CRL distribution point, policies, key identifiers)
  signed by an RSA-2048 intermediate that is sent along (about 2-2.5 KB);
- ``public-cross``: the same, plus the root cross-signed by an older root, as Let's Encrypt
  served it until 2024 (about 3-3.5 KB).

Public sites send 2.5-6 KB of certificates; a detector of handshakes nested in a tunnel reads
that burst, so a lab that only ever sent ``leaf`` would teach it a size the world does not have.
Clients trust the lab root (``ca.crt``) and build the path through what the server sends."""

_WORDS = (
    "www",
    "cdn",
    "static",
    "api",
    "img",
    "edge",
    "app",
    "portal",
    "files",
    "media",
    "assets",
    "login",
    "news",
    "shop",
    "video",
    "docs",
    "mail",
    "cloud",
    "data",
    "m",
)
_ZONES = ("com", "net", "org", "io", "info", "de", "ru", "co.uk", "lab")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def random_hostname(rng: random.Random) -> str:
    """A plausible host name such as ``cdn.kovarel.net``."""
    syll = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "bel", "dor", "fen", "gar", "rel")
    domain = "".join(rng.choice(syll) for _ in range(rng.randrange(2, 4)))
    return f"{rng.choice(_WORDS)}.{domain}.{rng.choice(_ZONES)}"


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}")


def _write_key(key: PrivateKey, path: Path) -> None:
    """Write a private key readable by its owner only from the moment the file exists.

    ``O_NOFOLLOW`` refuses a symlink planted at ``path``; a file already there is narrowed to
    ``0o600`` before the key is written into it.
    """
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_file(path, data, 0o600)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a file that has ``mode`` from creation (umask notwithstanding)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its key on disk."""

    cert: Path
    """PEM certificate."""
    key: Path
    """PEM private key (PKCS#8, unencrypted)."""
    name: str
    """Common name (and first DNS subject alternative name)."""


class LabCA:
    """A certificate authority that lives for one session.

    Args:
        directory: where the CA and issued files are written.
        key_type: one of :data:`KEY_TYPES`.
        name: common name of the CA.
    """

    def __init__(self, directory: Path, key_type: str = "ec-p256", name: str = "Lab Root CA") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key_type = key_type
        self._key = _new_key(key_type)
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert = self.dir / "ca.crt"
        _write_file(self.cert, self._cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self._intermediate: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None
        self._cross: x509.Certificate | None = None

    def issue(
        self,
        name: str,
        *,
        server: bool = True,
        ips: tuple[str, ...] = (),
        key_type: str | None = None,
        chain: str = "leaf",
        alt_names: tuple[str, ...] = (),
    ) -> Issued:
        """Issue a server (or client) certificate for ``name`` and ``ips``.

        ``chain`` is one of :data:`CHAINS`; ``alt_names`` are more DNS names for a ``public``
        leaf (a public site's certificate names its other hosts too).
        """
        if chain not in CHAINS:
            raise ValueError(f"unknown chain {chain!r}: one of {', '.join(CHAINS)}")
        key = _new_key(key_type or self.key_type)
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        if chain != "leaf":
            sans += [x509.DNSName(n) for n in alt_names if n != name]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        issuer_cert, issuer_key = (self._cert, self._key) if chain == "leaf" else self._issuing_ca()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=True,
            )
        )
        if chain != "leaf":
            builder = _public_leaf_extensions(builder, key, issuer_cert)
        cert = builder.sign(issuer_key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if chain != "leaf":
            pem += issuer_cert.public_bytes(serialization.Encoding.PEM)
        if chain == "public-cross":
            pem += self._cross_signed_root().public_bytes(serialization.Encoding.PEM)
        stem = name.replace("*", "_")
        crt, kp = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        _write_file(crt, pem, 0o644)
        _write_key(key, kp)
        return Issued(crt, kp, name)

    def _issuing_ca(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """The RSA-2048 intermediate under the root that signs ``public`` leaves (made once)."""
        if self._intermediate is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab Trust Services"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Lab Issuing CA R1"),
                ]
            )
            cert = (
                _ca_builder(name, self._cert.subject, key.public_key(), path_length=0)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
                )
                .add_extension(_aia(issuers="http://x1.i.lab-trust.example/"), critical=False)
                .add_extension(_crl("http://x1.c.lab-trust.example/"), critical=False)
                .add_extension(_policies(), critical=False)
                .sign(self._key, hashes.SHA256())
            )
            self._intermediate = (cert, key)
        return self._intermediate

    def _cross_signed_root(self) -> x509.Certificate:
        """The root's name and key signed by an older root (an RSA-2048 key made for it)."""
        if self._cross is None:
            old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            old_name = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab Legacy Trust"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Lab Legacy Root X3"),
                ]
            )
            self._cross = (
                _ca_builder(self._cert.subject, old_name, self._key.public_key(), path_length=None)
                .add_extension(_policies(), critical=False)
                .sign(old, hashes.SHA256())
            )
        return self._cross


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, path_length: int | None
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _aia(*, issuers: str, ocsp: str = "") -> x509.AuthorityInformationAccess:
    """Where a certificate's status (OCSP, when given) and its issuer's certificate are found."""
    where = [(AuthorityInformationAccessOID.OCSP, ocsp)] if ocsp else []
    where.append((AuthorityInformationAccessOID.CA_ISSUERS, issuers))
    return x509.AuthorityInformationAccess(
        [x509.AccessDescription(oid, x509.UniformResourceIdentifier(url)) for oid, url in where]
    )


def _crl(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url + "crl")], None, None, None)]
    )


def _policies() -> x509.CertificatePolicies:
    return x509.CertificatePolicies(
        [
            x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None),  # CA/B Forum DV
            x509.PolicyInformation(
                x509.ObjectIdentifier("1.3.6.1.4.1.44947.1.1.1"), ["http://cps.lab-trust.example/"]
            ),
        ]
    )


def _public_leaf_extensions(
    builder: x509.CertificateBuilder, key: PrivateKey, issuer: x509.Certificate
) -> x509.CertificateBuilder:
    """What a public CA adds to a leaf besides names and usages."""
    return (
        builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .add_extension(
            _aia(ocsp="http://r1.o.lab-trust.example", issuers="http://r1.i.lab-trust.example/"),
            critical=False,
        )
        .add_extension(_crl("http://r1.c.lab-trust.example/"), critical=False)
        .add_extension(_policies(), critical=False)
    )
