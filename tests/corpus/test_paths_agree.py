"""The batch and streaming paths give the same flow records on every real corpus capture."""

from __future__ import annotations

import pytest

from sluice.batch.flows import batch_flows
from sluice.flows.loop import PacketLoop
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig
from sluice.io.capture import open_capture

from .ndpi_out import NDPI, captures

pytestmark = pytest.mark.corpus


def stream_records(path: str, config: FlowConfig) -> tuple[list[FlowRecord], dict]:  # type: ignore[type-arg]
    loop = PacketLoop(config, strict=True)
    out: list[FlowRecord] = []
    with open_capture(path) as reader:
        for raw in reader:
            loop.process(raw, out)
        summary = loop.finish(out)
        summary.merge_counts(reader.stats.anomalies)
    return out, summary.to_dict()


def _keyed(records: list[FlowRecord]) -> dict[tuple[bool, int], dict]:  # type: ignore[type-arg]
    return {(r.early, r.flow_id): r.to_dict() for r in records}


@pytest.mark.parametrize(
    "config",
    [FlowConfig(), FlowConfig(idle_timeout_s=5.0, active_timeout_s=30.0, early_packets=3)],
    ids=["defaults", "short-timeouts"],
)
def test_batch_equals_streaming_on_corpus(config: FlowConfig) -> None:
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing")
    checked = 0
    for cap in captures():
        streamed, s_summary = stream_records(str(cap), config)
        batched = batch_flows(str(cap), config, strict=True, early=True)
        assert _keyed(streamed) == _keyed(batched.records), cap.name
        assert s_summary == batched.summary.to_dict(), cap.name
        checked += 1
    assert checked >= 150
