"""Calibrated predictive distributions from the ladder's own leave-future-out backtests.

A bootstrap over models describes the noise among the models already trained; it knows
nothing of how wrong the curve is a decade of compute beyond them. Here the ladder is cut at
each of several compute levels, the method is fitted on the models below the cut, and the
larger models are predicted: rolling-origin evaluation (Tashman 2000), the leave-future-out
scheme of conformal forecasting. Each prediction gives a signed error ``r`` at an
extrapolation distance ``d = log10(C / C_cut)`` (orders of magnitude past the largest model
fitted). The error scale is modelled as growing with distance,

    s(d)^2 = s0^2 + (g d)^2,

with ``s0`` at least the in-sample residual spread. ``s0`` comes from the maximum-likelihood
fit of all errors (Gaussian); the growth ``g`` is a weighted root mean square of each cut's
own maximum-likelihood growth ``g_i`` (``s0`` fixed), so every cut counts at most once. The
pooled fit lets the early cuts, which predict the most models, set ``g``; the per-cut mean does
not, and a single cut whose fit leapt past its data widens the band as a new fit may leap too.
But a cut whose errors all lie a few hundredths of a decade out says little about growth: its
``g_i`` is an error divided by a tiny distance (4-6 per decade seen), and an unweighted mean
carries it to every distance. Cut ``i`` is weighted by ``u^2 / (1 + u^2)``, ``u = g d_max / s0``
(``d_max``: its farthest error; ``g``: the unweighted root mean square), the share of the error
variance at its farthest error that growth explains: about 1 for a cut that reaches where
growth dominates, ``(g d_max / s0)^2`` for one that stays where ``s0`` does. Iterating the
weights to a fixed point, or weighting by the Fisher information about ``g`` or by the reach
itself, narrowed the calibration table's intervals below 0.85 (``docs/scaling.md``).

A new forecast is also a new fit, whose extrapolation may hinge on its largest models (a
sigmoid whose rise the last model moves beyond the data). The frontier jackknife variance
``v_J(C) = sum_i (p_{-i}(C) - p(C))^2`` over the :data:`FRONTIER` largest models ``i``
(``p_{-i}``: the method refitted without model ``i``; the Quenouille-Tukey jackknife,
restricted to the models that drive an extrapolation) measures how unstable this fit is. The
predictive scale is the larger of the two, ``sqrt(max(s(d)^2, v_J))``: the ladder's record
already holds the instability of fits like its cuts', so the two are not added; the jackknife
guards against a fit less stable than any the record saw. The predictive distribution at
distance ``d`` is ``point + scale T``, with ``T`` a Student t whose degrees of freedom count
the independent evidence in the ``m`` errors from ``k`` cuts.

The errors from one cut share that cut's fit (nested cuts of one ladder share most of their
models), so they can move together, and a new forecast is a new fit. How much they move
together is measured: ``rho``, the intra-cut correlation of the standardised errors
``r / s(d)`` (one-way ANOVA, clipped to [0, 1]), gives the design effect of ``k`` clusters of
mean size ``m/k``, ``n_eff = m / (1 + (m/k - 1) rho)``, and the t has
``clip(n_eff - 1, k - 1, m - 1)`` degrees of freedom: ``k - 1`` when a cut's errors move as
one (the cut is the unit of evidence), ``m - 1`` when they are independent. Counting every
error as independent regardless (the standardised errors' own quantiles, split-conformal
style, or a t with one degree of freedom per error) understated the tails of the first error
model (0.83-0.88 at nominal 90% on calibration seeds 100-131); ``k - 1`` alone over-covered
where the errors of a cut are nearly independent. Intervals and ``P(score >= line)`` both come
from this one distribution, clipped to the metric's range.

A ladder whose benchmark size is known (``questions``) is first tested for scatter beyond
sampling: the models' residual spread ``sigma`` (``n - 2`` degrees of freedom) about the chosen
method's own forecast from compute, fitted on every model, against the binomial variance of
their scores, ``mean p (1 - p) / questions``. From compute, not from the method's own space:
the two-step method's sigmoid in loss can fit the scores as well as sampling allows while
its law from compute to loss misses (a ladder of sizes times token budgets, whose losses do
not fall with compute), and a new model's loss is forecast from its compute too. Where
``(n - 2) sigma^2 / mean(p (1 - p) / questions)`` is within the 95th percentile of a chi-square
with ``n - 2`` degrees of freedom (:data:`SAMPLING_TEST`) and the ladder has left its floor
(its best model at least ``EDGE_OF_RISE`` of the way from chance to the ceiling), the curve
fits the ladder as well as sampling allows, and the record is set aside: the predictive scale
is ``sqrt(sigma^2 + v_J)``, the new model's sampling noise and this fit's own instability,
independent, so added, and the t takes the spread's own ``n - 2`` degrees of freedom (the
record's count the evidence in errors no longer used). The record's fits, each on fewer of
the models that show the rise, err by several times what a fit on all of them does on such a
ladder (``docs/scaling.md``); on a ladder of many families (scatter tens of times the
binomial variance) the record is kept.

The per-cut growth and its weights, the frontier jackknife and the degrees of freedom were
chosen on the calibration ladders and on a public table of other benchmarks
(``tests/scaling/data``, Open LLM Leaderboard v2 scores of base models), never on the held-out
ones, though the held-out results of earlier error models had been seen (``docs/scaling.md``
gives the figures and says which).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.stats import chi2
from scipy.stats import t as student_t

from safescale.scaling._checks import EDGE_OF_RISE
from safescale.scaling._laws import FloatArray
from safescale.scaling._methods import Predictor, ScoreData, fit_methods

MIN_CUTS = 2
"""Fewest ladder cuts (and at least three errors) a calibration is fitted from."""

FRONTIER = 3
"""Largest models left out one at a time for the frontier jackknife variance."""

FLOOR_WIDENING = 1.5
"""Factor on the predictive scale of a forecast whose point lies near the floor of its rise
(within ``EDGE_OF_RISE`` of chance). A rise that has not begun is not in the ladder's record,
so no calibration on the ladder's own past can see it; the factor is fitted across ladders
instead: the smallest multiple of 0.25 that brings the floor band of every calibration set
(the public calibration table, synthetic seeds 200-263 with one benchmark and loss and with
four benchmarks) to at least 0.90 at nominal 90% (docs/scaling.md)."""


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
    cut_growth: FloatArray | None = None
    """``(k,)`` each cut's own growth (``growth`` is their weighted root mean square)."""
    intra_cut_correlation: float = 1.0
    """Correlation ``rho`` of the standardised errors within a cut (one-way ANOVA, clipped
    to [0, 1]; 1: the errors of a cut move as one)."""
    cut_weight: FloatArray | None = None
    """``(k,)`` each cut's weight in ``growth`` (:func:`reach_weights`)."""
    overdispersion: float | None = None
    """The models' residual variance about the curve over their scores' binomial variance
    (None: the benchmark's number of questions was not given)."""
    record_used: bool = True
    """False where the scatter is within sampling noise (module doc): the scale is then
    ``sqrt(s0^2 + v_J)``, ``s0`` the models' spread about the method's forecast from compute
    (:func:`forecast_spread`), and the record's growth is not used."""
    spread_dof: float | None = None
    """Degrees of freedom of that spread (``n - 2``), the t's where the record is set aside
    (None: the record's, :attr:`dof`)."""

    @property
    def n_effective(self) -> float:
        """Effective number of independent errors, ``m / (1 + (m/k - 1) rho)`` (the design
        effect of ``k`` clusters of mean size ``m/k``)."""
        m = len(self.errors)
        mean_size = m / max(self.n_cuts, 1)
        return float(m / (1.0 + (mean_size - 1.0) * self.intra_cut_correlation))

    @property
    def dof(self) -> float:
        """Degrees of freedom of the Student t: ``n_eff - 1``, between ``k - 1`` (the errors of
        a cut move together: one piece of evidence per cut) and ``m - 1`` (independent); with
        the record set aside, the spread's own (:attr:`spread_dof`)."""
        if not self.record_used and self.spread_dof is not None:
            return self.spread_dof
        m, k = len(self.errors), self.n_cuts
        return float(max(np.clip(self.n_effective - 1.0, k - 1, m - 1), 1.0))

    @property
    def mae(self) -> float:
        """Mean absolute backtest error of the method on this ladder."""
        return float(np.mean(np.abs(self.errors)))

    def scale(self, distance: ArrayLike, extra: ArrayLike = 0.0) -> FloatArray:
        """Error scale ``sqrt(max(s(d)^2, extra))`` at extrapolation distance ``d`` (negative
        counts as zero); ``extra`` is the forecast's own variance (its frontier jackknife).
        With the record set aside (``record_used`` False), ``sqrt(s0^2 + extra)``."""
        d = np.maximum(np.asarray(distance, dtype=float), 0.0)
        if not self.record_used:  # sampling noise and the fit's instability, added
            return np.asarray(np.sqrt(self.s0**2 + np.asarray(extra, dtype=float) + 0.0 * d))
        s2 = self.s0**2 + (self.growth * d) ** 2
        return np.asarray(np.sqrt(np.maximum(s2, np.asarray(extra, dtype=float))))

    def cdf(self, point: ArrayLike, scale: ArrayLike, value: ArrayLike) -> FloatArray:
        """``P(score <= value)`` for a model whose point forecast is ``point`` and predictive
        scale ``scale`` (from :meth:`scale`, times any widening)."""
        z = (np.asarray(value, dtype=float) - np.asarray(point)) / np.asarray(scale)
        return np.asarray(student_t.cdf(z, self.dof))

    def quantile(self, point: ArrayLike, scale: ArrayLike, q: float) -> FloatArray:
        """The ``q`` quantile of the predictive distribution (before clipping)."""
        t = float(student_t.ppf(q, self.dof))
        return np.asarray(point) + np.asarray(scale) * t

    def describe(self) -> list[str]:
        """How the interval was made, a fact a line under 80 columns."""
        phi = self.overdispersion
        if not self.record_used:
            return [
                f"scatter {phi:.2f}x the binomial variance (within sampling): record set aside",
                f"scale: spread {self.s0:.4f} plus the fit's jackknife; t, {self.dof:.1f} "
                "degrees of freedom",
            ]
        out = [
            f"interval calibrated on {len(self.errors)} leave-future-out errors from "
            f"{self.n_cuts} ladder cuts",
            f"error scale {self.s0:.4f} + {self.growth:.4f}/decade, t with {self.dof:.1f} "
            "degrees of freedom",
        ]
        if phi is not None:
            out.append(f"scatter {phi:.1f}x the binomial variance: the record is used")
        return out

    def as_json(self) -> dict[str, object]:
        """Plain numbers for JSON output and evidence."""
        return {
            "method": self.method,
            "n_errors": len(self.errors),
            "n_cuts": self.n_cuts,
            "s0": self.s0,
            "growth_per_decade": self.growth,
            "intra_cut_correlation": self.intra_cut_correlation,
            "n_effective": self.n_effective,
            "dof": self.dof,
            "mae": self.mae,
            "overdispersion": self.overdispersion,
            "record_used": self.record_used,
        }


