"""The detector contract (scikit-learn style) shared by every layer."""

from __future__ import annotations

__all__ = ["NotFittedError", "check_is_fitted", "constructor_params"]

import inspect
from typing import Any

from sluice.errors import SluiceError


class NotFittedError(SluiceError, ValueError):
    """A detector method that needs learned state was called before ``fit``."""


def check_is_fitted(obj: object, attr: str) -> None:
    """Raise :class:`NotFittedError` unless ``obj`` has the learned attribute ``attr``.

    Raises:
        NotFittedError: ``fit`` was not called.
    """
    if getattr(obj, attr, None) is None:
        raise NotFittedError(f"{type(obj).__name__} is not fitted: call fit() first")


def constructor_params(obj: object) -> dict[str, Any]:
    """The keyword-only constructor arguments of ``obj`` and their current values.

    Detectors store their hyperparameters under the argument names (scikit-learn convention),
    so ``get_params`` follows from the ``__init__`` signature instead of a hand-kept list.
    """
    sig = inspect.signature(type(obj).__init__)
    return {
        name: getattr(obj, name)
        for name, p in sig.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
