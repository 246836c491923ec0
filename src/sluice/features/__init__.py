"""Early-flow features: flow records in, a float matrix with stable column names out.

:class:`FlowFeatures` is the extractor; :mod:`sluice.features.flow` defines every column one
record at a time, :mod:`sluice.features.batch` computes the same matrix for many records at
once, and :class:`FlowView` is the read-only view of a record that detectors share.
"""

from __future__ import annotations

from sluice.features.batch import feature_matrix
from sluice.features.extractor import FlowFeatures
from sluice.features.flow import EARLY_PACKETS, FEATURE_NAMES, feature_row, record_from_row
from sluice.features.view import FlowView

__all__ = [
    "EARLY_PACKETS",
    "FEATURE_NAMES",
    "FlowFeatures",
    "FlowView",
    "feature_matrix",
    "feature_row",
    "record_from_row",
]
