"""Capability forecasts: a benchmark score against log compute, or against predicted loss.

The score follows a sigmoid between a floor (chance) and a ceiling,
``s(x) = floor + (ceiling - floor) / (1 + exp(-k (x - x0)))``. With ``x = log10 C`` this is the
usual one-step fit; with ``x = loss`` it is the second step of the two-step method of Bhagia et
al. (2024), "Establishing Task Scaling Laws via Compute-Efficient Model Ladders" (OLMo), whose
first step is a compute law ``L(C) = E + A / C^alpha`` fitted to the same models.

Point forecasts come from a registered method (``sigmoid``, ``two-step``, ``capability-pc``,
``logistic-4p``; ``auto`` picks the one with the smallest leave-future-out error on this
ladder among the non-baselines, so never the plain ``logistic-4p``). Intervals and
``P(score >= line)`` are calibrated on the ladder's own rolling-origin backtests, so they widen
with extrapolation distance (:mod:`safescale.scaling._calibration`). A ladder too short to
calibrate (fewer than two cuts) falls back to the bootstrap over models (both steps refitted
on the same resample) plus residual noise, and says so (``calibration is None``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from safescale._errors import Problem as UserProblem
from safescale._errors import UserError
from safescale._stats import wilson_interval
from safescale.scaling._bootstrap import Estimate, LawBootstrap, bootstrap_law
from safescale.scaling._calibration import (
    FLOOR_WIDENING,
    FRONTIER,
    Calibration,
    calibrate,
    ladder_cuts,
    sampling_only,
)
from safescale.scaling._checks import EDGE_OF_RISE, rise_position
from safescale.scaling._fit import check_columns
from safescale.scaling._inputs import check_questions
from safescale.scaling._laws import FloatArray
from safescale.scaling._methods import (
    METHODS,
    Predictor,
    ScoreData,
    available_methods,
    best_sigmoid,
    choosable,
    fit_method,
    fit_methods,
    sigmoid,
)
from safescale.scaling._methods import fit_sigmoid_batch as _fit_sigmoid


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
    method: str = "sigmoid"
    """Point-forecast method (a name in ``METHODS``)."""
    point: Predictor | None = None
    """The method's predictor fitted on all models (None: the bootstrap sigmoid's curve)."""
    calibration: Calibration | None = None
    """Leave-future-out calibration of the method; None when the ladder is too short."""
    train_max_compute: float = 0.0
    """Largest compute fitted: extrapolation distance is counted from here."""
    method_errors: tuple[tuple[str, float], ...] = ()
    """Leave-future-out mean absolute error of every method tried, ``(name, mae)``."""
    draw_seed: int = 0
    """Seed of the predictive draws of a calibrated forecast."""
    frontier: tuple[Predictor, ...] = ()
    """The method refitted without each of the largest models in turn (frontier jackknife)."""

    @property
    def calibrated(self) -> bool:
        """Whether intervals and probabilities come from the ladder's own backtests."""
        return self.calibration is not None

    def position(self, compute: float) -> float:
        """The point forecast's share of the way from chance to the ceiling at ``compute``
        (clipped to [0, 1]); see ``position_warnings`` for why it matters."""
        point = float(self._point(np.asarray(compute, dtype=float)))
        return rise_position(point, self.chance, self.ceiling)

    def distance(self, compute: ArrayLike) -> FloatArray:
        """Orders of magnitude of compute past the largest model fitted (0 inside the data)."""
        c = np.asarray(compute, dtype=float)
        return np.asarray(np.maximum(np.log10(c / self.train_max_compute), 0.0))

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

    def _low(self) -> float:
        # A score cannot pass its ceiling, nor fall below zero (or the floor, if lower).
        return min(0.0, self.chance)

    def _point(self, c: FloatArray) -> FloatArray:
        if self.point is not None:
            return np.asarray(self.point(c))
        return sigmoid(self._x(c, replicates=False), self.x0, self.slope, self.chance, self.ceiling)

    def jackknife_variance(self, compute: ArrayLike) -> FloatArray:
        """Frontier jackknife variance ``sum_i (p_{-i}(C) - p(C))^2`` of the point forecast
        (zero without a calibrated method)."""
        c = np.asarray(compute, dtype=float)
        return self._jackknife(c, self._point(c))

    def _jackknife(self, c: FloatArray, point: FloatArray) -> FloatArray:
        if not self.frontier:
            return np.zeros(c.shape)
        return np.asarray(sum((np.asarray(f(c)) - point) ** 2 for f in self.frontier))

    def widening(self, compute: ArrayLike) -> FloatArray:
        """Factor on the predictive scale at ``compute``: :data:`FLOOR_WIDENING` where the
        point forecast lies within ``EDGE_OF_RISE`` of the floor, else 1 (always 1 for a
        forecast that is not calibrated: the bootstrap's intervals are not widened)."""
        c = np.asarray(compute, dtype=float)
        if self.calibration is None:
            return np.ones(c.shape)
        return self._widening(self._point(c))

    def _widening(self, point: FloatArray) -> FloatArray:
        u = (point - self.chance) / (self.ceiling - self.chance)
        return np.asarray(np.where(u <= EDGE_OF_RISE, FLOOR_WIDENING, 1.0))

    def _predictive(self, c: FloatArray, cal: Calibration) -> tuple[FloatArray, FloatArray]:
        # The point forecast and the calibrated predictive scale at c, each computed once:
        # the larger of the ladder's error scale at that distance and the frontier jackknife
        # spread, widened near the floor.
        point = self._point(c)
        scale = cal.scale(self.distance(c), self._jackknife(c, point))
        return point, scale * self._widening(point)

    def scale(self, compute: ArrayLike) -> FloatArray:
        """Scale of the calibrated predictive distribution at ``compute``: the larger of the
        ladder's error scale at that distance and the frontier jackknife spread (their sum,
        in variance, where the record is set aside: :meth:`Calibration.scale`), widened near
        the floor."""
        if self.calibration is None:
            raise ValueError("the forecast is not calibrated")
        return self._predictive(np.asarray(compute, dtype=float), self.calibration)[1]

    def sample(self, compute: ArrayLike) -> FloatArray:
        """``(R, ...)`` predictive draws of the score a new model at ``compute`` would get."""
        c = np.asarray(compute, dtype=float)
        if self.calibration is not None:
            rng = np.random.default_rng(self.draw_seed)
            r = max(len(self.noise), 1000)
            z = rng.standard_t(self.calibration.dof, size=(r,) + (1,) * c.ndim)
            point, scale = self._predictive(c, self.calibration)
            return np.clip(point[None] + scale[None] * z, self._low(), self.ceiling)
        x = self._x(c, replicates=True)
        extra = (slice(None),) + (None,) * c.ndim
        x0, k = self.draws[:, 0][extra], self.draws[:, 1][extra]
        draws = sigmoid(x, x0, k, self.chance, self.ceiling) + self.noise[extra]
        return np.clip(draws, self._low(), self.ceiling)

    def predict(self, compute: ArrayLike, level: float | None = None) -> Estimate:
        """Score at ``compute`` (FLOP) with a prediction interval (at ``level``, default the
        forecast's own)."""
        c = np.asarray(compute, dtype=float)
        lv = self.level if level is None else level
        tail = (1 - lv) / 2
        if self.calibration is not None:
            full, scale = self._predictive(c, self.calibration)
            q_lo = self.calibration.quantile(full, scale, tail)
            q_hi = self.calibration.quantile(full, scale, 1 - tail)
            lo = np.clip(q_lo, self._low(), self.ceiling)
            hi = np.clip(q_hi, self._low(), self.ceiling)
            return Estimate(np.asarray(full), np.asarray(lo), np.asarray(hi), lv)
        lo, hi = np.percentile(self.sample(c), [100 * tail, 100 * (1 - tail)], axis=0)
        return Estimate(np.asarray(self._point(c)), lo, hi, lv)

    def prob_exceeds(self, compute: ArrayLike, line: float) -> FloatArray:
        """Probability that a new model at ``compute`` scores at or above ``line``."""
        c = np.asarray(compute, dtype=float)
        if self.calibration is not None:
            if line <= self._low():
                return np.ones(c.shape)
            if line > self.ceiling:
                return np.zeros(c.shape)
            return 1.0 - self.calibration.cdf(*self._predictive(c, self.calibration), line)
        return np.mean(self.sample(c) >= line, axis=0)

    def pit(self, compute: ArrayLike, actual: ArrayLike) -> FloatArray:
        """Probability integral transform ``P(score <= actual)``: uniform when calibrated."""
        c = np.asarray(compute, dtype=float)
        if self.calibration is not None:
            return self.calibration.cdf(*self._predictive(c, self.calibration), actual)
        return np.mean(self.sample(c) <= np.asarray(actual), axis=0)


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
    method: str = "auto",
    calibrate_intervals: bool = True,
    max_cuts: int = 8,
    others: ArrayLike | None = None,
    others_chance: ArrayLike | None = None,
    bootstrap_calibrated: bool = True,
    questions: int | None = None,
) -> CapabilityForecast:
    """Fit a score forecast: point method, calibrated intervals, bootstrap fallback.

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
        method: a name in ``METHODS``, or ``auto``: the method with the smallest
            leave-future-out mean absolute error on these models among the
            non-baselines (never ``logistic-4p``).
        calibrate_intervals: calibrate intervals on the ladder's own backtests (default);
            False keeps the bootstrap intervals.
        max_cuts: most ladder cuts the calibration fits.
        others: ``(n, B)`` scores of other benchmarks on the same models, for the
            multi-benchmark ``capability-pc`` method.
        others_chance: ``(B,)`` chance levels of the other benchmarks (default 0).
        bootstrap_calibrated: also bootstrap a calibrated forecast (its replicates are kept
            for the record; backtests skip them, as calibrated intervals do not use them).
        questions: the benchmark's number of questions (scores then proportions in [0, 1]):
            a ladder whose scatter is within sampling noise sets its record aside
            (:func:`~safescale.scaling._calibration.sampling_only`).

    Raises:
        UserError: bad values (column and row named), too few models, chance >= ceiling,
            an unknown method or one that needs ``loss`` without it.
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
    check_questions(questions, s, shown["score"])
    n = len(s)
    # The sigmoid in log compute, and in loss where a loss is given: each method's intervals
    # are floored by the in-sample spread of the one in its own space, and the one the
    # forecast is made in is reported.
    spaces = {"compute": _plain_sigmoid(np.log10(c), s, chance, ceiling)}
    if loss is not None:
        spaces["loss"] = _plain_sigmoid(columns["loss"], s, chance, ceiling)
    oth, oth_chance = _others(others, others_chance, n)
    data = ScoreData(c, s, columns.get("loss"), chance, ceiling, oth, oth_chance)
    floors = {name: fit.sigma for name, fit in spaces.items()}
    chosen, cal, tried = _choose(data, method, floors, calibrate_intervals, max_cuts)
    point = None
    if cal is not None:
        point = fit_method(chosen, data)
        cal = sampling_only(cal, data, point, questions)
    # Uncalibrated, a forecast with a loss is the two-step bootstrap, unless another method
    # was asked for by name (then the sigmoid in log compute is bootstrapped).
    if cal is None:
        in_loss = loss is not None and method in ("auto", "two-step")
    else:
        in_loss = _space(chosen) == "loss"
    fit = spaces["loss" if in_loss else "compute"]
    x, full, sigma = fit.x, fit.params, fit.sigma
    ends = sigmoid(np.array([x.min(), x.max()]), full[0], full[1], chance, ceiling)
    rise = abs(float(ends[1] - ends[0])) >= 0.1 * (ceiling - chance)
    front = _frontier(chosen, data) if cal is not None else ()
    if cal is not None and not bootstrap_calibrated:
        # Calibrated and no bootstrap asked for (backtests): skip the replicates.
        return CapabilityForecast(
            float(full[0]), float(full[1]), chance, ceiling, sigma, np.empty((0, 2)),
            np.empty(0), n, level, None, rise, chosen, point, cal, float(c.max()), tried, seed,
            front,
        )  # fmt: skip
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    loss_law = None
    if in_loss:
        loss_law = bootstrap_law(
            compute=c, loss=x, form="compute", n_boot=n_boot, seed=seed, level=level,
            names={"C": shown["compute"], "loss": shown["loss"]},
        )  # fmt: skip
    draws = _fit_sigmoid(x, s, counts, chance, ceiling, np.repeat(full[None], n_boot, axis=0))
    noise = rng.normal(0.0, sigma, size=n_boot)
    return CapabilityForecast(
        float(full[0]), float(full[1]), chance, ceiling, sigma, draws, noise, n, level, loss_law,
        rise, chosen if cal is not None else ("two-step" if in_loss else "sigmoid"),
        point, cal, float(c.max()), tried, seed, front,
    )  # fmt: skip


@dataclass(frozen=True)
class _PlainSigmoid:
    """The plain sigmoid of the scores in one space (log10 compute, or loss)."""

    x: FloatArray
    """The models' positions in that space."""
    params: FloatArray
    """``(x0, slope)``."""
    sigma: float
    """Residual standard deviation of the scores about it (``n - 2`` degrees of freedom)."""


