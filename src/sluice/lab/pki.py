"""Throw-away certificate authorities, certificates and names for lab servers."""

from __future__ import annotations

__all__ = ["KEY_TYPES", "Issued", "LabCA", "random_hostname"]

import datetime
import ipaddress
import os
import random
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048")
"""Key types the lab picks from."""

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

    def issue(
        self,
        name: str,
        *,
        server: bool = True,
        ips: tuple[str, ...] = (),
        key_type: str | None = None,
    ) -> Issued:
        """Issue a server (or client) certificate for ``name`` and ``ips``."""
        key = _new_key(key_type or self.key_type)
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._cert.subject)
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
            .sign(self._key, hashes.SHA256())
        )
        stem = name.replace("*", "_")
        crt, kp = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        _write_file(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_key(key, kp)
        return Issued(crt, kp, name)
