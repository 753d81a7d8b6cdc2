"""Capability forecasts: a benchmark score against log compute, or against predicted loss.

The score follows a sigmoid between a floor (chance) and a ceiling,
``s(x) = floor + (ceiling - floor) / (1 + exp(-k (x - x0)))``. With ``x = log10 C`` this is the
usual one-step fit; with ``x = loss`` it is the second step of the two-step method of Bhagia et
al. (2024), "Establishing Task Scaling Laws via Compute-Efficient Model Ladders" (OLMo), whose
first step is a compute law ``L(C) = E + A / C^alpha`` fitted to the same models. Intervals
come from a bootstrap over models (both steps refitted on the same resample) plus residual noise,
so they describe the score a new model at that compute would show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from safescale._errors import Problem as UserProblem
from safescale._errors import UserError
from safescale._stats import wilson_interval
from safescale.scaling._bootstrap import Estimate, LawBootstrap, bootstrap_law
from safescale.scaling._fit import check_columns
from safescale.scaling._laws import FloatArray
from safescale.scaling._newton import solve_batch


def sigmoid(
    x: FloatArray | float,
    x0: FloatArray | float,
    k: FloatArray | float,
    floor: float,
    ceiling: float,
) -> FloatArray:
    """The floor-to-ceiling sigmoid; broadcasts over parameter draws."""
    z = np.clip(k * (x - x0), -700, 700)
    return floor + (ceiling - floor) / (1.0 + np.exp(-z))


def _fit_sigmoid(
    x: FloatArray, s: FloatArray, w: FloatArray, floor: float, ceiling: float, start: FloatArray
) -> FloatArray:
    """Weighted least-squares sigmoid fits, batched: one per row of ``w`` and ``start``.

    Levenberg-Marquardt on ``(x0, k)`` with a per-row damping (Nocedal & Wright 2006, ch. 10).

    Args:
        x: ``(n,)`` predictor; s: ``(n,)`` scores.
        w: ``(R, n)`` weights (bootstrap counts, or ones).
        start: ``(R, 2)`` starting ``(x0, k)``.

    Returns:
        ``(R, 2)`` fitted ``(x0, k)``.
    """
    theta = np.array(start, dtype=float)
    span = ceiling - floor
    k_max = max_slope(x)
    theta[:, 1] = np.clip(theta[:, 1], -k_max, k_max)

    def cost(t: FloatArray) -> FloatArray:
        r = sigmoid(x[None], t[:, :1], t[:, 1:], floor, ceiling) - s[None]
        return np.sum(w * r * r, axis=1)

    f = cost(theta)
    mu = np.full(len(theta), 1e-3)
    for _ in range(200):
        z = np.clip(theta[:, 1:] * (x[None] - theta[:, :1]), -700, 700)
        q = 1.0 / (1.0 + np.exp(-z))
        r = floor + span * q - s[None]  # (R, n)
        dq = span * q * (1.0 - q)
        jac = np.stack([-theta[:, 1:] * dq, (x[None] - theta[:, :1]) * dq], axis=2)  # (R, n, 2)
        jw = jac * w[:, :, None]
        h = jw.transpose(0, 2, 1) @ jac
        g = np.einsum("rnj,rn->rj", jw, r)
        diag = np.maximum(np.einsum("rjj->rj", h), 1e-300)
        damp = (mu[:, None] * diag + 1e-12)[:, :, None] * np.eye(2)
        step = solve_batch(h + damp, -g)
        trial = theta + step
        trial[:, 1] = np.clip(trial[:, 1], -k_max, k_max)
        ft = cost(trial)
        ok = np.isfinite(ft) & (ft <= f)
        done = ok & (f - ft <= 1e-14 * np.maximum(f, 1e-300))
        theta[ok], f[ok] = trial[ok], ft[ok]
        mu = np.where(ok, mu / 5.0, mu * 10.0)
        if np.all(done | (mu > 1e12)):
            break
    return theta


def max_slope(x: FloatArray) -> float:
    """Steepest slope allowed: the rise from 12% to 88% of the way (``4 / k``) must take at
    least the median gap between distinct predictor values. Steeper curves cannot be told
    apart by the data and would let a fit put a cliff just beyond the largest model."""
    gaps = np.diff(np.unique(x))
    return 4.0 / float(np.median(gaps)) if len(gaps) else 1.0


def _starts(x: FloatArray) -> FloatArray:
    # Midpoints across and beyond the data, slopes of both signs and several steepnesses: the
    # sigmoid is flat far from x0, so a single start can stall on a plateau.
    spread = max(float(np.ptp(x)), 1e-9)
    mids = np.linspace(x.min() - 0.5 * spread, x.max() + 0.5 * spread, 9)
    slopes = np.array([0.5, 2.0, 8.0, 32.0]) / spread
    grid = np.array([(m, sg * k) for m in mids for k in slopes for sg in (1.0, -1.0)])
    return grid


@dataclass(frozen=True)
class CapabilityForecast:
    """A fitted score curve and its bootstrap, ready to predict at a planned compute."""

    x0: float
    """Sigmoid midpoint (in log10 FLOP, or in loss for the two-step method)."""
    slope: float
    """Sigmoid slope k (negative against loss: lower loss, higher score)."""
    chance: float
    """Floor: the score of a model that knows nothing."""
    ceiling: float
    """Ceiling: the best possible score."""
    sigma: float
    """Residual standard deviation of the scores about the curve."""
    draws: FloatArray
    """``(R, 2)`` bootstrap replicates of ``(x0, slope)``."""
    noise: FloatArray
    """``(R,)`` residual draws added to each replicate's prediction."""
    n_points: int
    """Models fitted."""
    level: float = 0.95
    """Interval coverage."""
    loss_law: LawBootstrap | None = None
    """Two-step method: the compute law and its replicates (same resamples as ``draws``)."""
    rise_observed: bool = True
    """Whether the fitted curve climbs at least 10% of the way from floor to ceiling within the
    data. If not, the data cannot say where a rise would start, and neither the interval nor
    ``prob_exceeds`` beyond the largest model can be trusted: an emergent capability can appear
    without warning."""

    @property
    def against(self) -> str:
        """``compute`` or ``loss``."""
        return "compute" if self.loss_law is None else "loss"

    def _x(self, compute: FloatArray, replicates: bool) -> FloatArray:
        c = np.asarray(compute, dtype=float)
        if self.loss_law is None:
            return np.log10(c)
        law = self.loss_law.estimate.law
        logs = np.log(c).reshape(-1, 1)
        if replicates:
            return np.exp(law.log_predict(self.loss_law.thetas, logs)).reshape((-1, *c.shape))
        return self.loss_law.estimate.predict(c)

    def sample(self, compute: ArrayLike) -> FloatArray:
        """``(R, ...)`` predictive draws of the score a new model at ``compute`` would get."""
        c = np.asarray(compute, dtype=float)
        x = self._x(c, replicates=True)
        extra = (slice(None),) + (None,) * c.ndim
        x0, k = self.draws[:, 0][extra], self.draws[:, 1][extra]
        draws = sigmoid(x, x0, k, self.chance, self.ceiling) + self.noise[extra]
        # A score cannot pass its ceiling, nor fall below zero (or the floor, if lower): clip
        # the residual noise so the prediction band stays on the metric's scale.
        return np.clip(draws, min(0.0, self.chance), self.ceiling)

    def predict(self, compute: ArrayLike) -> Estimate:
        """Score at ``compute`` (FLOP) with a prediction interval."""
        c = np.asarray(compute, dtype=float)
        full = sigmoid(self._x(c, replicates=False), self.x0, self.slope, self.chance, self.ceiling)
        tail = 100 * (1 - self.level) / 2
        lo, hi = np.percentile(self.sample(c), [tail, 100 - tail], axis=0)
        return Estimate(np.asarray(full), lo, hi, self.level)

    def prob_exceeds(self, compute: ArrayLike, line: float) -> FloatArray:
        """Probability that a new model at ``compute`` scores at or above ``line``."""
        return np.mean(self.sample(compute) >= line, axis=0)


