"""Estimates with n and an interval, for every number the interp room reports."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from safescale._stats import wilson_interval


@dataclass(frozen=True)
class Estimate:
    """A value over ``n`` units with its interval (``lo``/``hi`` None when none is honest)."""

    value: float
    n: int
    """Units it is computed over (tokens, sequences, latents, examples: see ``unit``)."""
    lo: float | None
    hi: float | None
    method: str
    """How the interval was made: wilson, normal, bootstrap, delong, none."""
    unit: str = "tokens"
    confidence: float = 0.95

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "value": self.value,
            "n": self.n,
            "unit": self.unit,
            "lo": self.lo,
            "hi": self.hi,
            "method": self.method,
            "confidence": self.confidence,
        }

    def __str__(self) -> str:
        iv = (
            f" [{self.lo:.4g}, {self.hi:.4g}]"
            if self.lo is not None and self.hi is not None
            else ""
        )
        return f"{self.value:.4g}{iv} (n={self.n} {self.unit}, {self.method})"


def proportion(k: int, n: int, unit: str) -> Estimate:
    """A share with its Wilson interval."""
    lo, hi = wilson_interval(k, n)
    return Estimate(k / n if n else float("nan"), n, lo, hi, "wilson", unit)


def mean_estimate(values: np.ndarray, unit: str) -> Estimate:
    """A mean with a normal interval (1.96 standard errors)."""
    n = len(values)
    if n < 2:
        return Estimate(float(values.mean()) if n else float("nan"), n, None, None, "none", unit)
    m = float(values.mean())
    se = float(values.std(ddof=1)) / math.sqrt(n)
    return Estimate(m, n, m - 1.96 * se, m + 1.96 * se, "normal", unit)


def bootstrap_ratio(
    num: np.ndarray, den: np.ndarray, unit: str, *, n_boot: int = 500, seed: int = 0
) -> Estimate:
    """``sum(num) / sum(den)`` with a percentile bootstrap interval over the units (rows)."""
    n = len(num)
    value = float(num.sum() / den.sum())
    if n < 2:
        return Estimate(value, n, None, None, "none", unit)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    stats = (w @ num) / np.maximum(w @ den, 1e-300)
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return Estimate(value, n, float(lo), float(hi), "bootstrap", unit)
