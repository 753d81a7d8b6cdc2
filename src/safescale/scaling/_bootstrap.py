"""Bootstrap over runs: intervals for every parameter, derived quantity and prediction.

Each replicate resamples the runs with replacement (Efron & Tibshirani 1993). Resampling is
the same as giving each run an integer weight (how often it was drawn), so all replicates are
refitted at once. Each replicate is refitted to its own optimum: the Approach 3 grid is scored
under its weights, its own best starts are refined and polished (``search_batch``), and the
full-data optimum is one more start. Starting only from the full-data optimum, the usual
shortcut, leaves many replicates in a nearby basin and narrows the intervals. ``converged``
counts replicates whose end point is stationary (Newton decrement below 1e-9 of the objective);
the tests check replicates against a fresh full search on each resample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from safescale.scaling._fit import (
    Method,
    ScalingLaw,
    SearchResult,
    SearchSettings,
    prepare,
    search_batch,
)
from safescale.scaling._laws import FloatArray, LawForm
from safescale.scaling._objective import HUBER_DELTA, Problem

QUICK_SEARCH = SearchSettings(per_cell=0, top=6, irls_iter=20, polish=3)
"""First pass of each replicate's refit: its four best grid starts and the full-data optimum.
Replicates whose two routes disagree get the full search (the tests check the result against
a fresh full search on each resample)."""

CONVERGED_WARNING = 0.95
"""Below this share of replicates reaching a stationary optimum, outputs carry a warning."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile interval (scalars or arrays of one shape)."""

    value: FloatArray
    """Estimate from the full data."""
    lo: FloatArray
    """Lower end of the interval."""
    hi: FloatArray
    """Upper end of the interval."""
    level: float
    """Coverage the interval aims at (0.95)."""

    def as_json(self) -> dict[str, object]:
        """Plain numbers (lists for arrays) for JSON output."""
        return {"value": _plain(self.value), "interval": [_plain(self.lo), _plain(self.hi)]}


def _plain(x: FloatArray) -> object:
    a = np.asarray(x)
    return float(a) if a.ndim == 0 else a.tolist()


@dataclass(frozen=True)
class LawBootstrap:
    """A fitted law and its bootstrap replicates."""

    estimate: ScalingLaw
    """The fit to all runs."""
    thetas: FloatArray
    """``(R, P)`` replicate parameters (log coefficients, then exponents)."""
    residuals: FloatArray
    """``(n,)`` log residuals of the full fit, drawn from for prediction intervals."""
    converged: int
    """Replicates whose final scaled gradient is negligible."""
    level: float = 0.95
    """Interval coverage."""
    seed: int = 0
    """Seed of the resampling."""
    intervals: Mapping[str, Estimate] = field(default_factory=dict)
    """Per parameter (natural scale): estimate and interval."""

    @property
    def n_boot(self) -> int:
        """Number of replicates."""
        return len(self.thetas)

    @property
    def converged_share(self) -> float:
        """Share of replicates that reached a stationary optimum of their own."""
        return self.converged / max(self.n_boot, 1)

    @property
    def warning(self) -> str | None:
        """A one-line caution when fewer than 95% of replicates converged, else None."""
        if self.converged_share >= CONVERGED_WARNING:
            return None
        return (
            f"only {self.converged} of {self.n_boot} bootstrap replicates reached a stationary "
            f"optimum ({100 * self.converged_share:.0f}% < {100 * CONVERGED_WARNING:.0f}%): "
            "the others ran a parameter to the edge (e.g. E -> 0); the intervals are unreliable"
        )

    def convergence_json(self) -> dict[str, object]:
        """``converged``, ``n_boot``, ``share`` and ``warning`` for JSON and evidence."""
        return {
            "converged": self.converged,
            "n_boot": self.n_boot,
            "share": self.converged_share,
            "warning": self.warning,
        }

    def _estimate(self, full: FloatArray, draws: FloatArray) -> Estimate:
        lo, hi = percentile_interval(draws, self.level)
        return Estimate(full, lo, hi, self.level)

    def natural(self, name: str) -> FloatArray:
        """Replicate values of one parameter on its natural scale, ``(R,)``."""
        law = self.estimate.law
        j = law.param_names.index(name)
        col = self.thetas[:, j]
        with np.errstate(over="ignore"):  # a replicate that ran a coefficient to the edge
            return np.exp(col) if j < len(law.terms) else col

    def optimal_exponent(self) -> Estimate:
        """``beta / (alpha + beta)``: N_opt grows as C to this power (Chinchilla form)."""
        p = self.estimate.params_
        full = p["beta"] / (p["alpha"] + p["beta"])
        a, b = self.natural("alpha"), self.natural("beta")
        return self._estimate(np.asarray(full), b / (a + b))

    def predict_interval(
        self, *values: ArrayLike, kind: str = "prediction", seed: int | None = None
    ) -> Estimate:
        """Loss at new inputs (``N, D`` for Chinchilla) with a bootstrap interval.

        Args:
            values: inputs in ``law.variables`` order.
            kind: ``prediction`` (the loss a new run would show: replicate law times a
                resampled log residual) or ``confidence`` (the law itself).
            seed: seed for the residual draws (default: this bootstrap's seed).
        """
        law = self.estimate.law
        cols = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in values])
        shape = cols[0].shape
        logs = np.log(np.stack([c.ravel() for c in cols], axis=1))
        draws = law.log_predict(self.thetas, logs)  # (R, m)
        if kind == "prediction":
            rng = np.random.default_rng(self.seed if seed is None else seed)
            draws = draws + rng.choice(self.residuals, size=draws.shape)
        elif kind != "confidence":
            raise ValueError("kind must be 'prediction' or 'confidence'")
        full = self.estimate.predict(*values)
        with np.errstate(over="ignore"):  # a replicate at the edge: an unbounded prediction
            est = self._estimate(np.asarray(full).ravel(), np.exp(draws))
        return Estimate(full, est.lo.reshape(shape), est.hi.reshape(shape), self.level)