def fit_capability(
    compute: ArrayLike,
    score: ArrayLike,
    *,
    chance: float = 0.0,
    ceiling: float = 1.0,
    loss: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    names: dict[str, str] | None = None,
) -> CapabilityForecast:
    """Fit a score-versus-compute sigmoid (or the two-step loss method when ``loss`` is given).

    Args:
        compute: training FLOP per model.
        score: benchmark score per model, on the same scale as ``chance`` and ``ceiling``.
        chance: floor of the sigmoid.
        ceiling: top of the sigmoid.
        loss: per-model loss; switches to the two-step method (compute -> loss -> score).
        n_boot: bootstrap replicates.
        seed: seed for resampling and residual draws.
        level: interval coverage.
        names: column names for messages, keyed ``compute``, ``score``, ``loss``.

    Raises:
        UserError: bad values (column and row named), too few models, chance >= ceiling.
    """
    c = np.asarray(compute, dtype=float).ravel()
    s = np.asarray(score, dtype=float).ravel()
    if not chance < ceiling:
        raise UserError(UserProblem(f"chance ({chance}) must be below ceiling ({ceiling})"))
    columns = {"compute": c}
    if loss is not None:
        columns["loss"] = np.asarray(loss, dtype=float).ravel()
    shown = {"compute": "compute", "score": "score", "loss": "loss", **(names or {})}
    check_columns(columns, shown, min_rows=3 if loss is None else 4)
    check_columns({"compute": c, "score": s}, shown, min_rows=3, positive=False)
    n = len(s)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    loss_law = None
    if loss is None:
        x = np.log10(c)
    else:
        x = columns["loss"]
        loss_law = bootstrap_law(
            compute=c, loss=x, form="compute", n_boot=n_boot, seed=seed, level=level,
            names={"C": shown["compute"], "loss": shown["loss"]},
        )  # fmt: skip
    starts = _starts(x)
    fits = _fit_sigmoid(x, s, np.ones((len(starts), n)), chance, ceiling, starts)
    r_all = sigmoid(x[None], fits[:, :1], fits[:, 1:], chance, ceiling) - s[None]
    full = fits[int(np.argmin(np.sum(r_all**2, axis=1)))]
    resid = s - sigmoid(x, full[0], full[1], chance, ceiling)
    sigma = float(np.sqrt(np.sum(resid**2) / max(n - 2, 1)))
    draws = _fit_sigmoid(x, s, counts, chance, ceiling, np.repeat(full[None], n_boot, axis=0))
    noise = rng.normal(0.0, sigma, size=n_boot)
    ends = sigmoid(np.array([x.min(), x.max()]), full[0], full[1], chance, ceiling)
    rise = abs(float(ends[1] - ends[0])) >= 0.1 * (ceiling - chance)
    return CapabilityForecast(
        float(full[0]), float(full[1]), chance, ceiling, sigma, draws, noise, n, level, loss_law,
        rise,
    )  # fmt: skip