def _plain_sigmoid(x: FloatArray, s: FloatArray, chance: float, ceiling: float) -> _PlainSigmoid:
    full = best_sigmoid(x, s, chance, ceiling)
    resid = s - sigmoid(x, full[0], full[1], chance, ceiling)
    return _PlainSigmoid(x, full, float(np.sqrt(np.sum(resid**2) / max(len(s) - 2, 1))))


def _frontier(method: str, data: ScoreData) -> tuple[Predictor, ...]:
    """The method refitted without each of the :data:`FRONTIER` largest models in turn."""
    largest = np.argsort(data.compute, kind="stable")[::-1][:FRONTIER]
    masks = []
    for i in largest:
        keep = np.ones(len(data.compute), dtype=bool)
        keep[i] = False
        masks.append(keep)
    return tuple(fit_methods(method, data, masks))


def _choose(
    data: ScoreData, method: str, floors: dict[str, float], enabled: bool, max_cuts: int
) -> tuple[str, Calibration | None, tuple[tuple[str, float], ...]]:
    """The method to use, its calibration (None if impossible) and every method's error."""
    has_loss, has_others = data.loss is not None, data.others is not None
    if method != "auto":
        if METHODS.get(method).needs_loss and not has_loss:
            raise UserError(UserProblem(f"method {method!r} needs a loss column (--loss)"))
        if METHODS.get(method).needs_others and not has_others:
            raise UserError(UserProblem(f"method {method!r} needs other benchmarks (--with)"))
        names = [method]
    else:
        names = available_methods(has_loss, has_others, baselines=False)
    if not enabled:
        return names[0], None, ()
    cals = {m: calibrate(m, data, sigma=floors[_space(m)], max_cuts=max_cuts) for m in names}
    ok = {m: c for m, c in cals.items() if c is not None}
    if not ok:
        return names[0], None, ()
    best = min(ok, key=lambda m: ok[m].mae)
    return best, ok[best], tuple((m, c.mae) for m, c in ok.items())


