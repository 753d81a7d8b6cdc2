"""Calibrated predictive distributions from the ladder's own leave-future-out backtests.

A bootstrap over models describes the noise among the models already trained; it knows
nothing of how wrong the curve is a decade of compute beyond them. Here the ladder is cut at
each of several compute levels, the method is fitted on the models below the cut, and the
larger models are predicted: rolling-origin evaluation (Tashman 2000), the leave-future-out
scheme of conformal forecasting. Each prediction gives a signed error ``r`` at an
extrapolation distance ``d = log10(C / C_cut)`` (orders of magnitude past the largest model
fitted). The error scale is modelled as growing with distance,

    s(d)^2 = s0^2 + (g d)^2,

fitted by maximum likelihood (Gaussian errors), with ``s0`` at least the in-sample residual
spread. The predictive distribution at distance ``d`` is ``point + s(d) T``, with ``T`` a
Student t with ``k - 1`` degrees of freedom for ``k`` cuts.

Why ``k - 1`` and not one per error: the errors from one cut share that cut's fit (nested
cuts of one ladder share most of their models), so they move together, and a new forecast is
a new fit. The unit of evidence about how wrong a fit is, is the cut, not the error. Counting
every error as independent (the standardised errors' own quantiles, split-conformal style, or
a t with one degree of freedom per error) understates the tails: on the calibration ladders
(:data:`~safescale.scaling._synthetic.CALIBRATION_SEEDS`) it covered 0.83-0.88 at nominal
90%, against 0.88-0.92 per method with ``k - 1``. Intervals and ``P(score >= line)`` both come
from this one distribution, clipped to the metric's range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.stats import t as student_t

from safescale.scaling._laws import FloatArray
from safescale.scaling._methods import METHODS, ScoreData

MIN_CUTS = 2
"""Fewest ladder cuts (and at least three errors) a calibration is fitted from."""


@dataclass(frozen=True)
class Calibration:
    """How wrong a method was when it extrapolated on this ladder, as a function of distance."""

    method: str
    """The forecast method calibrated."""
    distances: FloatArray
    """``(m,)`` extrapolation distances of the backtest errors (orders of magnitude)."""
    errors: FloatArray
    """``(m,)`` signed errors, actual minus predicted."""
    n_cuts: int
    """Ladder cuts the errors came from."""
    s0: float
    """Error scale at zero distance."""
    growth: float
    """Growth of the error scale per order of magnitude of extrapolation."""

    @property
    def dof(self) -> float:
        """Degrees of freedom of the Student t: one per cut, less one (errors from one cut
        share a fit and are not independent evidence)."""
        return float(max(self.n_cuts - 1, 1))

    @property
    def mae(self) -> float:
        """Mean absolute backtest error of the method on this ladder."""
        return float(np.mean(np.abs(self.errors)))

    def scale(self, distance: ArrayLike) -> FloatArray:
        """Error scale ``s(d)`` at extrapolation distance ``d`` (negative counts as zero)."""
        d = np.maximum(np.asarray(distance, dtype=float), 0.0)
        return np.asarray(np.sqrt(self.s0**2 + (self.growth * d) ** 2))

    def cdf(self, point: ArrayLike, distance: ArrayLike, value: ArrayLike) -> FloatArray:
        """``P(score <= value)`` for a model whose point forecast is ``point``."""
        z = (np.asarray(value, dtype=float) - np.asarray(point)) / self.scale(distance)
        return np.asarray(student_t.cdf(z, self.dof))

    def quantile(self, point: ArrayLike, distance: ArrayLike, q: float) -> FloatArray:
        """The ``q`` quantile of the predictive distribution (before clipping)."""
        return np.asarray(point) + self.scale(distance) * float(student_t.ppf(q, self.dof))

    def as_json(self) -> dict[str, object]:
        """Plain numbers for JSON output and evidence."""
        return {
            "method": self.method,
            "n_errors": len(self.errors),
            "n_cuts": self.n_cuts,
            "s0": self.s0,
            "growth_per_decade": self.growth,
            "dof": self.dof,
            "mae": self.mae,
        }


def ladder_cuts(compute: FloatArray, *, min_train: int, max_cuts: int) -> FloatArray:
    """Compute levels to cut the ladder at: at least ``min_train`` models and three distinct
    levels at or below, a larger model above; at most ``max_cuts``, spread evenly, last kept."""
    levels = np.unique(compute)
    ok = [
        cut
        for cut in levels[:-1]
        if np.sum(compute <= cut) >= min_train and np.sum(levels <= cut) >= 3
    ]
    if len(ok) <= max_cuts:
        return np.asarray(ok, dtype=float)
    pick = np.unique(np.round(np.linspace(0, len(ok) - 1, max_cuts)).astype(int))
    return np.asarray(ok, dtype=float)[pick]


def future_errors(
    method: str, data: ScoreData, *, min_train: int = 4, max_cuts: int = 8
) -> tuple[FloatArray, FloatArray, int]:
    """Leave-future-out errors of ``method`` on ``data``: distances, signed errors, cuts used."""
    fit = METHODS.get(method).fit
    dist: list[FloatArray] = []
    err: list[FloatArray] = []
    cuts = ladder_cuts(data.compute, min_train=min_train, max_cuts=max_cuts)
    for cut in cuts:
        train = data.compute <= cut
        predict = fit(data.subset(train))
        c = data.compute[~train]
        dist.append(np.log10(c / cut))
        err.append(data.score[~train] - predict(c))
    if not dist:
        return np.empty(0), np.empty(0), 0
    return np.concatenate(dist), np.concatenate(err), len(cuts)


def fit_scale(distances: FloatArray, errors: FloatArray, floor: float) -> tuple[float, float]:
    """Maximum-likelihood ``(s0, g)`` of ``s(d)^2 = s0^2 + (g d)^2`` with ``s0 >= floor``."""
    d2 = distances**2
    r2 = errors**2
    floor = max(floor, 1e-6)

    def nll(p: FloatArray) -> float:
        s2 = (floor + np.exp(p[0])) ** 2 + np.exp(2 * p[1]) * d2
        return float(np.sum(0.5 * np.log(s2) + r2 / (2 * s2)))

    rms = float(np.sqrt(np.mean(r2))) if len(r2) else floor
    g0 = rms / max(float(np.mean(distances)), 1e-3)
    best = None
    for start in ((np.log(0.1 * floor), np.log(max(g0, 1e-6))), (np.log(rms + 1e-9), -10.0)):
        res = minimize(nll, np.asarray(start), method="Nelder-Mead", options={"xatol": 1e-6})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return floor + float(np.exp(best.x[0])), float(np.exp(best.x[1]))


def calibrate(
    method: str, data: ScoreData, *, sigma: float, min_train: int = 4, max_cuts: int = 8
) -> Calibration | None:
    """Calibrate ``method`` on ``data`` by leave-future-out backtests; None if the ladder is
    too short (fewer than :data:`MIN_CUTS` cuts or three errors).

    Args:
        sigma: in-sample residual spread of the full fit, the floor of ``s0``.
    """
    d, r, n_cuts = future_errors(method, data, min_train=min_train, max_cuts=max_cuts)
    if n_cuts < MIN_CUTS or len(r) < 3:
        return None
    s0, g = fit_scale(d, r, sigma)
    return Calibration(method, d, r, n_cuts, s0, g)