SAMPLING_TEST = 0.95
"""Quantile of the chi-square test of scatter beyond sampling (module doc)."""


def overdispersion(score: FloatArray, sigma: float, questions: int) -> float:
    """``sigma^2`` over the mean binomial variance ``p (1 - p) / questions`` of the scores
    (each ``p`` kept half a question from 0 and 1): about 1 where the models' scatter about
    the curve is sampling alone."""
    half = 0.5 / questions
    p = np.clip(np.asarray(score, dtype=float), half, 1.0 - half)
    return float(sigma**2 / np.mean(p * (1.0 - p) / questions))


def forecast_spread(data: ScoreData, point: Predictor) -> float:
    """The models' residual spread about ``point``, the method's own forecast from their
    compute (``n - 2`` degrees of freedom)."""
    r = data.score - np.asarray(point(data.compute), dtype=float)
    return float(np.sqrt(np.sum(r**2) / max(len(r) - 2, 1)))


def sampling_only(
    cal: Calibration, data: ScoreData, point: Predictor, questions: int | None
) -> Calibration:
    """``cal`` with its overdispersion, and its record set aside where the ladder's scatter
    about ``point`` (the chosen method's forecast from compute, fitted on every model) is
    within sampling noise and the ladder has left its floor (module doc); unchanged without
    ``questions``."""
    if questions is None:
        return cal
    sigma = forecast_spread(data, point)
    phi = overdispersion(data.score, sigma, questions)
    k = len(data.score) - 2
    left_floor = (float(np.max(data.score)) - data.chance) / (
        data.ceiling - data.chance
    ) >= EDGE_OF_RISE
    if k >= 1 and left_floor and k * phi <= float(chi2.ppf(SAMPLING_TEST, k)):
        # (the floor of fit_scale: a curve through every point still has a non-zero scale)
        return replace(
            cal, s0=max(sigma, 1e-6), growth=0.0, overdispersion=phi, record_used=False,
            spread_dof=float(k),
        )  # fmt: skip
    return replace(cal, overdispersion=phi)


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