def bootstrap_law(
    params: ArrayLike | None = None,
    tokens: ArrayLike | None = None,
    loss: ArrayLike | None = None,
    *,
    compute: ArrayLike | None = None,
    form: str = "chinchilla",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    huber_delta: float = HUBER_DELTA,
    method: Method = "fast",
    names: dict[str, str] | None = None,
    search: SearchSettings | None = None,
) -> LawBootstrap:
    """Fit a law and bootstrap it over runs (arguments as :func:`fit_law`).

    Args:
        n_boot: replicates.
        seed: seed of the resampling.
        level: interval coverage.
        names: column names for messages, keyed ``N``, ``D``, ``C``, ``loss``.
        search: the full search given to replicates the quick pass cannot settle.

    Returns:
        The full fit, the replicates and percentile intervals for every parameter.
    """
    if loss is None:
        raise TypeError("bootstrap_law needs loss")
    if n_boot < 2 or not 0 < level < 1:
        raise ValueError("need n_boot >= 2 and 0 < level < 1")
    inputs = {"N": params, "D": tokens, "C": compute}
    est = ScalingLaw(form, huber_delta=huber_delta, method=method).fit(loss, names=names, **inputs)
    law = est.law
    logs, y = prepare(law, loss, inputs, names)
    problem = Problem(law.design(logs), y, huber_delta)
    rng = np.random.default_rng(seed)
    n = len(y)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    # Every replicate gets a fresh search of its own (grid scored under its weights, its own
    # starts, IRLS, Newton polish), plus the full-data optimum as one more start: a replicate
    # warm-started only from the full-data optimum can stop in a nearby basin.
    res = _search_in_chunks(law, problem, counts, QUICK_SEARCH, est.theta_)
    theta, ok = res.theta, res.converged
    # Where the quick search's two routes (its best grid starts, the full-data optimum) end at
    # different optima, the landscape has several basins for that replicate: search it fully.
    redo = np.flatnonzero(~res.agreed | ~res.converged)
    if redo.size:
        full = _search_in_chunks(law, problem, counts[redo], search or SearchSettings(), est.theta_)
        better = full.value < res.value[redo]
        theta[redo[better]] = full.theta[better]
        ok[redo] = np.where(better, full.converged, ok[redo])
    residuals = y - law.log_predict(est.theta_, logs)
    boot = LawBootstrap(est, theta, residuals, int(np.sum(ok)), level, seed)
    intervals = {
        name: boot._estimate(np.asarray(est.params_[name]), boot.natural(name))
        for name in law.param_names
    }
    return LawBootstrap(
        est, theta, residuals, boot.converged, level, seed, MappingProxyType(intervals)
    )


REPLICATE_CHUNK = 2000
"""Replicates searched at once: the grid is scored for all of them in one ``(S, R)`` matrix
(4,500 starts x 2,000 replicates is 72 MB), so memory stays bounded whatever ``n_boot``."""


