"""Plausibility checks on a fitted law and on what it is asked to extrapolate to.

A fit can converge and still be wrong: with few runs or a narrow range of sizes the exponents
of ``E + A/N^alpha + B/D^beta`` trade off against ``A`` and ``B``, and the optimiser settles
on values no language model has shown. Published fits put both exponents between about 0.1
and 0.8 (Kaplan et al. 2020: 0.076 and 0.095 for the separate power laws; Hoffmann et al.
2022: alpha 0.34, beta 0.28; Besiroglu et al. 2024's replication: 0.35 and 0.37). Compute-
optimal allocations far beyond the largest run extrapolate the law over orders of magnitude
it was never fitted on. A capability forecast near the floor of its rise has intervals that
backtests found too narrow there (docs/scaling.md). These checks say so; they do
not change the fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

EXPONENT_RANGE = (0.05, 1.5)
"""Exponents outside this range are reported as implausible."""
EXTRAPOLATION_LIMIT = 100.0
"""Compute more than this many times the largest run's is reported as far outside the data."""
EDGE_OF_RISE = 0.1
"""A point forecast within this share of the way from chance, or from the ceiling, lies near
the floor or the ceiling of its rise (the outer bands of ``POSITION_BINS``)."""


def rise_position(value: float, chance: float, ceiling: float) -> float:
    """A score's share of the way from ``chance`` to ``ceiling``, clipped to [0, 1]."""
    return min(max((value - chance) / (ceiling - chance), 0.0), 1.0)


def position_warnings(position: float) -> list[str]:
    """A warning when a capability forecast lies near the floor of its rise, where calibrated
    intervals covered less than their nominal level in backtests. Near the ceiling they covered
    more (docs/scaling.md), so no warning is given there."""
    if position > EDGE_OF_RISE:
        return []
    return [
        f"the forecast lies near the floor of the rise ({position:.1%} of the way from chance "
        "to the ceiling): a rise that has not begun is not in the ladder's record, and in "
        "backtests intervals there covered less than their nominal level, on real benchmarks "
        "even when widened (docs/scaling.md, coverage by position on the rise)"
    ]


def exponent_warnings(params: Mapping[str, float]) -> list[str]:
    """Warnings for the fitted exponents (parameters named ``alpha``/``beta``/``*exponent*``)."""
    lo, hi = EXPONENT_RANGE
    out = []
    for name, value in params.items():
        if not (name in ("alpha", "beta") or "exponent" in name):
            continue
        if not math.isfinite(value) or value > hi or value < lo:
            out.append(
                f"{name} = {value:.3g} is implausible (published language-model fits lie "
                f"between about 0.1 and 0.8; this check flags values outside {lo:g}-{hi:g}): "
                "the runs may not constrain it (too few, or too narrow a range of sizes); "
                "treat predictions from this fit with care"
            )
    return out


def extrapolation_warnings(budgets: Iterable[float], data_compute: Iterable[float]) -> list[str]:
    """A warning when a budget lies more than :data:`EXTRAPOLATION_LIMIT` x past the data."""
    largest = max(data_compute, default=math.nan)
    if not math.isfinite(largest) or largest <= 0:
        return []
    far = [c for c in budgets if c > EXTRAPOLATION_LIMIT * largest]
    if not far:
        return []
    return [
        f"compute-optimal allocations up to {max(far):.3g} FLOP extrapolate "
        f"{max(far) / largest:.3g}x beyond the largest run ({largest:.3g} FLOP); "
        f"more than {EXTRAPOLATION_LIMIT:g}x is far outside the data"
    ]
