"""Ethereum discovery packets: discv5 against the spec's test vectors, discv4 built and verified.

Real software: ``tests/lab/test_lab_crypto.py`` decodes the discv4 datagrams that
@ethereumjs/devp2p sends in the lab's ethereum scenario.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sluice.crypto.devp2p import (
    Rlp,
    decode_discv4,
    encode_discv4,
    node_id_v5,
    public_key,
    rlp_decode,
    rlp_encode,
    unmask_discv5,
)
from tests.corpus_util import iter_packets

NDPI = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "ndpi"

# devp2p discv5/discv5-wire-test-vectors.md ("Packet Encodings")
NODE_B_KEY = 0x66FB62BFBD66B9177A138C1E5CDDBE4F7C30C343E94E68DF8769459CB1CDE628
NODE_B_ID = bytes.fromhex("bbbb9d047f0488c0b5a93c1c3f2d8bafc7c8ff337024a55434a0d0555de64db9")
PING_FLAG0 = bytes.fromhex(
    "00000000000000000000000000000000088b3d4342774649325f313964a39e55"
    "ea96c005ad52be8c7560413a7008f16c9e6d2f43bbea8814a546b7409ce783d3"
    "4c4f53245d08dab84102ed931f66d1db57c785865ffccae8689057103acb15"
)
WHOAREYOU_FLAG1 = bytes.fromhex(
    "00000000000000000000000000000000088b3d434277464933a1ccc59f5967ad"
    "1d6035f15e528627dde75cd68292f9e6c27d6b66c8100a873fcbaed4e16b8d"
)


def test_node_id_of_the_spec_key() -> None:
    """Our secp256k1 arithmetic and keccak give the spec's node-b id."""
    assert node_id_v5(public_key(NODE_B_KEY)) == NODE_B_ID


def test_discv5_spec_vectors_unmask_with_the_recipient_id_only() -> None:
    ping = unmask_discv5(PING_FLAG0, NODE_B_ID)
    assert ping is not None and (ping.version, ping.flag, ping.authdata_size) == (1, 0, 32)
    assert ping.nonce == bytes.fromhex("ffffffffffffffffffffffff")
    way = unmask_discv5(WHOAREYOU_FLAG1, NODE_B_ID)
    assert way is not None and (way.flag, way.authdata_size) == (1, 24)
    assert way.nonce == bytes.fromhex("0102030405060708090a0b0c")
    other = bytes.fromhex("aaaa8419e9f49d0083561b48287df592939a8d19947d8c0ef88f2a4856a69fbb")
    assert unmask_discv5(PING_FLAG0, other) is None
    assert unmask_discv5(PING_FLAG0[:30], NODE_B_ID) is None


def test_discv4_round_trip_and_tampering() -> None:
    rnd = random.Random(4)
    secret = rnd.randrange(1, 2**255)
    port = b"\x76\x5f"
    ping: list[Rlp] = [b"\x04", [bytes([10, 0, 0, 1]), port, port], [bytes([10, 0, 0, 2]), port, b""],
                       (1_800_000_000).to_bytes(4, "big"), b"\x01"]  # fmt: skip
    dgram = encode_discv4(1, ping, secret, rnd.randrange(1, 2**255))
    got = decode_discv4(dgram)
    assert got is not None and (got.ptype, got.name) == (1, "ping")
    assert got.node_id == public_key(secret) and got.data == ping
    for i in (0, 40, 97, len(dgram) - 1):
        bad = dgram[:i] + bytes([dgram[i] ^ 0x01]) + dgram[i + 1 :]
        assert decode_discv4(bad) is None
    assert decode_discv4(rnd.randbytes(len(dgram))) is None


def test_rlp_round_trip_and_errors() -> None:
    item: list[Rlp] = [b"", b"\x00", b"\x7f", b"\x80", b"x" * 60, [b"a", [b"b" * 70]]]
    assert rlp_decode(rlp_encode(item)) == item
    for bad in (b"\xb8", b"\xc3\x80\x80", b"\x82a", rlp_encode(b"ab") + b"\x00"):
        with pytest.raises(ValueError):
            rlp_decode(bad)


@pytest.mark.corpus
def test_no_ndpi_udp_payload_is_a_discv4_packet() -> None:
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing")
    seen = hits = 0
    for path in sorted(p for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng")):
        for _, pkt in iter_packets(path):
            if pkt.proto == 17 and len(pkt.payload) >= 99:
                seen += 1
                hits += decode_discv4(pkt.payload) is not None
    assert seen > 1000 and hits == 0
