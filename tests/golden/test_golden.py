"""Golden tests: flow records and run summaries of the project's own captures, reviewed like code.

Captures: ``examples/demo.pcapng`` and ``tests/data/pcaps/*`` (made by ``sluice.synth``; see
``tests/data/README.md``). Expected output: ``tests/data/golden/<capture>.jsonl`` (final and early
records) and ``<capture>.summary.json``. After a deliberate change, regenerate with
``pytest tests/golden --update-golden`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.batch.flows import batch_flows
from sluice.flows.loop import PacketLoop
from sluice.flows.record import FlowRecord
from sluice.io.capture import open_capture

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
CAPTURES = sorted([ROOT / "examples" / "demo.pcapng", *(ROOT / "tests" / "data" / "pcaps").glob("*.pcap*")])


def _lines(records: list[FlowRecord]) -> list[str]:
    ordered = sorted(records, key=lambda r: (r.early, r.flow_id))
    return [json.dumps(r.to_dict(), sort_keys=True) for r in ordered]


@pytest.mark.parametrize("capture", [c for c in CAPTURES if c.exists()], ids=lambda p: p.name)
def test_golden(capture: Path, update_golden: bool) -> None:
    result = batch_flows(str(capture), strict=True, early=True)
    lines = _lines(result.records)
    summary = result.summary.to_dict()
    jsonl, summ = GOLDEN / f"{capture.name}.jsonl", GOLDEN / f"{capture.name}.summary.json"
    if update_golden:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
        summ.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert jsonl.exists(), f"no golden file for {capture.name}: run pytest --update-golden"
    assert lines == jsonl.read_text(encoding="utf-8").splitlines()
    assert summary == json.loads(summ.read_text(encoding="utf-8"))
    # the streaming path gives the same records
    loop, out = PacketLoop(strict=True), list[FlowRecord]()
    with open_capture(capture) as reader:
        for raw in reader:
            loop.process(raw, out)
        loop.finish(out)
    assert _lines(out) == lines


def test_golden_files_have_captures() -> None:
    names = {c.name for c in CAPTURES if c.exists()}
    stale = [p.name for p in GOLDEN.glob("*.jsonl") if p.name.removesuffix(".jsonl") not in names]
    assert not stale, f"golden files without a capture: {stale}"