def _space(method: str) -> str:
    """Where ``method`` forecasts from: ``loss`` for methods that need one, else ``compute``."""
    return "loss" if METHODS.get(method).needs_loss else "compute"


DISTANCE_BINS = (0.0, 0.5, 1.0, 2.0, np.inf)
"""Extrapolation distances (orders of magnitude of compute) coverage is reported by."""

POSITION_BINS = (0.0, EDGE_OF_RISE, 1 - EDGE_OF_RISE, 1.0)
"""Where a point forecast lies on the rise (share of the way from chance to the ceiling, clipped
to [0, 1]) coverage is reported by: near the floor, rising, near the ceiling."""
POSITION_NAMES = ("near the floor", "rising", "near the ceiling")
"""The names of the bands of :data:`POSITION_BINS`, in order."""


def _others(
    others: ArrayLike | None, chance: ArrayLike | None, n: int
) -> tuple[FloatArray | None, FloatArray | None]:
    if others is None:
        return None, None
    o = np.asarray(others, dtype=float).reshape(n, -1)
    if not np.all(np.isfinite(o)):
        raise UserError(UserProblem("other benchmarks' scores must be finite numbers"))
    ch = np.zeros(o.shape[1]) if chance is None else np.asarray(chance, dtype=float).ravel()
    if ch.shape != (o.shape[1],):
        raise UserError(UserProblem("give one chance level per other benchmark"))
    return o, ch


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
    pit: float = 0.5
    """``P(score <= actual)`` under the forecast (uniform on [0, 1] when calibrated)."""
    probs: tuple[float, ...] = ()
    """``P(score >= line)`` for each of the backtest's lines."""
    record_used: bool | None = None
    """Whether the cut's interval came from its backtest record (False: set aside, the
    scatter within sampling noise; None: not calibrated)."""
    overdispersion: float | None = None
    """The cut's scatter over the binomial variance (None: no benchmark size, or not
    calibrated)."""

    @property
    def error(self) -> float:
        """Predicted minus actual."""
        return float(self.predicted.value) - self.actual

    @property
    def covered(self) -> bool:
        """Whether the interval held the actual score."""
        return bool(self.predicted.lo <= self.actual <= self.predicted.hi)

    @property
    def distance(self) -> float:
        """Orders of magnitude of compute past the largest model fitted."""
        return float(np.log10(self.compute / self.train_max_compute))


