"""Random valid addresses of every chain, and texts that carry them: test and benchmark material.

Every address is built with the encoders of :mod:`sluice.crypto.codecs` from random payloads, so a
test that finds them checks extraction, and :func:`validate` checks them against the decoders;
the lab checks the same decoders against addresses real wallets printed (``litecoin-cli
getnewaddress``, ``monero-wallet-cli``).
"""

from __future__ import annotations

__all__ = ["DECOYS", "SYNTH_CHAINS", "decoy", "random_address", "text_with"]

import base64
import hashlib
import random
import uuid

from sluice.crypto.codecs import (
    B58_XRP,
    b58check_encode,
    b58encode,
    cashaddr_encode,
    eip55,
    keccak256,
    monero_b58encode,
    segwit_encode,
    ton_encode,
    write_varint,
)

SYNTH_CHAINS = (
    "bitcoin", "litecoin", "dogecoin", "tron", "xrp", "bitcoin-cash", "ethereum", "monero", "ton", "solana",
)  # fmt: skip
"""Chains :func:`random_address` can build."""


def random_address(chain: str, rnd: random.Random) -> str:
    """A random valid address of ``chain`` (of one of its usual types, drawn at random).

    Raises:
        ValueError: an unknown chain.
    """
    b = rnd.randbytes
    if chain == "bitcoin":
        kind = rnd.randrange(5)
        if kind < 2:
            return b58check_encode(bytes([(0x00, 0x05)[kind]]) + b(20))
        return segwit_encode("bc", (0, 0, 1)[kind - 2], b((20, 32, 32)[kind - 2]))
    if chain == "litecoin":
        kind = rnd.randrange(3)
        return (
            segwit_encode("ltc", 0, b(20))
            if kind == 2
            else b58check_encode(bytes([(0x30, 0x32)[kind]]) + b(20))
        )
    if chain == "dogecoin":
        return b58check_encode(bytes([rnd.choice((0x1E, 0x16))]) + b(20))
    if chain == "tron":
        return b58check_encode(b"\x41" + b(20))
    if chain == "xrp":
        return b58check_encode(b"\x00" + b(20), B58_XRP)
    if chain == "bitcoin-cash":
        addr = cashaddr_encode("bitcoincash", rnd.randrange(2), b(20))
        return addr if rnd.random() < 0.5 else addr.split(":", 1)[1]
    if chain == "ethereum":
        return "0x" + eip55(b(20).hex())
    if chain == "monero":
        tag = rnd.choice((18, 42, 19))
        raw = write_varint(tag) + b(64) + (b(8) if tag == 19 else b"")
        return monero_b58encode(raw + keccak256(raw)[:4])
    if chain == "ton":
        return ton_encode(rnd.choice((0, -1)), b(32), bounceable=rnd.random() < 0.5)
    if chain == "solana":
        while True:
            text = b58encode(b(32))
            if len(text) >= 32:
                return text
    raise ValueError(f"unknown chain {chain!r}")


_WORDS = [
    "send",
    "the",
    "payment",
    "to",
    "this",
    "wallet",
    "address",
    "please",
    "адрес",
    "кошелька",
    "для",
    "оплаты",
    "переведите",
    "на",
    "donate",
    "thanks",
    "invoice",
    "order",
    "number",
    "total",
    "amount",
    "deposit",
    "withdraw",
    "network",
    "fee",
]
_WRAPS = (
    "{} ",
    "'{}'",
    '"{}"',
    "<td>{}</td>",
    "https://explorer.example/address/{}/",
    "({})",
    "{}.",
    "{},",
    "\n{}\n",
)


def text_with(address: str, chain: str, rnd: random.Random) -> str:
    """A short random text (English and Russian words, HTML, URL or JSON wrapping) carrying ``address``.

    A Solana address gets its chain's name before it (the extractor reports it only in context).
    """
    pre = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randrange(2, 12)))
    post = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randrange(0, 8)))
    if chain == "solana":
        pre += rnd.choice((" Solana:", " SOL address", " solana wallet"))
    return f"{pre} {rnd.choice(_WRAPS).format(address)} {post}"


DECOYS = ("md5", "sha1-git", "sha256", "sha512", "uuid", "base64", "base64url", "aws-key", "stripe-key",
          "github-token", "hex-key", "alnum-key", "jwt")  # fmt: skip
"""Kinds of strings that look like addresses but are not (:func:`decoy`)."""

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def decoy(kind: str, rnd: random.Random) -> str:
    """A random hash, key, token or base64 blob of ``kind`` (one of :data:`DECOYS`).

    Raises:
        ValueError: an unknown kind.
    """
    data = rnd.randbytes(64)
    if kind == "md5":
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    if kind == "sha1-git":
        return hashlib.sha1(data, usedforsecurity=False).hexdigest()
    if kind == "sha256":
        return hashlib.sha256(data).hexdigest()
    if kind == "sha512":
        return hashlib.sha512(data).hexdigest()
    if kind == "uuid":
        return str(uuid.UUID(int=rnd.getrandbits(128)))
    if kind == "base64":
        return base64.b64encode(rnd.randbytes(rnd.randrange(12, 400))).decode()
    if kind == "base64url":
        return base64.urlsafe_b64encode(rnd.randbytes(rnd.randrange(12, 400))).decode().rstrip("=")
    if kind == "aws-key":
        return "AKIA" + "".join(rnd.choice(_ALNUM[:36]) for _ in range(16))
    if kind == "stripe-key":
        return "sk_live_" + "".join(rnd.choice(_ALNUM) for _ in range(24))
    if kind == "github-token":
        return "ghp_" + "".join(rnd.choice(_ALNUM) for _ in range(36))
    if kind == "hex-key":
        return rnd.randbytes(rnd.choice((16, 20, 24, 32, 48))).hex()
    if kind == "alnum-key":
        return "".join(rnd.choice(_ALNUM) for _ in range(rnd.randrange(25, 120)))
    if kind == "jwt":
        parts = [base64.urlsafe_b64encode(rnd.randbytes(n)).decode().rstrip("=") for n in (36, 90, 32)]
        return ".".join(parts)
    raise ValueError(f"unknown decoy kind {kind!r}")
