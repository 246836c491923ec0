"""Layer 2: the fully-encrypted test on real captures, with its false positives measured."""

from __future__ import annotations

import dataclasses

import pytest

from sluice.detect._base import NotFittedError
from sluice.detect.fet import FetDetector, fet_test
from sluice.detect.ndpi import read_ndpi_out
from sluice.errors import ConfigError

from .conftest import NDPI, lab_label, lab_records, ndpi_captures, ndpi_records

FULLY_ENCRYPTED = ("shadowsocks-aead-s1-000", "obfs4-iat0-s1-000", "v2ray-vmess-tcp-s1-000")
EXEMPT = (
    "https-nginx-h2-tls13-s1-000",
    "http-nginx-s1-000",
    "ssh-socks-dynamic-s1-000",
    "socks-dante-s1-001",
    "trojan-default-s1-000",
    "stunnel-default-s1-000",
    "shadowsocks-plugin-obfs-http-s1-000",
    "shadowsocks-plugin-obfs-tls-s1-002",
    "dns-tcp-s1-001",
)


@pytest.mark.parametrize("session", FULLY_ENCRYPTED)
def test_random_looking_first_payloads_are_fully_encrypted(session: str) -> None:
    flows = [r for r in lab_records(session) if lab_label(session, r)]
    assert flows
    for rec in flows:
        res = fet_test(rec)
        assert res.applicable and res.fully_encrypted and not res.exemptions
        assert 3.4 < res.popcount < 4.6


@pytest.mark.parametrize("session", EXEMPT)
def test_protocols_with_structure_are_exempt(session: str) -> None:
    for rec in lab_records(session):
        res = fet_test(rec)
        assert not res.fully_encrypted, (session, rec.flow_id, res)
        if res.applicable:
            assert res.exemptions


def test_a_capture_that_starts_mid_connection_is_not_tested() -> None:
    rec = next(r for r in lab_records("shadowsocks-aead-s1-000") if lab_label("shadowsocks-aead-s1-000", r))
    no_syn = dataclasses.replace(rec, c2s_tcp_flags=rec.c2s_tcp_flags & ~0x02)
    assert not fet_test(no_syn).applicable
    assert fet_test(no_syn, require_handshake=False).fully_encrypted


def test_detector_contract_and_evidence() -> None:
    recs = list(lab_records("shadowsocks-aead-s1-000")) + list(lab_records("https-python-tls12-s1-001"))
    det = FetDetector()
    with pytest.raises(NotFittedError):
        det.score_samples(recs)
    det.fit()
    scores = det.score_samples(recs)
    assert scores.shape == (len(recs),) and scores[0] == 1.0 and scores[-1] == 0.0
    assert (det.decision_function(recs) == scores - 0.5).all()
    v = det.explain(recs[:1])[0]
    assert v.label == "circumvention" and v.detector == "fet"
    codes = [e.code for e in v.evidence]
    assert codes[0] == "fet.fully_encrypted" and {f"fet.ex{i}" for i in range(1, 6)} <= set(codes)
    assert v.decided_at == 3  # SYN, SYN-ACK, ACK, then the first payload
    assert list(det.predict(recs[-1:])) == ["unknown"]
    assert det.get_params()["popcount_low"] == 3.4
    with pytest.raises(ConfigError):
        FetDetector(popcount_low=4.5).fit()
    with pytest.raises(ConfigError):
        FetDetector(printable_fraction=1.5).fit()


# -- false positives on nDPI's corpus --------------------------------------------------------------

# benign flows (per nDPI, TAXONOMY's reading) the test calls fully encrypted: Threema's own
# encrypted protocol (nDPI flags it too) and one Ookla speed-test flow (random test data)
KNOWN_BENIGN_FPS = {
    ("threema.pcap", 0),
    ("threema.pcap", 1),
    ("threema.pcap", 2),
    ("threema.pcap", 3),
    ("threema.pcap", 4),
    ("threema.pcap", 5),
    ("ookla.pcap", 1),
}


@pytest.mark.corpus
def test_false_positives_on_the_corpus_are_the_known_ones() -> None:
    captures = ndpi_captures()
    if not captures:
        pytest.skip(f"../shared not present: {NDPI} missing")
    tested = 0
    fps = set()
    for path in captures:
        peer = {f.endpoints: f for f in read_ndpi_out(path.with_name(path.name + ".out"))}
        for rec in ndpi_records(path.name):
            res = fet_test(rec)
            if not res.applicable:
                continue
            f = peer.get(frozenset(((rec.client, rec.client_port), (rec.server, rec.server_port))))
            benign = f is not None and (f.label == "benign" or f.proto == "305/Threema")
            if not benign:
                continue
            tested += 1
            if res.fully_encrypted:
                fps.add((path.name, rec.flow_id))
    assert tested > 300
    assert fps == KNOWN_BENIGN_FPS


@pytest.mark.corpus
def test_ndpis_fully_encrypted_findings_compared() -> None:
    """nDPI flags Oscar and MongoDB; sluice's Ex1 on the first 64 bytes exempts them (documented)."""
    for name in ("Oscar.pcap", "mongo_false_positive.pcapng"):
        rec = ndpi_records(name)[0]
        res = fet_test(rec)
        assert res.applicable and res.exemptions == ("ex1",) and res.popcount < 3.4
    assert fet_test(
        next(r for r in ndpi_records("shadowsocks.pcap") if r.server_port == 8388)
    ).fully_encrypted
