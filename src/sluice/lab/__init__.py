"""The lab: real VPN, proxy, tunnel and ordinary traffic between network namespaces, labeled.

``sluice lab run`` builds a client / gateway / server topology per session, runs real programs,
captures on the gateway, proves the traffic flowed, and writes ``<id>.pcap`` with
``<id>.labels.json``.  The dataset builder reads the labels with :func:`load_labels` and
:class:`LabelIndex` / :func:`label_for`.
"""

from __future__ import annotations

__all__ = [
    "FiveTuple",
    "FlowLabel",
    "LabelIndex",
    "label_for",
    "load_labels",
]

from sluice.lab.labels import FiveTuple, FlowLabel, LabelIndex, label_for, load_labels
