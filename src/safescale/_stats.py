"""Small statistics every room shares (stdlib only)."""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(k: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials.

    Wilson (1927), "Probable inference, the law of succession, and statistical inference".
    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage near 0 and
    1, where threshold decisions are made. ``n == 0`` gives the uninformative (0, 1).
    """
    if n <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / denom
    # At k = 0 (or k = n) the bound is exactly 0 (or 1); rounding would leave a residue.
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return (lo, hi)
