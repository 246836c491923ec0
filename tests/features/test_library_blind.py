"""Feature sets 2 and 3 name protocols, not libraries: no client-library columns, the handshake
masked; what follows the handshake is read where it ends."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.features.extractor import FlowFeatures
from sluice.features.flow import (
    BURSTS,
    FEATURE_NAMES,
    MASKED,
    MASKED_COLUMNS,
    NESTED_CLIENT_HELLO,
    feature_row,
)
from sluice.features.view import FlowView
from sluice.flows.record import AppMeta, FlowRecord
from tests.detect.conftest import lab_label, lab_records

HTTPS = ("https-nginx-h2-tls13-s1-000", "https-python-tls12-s1-001", "https-nginx-h1-tls12-s1-002")


def _col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def _tls_flows() -> list[FlowRecord]:
    out = []
    for s in (*HTTPS, "trojan-default-s1-000", "v2ray-vless-tls-s1-001", "stunnel-default-s1-000"):
        out += [r for r in lab_records(s) if lab_label(s, r) and r.c2s_head.startswith("1603")]
    assert len(out) >= 6
    return out


def test_no_column_names_a_client_library() -> None:
    for word in ("ja4", "alpn", "offered", "grease", "cipher_count", "extensions"):
        assert not [n for n in FEATURE_NAMES if word in n], word


def _other_library(rec: FlowRecord, grow: int, head_tail: bytes) -> FlowRecord:
    """The same flow as another TLS library would open it: another ClientHello, same protocol."""
    i = FlowView(rec).first_payload_index(0)
    sizes = list(rec.pkt_sizes)
    sizes[i] += grow
    head = bytes.fromhex(rec.c2s_head)[:3] + head_tail
    meta = replace(rec.meta, ja4="t13d9999h2_aaaaaaaaaaaa_bbbbbbbbbbbb", alpn=("x",), tls_versions=(0x0303,))
    return replace(
        rec,
        pkt_sizes=tuple(sizes),
        c2s_first_payload_len=rec.c2s_first_payload_len + grow,
        c2s_head=head.hex(),
        c2s_entropy=1.0,
        c2s_printable=0.5,
        meta=meta,
    )


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_clienthello_does_not_change_the_row(data: st.DataObject) -> None:
    recs = _tls_flows()
    rec = recs[data.draw(st.integers(0, len(recs) - 1))]
    grow = data.draw(st.integers(1, 900))
    tail = data.draw(st.binary(min_size=0, max_size=61))
    f = FlowFeatures().fit()
    base, other = f.transform([rec]), f.transform([_other_library(rec, grow, tail)])
    np.testing.assert_array_equal(other, base)
    assert (base[0, list(MASKED_COLUMNS)] == MASKED).all()


def test_non_tls_flows_are_not_masked() -> None:
    s = "shadowsocks-aead-s1-000"
    rec = next(r for r in lab_records(s) if lab_label(s, r))
    row = feature_row(rec)
    assert row[_col("c2s.first_payload_len")] == rec.c2s_first_payload_len > 0
    assert MASKED not in [row[j] for j in MASKED_COLUMNS]


def _made(sizes_dirs: list[tuple[int, int]]) -> FlowRecord:
    """A UDP record with the given (payload size, direction) packets (UDP: payload = size - 28)."""
    return FlowRecord(
        1, False, "end", 4, "10.0.0.1", 1000, "10.0.0.2", 2000, 17, (), "", 0.0, 1.0,
        0, 0, 0, 0, 0, 0, 0, 0,
        tuple(n + 28 for n, _ in sizes_dirs),
        tuple(d for _, d in sizes_dirs),
        tuple(0.001 for _ in sizes_dirs),
        -1.0, -1.0, -1.0, -1.0, 0, "", "", AppMeta(),
    )  # fmt: skip


def test_bursts_and_the_nested_handshake_count() -> None:
    lo, _hi = NESTED_CLIENT_HELLO
    # outer handshake (2 bursts), then an inner ClientHello answered by a certificate chain, twice
    seq = [
        (300, 0),
        (1400, 1),
        (1400, 1),
        (100, 0),
        (lo, 0),
        (1200, 1),
        (80, 0),
        (40, 1),
        (600, 0),
        (1000, 1),
    ]
    row = feature_row(_made(seq))
    bursts = [row[_col(f"burst{k}.bytes")] for k in range(BURSTS)]
    assert bursts == [300, -2800, 100 + lo, -1200, 80, -40, 600, -1000, 0, 0]
    assert row[_col("bursts.count")] == 8
    assert row[_col("nested.handshakes")] == 2  # (100 + lo, 1200) and (600, 1000); (80, 40) is too small
    # after the first two bursts: c2s 100, lo, 80, 600; s2c 1200, 40, 1000
    assert row[_col("late.c2s_pkts")] == 4 and row[_col("late.c2s_max")] == 600
    assert row[_col("late.c2s_mean")] == (100 + lo + 80 + 600) / 4
    assert row[_col("late.s2c_pkts")] == 3 and row[_col("late.s2c_mean")] == 2240 / 3
    # nothing after the handshake: -1s, not zeros
    short = feature_row(_made([(300, 0), (900, 1)]))
    assert short[_col("late.c2s_mean")] == -1.0 and short[_col("late.s2c_max")] == -1.0
    assert short[_col("nested.handshakes")] == 0


def _tls(packets: list[tuple[int, int]], version: int, cert: bool) -> FlowRecord:
    """A flow opening with a TLS handshake record, with the server's chosen version and
    (or not) a certificate, and the given (payload size, direction) packets."""
    meta = AppMeta(app="tls", tls_version=version, cert_subject="CN=relay.example" if cert else "")
    return replace(_made(packets), c2s_head="160301020001", meta=meta)


INNER = [(546, 0), (1448, 1), (1448, 1), (814, 1), (102, 0), (108, 0), (293, 1)]
"""A nested handshake as a relay carries it: the inner ClientHello, the inner server's chain, the
inner Finished and request, a session ticket."""


def test_the_bursts_after_the_handshake_start_where_it_ends() -> None:
    inner = INNER
    tls13 = [(517, 0), (1448, 1), (900, 1), (74, 0), *inner]  # the client's Finished in its own packet
    tls12_full = [(517, 0), (1448, 1), (700, 1), (126, 0), (51, 1), *inner]  # key exchange, Finished
    tls12_resumed = [(643, 0), (245, 1), (80, 0), *inner]  # CCS + Finished, then the inner hello
    want = [546.0, -3710.0, 210.0, -293.0, 0.0, 0.0]
    cols = [_col(f"tls_app{k}.bytes") for k in range(6)]
    for packets, version, cert in (
        (tls13, 0x0304, True),
        (tls12_full, 0x0303, True),
        (tls12_resumed, 0x0303, False),
    ):
        row = feature_row(_tls(packets, version, cert))
        assert [row[c] for c in cols] == want, (version, cert)
    # the positional bursts disagree on the same three flows: what the aligned columns are for
    assert len({feature_row(_tls(p, v, c))[_col("burst2.bytes")] for p, v, c in (
        (tls13, 0x0304, True), (tls12_full, 0x0303, True), (tls12_resumed, 0x0303, False))}) == 3  # fmt: skip
    # a Finished that came with data is data: nothing is skipped after the server's first flight
    merged = [(517, 0), (1448, 1), (620, 0), (3000, 1)]
    assert [feature_row(_tls(merged, 0x0304, True))[c] for c in cols] == [620.0, -3000.0, 0.0, 0.0, 0.0, 0.0]
    # not a TLS flow: -1, "not seen"
    assert [feature_row(_made(inner))[c] for c in cols] == [-1.0] * 6
