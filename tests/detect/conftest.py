"""Real captures for the detection tests: lab excerpts (in the repo) and nDPI's corpus (../shared)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from sluice.batch.flows import batch_flows
from sluice.flows.record import FlowRecord

LAB = Path(__file__).resolve().parent / "data" / "lab"
NDPI = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "ndpi"


@cache
def lab_index() -> dict[str, dict]:  # type: ignore[type-arg]
    return json.loads((LAB / "index.json").read_text())  # type: ignore[no-any-return]


@cache
def lab_records(session: str, early: bool = False) -> tuple[FlowRecord, ...]:
    return tuple(batch_flows(str(LAB / f"{session}.pcap"), early=early).records)


def lab_label(session: str, rec: FlowRecord) -> tuple[str, str] | None:
    """The lab's (class, family) for a record of an excerpt, by 5-tuple in either direction."""
    for proto, src, sport, dst, dport, cls, fam in lab_index()[session]["flows"]:
        if proto != rec.proto:
            continue
        a, b = (src, sport), (dst, dport)
        if {a, b} == {(rec.client, rec.client_port), (rec.server, rec.server_port)}:
            return cls, fam
    return None


@cache
def ndpi_records(name: str) -> tuple[FlowRecord, ...]:
    path = NDPI / name
    if not path.exists():
        pytest.skip(f"../shared not present: {path} missing")
    return tuple(r for r in batch_flows(str(path)).records if not r.early)


def ndpi_captures() -> list[Path]:
    if not NDPI.is_dir():
        return []
    return sorted(p for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng"))
