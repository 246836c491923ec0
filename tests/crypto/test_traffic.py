"""Crypto fingerprints on real captures: nDPI's crypto captures named, nDPI's corpus never crypto."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.batch.flows import batch_flows
from sluice.detect import _crypto, _mining
from sluice.detect import fingerprints as fp
from sluice.detect.ndpi import ndpi_class, read_ndpi_out
from sluice.features.view import FlowView
from sluice.flows.record import FlowRecord

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
CRYPTO = SHARED / "ndpi-crypto"
NDPI = SHARED / "ndpi"


@cache
def _records(path: Path) -> tuple[FlowRecord, ...]:
    if not path.exists():
        pytest.skip(f"../shared not present: {path} missing")
    return tuple(r for r in batch_flows(str(path)).records if not r.early)


def _best(rec: FlowRecord) -> fp.RuleMatch | None:
    got = fp.match_record(rec)
    return got[0] if got else None


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("capture", "family"),
    [("bitcoin.pcap", "bitcoin"), ("monero-mining.pcap", "stratum"), ("nano.pcapng", "nano")],
)
def test_every_ndpi_crypto_flow_is_named(capture: str, family: str) -> None:
    recs = _records(CRYPTO / capture)
    ndpi = read_ndpi_out(CRYPTO / f"{capture}.out")
    assert ndpi and all(f.label == "crypto" and f.family == family for f in ndpi)
    by_key = {frozenset({(r.client, r.client_port), (r.server, r.server_port)}): r for r in recs}
    for flow in ndpi:
        rec = by_key[flow.endpoints]
        m = _best(rec)
        assert m is not None and (m.label, m.family) == ("crypto", family), flow
        assert m.evidence and m.decided_at >= 0
    # flows nDPI does not list (a long session cut by the idle timeout) are named too
    assert all(
        (m := _best(r)) and m.family == family for r in recs if r.packets > 1 and r.c2s_head + r.s2c_head
    )


@pytest.mark.corpus
def test_no_flow_of_the_ndpi_corpus_becomes_crypto() -> None:
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing")
    wrong = []
    for path in sorted(p for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng")):
        for rec in _records(path):
            m = _best(rec)
            if m is not None and m.label == "crypto":
                wrong.append((path.name, rec.flow_id, m.family, m.evidence[0].code))
    assert wrong == []


def test_ndpi_names_map_to_crypto() -> None:
    assert ndpi_class("343/BITCOIN") == ("crypto", "bitcoin")
    assert ndpi_class("42/Mining") == ("crypto", "stratum")
    assert ndpi_class("420/Nano") == ("crypto", "nano")
    assert ndpi_class("7.42/HTTP.Mining") == ("crypto", "stratum")
    assert ndpi_class("91/TLS") == ("benign", "")


def _rec(c2s: bytes, s2c: bytes, sni: str = "") -> FlowRecord:
    from sluice.flows.record import AppMeta

    sizes = (60, 60, 52, 52 + len(c2s), 52, 52 + len(s2c))
    return FlowRecord(
        1, False, "end", 4, "10.0.0.1", 40000, "10.0.0.2", 9999, 6, (), "", 0.0, 1.0, 3, 3, 0, 0,
        len(c2s), len(s2c), 0x12, 0x12, sizes, (0, 1, 0, 0, 1, 1), (0.0,) * 6, -1, -1, -1, -1,
        len(c2s), c2s[:64].hex(), s2c[:64].hex(), AppMeta(app="tls" if sni else "", sni=sni),
    )  # fmt: skip


def _btc(magic: str, cmd: bytes, length: int = 102) -> bytes:
    return bytes.fromhex(magic) + cmd.ljust(12, b"\0") + length.to_bytes(4, "little") + bytes(4) + bytes(40)


def test_litecoin_mainnet_magic_and_regtest_ambiguity() -> None:
    m = _best(_rec(_btc("fbc0b6db", b"version"), _btc("fbc0b6db", b"version")))
    assert m is not None and (m.label, m.family, m.confidence) == ("crypto", "litecoin", 0.97)
    m = _best(_rec(_btc("fabfb5da", b"version"), _btc("fabfb5da", b"verack", 0)))
    assert m is not None and m.family == "bitcoin"
    assert "bitcoin.regtest_magic" in [e.code for e in m.evidence]


def test_bitcoin_header_needs_a_clean_command() -> None:
    assert _best(_rec(_btc("f9beb4d9", b"ver\x00sion"), b"")) is None
    assert _best(_rec(_btc("f9beb4d9", b"VERSION"), b"")) is None
    assert _best(_rec(_btc("f9beb4d9", b"version", 1 << 30), b"")) is None


def test_levin_header() -> None:
    head = bytes.fromhex("0121010101010101") + (226).to_bytes(8, "little") + b"\x01"
    head += (1001).to_bytes(4, "little") + bytes(4) + (1).to_bytes(4, "little") + (1).to_bytes(4, "little")
    reply = head[:17] + (1001).to_bytes(4, "little") + bytes(4) + (2).to_bytes(4, "little") + head[29:]
    m = _best(_rec(head + bytes(20), reply + bytes(20)))
    assert m is not None and (m.family, m.confidence) == ("monero", 0.97)
    bad = head[:29] + (2).to_bytes(4, "little")
    assert _best(_rec(bad, b"")) is None


def test_stratum_v1_and_monero_pool_login() -> None:
    sub = b'{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5"]}\n'
    res = b'{"id":1,"result":[[["mining.notify","ae68"]],"08000002",4],"error":null}\n'
    m = _best(_rec(sub, res))
    assert m is not None and (m.family, m.confidence) == ("stratum", 0.97)
    login = b'{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFF","pass":"x"}}\n'
    m = _best(_rec(login, b""))
    assert m is not None and m.family == "stratum"
    assert _best(_rec(b'{"id":1,"method":"login","params":["user","pw"]}', b"")) is None


def test_electrum_and_monero_rpc_and_names() -> None:
    m = _best(
        _rec(b'{"jsonrpc": "2.0", "method": "server.version", "params": ["electrum/4.3.4", "1.4"]}', b"")
    )
    assert m is not None and m.family == "electrum"
    m = _best(_rec(b"POST /json_rpc HTTP/1.1\r\nHost: 10.0.0.2:18081\r\n", b"HTTP/1.1 200 Ok\r\n"))
    assert m is not None and m.family == "monero"
    m = _best(_rec(b"\x16\x03\x01", b"", sni="stream.binance.com"))
    assert m is not None and (m.family, m.label) == ("exchange:binance", "crypto")
    assert m.evidence[0].code == "crypto.name"
    m = _best(_rec(b"\x16\x03\x01", b"", sni="pool.supportxmr.com"))
    assert m is not None and m.family == "stratum"
    assert _best(_rec(b"\x16\x03\x01", b"", sni="notbinance.com")) is None


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_random_heads_give_a_match_or_none(c2s: bytes, s2c: bytes) -> None:
    view = FlowView(_rec(c2s, s2c))
    for _name, rule in _crypto.RULES:
        m = rule(view)
        assert m is None or (m.label == "crypto" and m.evidence)


def _tls_rec(app: list[tuple[int, int, float]]) -> FlowRecord:
    """A TLS flow: handshake (client hello, server flight, client finished), then ``app``
    as (direction, payload bytes, seconds since the previous packet), each followed by an ACK."""
    from sluice.flows.record import AppMeta

    pkts: list[tuple[int, int, float]] = [(0, 0, 0.0), (1, 0, 0.01), (0, 0, 0.0), (0, 340, 0.0), (1, 0, 0.01)]
    pkts += [(1, 1190, 0.0), (0, 0, 0.0), (0, 80, 0.0)]
    for d, n, gap in app:
        pkts += [(d, n, gap), (1 - d, 0, 0.0)]
    pkts = pkts[:32]
    sizes = tuple(52 + n for _, n, _ in pkts)
    c2s = b"\x16\x03\x01" + bytes(61)
    s2c = b"\x16\x03\x03" + bytes(61)
    return FlowRecord(
        1, False, "end", 4, "10.0.0.1", 40000, "10.0.0.2", 14433, 6, (), "", 0.0, 9.0, 20, 12, 0, 0,
        3000, 3000, 0x1a, 0x1a, sizes, tuple(d for d, _, _ in pkts), tuple(t for _, _, t in pkts),
        -1, -1, -1, -1, 340, c2s.hex(), s2c.hex(), AppMeta(app="tls", sni="pool.lab.test"),
    )  # fmt: skip


def _shares(gaps: list[float], req: int = 118, reply: int = 70) -> list[tuple[int, int, float]]:
    out: list[tuple[int, int, float]] = [(1, 287, 0.01), (1, 660, 0.0)]  # subscribe/notify answers
    for i, g in enumerate(gaps):
        out += [(0, req + (i % 3), g), (1, reply, 0.02)]
    return out


def test_stratum_over_tls_by_share_cadence() -> None:
    gaps = [0.15, 0.64, 0.82, 0.17, 0.13, 0.96, 0.4]
    m = _mining.stratum_tls(FlowView(_tls_rec(_shares(gaps))))
    assert m is not None and (m.label, m.family, m.rule) == ("crypto", "stratum", "stratum-tls")
    codes = [e.code for e in m.evidence]
    assert codes[:3] == ["stratum_tls.tls", "stratum_tls.shares", "stratum_tls.random_gaps"]
    assert m.confidence <= 0.65 and m.decided_at > 8
    # a keep-alive on a timer: same sizes, regular gaps -> not mining
    assert _mining.stratum_tls(FlowView(_tls_rec(_shares([1.0] * 7)))) is None
    # too few exchanges, or replies too large (a web API), or bulk data: no
    assert _mining.stratum_tls(FlowView(_tls_rec(_shares(gaps[:3])))) is None
    assert _mining.stratum_tls(FlowView(_tls_rec(_shares(gaps, reply=900)))) is None
    assert _mining.stratum_tls(FlowView(_tls_rec([(1, 1448, 0.0), *_shares(gaps)]))) is None
    # requests of many sizes (an API client), not one submit size
    varied = [x for i, g in enumerate(gaps) for x in ((0, 90 + 40 * i, g), (1, 70, 0.02))]
    assert _mining.stratum_tls(FlowView(_tls_rec(varied))) is None


def _ephemeral_point(seed: int) -> bytes:
    """An uncompressed secp256k1 public key (04‖x‖y) of a key made from ``seed``."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = ec.derive_private_key(seed, ec.SECP256K1())
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _rlpx_rec(c2s: bytes, s2c: bytes, c2s_len: int, s2c_len: int) -> FlowRecord:
    from sluice.flows.record import AppMeta

    sizes = (60, 60, 52, 52 + c2s_len, 52, 52 + s2c_len)
    return FlowRecord(
        1, False, "end", 4, "10.0.0.1", 40000, "10.0.0.2", 30303, 6, (), "", 0.0, 1.0, 3, 3, 0, 0,
        c2s_len, s2c_len, 0x12, 0x12, sizes, (0, 1, 0, 0, 1, 1), (0.0,) * 6, -1, -1, -1, -1,
        c2s_len, c2s[:64].hex(), s2c[:64].hex(), AppMeta(),
    )  # fmt: skip


