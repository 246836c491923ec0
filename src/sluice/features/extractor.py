"""The early-flow feature extractor: :class:`FlowFeatures`, the estimator over the column
definition (:mod:`sluice.features.flow`) and its batch path (:mod:`sluice.features.batch`)."""

from __future__ import annotations

__all__ = ["FlowFeatures"]

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from sluice.features.batch import feature_matrix
from sluice.features.flow import FEATURE_NAMES
from sluice.flows.record import FlowRecord


class FlowFeatures:
    """Early-flow feature extractor (stateless; ``fit`` only records the column names).

    Attributes:
        feature_names_: the column names, set by ``fit``.
    """

    feature_names_: tuple[str, ...]

    def __init__(self) -> None:
        pass

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments (none)."""
        return {}

    def fit(self, records: Sequence[FlowRecord] | None = None, y: object = None) -> Self:
        """Set ``feature_names_``; nothing is learned from the data."""
        self.feature_names_ = FEATURE_NAMES
        return self

    def transform(self, records: Sequence[FlowRecord]) -> npt.NDArray[np.float64]:
        """The feature matrix.

        Args:
            records: flow records (early or final; only their first packets are read).

        Returns:
            float64 array of shape ``(len(records), len(FEATURE_NAMES))``.
        """
        return feature_matrix(records)

    def fit_transform(self, records: Sequence[FlowRecord], y: object = None) -> npt.NDArray[np.float64]:
        """``fit`` then ``transform``."""
        return self.fit(records).transform(records)
