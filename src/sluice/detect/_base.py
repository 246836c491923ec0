"""The detector contract (scikit-learn style) shared by every layer."""

from __future__ import annotations

__all__ = ["NotFittedError", "check_is_fitted"]

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