def _search_in_chunks(
    law: LawForm, problem: Problem, counts: FloatArray, settings: SearchSettings, extra: FloatArray
) -> SearchResult:
    """:func:`search_batch` over blocks of :data:`REPLICATE_CHUNK` replicates (each replicate
    is searched on its own, so the result is the same as one call)."""
    parts = [
        search_batch(law, problem, counts[lo : lo + REPLICATE_CHUNK], settings, extra_starts=extra)
        for lo in range(0, len(counts), REPLICATE_CHUNK)
    ]
    if len(parts) == 1:
        return parts[0]
    return SearchResult(
        np.concatenate([p.theta for p in parts]),
        np.concatenate([p.value for p in parts]),
        np.concatenate([p.converged for p in parts]),
        np.concatenate([p.agreed for p in parts]),
    )


@dataclass(frozen=True)
class ComputeOptimal:
    """Compute-optimal allocation at given budgets (Hoffmann et al. 2022, eq. 4)."""

    compute: FloatArray
    """Budgets C in FLOP."""
    params: Estimate
    """N_opt(C)."""
    tokens: Estimate
    """D_opt(C) = C / (6 N_opt)."""
    tokens_per_param: Estimate
    """D_opt / N_opt."""
    loss: Estimate
    """Loss at the optimum (the law itself, not a new run)."""


def _optimal(theta: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray]:
    # theta (..., 5) = (e, a, b, alpha, beta); N_opt = G (C/6)^(beta/(alpha+beta)),
    # G = (alpha A / (beta B))^(1/(alpha+beta)).
    a, b, alpha, beta = (theta[..., j, None] for j in (1, 2, 3, 4))
    with np.errstate(all="ignore"):
        log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
        log_n = log_g + beta / (alpha + beta) * np.log(c / 6.0)
    return log_n, np.log(c / 6.0) - log_n


def compute_optimal(fit: ScalingLaw | LawBootstrap, compute: ArrayLike) -> ComputeOptimal:
    """N_opt(C), D_opt(C) under C = 6 N D, with intervals when ``fit`` is a bootstrap.

    Raises:
        ValueError: the law is not of the Chinchilla form (both N and D terms).
    """
    est = fit.estimate if isinstance(fit, LawBootstrap) else fit
    if est.form != "chinchilla":
        raise ValueError("compute-optimal allocation needs the chinchilla form")
    c = np.atleast_1d(np.asarray(compute, dtype=float))
    law = est.law
    thetas = fit.thetas if isinstance(fit, LawBootstrap) else est.theta_[None]
    level = fit.level if isinstance(fit, LawBootstrap) else 0.0

    def summarise(full: FloatArray, draws: FloatArray) -> Estimate:
        if not level:
            return Estimate(full, full, full, level)
        lo, hi = percentile_interval(draws, level)
        return Estimate(full, lo, hi, level)

    ln_full, ld_full = _optimal(est.theta_, c)
    ln, ld = _optimal(thetas, c)  # (R, m)
    full_loss = law.log_predict(est.theta_, np.stack([ln_full, ld_full], axis=1))
    loss_draws = np.stack(
        [
            law.log_predict(t, np.stack([n_, d_], axis=1))
            for t, n_, d_ in zip(thetas, ln, ld, strict=True)
        ]
    )
    with np.errstate(over="ignore"):  # a replicate at the edge: an unbounded allocation
        return ComputeOptimal(
            compute=c,
            params=summarise(np.exp(ln_full), np.exp(ln)),
            tokens=summarise(np.exp(ld_full), np.exp(ld)),
            tokens_per_param=summarise(np.exp(ld_full - ln_full), np.exp(ld - ln)),
            loss=summarise(np.exp(full_loss), np.exp(loss_draws)),
        )


def percentile_interval(draws: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    """The central ``level`` percentile interval of ``draws`` over axis 0 (NaN draws left out).
    A replicate that ran a parameter to the edge can be infinite: where interpolating between
    two draws would give NaN (inf - inf), the nearest draw is the bound, so an interval is
    ``[lo, inf]`` (unbounded), never NaN."""
    tail = 100 * (1 - level) / 2
    with np.errstate(invalid="ignore", over="ignore"):
        lo, hi = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
        if np.isnan(lo).any() or np.isnan(hi).any():
            near_lo, near_hi = np.nanpercentile(draws, [tail, 100 - tail], axis=0, method="nearest")
            lo, hi = np.where(np.isnan(lo), near_lo, lo), np.where(np.isnan(hi), near_hi, hi)
    return lo, hi
