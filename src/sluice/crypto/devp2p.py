"""Ethereum node discovery on the wire: discv4 packets (build and verify) and discv5 static headers.

Theory of operation (devp2p specs ``discv4.md`` and ``discv5/discv5-wire.md``):

* **discv4**: ``hash ‖ signature ‖ packet-type ‖ packet-data`` where ``hash = keccak256(signature
  ‖ type ‖ data)`` and the 65-byte signature (r ‖ s ‖ recovery id) signs ``keccak256(type ‖
  data)`` with the sender's secp256k1 key; the data is an RLP list. :func:`decode_discv4` checks
  the hash (a random datagram passes with probability 2⁻²⁵⁶), recovers the sender's public key —
  its node id — from the signature, and decodes the RLP. The hash covers the *whole* datagram,
  so this needs the full payload: a flow record's 64 first bytes hold only the hash and half the
  signature, which is why no fingerprint rule names discv4 (see :mod:`sluice.detect._crypto`).
* **discv5**: ``masking-iv (16) ‖ masked-header ‖ message``; the static header ``"discv5" ‖
  version 0x0001 ‖ flag ‖ nonce (12) ‖ authdata-size (2)`` is AES-128-CTR-encrypted with the
  first 16 bytes of the *recipient's* node id as key and the masking-iv as IV.
  :func:`unmask_discv5` reads it when the recipient is known (a node's own id, a published
  bootnode); without the id the header is indistinguishable from random bytes.

secp256k1 arithmetic here is plain Python (signing and recovery for a few packets: tests, the
lab, evidence), not constant-time: it never handles a key that matters.
"""

from __future__ import annotations

__all__ = [
    "DISCV4_TYPES",
    "Discv4Packet",
    "Discv5Header",
    "Rlp",
    "decode_discv4",
    "encode_discv4",
    "node_id_v5",
    "public_key",
    "rlp_decode",
    "rlp_encode",
    "unmask_discv5",
]

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sluice.crypto.codecs import keccak256

_P = 2**256 - 2**32 - 977
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
DISCV4_TYPES = {1: "ping", 2: "pong", 3: "findnode", 4: "neighbors", 5: "enrrequest", 6: "enrresponse"}
"""discv4 packet types."""
_DISCV4_MIN = 32 + 65 + 1 + 1
_DISCV4_MAX = 1280

Point = tuple[int, int] | None
Rlp = bytes | list["Rlp"]


def _add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % _P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, _P) % _P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, _P) % _P
    x = (lam * lam - a[0] - b[0]) % _P
    return (x, (lam * (a[0] - x) - a[1]) % _P)


def _mul(k: int, pt: Point) -> Point:
    out: Point = None
    while k:
        if k & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        k >>= 1
    return out