@dataclass(frozen=True)
class FutureErrors:
    """Leave-future-out errors of one method on one ladder."""

    distances: FloatArray
    """``(m,)`` extrapolation distances (orders of magnitude past the cut)."""
    errors: FloatArray
    """``(m,)`` signed errors, actual minus predicted."""
    cut: FloatArray
    """``(m,)`` index of the cut each error came from."""
    n_cuts: int
    """Cuts used."""


def future_errors(
    method: str, data: ScoreData, *, min_train: int = 4, max_cuts: int = 8
) -> FutureErrors:
    """Leave-future-out errors of ``method`` on ``data``, with the cut each came from."""
    dist: list[FloatArray] = []
    err: list[FloatArray] = []
    ids: list[FloatArray] = []
    cuts = ladder_cuts(data.compute, min_train=min_train, max_cuts=max_cuts)
    trains = [data.compute <= cut for cut in cuts]
    # Every cut's fit at once (methods that can fit several subsets together do).
    predictors = fit_methods(method, data, trains)
    for i, (cut, train, predict) in enumerate(zip(cuts, trains, predictors, strict=True)):
        c = data.compute[~train]
        dist.append(np.log10(c / cut))
        err.append(data.score[~train] - predict(c))
        ids.append(np.full(len(c), float(i)))
    if not dist:
        return FutureErrors(np.empty(0), np.empty(0), np.empty(0), 0)
    return FutureErrors(np.concatenate(dist), np.concatenate(err), np.concatenate(ids), len(cuts))


