"""Signed, versioned register snapshots for gateways that must not reach the database.

Theory of operation: ``sluice registry snapshot publish`` reads every current entry and every
proposal under review (the two lists a gateway's register lookup is built from) and writes one
file::

    b"SLUICE-REGISTER-SNAPSHOT\\n"   magic (25 bytes)
    u32 big-endian                   length of the header
    header                           JSON: format, version, created, counts, payload sha256 and size, key id
    payload                          zlib-compressed JSON: sources, bases, entry rows, proposal rows
    signature                        64 bytes, Ed25519 over everything before it

``version`` is the register's revision (its newest import id), so a gateway can refuse to go
back to an older snapshot. :func:`read_snapshot` checks, in order: the size bound, the magic,
the header's length, the signature (with the publisher's public key), the key id, the payload's
size and digest, and only then decompresses (within a bound) and parses. Any failure raises
:class:`SnapshotError` with a stable reason code and the caller keeps what it had: a truncated
file fails the signature (its last 64 bytes are not one), a flipped byte anywhere fails it too.
The file is written to a temporary name and renamed, so a reader never sees half of it.
"""

from __future__ import annotations

__all__ = [
    "MAX_SNAPSHOT_BYTES",
    "Snapshot",
    "SnapshotError",
    "SnapshotHeader",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "publish_snapshot",
    "read_snapshot",
    "snapshot_rows",
    "verify_bytes",
]

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.errors import SluiceError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from sluice.registry.matcher import Matcher
    from sluice.registry.stores import RegistryStore

MAGIC = b"SLUICE-REGISTER-SNAPSHOT\n"
FORMAT = 1
SIGNATURE_BYTES = 64
MAX_HEADER_BYTES = 64 * 1024
MAX_SNAPSHOT_BYTES = int(os.environ.get("SLUICE_MAX_SNAPSHOT_BYTES", 2 * 1024**3))
"""Largest snapshot file read (and largest payload inflated), bytes (env ``SLUICE_MAX_SNAPSHOT_BYTES``)."""

Row = tuple[str, str, str, str]


class SnapshotError(SluiceError):
    """A snapshot that is not loaded; ``reason`` is a stable code (``snapshot.bad_signature`` ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{detail} [{reason}]")


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """What a snapshot says about itself (signed with the rest)."""

    version: int
    """The register's revision (newest import id) when published."""
    created: str
    """ISO 8601 UTC time of publication."""
    entries: int
    """Register entries."""
    proposals: int
    """Proposals under review."""
    payload_sha256: str
    """sha256 of the compressed payload."""
    payload_bytes: int
    """Size of the compressed payload."""
    key_id: str
    """sha256 of the raw public key, first 16 hex digits."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A verified snapshot: its header and the rows matchers are built from."""

    header: SnapshotHeader
    """The signed header."""
    entries: list[Row]
    """``(source, kind, indicator, basis_json)`` of every entry, in the store's order."""
    proposals: list[Row]
    """The same for every proposal under review."""

    def matchers(self) -> tuple[Matcher, Matcher]:
        """The register's matcher and the proposals' (``proposed=True``)."""
        from sluice.registry.matcher import Matcher

        return Matcher(self.entries), Matcher(self.proposals, proposed=True)