def public_key(secret: int) -> bytes:
    """The 64-byte public key (x ‖ y) of a secp256k1 secret: a discv4 node id."""
    pt = _mul(secret, _G)
    assert pt is not None
    return pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def _sign(digest: bytes, secret: int, nonce: int) -> bytes:
    """r ‖ s ‖ recovery id of ``digest`` (low-s, as Ethereum requires)."""
    pt = _mul(nonce, _G)
    assert pt is not None
    r = pt[0] % _N
    s = pow(nonce, -1, _N) * (int.from_bytes(digest, "big") + r * secret) % _N
    v = pt[1] & 1
    if s > _N // 2:
        s, v = _N - s, v ^ 1
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def _recover(digest: bytes, sig: bytes) -> bytes | None:
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if not (0 < r < _N and 0 < s < _N) or v > 1:
        return None
    y2 = (pow(r, 3, _P) + 7) % _P
    y = pow(y2, (_P + 1) // 4, _P)
    if y * y % _P != y2:
        return None
    big_r = (r, y if y & 1 == v else _P - y)
    e = int.from_bytes(digest, "big")
    rinv = pow(r, -1, _N)
    q = _add(_mul(s * rinv % _N, big_r), _mul((-e * rinv) % _N, _G))
    return None if q is None else q[0].to_bytes(32, "big") + q[1].to_bytes(32, "big")


def rlp_encode(item: Rlp) -> bytes:
    """RLP encoding of a byte string or a (nested) list of them."""
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return _rlp_len(len(item), 0x80) + item
    body = b"".join(rlp_encode(x) for x in item)
    return _rlp_len(len(body), 0xC0) + body


def _rlp_len(n: int, offset: int) -> bytes:
    if n < 56:
        return bytes([offset + n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(raw)]) + raw


def rlp_decode(data: bytes) -> Rlp:
    """Decode one RLP item that spans ``data`` exactly.

    Raises:
        ValueError: not RLP, or trailing bytes.
    """
    item, end = _rlp_item(data, 0)
    if end != len(data):
        raise ValueError("rlp.trailing_bytes")
    return item


def _rlp_item(data: bytes, i: int) -> tuple[Rlp, int]:
    if i >= len(data):
        raise ValueError("rlp.truncated")
    b = data[i]
    if b < 0x80:
        return data[i : i + 1], i + 1
    is_list = b >= 0xC0
    short = b - (0xC0 if is_list else 0x80)
    if short < 56:
        start, n = i + 1, short
    else:
        k = short - 55
        start = i + 1 + k
        n = int.from_bytes(data[i + 1 : start], "big")
    end = start + n
    if end > len(data):
        raise ValueError("rlp.truncated")
    if not is_list:
        return data[start:end], end
    out: list[Rlp] = []
    j = start
    while j < end:
        sub, j = _rlp_item(data, j)
        out.append(sub)
    if j != end:
        raise ValueError("rlp.bad_list")
    return out, end


@dataclass(frozen=True, slots=True)
class Discv4Packet:
    """A verified discv4 packet."""

    ptype: int
    """Packet type (1 ping … 6 enrresponse)."""
    name: str
    """Its name."""
    node_id: bytes
    """The sender's 64-byte public key, recovered from the signature."""
    data: Rlp
    """The decoded packet-data."""


def encode_discv4(ptype: int, data: Rlp, secret: int, nonce: int) -> bytes:
    """A discv4 datagram signed with ``secret`` (``nonce``: the ECDSA k, 1 ≤ k < n)."""
    body = bytes([ptype]) + rlp_encode(data)
    sig = _sign(keccak256(body), secret, nonce)
    return keccak256(sig + body) + sig + body


def decode_discv4(datagram: bytes) -> Discv4Packet | None:
    """The packet if ``datagram`` is a discv4 packet whose hash and signature verify, else None."""
    if not _DISCV4_MIN <= len(datagram) <= _DISCV4_MAX or datagram[97] not in DISCV4_TYPES:
        return None
    if keccak256(datagram[32:]) != datagram[:32]:
        return None
    node = _recover(keccak256(datagram[97:]), datagram[32:97])
    if node is None:
        return None
    try:
        data = rlp_decode(datagram[98:])
    except ValueError:
        return None
    return Discv4Packet(datagram[97], DISCV4_TYPES[datagram[97]], node, data)


@dataclass(frozen=True, slots=True)
class Discv5Header:
    """The unmasked static header of a discv5 packet."""

    version: int
    flag: int
    """0 message, 1 WHOAREYOU, 2 handshake."""
    nonce: bytes
    authdata_size: int


def node_id_v5(public: bytes) -> bytes:
    """A discv5 node id: keccak256 of the 64-byte public key."""
    return keccak256(public)


def unmask_discv5(packet: bytes, dest_node_id: bytes) -> Discv5Header | None:
    """The static header if ``packet`` is a discv5 packet to the node ``dest_node_id``, else None."""
    if len(packet) < 16 + 23 or len(dest_node_id) != 32:
        return None
    dec = Cipher(algorithms.AES(dest_node_id[:16]), modes.CTR(packet[:16])).decryptor()
    head = dec.update(packet[16:39])
    if head[:6] != b"discv5" or head[8] > 2:
        return None
    size = int.from_bytes(head[21:23], "big")
    if 16 + 23 + size > len(packet):
        return None
    return Discv5Header(int.from_bytes(head[6:8], "big"), head[8], head[9:21], size)
