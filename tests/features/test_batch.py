"""The batch feature path gives the definition's rows bit for bit: real captures, generated records."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.features.batch import feature_matrix
from sluice.features.flow import FEATURE_NAMES, feature_row
from sluice.flows.record import HEAD_BYTES, FlowRecord
from tests.detect.conftest import lab_index, lab_records, ndpi_captures, ndpi_records


def _definition(records: list[FlowRecord]) -> npt.NDArray[np.float64]:
    return np.asarray([feature_row(r) for r in records], dtype=np.float64).reshape(-1, len(FEATURE_NAMES))


def assert_bitwise_equal(got: npt.NDArray[np.float64], want: npt.NDArray[np.float64]) -> None:
    """Equal as bits (so -0.0 != 0.0 and every nan payload counts), naming the first column off."""
    assert got.shape == want.shape
    diff = np.argwhere(got.view(np.uint64) != want.view(np.uint64))
    if len(diff):
        i, j = diff[0]
        first = f"row {i}, {FEATURE_NAMES[j]}: {got[i, j]!r} != {want[i, j]!r}"
        pytest.fail(f"{len(diff)} values differ; first: {first}")


def _lab() -> list[FlowRecord]:
    return [r for s in sorted(lab_index()) for r in (*lab_records(s), *lab_records(s, early=True))]


def test_lab_records_final_and_early() -> None:
    recs = _lab()
    assert len(recs) > 50
    assert_bitwise_equal(feature_matrix(recs), _definition(recs))


def test_empty_and_single() -> None:
    assert feature_matrix([]).shape == (0, len(FEATURE_NAMES))
    rec = _lab()[0]
    assert_bitwise_equal(feature_matrix([rec]), _definition([rec]))


def test_ndpi_corpus() -> None:
    caps = ndpi_captures()
    if not caps:
        pytest.skip("../shared/corpus/ndpi not present: the corpus check needs it")
    recs = [r for p in caps for r in ndpi_records(p.name)]
    assert len(recs) > 1000
    assert_bitwise_equal(feature_matrix(recs), _definition(recs))


_head = st.binary(max_size=HEAD_BYTES + 8).map(bytes.hex) | st.sampled_from(["zz", "0", "", "16030100"])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_generated_records(data: st.DataObject) -> None:
    """Cut, reshaped and corrupted records, mixed in one batch with clean ones."""
    base = _lab()
    batch = []
    for _ in range(data.draw(st.integers(1, 6))):
        rec = base[data.draw(st.integers(0, len(base) - 1))]
        k = data.draw(st.integers(0, 40))
        sizes = data.draw(st.lists(st.integers(0, 70_000), min_size=k, max_size=k))
        dirs = data.draw(st.lists(st.sampled_from([0, 1, 0, 1, 2]), min_size=k, max_size=k))
        iats = data.draw(
            st.lists(st.floats(-1.0, 1e4) | st.sampled_from([-0.0, float("nan")]), min_size=k, max_size=k)
        )
        if data.draw(st.booleans()):
            iats = iats[: data.draw(st.integers(0, k))]  # unequal lengths: the definition's row
        batch.append(
            replace(
                rec,
                proto=data.draw(st.sampled_from([6, 17, 1, 58, 47, rec.proto])),
                ip_version=data.draw(st.sampled_from([4, 6, 5])),
                c2s_tcp_flags=data.draw(st.integers(0, 0xFF)),
                s2c_tcp_flags=data.draw(st.integers(0, 0xFF)),
                pkt_sizes=tuple(sizes),
                pkt_dirs=tuple(dirs),
                pkt_iats=tuple(iats),
                c2s_head=data.draw(_head),
                s2c_head=data.draw(_head),
            )
        )
        batch.append(rec)
    assert_bitwise_equal(feature_matrix(batch), _definition(batch))
