"""From a directory of labeled lab captures to one labeled flow table (Parquet).

Each session's capture (``<id>.pcap``) goes through the spine's batch path; every flow record is
joined with the session's label file by 5-tuple (either direction). Flows the scenario did not
claim keep ``label_class`` empty, so a trainer can drop them or use them as it sees fit. The
columns are the flow record's (see :mod:`sluice.flows.record`) plus the session's identity,
which is what an evaluation needs to split by session, never by flow.
"""

from __future__ import annotations

__all__ = ["DatasetSummary", "build_dataset", "session_identity"]

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.batch.flows import batch_flows
from sluice.flows.table import FlowConfig
from sluice.io.flowlog import open_flow_writer
from sluice.lab.labels import LABEL_SUFFIX, LabelIndex, load_label_file, load_labels

_CLIENT_PROGRAMS = ("curl", "dig", "kdig", "ssh", "openconnect", "python3")
"""Client programs, in the order a session's software list is searched for its client stack
when the scenario did not say (sessions recorded before ``Session.identify``)."""
_STACK_OF = {"curl": "curl-openssl", "kdig": "kdig-gnutls", "python3": "python"}
"""The stack names the lab's scenarios give these programs."""
_IMPL_OF = {
    "shadowsocks": "shadowsocks-libev",
    "shadowsocks-plugin": "shadowsocks-libev",
    "trojan": "trojan-gfw",
    "obfs4": "obfs4proxy",
    "ssh-socks": "openssh",
    "sshuttle": "sshuttle+openssh",
    "ptunnel": "ptunnel-ng",
    "vxlan": "linux-vxlan",
    "anyconnect": "openconnect+ocserv",
    "ipsec": "strongswan",
    "wireguard": "wireguard-go",
}
"""The implementation names the scenarios give since ``Session.identify`` (older sessions)."""
_IMPL_FROM_SOFTWARE = ("socks", "http-proxy")
"""Scenarios whose implementation is the first program of the session (dante, squid ...)."""


def session_identity(doc: dict[str, Any]) -> tuple[str, str]:
    """``(stack, impl)`` of a session: what its scenario recorded, else a default.

    The default implementation is the scenario's name (one implementation per scenario before
    the lab had several); the default stack is the first client program of the session's
    software list (``curl`` for the web mixes).
    """
    params = doc.get("params") or {}
    names = [str(s.get("name", "")) for s in doc.get("software") or [] if isinstance(s, dict)]
    stack = params.get("stack")
    if not stack:
        prog = next((p for p in _CLIENT_PROGRAMS if p in names), names[-1] if names else "")
        stack = _STACK_OF.get(prog, prog)
    impl = params.get("impl")
    if not impl:
        scenario = str(doc.get("scenario", ""))
        impl = names[0] if scenario in _IMPL_FROM_SOFTWARE and names else _IMPL_OF.get(scenario, scenario)
    return str(stack), str(impl)


def session_inner(doc: dict[str, Any]) -> str:
    """What a carrier session fetched through its tunnel: ``http`` or ``https``; ``""`` for a
    session without a carrier. Sessions recorded before carriers fetched HTTPS (no
    ``params.inner``) fetched plain HTTP."""
    if str(doc.get("class", "")) in ("", "benign"):
        return ""
    return str((doc.get("params") or {}).get("inner") or "http")


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
            doc = load_label_file(label_file)
            stack, impl = session_identity(doc)
            session = {
                "capture": capture.name,
                "session_id": first.session_id if first else capture.stem,
                "scenario": first.scenario if first else "",
                "variant": first.variant if first else "",
                "stack": stack,
                "impl": impl,
                "inner": session_inner(doc),
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