@dataclass(frozen=True)
class MethodScore:
    """One method's out-of-sample record in a backtest."""

    method: str
    """Method name."""
    mae: Estimate
    """Mean absolute error with a bootstrap interval over predictions."""
    coverage: Estimate
    """Share of intervals that held the truth, with a Wilson interval."""
    n: int
    """Predictions made."""


@dataclass(frozen=True)
class BandCoverage:
    """Coverage of the chosen method's intervals within a band of its predictions: of
    extrapolation distance (``by_distance``) or of position on the rise (``by_position``)."""

    lo: float
    """Band start: orders of magnitude of compute past the cut, or the share of the way from
    chance to the ceiling (the first band includes its start)."""
    hi: float
    """Band end (included)."""
    coverage: Estimate
    """Share covered, with a Wilson interval."""
    n: int
    """Predictions in the band."""


DistanceCoverage = BandCoverage
"""The name :class:`BandCoverage` had when it held distance bands only."""


@dataclass(frozen=True)
class BacktestResult:
    """Rolling-origin backtest: fit on models up to a compute, predict every larger one."""

    rows: tuple[BacktestRow, ...]
    """Every prediction made by the chosen method."""
    mae: Estimate
    """Mean absolute error with a bootstrap interval over rows."""
    coverage: Estimate
    """Share of intervals that held the truth, with a Wilson interval."""
    level: float
    """Nominal coverage of the forecast intervals."""
    method: str = "sigmoid"
    """The method chosen: smallest out-of-sample mean absolute error."""
    methods: tuple[MethodScore, ...] = ()
    """Every method tried, in the order tried."""
    by_distance: tuple[BandCoverage, ...] = ()
    """Coverage by extrapolation distance (bands of :data:`DISTANCE_BINS`)."""
    lines: tuple[float, ...] = ()
    """Score lines whose exceedance probabilities were scored."""
    brier: Estimate | None = None
    """Brier score of ``P(score >= line)`` over rows and lines, with a bootstrap interval."""
    by_position: tuple[BandCoverage, ...] = ()
    """Coverage by where the point forecast lies on the rise (bands of
    :data:`POSITION_BINS`): a pooled figure can hide intervals too narrow near the floor
    behind ones too wide on the rise and near the ceiling."""

    @property
    def n(self) -> int:
        """Predictions made."""
        return len(self.rows)

    def pit(self) -> FloatArray:
        """``(n,)`` probability integral transforms of the rows."""
        return np.array([r.pit for r in self.rows])

    def coverage_at(self, level: float) -> float:
        """Share of actual scores inside the central ``level`` predictive interval (from PIT)."""
        return float(np.mean(np.abs(self.pit() - 0.5) <= level / 2))


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
    methods: tuple[str, ...] | None = None,
    lines: tuple[float, ...] | None = None,
    max_cuts: int = 8,
    max_distance: float | None = None,
    calibrate_intervals: bool = True,
    others: ArrayLike | None = None,
    others_chance: ArrayLike | None = None,
    questions: int | None = None,
) -> BacktestResult:
    """Fit on the smaller models, predict the larger ones, at each cut of the compute ladder.

    Every method (all the data allow, or ``methods``) is backtested with calibrated intervals
    (each cut's forecast is calibrated on its own training models only); the method with the
    smallest mean absolute error among the non-baselines (``logistic-4p`` is a baseline: scored
    and reported, not chosen) is chosen and its rows reported, with coverage by distance and
    the Brier score of ``P(score >= line)``.

    Rows at the same compute go to the same side of each cut. Predictions made from one cut
    share a fit, so rows are not independent; the intervals on ``mae`` and ``coverage`` treat
    them as if they were and are therefore optimistic.

    Args:
        methods: method names to compare (default: every registered one the data allow).
        lines: score lines for the Brier score (default: 25%, 50% and 75% of the way from
            chance to ceiling).
        max_cuts: most cuts of the ladder (spread evenly); each cut is one fit per method.
        max_distance: predict only models at most this many orders of magnitude past the cut.
        calibrate_intervals: False backtests the bootstrap intervals instead.
        others, others_chance: other benchmarks on the same models (``capability-pc``).
        questions: the benchmark's number of questions (:func:`fit_capability`).
    """
    c = np.asarray(compute, dtype=float).ravel()
    s = np.asarray(score, dtype=float).ravel()
    lv = None if loss is None else np.asarray(loss, dtype=float).ravel()
    if lines is None:
        lines = tuple(chance + f * (ceiling - chance) for f in (0.25, 0.5, 0.75))
    cuts = ladder_cuts(c, min_train=min_train, max_cuts=max_cuts)
    if not len(cuts):
        raise UserError(
            UserProblem(
                f"too few compute levels to backtest (need {min_train} models below a larger one)"
            )
        )
    oth, oth_chance = _others(others, others_chance, len(c))
    names_tried = list(methods) if methods else available_methods(lv is not None, oth is not None)
    results: dict[str, list[BacktestRow]] = {m: [] for m in names_tried}
    for cut in cuts:
        train = c <= cut
        test = ~train if max_distance is None else ~train & (c <= cut * 10**max_distance)
        if not test.any() or np.ptp(s[train]) == 0:
            # nothing to predict, or nothing to fit (every smaller model scored the same: a
            # forecast from them is refused, so the backtest makes none)
            continue
        for m in names_tried:
            fc = fit_capability(
                c[train], s[train], chance=chance, ceiling=ceiling,
                loss=None if lv is None else lv[train], seed=seed, level=level,
                n_boot=n_boot, bootstrap_calibrated=False,
                names=names, method=m, calibrate_intervals=calibrate_intervals,
                others=None if oth is None else oth[train], others_chance=oth_chance,
                questions=questions,
            )  # fmt: skip
            ct = c[test]
            pred = fc.predict(ct)
            pit = fc.pit(ct, s[test])
            probs = np.stack([np.atleast_1d(fc.prob_exceeds(ct, ln)) for ln in lines], axis=1)
            cal = fc.calibration
            for j, i in enumerate(np.flatnonzero(test)):
                est = Estimate(
                    np.asarray(np.atleast_1d(pred.value)[j]), np.asarray(np.atleast_1d(pred.lo)[j]),
                    np.asarray(np.atleast_1d(pred.hi)[j]), level,
                )  # fmt: skip
                results[m].append(
                    BacktestRow(
                        float(cut),
                        float(c[i]),
                        float(s[i]),
                        est,
                        float(np.atleast_1d(pit)[j]),
                        tuple(float(p) for p in probs[j]),
                        None if cal is None else cal.record_used,
                        None if cal is None else cal.overdispersion,
                    )
                )
    if not any(results.values()):
        raise UserError(
            UserProblem(
                "no ladder cut has a model within --max-distance above it and scores that vary "
                "below it"
            )
        )
    scores = [_score(m, rows, level, seed) for m, rows in results.items() if rows]
    eligible = choosable([sc.method for sc in scores])
    chosen = min((sc for sc in scores if sc.method in eligible), key=lambda sc: float(sc.mae.value))
    rows = results[chosen.method]
    hits = [r.covered for r in rows]
    position = [rise_position(float(r.predicted.value), chance, ceiling) for r in rows]
    return BacktestResult(
        tuple(rows), chosen.mae, chosen.coverage, level, chosen.method, tuple(scores),
        _bands([r.distance for r in rows], hits, DISTANCE_BINS, level), tuple(lines),
        _brier(rows, lines, level, seed), _bands(position, hits, POSITION_BINS, level),
    )  # fmt: skip


