"""The one place synthetic traffic makes its random sources."""

from __future__ import annotations

__all__ = ["seeded"]

import random


def seeded(seed: int | str | bytes) -> random.Random:
    """A reproducible (deliberately non-cryptographic) random source for synthetic traffic."""
    return random.Random(seed)  # noqa: S311 - reproducible test traffic, not secrets