@dataclass(frozen=True)
class BacktestRow:
    """One held-out model predicted from smaller ones."""

    train_max_compute: float
    """Largest compute in the training set."""
    compute: float
    """Compute of the predicted model."""
    actual: float
    """Its observed score."""
    predicted: Estimate
    """Forecast with interval."""

    @property
    def error(self) -> float:
        """Predicted minus actual."""
        return float(self.predicted.value) - self.actual

    @property
    def covered(self) -> bool:
        """Whether the interval held the actual score."""
        return bool(self.predicted.lo <= self.actual <= self.predicted.hi)


@dataclass(frozen=True)
class BacktestResult:
    """Rolling-origin backtest: fit on models up to a compute, predict every larger one."""

    rows: tuple[BacktestRow, ...]
    """Every prediction made."""
    mae: Estimate
    """Mean absolute error with a bootstrap interval over rows."""
    coverage: Estimate
    """Share of intervals that held the truth, with a Wilson interval."""
    level: float
    """Nominal coverage of the forecast intervals."""

    @property
    def n(self) -> int:
        """Predictions made."""
        return len(self.rows)


def backtest(
    compute: ArrayLike,
    score: ArrayLike,
    *,
    chance: float = 0.0,
    ceiling: float = 1.0,
    loss: ArrayLike | None = None,
    min_train: int = 4,
    n_boot: int = 400,
    seed: int = 0,
    level: float = 0.95,
    names: dict[str, str] | None = None,
) -> BacktestResult:
    """Fit on the smaller models, predict the larger ones, at every cut of the compute ladder.

    Rows at the same compute go to the same side of each cut. Predictions made from one cut
    share a fit, so rows are not independent; the intervals on ``mae`` and ``coverage`` treat
    them as if they were and are therefore optimistic.
    """
    c = np.asarray(compute, dtype=float).ravel()
    s = np.asarray(score, dtype=float).ravel()
    lv = None if loss is None else np.asarray(loss, dtype=float).ravel()
    levels = np.unique(c)
    rows: list[BacktestRow] = []
    for cut in levels[:-1]:
        train = c <= cut
        if train.sum() < min_train or len(np.unique(c[train])) < 3:
            continue
        fc = fit_capability(
            c[train], s[train], chance=chance, ceiling=ceiling,
            loss=None if lv is None else lv[train], n_boot=n_boot, seed=seed, level=level,
            names=names,
        )  # fmt: skip
        for i in np.flatnonzero(~train):
            p = fc.predict(c[i])
            rows.append(BacktestRow(float(cut), float(c[i]), float(s[i]), p))
    if not rows:
        raise UserError(
            UserProblem(
                f"too few compute levels to backtest (need {min_train} models below a larger one)"
            )
        )
    err = np.abs([r.error for r in rows])
    rng = np.random.default_rng(seed)
    boot = err[rng.integers(0, len(err), size=(1000, len(err)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    mae = Estimate(np.asarray(err.mean()), lo, hi, level)
    hits = sum(r.covered for r in rows)
    return BacktestResult(tuple(rows), mae, _wilson(hits, len(rows), level), level)


def _wilson(k: int, n: int, level: float) -> Estimate:
    # Wilson (1927) score interval for a proportion; sound at small n, unlike the normal one.
    lo, hi = wilson_interval(k, n, level)
    return Estimate(np.asarray(k / n), np.asarray(lo), np.asarray(hi), level)