def generate_key(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair (PEM; the private key mode 0600); its key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    Path(public_path).write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return _key_id(pub)


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file.

    Raises:
        SnapshotError: ``snapshot.bad_key``: not an unencrypted Ed25519 private key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SnapshotError("snapshot.bad_key", f"{path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SnapshotError("snapshot.bad_key", f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file.

    Raises:
        SnapshotError: ``snapshot.bad_key``: not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (ValueError, TypeError) as exc:
        raise SnapshotError("snapshot.bad_key", f"{path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SnapshotError("snapshot.bad_key", f"{path}: not an Ed25519 public key")
    return key


def _key_id(pub: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def snapshot_rows(store: RegistryStore) -> tuple[int, list[Row], list[Row]]:
    """The register's revision, its entry rows and its open proposals' rows (as the gateway loads them)."""
    from sluice.registry.model import LegalBasis, ProposalState, basis_to_json

    with store.review():  # one view: no review decision between the reads
        last = store.imports(limit=1)
        entries = list(store.rows())
        proposals = [
            (
                p.source,
                p.kind.value,
                p.indicator,
                basis_to_json(
                    (
                        LegalBasis(
                            f"proposed by {p.detector}: {p.reason}", f"proposal #{p.id}", p.created_at[:10]
                        ),
                    )
                ),
            )
            for p in store.proposals(state=ProposalState.PROPOSED)
        ]
    return (last[0].import_id if last else 0), entries, proposals


def _pack(rows: list[Row], sources: dict[str, int], bases: dict[str, int]) -> list[list[object]]:
    return [
        [sources.setdefault(s, len(sources)), k, ind, bases.setdefault(b, len(bases))]
        for s, k, ind, b in rows
    ]


def publish_snapshot(
    store: RegistryStore, out: str | Path, key: Ed25519PrivateKey, *, now: datetime | None = None
) -> SnapshotHeader:
    """Write a signed snapshot of ``store`` to ``out`` (atomically: a temporary file renamed).

    Returns:
        The header written.
    """
    version, entries, proposals = snapshot_rows(store)
    sources: dict[str, int] = {}
    bases: dict[str, int] = {}
    packed = _pack(entries, sources, bases), _pack(proposals, sources, bases)
    body = {"sources": list(sources), "bases": list(bases), "entries": packed[0], "proposals": packed[1]}
    payload = zlib.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), 6)
    header = SnapshotHeader(
        version=version,
        created=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        entries=len(entries),
        proposals=len(proposals),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_bytes=len(payload),
        key_id=_key_id(key.public_key()),
    )
    head = json.dumps({"format": FORMAT, **_header_dict(header)}, sort_keys=True).encode()
    signed = MAGIC + struct.pack(">I", len(head)) + head + payload
    out = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(signed + key.sign(signed))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return header


def _header_dict(h: SnapshotHeader) -> dict[str, object]:
    return {name: getattr(h, name) for name in SnapshotHeader.__slots__}


def _fetch(source: str, limit: int) -> bytes:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=30) as resp:  # noqa: S310 - http(s) only
                data: bytes = resp.read(limit + 1)
        except OSError as exc:
            raise SnapshotError("snapshot.unreadable", f"{source}: {exc}") from None
    else:
        try:
            with open(source, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise SnapshotError("snapshot.unreadable", f"{source}: {exc.strerror}") from None
    if len(data) > limit:
        raise SnapshotError("snapshot.too_large", f"{source}: more than {limit} bytes")
    return data


def verify_bytes(
    data: bytes, pub: Ed25519PublicKey, source: str = "snapshot"
) -> tuple[SnapshotHeader, bytes]:
    """Check a snapshot's bytes; its header and (still compressed) payload.

    Raises:
        SnapshotError: whatever is wrong, first found first (see the module's notes).
    """
    from cryptography.exceptions import InvalidSignature

    fixed = len(MAGIC) + 4
    if len(data) < fixed + SIGNATURE_BYTES or not data.startswith(MAGIC):
        reason = "snapshot.bad_magic" if data[: len(MAGIC)] != MAGIC[: len(data)] else "snapshot.truncated"
        raise SnapshotError(reason, f"{source}: not a complete register snapshot")
    (hlen,) = struct.unpack(">I", data[len(MAGIC) : fixed])
    if hlen > MAX_HEADER_BYTES or fixed + hlen + SIGNATURE_BYTES > len(data):
        raise SnapshotError("snapshot.truncated", f"{source}: header of {hlen} bytes does not fit")
    signed, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    try:
        pub.verify(signature, signed)
    except InvalidSignature:
        raise SnapshotError(
            "snapshot.bad_signature",
            f"{source}: the signature does not verify (truncated, altered or another key)",
        ) from None
    try:
        raw = json.loads(data[fixed : fixed + hlen])
        if raw.pop("format") != FORMAT:
            raise SnapshotError("snapshot.unknown_format", f"{source}: format {raw.get('format')}")
        header = SnapshotHeader(**raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise SnapshotError("snapshot.bad_header", f"{source}: {exc}") from None
    if header.key_id != _key_id(pub):
        raise SnapshotError("snapshot.bad_key", f"{source}: signed with key {header.key_id}")
    payload = signed[fixed + hlen :]
    if len(payload) != header.payload_bytes or hashlib.sha256(payload).hexdigest() != header.payload_sha256:
        raise SnapshotError("snapshot.bad_digest", f"{source}: the payload is not the one the header names")
    return header, payload


def read_snapshot(
    source: str | Path, pub: Ed25519PublicKey, *, min_version: int = 0, limit: int = MAX_SNAPSHOT_BYTES
) -> Snapshot:
    """Read and verify a snapshot from a file or an ``http(s)://`` URL.

    Args:
        source: path or URL.
        pub: the publisher's public key.
        min_version: refuse a snapshot older than this (``snapshot.stale``): no going back.
        limit: most bytes read, and most bytes the payload may inflate to.

    Raises:
        SnapshotError: unreadable, too large, truncated, badly signed, altered or stale.
    """
    name = str(source)
    header, payload = verify_bytes(_fetch(name, limit), pub, name)
    if header.version < min_version:
        raise SnapshotError("snapshot.stale", f"{name}: version {header.version} is older than {min_version}")
    d = zlib.decompressobj()
    text = d.decompress(payload, limit)
    if d.unconsumed_tail:
        raise SnapshotError("snapshot.too_large", f"{name}: the payload inflates past {limit} bytes")
    try:
        body = json.loads(text)
        sources, bases = body["sources"], body["bases"]
        entries = [(sources[s], k, ind, bases[b]) for s, k, ind, b in body["entries"]]
        proposals = [(sources[s], k, ind, bases[b]) for s, k, ind, b in body["proposals"]]
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # signed, so the publisher's bug
        raise SnapshotError("snapshot.bad_payload", f"{name}: {exc}") from None
    if len(entries) != header.entries or len(proposals) != header.proposals:
        raise SnapshotError("snapshot.bad_payload", f"{name}: counts differ from the header")
    return Snapshot(header, entries, proposals)