def test_rlpx_handshake_by_its_ephemeral_key() -> None:
    """EIP-8 auth/ack (size prefix, then the ECIES ephemeral key) and the legacy 307/210-byte form."""
    auth_body = _ephemeral_point(0xA11CE) + bytes(range(16)) + bytes(400)  # key, IV, ciphertext + MAC
    ack_body = _ephemeral_point(0xB0B) + bytes(range(16)) + bytes(300)
    auth = len(auth_body).to_bytes(2, "big") + auth_body
    ack = len(ack_body).to_bytes(2, "big") + ack_body
    m = _best(_rlpx_rec(auth, ack, len(auth), len(ack)))
    assert m is not None and (m.rule, m.label, m.family, m.confidence) == ("rlpx", "crypto", "ethereum", 0.97)
    assert [e.code for e in m.evidence] == ["ethereum.rlpx_auth", "ethereum.rlpx_ack"]
    legacy = _ephemeral_point(7) + bytes(242)
    m = _best(_rlpx_rec(legacy, b"", 307, 0))
    assert m is not None and m.family == "ethereum" and m.confidence == 0.9
    # a key off the curve, a wrong size prefix, a payload longer than the size says: no
    bad_x = auth[:10] + bytes([auth[10] ^ 1]) + auth[11:]
    assert _crypto.rlpx(FlowView(_rlpx_rec(bad_x, b"", len(auth), 0))) is None
    assert _crypto.rlpx(FlowView(_rlpx_rec(auth, b"", len(auth) + 50, 0))) is None
    assert _crypto.rlpx(FlowView(_rlpx_rec(legacy, b"", 400, 0))) is None
