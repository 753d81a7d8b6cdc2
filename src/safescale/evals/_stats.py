"""Intervals for reported metrics: every number leaves with its n and a 95% interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from safescale._stats import wilson_interval


@dataclass(frozen=True)
class MetricEstimate:
    """A metric's value over ``n`` samples, with its interval."""

    name: str
    """Metric name (acc, acc_norm, acc_bytes, accuracy, perplexity, ...)."""
    value: float
    """The point estimate."""
    n: int
    """Samples it is computed over."""
    lo: float | None
    """Lower end of the interval (None when no honest interval exists, e.g. n = 0)."""
    hi: float | None
    """Upper end of the interval."""
    confidence: float = 0.95
    """Coverage of the interval."""
    method: str = "wilson"
    """How the interval was computed (wilson for proportions, normal otherwise)."""


def proportion(name: str, k: float, n: int, confidence: float = 0.95) -> MetricEstimate:
    """A proportion (accuracy-like metric) with its Wilson interval."""
    lo, hi = wilson_interval(k, n, confidence)
    return MetricEstimate(name, k / n if n else float("nan"), n, lo, hi, confidence, "wilson")


def mean_normal(
    name: str, value: float, stderr: float | None, n: int, confidence: float = 0.95
) -> MetricEstimate:
    """A mean with a normal-approximation interval from its standard error."""
    if stderr is None or not math.isfinite(stderr) or n < 2:
        return MetricEstimate(name, value, n, None, None, confidence, "none")
    z = float(norm.ppf(0.5 + confidence / 2))
    return MetricEstimate(
        name, value, n, value - z * stderr, value + z * stderr, confidence, "normal"
    )
