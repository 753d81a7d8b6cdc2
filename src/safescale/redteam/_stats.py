"""Rates with Wilson intervals, and the layer-independence ratio's bootstrap interval."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from safescale._stats import wilson_interval


@dataclass(frozen=True)
class Rate:
    """k of n, with a 95 % Wilson score interval (Wilson 1927)."""

    k: int
    n: int
    lo: float
    hi: float

    @property
    def value(self) -> float:
        """k / n (0 when n is 0)."""
        return self.k / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Plain JSON form."""
        return {"k": self.k, "n": self.n, "value": self.value, "lo": self.lo, "hi": self.hi}

    def __str__(self) -> str:
        if not self.n:  # 0/0 is no rate: "0.000 [0.000, 1.000]" read as a measured zero
            return "none measured (0/0)"
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}] ({self.k}/{self.n})"


def rate(k: int, n: int) -> Rate:
    """k / n with its 95 % Wilson interval."""
    lo, hi = wilson_interval(k, n, confidence=0.95)
    return Rate(k, n, lo, hi)


@dataclass(frozen=True)
class Ratio:
    """A ratio estimate with a percentile-bootstrap 95 % interval (None bounds: undefined)."""

    value: float | None
    lo: float | None
    hi: float | None
    n: int
    resamples: int
    method: str = "bootstrap"
    """``bootstrap`` (percentile), or ``wilson-bound`` when no attempt passed every layer: the
    bootstrap then only ever sees 0, so the upper bound is the joint rate's Wilson upper bound
    over the product instead."""


def independence_ratio(
    passes: Sequence[Sequence[bool]], *, seed: int = 0, resamples: int = 1000
) -> Ratio:
    """Joint pass rate over the product of per-layer pass rates, with a bootstrap interval.

    ``passes[i][j]`` says whether attempt ``i`` got through layer ``j`` (every layer observed on
    every attempt, "shadow mode"). Independent layers give a ratio of 1; a ratio above 1 means
    the holes line up (an attack that beats one layer tends to beat the others), so the
    product over-states the protection. Resampling is over attempts, seeded.
    """
    rows = [tuple(bool(x) for x in r) for r in passes]
    n = len(rows)

    def ratio(sample: Sequence[tuple[bool, ...]]) -> float | None:
        if not sample:
            return None
        m = len(sample)
        joint = sum(all(r) for r in sample) / m
        product = 1.0
        for j in range(len(sample[0])):
            product *= sum(r[j] for r in sample) / m
        return joint / product if product > 0 else None

    value = ratio(rows)
    joint = sum(all(r) for r in rows)
    if n and joint == 0 and value is not None:
        product = 1.0
        for j in range(len(rows[0])):
            product *= sum(r[j] for r in rows) / n
        hi = wilson_interval(0, n)[1] / product
        return Ratio(value, 0.0, hi, n, 0, "wilson-bound")
    rng = random.Random(f"safescale-independence-{seed}")
    boots = []
    for _ in range(resamples if n else 0):
        v = ratio([rows[rng.randrange(n)] for _ in range(n)])
        if v is not None:
            boots.append(v)
    boots.sort()
    if len(boots) < resamples // 2:  # mostly undefined: no honest interval
        return Ratio(value, None, None, n, resamples)
    return Ratio(
        value, boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1], n, resamples
    )