def _score(method: str, rows: list[BacktestRow], level: float, seed: int) -> MethodScore:
    mae = _mean_with_interval(np.abs([r.error for r in rows]), level, seed)
    hits = sum(r.covered for r in rows)
    return MethodScore(method, mae, _wilson(hits, len(rows), level), len(rows))


def _bands(
    values: ArrayLike, hits: list[bool], bins: tuple[float, ...], level: float
) -> tuple[BandCoverage, ...]:
    """Coverage within each band ``(lo, hi]`` of ``bins`` (the first band ``[lo, hi]``)."""
    v = np.asarray(values, dtype=float)
    hit = np.asarray(hits, dtype=bool)
    out = []
    for lo, hi in itertools.pairwise(bins):
        sel = ((v >= lo) if lo == bins[0] else (v > lo)) & (v <= hi)
        if sel.any():
            k, n = int(hit[sel].sum()), int(sel.sum())
            out.append(BandCoverage(lo, hi, _wilson(k, n, level), n))
    return tuple(out)


def _brier(
    rows: list[BacktestRow], lines: tuple[float, ...], level: float, seed: int
) -> Estimate | None:
    if not lines:
        return None
    p = np.array([r.probs for r in rows])  # (n, lines)
    y = np.array([[r.actual >= ln for ln in lines] for r in rows], dtype=float)
    return _mean_with_interval(np.mean((p - y) ** 2, axis=1), level, seed)


def _mean_with_interval(values: FloatArray, level: float, seed: int) -> Estimate:
    # Mean over rows with a percentile bootstrap interval (1,000 resamples of the rows).
    rng = np.random.default_rng(seed)
    boot = values[rng.integers(0, len(values), size=(1000, len(values)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return Estimate(np.asarray(values.mean()), lo, hi, level)


def _wilson(k: int, n: int, level: float) -> Estimate:
    # Wilson (1927) score interval for a proportion; sound at small n, unlike the normal one.
    lo, hi = wilson_interval(k, n, level)
    return Estimate(np.asarray(k / n), np.asarray(lo), np.asarray(hi), level)