def cut_growths(fe: FutureErrors, s0: float, start: float) -> FloatArray:
    """``(k,)`` each cut's maximum-likelihood growth ``g_i`` of ``s0^2 + (g_i d)^2``, ``s0``
    fixed (a cut whose errors are within ``s0`` gets a growth near zero)."""
    out = np.zeros(fe.n_cuts)
    for i in range(fe.n_cuts):
        sel = fe.cut == i
        d2, r2 = fe.distances[sel] ** 2, fe.errors[sel] ** 2
        if not sel.any() or not np.any(d2 > 0):
            continue

        def nll(p: FloatArray, d2: FloatArray = d2, r2: FloatArray = r2) -> float:
            s2 = s0**2 + np.exp(2 * p[0]) * d2
            return float(np.sum(0.5 * np.log(s2) + r2 / (2 * s2)))

        res = minimize(nll, np.array([np.log(max(start, 1e-4))]), method="Nelder-Mead")
        out[i] = float(np.exp(res.x[0]))
    return out


def reach_weights(fe: FutureErrors, s0: float, growth: float) -> FloatArray:
    """``(k,)`` how much each cut can say about the growth: ``u^2 / (1 + u^2)`` with
    ``u = growth * d_max / s0`` (``d_max``: the cut's farthest error), the share of the error
    variance at that distance that the growth term explains. A cut whose errors all lie where
    ``s0`` dominates (a few hundredths of a decade out) counts little, since its growth is an
    error divided by a tiny distance; one that reaches far counts about once. 0 for a cut
    without errors."""
    out = np.zeros(fe.n_cuts)
    for i in range(fe.n_cuts):
        sel = fe.cut == i
        if not sel.any():
            continue
        u2 = (growth * float(np.max(fe.distances[sel])) / max(s0, 1e-12)) ** 2
        out[i] = u2 / (1.0 + u2)
    return out


