"""Early-flow features on real lab flows: stable names, no addresses or ports, rows round-trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.features.extractor import FlowFeatures
from sluice.features.flow import EARLY_PACKETS, FEATURE_NAMES, record_from_row
from sluice.flows.record import FlowRecord
from tests.detect.conftest import lab_index, lab_records


def _all() -> list[FlowRecord]:
    return [r for s in sorted(lab_index()) for r in lab_records(s)]


def test_names_are_stable_and_portless() -> None:
    f = FlowFeatures().fit()
    assert f.feature_names_ == FEATURE_NAMES and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert not [n for n in FEATURE_NAMES if "port" in n or "addr" in n or n in ("client", "server")]
    X = f.transform(_all())
    assert X.shape == (len(_all()), len(FEATURE_NAMES)) and np.isfinite(X).all()
    assert f.transform([]).shape == (0, len(FEATURE_NAMES))


def test_addresses_ports_and_late_packets_do_not_matter() -> None:
    f = FlowFeatures().fit()
    for rec in _all():
        moved = replace(rec, client="10.9.9.9", server="10.8.8.8", client_port=1, server_port=2, flow_id=7)
        longer = replace(rec, c2s_bytes=rec.c2s_bytes * 10, last_ts=rec.last_ts + 100, c2s_packets=999)
        base = f.transform([rec])
        np.testing.assert_array_equal(f.transform([moved]), base)
        np.testing.assert_array_equal(f.transform([longer]), base)


def test_rows_round_trip() -> None:
    f = FlowFeatures().fit()
    recs = _all()
    back = [record_from_row(r.to_dict()) for r in recs]
    np.testing.assert_array_equal(f.transform(back), f.transform(recs))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_cut_record_gives_finite_features(data: st.DataObject) -> None:
    recs = _all()
    rec = recs[data.draw(st.integers(0, len(recs) - 1))]
    k = data.draw(st.integers(0, len(rec.pkt_sizes)))
    head = data.draw(st.binary(max_size=64)).hex()
    cut = replace(
        rec, pkt_sizes=rec.pkt_sizes[:k], pkt_dirs=rec.pkt_dirs[:k], pkt_iats=rec.pkt_iats[:k], c2s_head=head
    )
    row = FlowFeatures().fit().transform([cut])
    assert row.shape == (1, len(FEATURE_NAMES)) and np.isfinite(row).all()
    assert row[0, FEATURE_NAMES.index("early.packets")] == min(k, EARLY_PACKETS)
