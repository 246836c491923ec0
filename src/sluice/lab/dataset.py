"""From a directory of labeled lab captures to one labeled flow table (Parquet).

Each session's capture (``<id>.pcap``) goes through the spine's batch path; every flow record is
joined with the session's label file by 5-tuple (either direction). Flows the scenario did not
claim keep ``label_class`` empty, so a trainer can drop them or use them as it sees fit. The
columns are the flow record's (see :mod:`sluice.flows.record`) plus the session's identity,
which is what an evaluation needs to split by session, never by flow.
"""

from __future__ import annotations

__all__ = ["DatasetSummary", "build_dataset"]

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sluice.batch.flows import batch_flows
from sluice.flows.table import FlowConfig
from sluice.io.flowlog import open_flow_writer
from sluice.lab.labels import LABEL_SUFFIX, LabelIndex, load_labels


@dataclass
class DatasetSummary:
    """What went into a dataset."""

    captures: int = 0
    """Captures read."""
    flows: int = 0
    """Flow rows written."""
    labeled: Counter[str] = field(default_factory=Counter)
    """Labeled flows by ``class/family``."""
    unlabeled: int = 0
    """Flows no label claims."""
    skipped: list[str] = field(default_factory=list)
    """Captures without a label file (sessions that were not verified)."""


def build_dataset(
    directory: str | os.PathLike[str], out: str, config: FlowConfig | None = None
) -> DatasetSummary:
    """Write the labeled flows of every labeled capture under ``directory`` to Parquet ``out``.

    Raises:
        CaptureError: a capture cannot be read at all.
        ConfigError: a label file is not one this version reads.
    """
    summary = DatasetSummary()
    writer = open_flow_writer("parquet", None, out)
    try:
        for capture in sorted(Path(directory).rglob("*.pcap")):
            label_file = capture.with_name(capture.name.removesuffix(".pcap") + LABEL_SUFFIX)
            if not label_file.exists():
                summary.skipped.append(str(capture))
                continue
            labels = load_labels(label_file)
            index = LabelIndex(labels)
            first = labels[0] if labels else None
            session = {
                "capture": capture.name,
                "session_id": first.session_id if first else capture.stem,
                "scenario": first.scenario if first else "",
                "variant": first.variant if first else "",
            }
            records = [r for r in batch_flows(str(capture), config).records if not r.early]
            rows = []
            for r in records:
                label = index.label_for((r.proto, r.client, r.client_port, r.server, r.server_port))
                cls, fam = label if label else ("", "")
                if label:
                    summary.labeled[f"{cls}/{fam}"] += 1
                else:
                    summary.unlabeled += 1
                rows.append((r, {**session, "label_class": cls, "label_family": fam}))
            for r, extra in rows:
                writer.write([r], extra)
            summary.captures += 1
            summary.flows += len(rows)
    finally:
        writer.close()
    return summary
