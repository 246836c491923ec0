"""Address validation and extraction: published vectors, the known traps, recall and false hits."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.crypto.addresses import find_addresses, validate
from sluice.crypto.codecs import (
    AddressError,
    bech32_decode,
    cashaddr_decode,
    keccak256,
    monero_b58decode,
    monero_b58encode,
    segwit_decode,
)
from sluice.crypto.synth import DECOYS, SYNTH_CHAINS, decoy, random_address, text_with

# Published addresses: (address, chain, type, checksum). Sources: BIP-173/BIP-350 test vectors,
# EIP-55's examples, the CashAddr spec's examples, the Bitcoin genesis block, XRP's genesis account,
# the Monero General Fund's donation address, TON's documentation, the USDT-TRC20 contract.
KNOWN = [
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "bitcoin", "p2pkh", "verified"),
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bitcoin", "p2wpkh", "verified"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "bitcoin", "p2tr", "verified"),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "bitcoin",
        "witness-v1",
        "verified",
    ),
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "ethereum", "account", "verified"),
    ("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", "ethereum", "account", "verified"),
    ("0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "ethereum", "account", "verified"),
    ("0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb", "ethereum", "account", "verified"),
    ("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "ethereum", "account", "unchecksummed"),
    ("0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED", "ethereum", "account", "unchecksummed"),
    ("rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh", "xrp", "account", "verified"),
    (
        "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
        "monero",
        "standard",
        "verified",
    ),
    ("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a", "bitcoin-cash", "p2pkh", "verified"),
    ("qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a", "bitcoin-cash", "p2pkh", "verified"),
    ("bitcoincash:ppm2qsznhks23z7629mms6s4cwef74vcwvn0h829pq", "bitcoin-cash", "p2sh", "verified"),
    ("EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N", "ton", "bounceable", "verified"),
    ("DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", "dogecoin", "p2pkh", "verified"),
    ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "tron", "account", "verified"),
]


@pytest.mark.parametrize(("text", "chain", "kind", "checksum"), KNOWN)
def test_published_addresses_validate(text: str, chain: str, kind: str, checksum: str) -> None:
    got = validate(text)
    assert (got.chain, got.kind, got.checksum) == (chain, kind, checksum)
    assert validate(text, chain).chain == chain
    hits = find_addresses(f"pay to <b>{text}</b>, thanks")
    assert [(h.offset, h.address.address) for h in hits] == [(10, text)]


# BIP-350's invalid vectors: a Bech32 checksum on a v1+ program and Bech32m on v0 — what a
# BIP-173-only library accepts (or, the other way round, what it wrongly rejects: bech32m).
@pytest.mark.parametrize(
    "text",
    [
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
        "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
    ],
)
def test_bech32_variant_trap(text: str) -> None:
    with pytest.raises(AddressError) as info:
        segwit_decode(text)
    assert info.value.reason == "segwit.wrong_variant"
    assert find_addresses(f"x {text} y") == []


def test_bech32m_is_not_bech32() -> None:
    assert bech32_decode("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0")[2] == "bech32m"
    assert bech32_decode("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")[2] == "bech32"
    with pytest.raises(AddressError, match="mixed_case"):
        bech32_decode("bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")


def test_unknown_ticker_is_never_valid() -> None:
    with pytest.raises(AddressError) as info:
        validate("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "FOO")
    assert info.value.reason == "chain.unknown"
    assert validate("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "XBT").chain == "bitcoin"
    with pytest.raises(AddressError, match=r"chain\.mismatch"):
        validate("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "LTC")


def test_keccak_is_not_sha3() -> None:
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert hashlib.sha3_256(b"").digest() != keccak256(b"")


def test_eip55_one_flipped_case_is_rejected() -> None:
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    bad = good[:3] + good[3].swapcase() + good[4:]
    with pytest.raises(AddressError, match="eip55"):
        validate(bad)
    assert find_addresses(bad) == []


def test_degenerate_hex_is_no_address() -> None:
    assert find_addresses("0x0000000000000000000000000000000000000000") == []


def test_monero_integrated_and_subaddress() -> None:
    rnd = random.Random(3)
    kinds = {validate(random_address("monero", rnd)).kind for _ in range(30)}
    assert kinds == {"standard", "subaddress", "integrated"}


@given(st.binary(max_size=80))
def test_monero_base58_roundtrip(data: bytes) -> None:
    assert monero_b58decode(monero_b58encode(data)) == data


def test_cashaddr_wrong_prefix_fails() -> None:
    with pytest.raises(AddressError):
        cashaddr_decode("bchtest:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a")


@pytest.mark.parametrize("chain", SYNTH_CHAINS)
def test_recall_in_text(chain: str) -> None:
    rnd = random.Random(f"recall/{chain}")
    found = 0
    for _ in range(200):
        addr = random_address(chain, rnd)
        text = text_with(addr, chain, rnd)
        hits = find_addresses(text)
        if any(h.address.address.endswith(addr) and h.address.chain == chain for h in hits):
            found += 1
        assert len(hits) <= 1, text
    assert found >= 198  # ≥ 99 %


_ALPHABETS = {
    "ethereum": "0123456789",  # digits only: a letter's case change could make it all-lower
    "bitcoin-cash": "qpzry9x8gf2tvdw0s3jn54khce6mua7l",
}


@pytest.mark.parametrize("chain", SYNTH_CHAINS)
def test_no_checksum_invalid_string_accepted(chain: str) -> None:
    if chain == "solana":
        pytest.skip("Solana has no checksum")
    rnd = random.Random(f"mutate/{chain}")
    accepted = 0
    for _ in range(300):
        addr = random_address(chain, rnd)
        body_start = addr.index(":") + 1 if ":" in addr else 2 if chain == "ethereum" else 1
        alphabet = _ALPHABETS.get(chain, "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
        if chain in ("bitcoin", "litecoin") and addr[:3] in ("bc1", "ltc"):
            alphabet = _ALPHABETS["bitcoin-cash"]
        if chain == "ton":
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        positions = [i for i in range(body_start, len(addr)) if addr[i] in alphabet]
        i = rnd.choice(positions)
        new = rnd.choice([c for c in alphabet if c != addr[i]])
        bad = addr[:i] + new + addr[i + 1 :]
        try:
            validate(bad)
        except AddressError:
            pass
        else:
            accepted += 1
        accepted += len(find_addresses(text_with(bad, chain, rnd)))
    assert accepted == 0


def test_no_false_hits_on_random_hashes_keys_blobs() -> None:
    rnd = random.Random("decoys")
    hits = []
    for i in range(10_000):
        kind = DECOYS[i % len(DECOYS)]
        text = f"{kind}: {decoy(kind, rnd)}\n"
        hits += [(kind, h.address.address) for h in find_addresses(text)]
    assert hits == []


def test_solana_needs_context() -> None:
    addr = "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"
    assert find_addresses(f"token {addr}") == []
    (hit,) = find_addresses(f"Solana wallet: {addr}")
    assert (hit.address.chain, hit.address.checksum) == ("solana", "none")
    assert hit.address.confidence < 0.9


def test_offsets_are_characters_for_text_and_bytes_for_bytes() -> None:
    addr = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
    text = f"кошелёк: {addr}"
    (h,) = find_addresses(text)
    assert text[h.offset :].startswith(addr)
    raw = text.encode()
    (hb,) = find_addresses(raw)
    assert raw[hb.offset :].startswith(addr.encode())


def test_glued_inside_longer_run_is_not_reported() -> None:
    assert find_addresses("x1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNaZ") == []


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for h in find_addresses(data):
        assert validate(h.address.address).chain == h.address.chain