def weighted_growth(per_cut: FloatArray, weight: FloatArray) -> float:
    """Weighted root mean square ``sqrt(sum w_i g_i^2 / sum w_i)`` of the cuts' growths (the
    plain root mean square where no cut has weight)."""
    if float(np.sum(weight)) <= 0:
        return float(np.sqrt(np.mean(per_cut**2))) if len(per_cut) else 0.0
    return float(np.sqrt(np.sum(weight * per_cut**2) / np.sum(weight)))


def fit_scale(
    distances: FloatArray, errors: FloatArray, floor: float, weights: FloatArray | None = None
) -> tuple[float, float]:
    """Maximum-likelihood ``(s0, g)`` of ``s(d)^2 = s0^2 + (g d)^2`` with ``s0 >= floor``,
    all errors pooled (each error's log-likelihood times its weight, if ``weights`` are given:
    a candidate error model's hook, ``scripts/candidates``)."""
    d2 = distances**2
    r2 = errors**2
    w = np.ones_like(r2) if weights is None else np.asarray(weights, dtype=float)
    floor = max(floor, 1e-6)

    def nll(p: FloatArray) -> float:
        s2 = (floor + np.exp(p[0])) ** 2 + np.exp(2 * p[1]) * d2
        return float(np.sum(w * (0.5 * np.log(s2) + r2 / (2 * s2))))

    rms = float(np.sqrt(np.sum(w * r2) / np.sum(w))) if len(r2) else floor
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
    fe = future_errors(method, data, min_train=min_train, max_cuts=max_cuts)
    if fe.n_cuts < MIN_CUTS or len(fe.errors) < 3:
        return None
    s0, g_pooled = fit_scale(fe.distances, fe.errors, sigma)
    per_cut = cut_growths(fe, s0, g_pooled)
    weight = reach_weights(fe, s0, weighted_growth(per_cut, np.ones(fe.n_cuts)))
    g = weighted_growth(per_cut, weight)
    z = fe.errors / np.sqrt(s0**2 + (g * fe.distances) ** 2)
    rho = intra_cut_correlation(z, fe.cut)
    return Calibration(
        method, fe.distances, fe.errors, fe.n_cuts, s0, g, per_cut, rho, cut_weight=weight
    )


def intra_cut_correlation(z: FloatArray, cut: FloatArray) -> float:
    """One-way ANOVA intra-class correlation of ``z`` grouped by ``cut`` (unequal group
    sizes: ``n0 = (m - sum n_i^2 / m) / (k - 1)``), clipped to [0, 1]; 1 when there are fewer
    than two groups or no error beyond one per group."""
    labels = np.unique(cut)
    k, m = len(labels), len(z)
    if k < 2 or m <= k:
        return 1.0
    groups = [z[cut == c] for c in labels]
    sizes = np.array([len(g) for g in groups], dtype=float)
    means = np.array([g.mean() for g in groups])
    between = float(np.sum(sizes * (means - z.mean()) ** 2)) / (k - 1)
    within = float(sum(np.sum((g - g.mean()) ** 2) for g in groups)) / (m - k)
    n0 = (m - float(np.sum(sizes**2)) / m) / (k - 1)
    denominator = between + (n0 - 1.0) * within
    if denominator <= 0:
        return 0.0
    return float(np.clip((between - within) / denominator, 0.0, 1.0))
