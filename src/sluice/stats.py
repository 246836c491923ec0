"""Small statistics every report shares: the Wilson score interval of a rate.

At the ground of the package layers (``docs/ARCHITECTURE.md``): the detectors' held-out report,
the crypto page evaluation and the mirrors evaluation all state rates with the same interval.
"""

from __future__ import annotations

__all__ = ["wilson"]

import math


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95 % by default).

    ``n <= 0`` gives ``(0.0, 1.0)``: nothing is known.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))
