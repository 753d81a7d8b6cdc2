"""Point-forecast methods for a benchmark score, registered by name like the law forms.

Each method fits the models it is given and returns a predictor of the score at new compute.
``backtest`` and ``fit_capability(method="auto")`` choose among them by out-of-sample error.

* ``sigmoid``: a sigmoid in ``log10 C`` between the known chance floor and ceiling (two free
  parameters; the slope is capped, see :func:`max_slope`).
* ``two-step``: compute -> loss -> score (Bhagia et al. 2024, "Establishing Task Scaling Laws
  via Compute-Efficient Model Ladders"): ``L(C) = E + A / C^alpha`` fitted by Approach 3, then
  the same sigmoid in predicted loss. Needs a loss (or bits-per-byte) per model.
* ``logistic-4p``: the plain four-parameter logistic in ``log10 C`` (floor and ceiling free),
  fitted by scipy least squares; the baseline the others must beat. It is never chosen
  automatically: with floor and ceiling free its backtest errors are heavy-tailed (mean
  absolute errors above 1 on some calibration ladders) and its intervals under-covered (0.80
  at nominal 90% on held-out four-benchmark ladders).
* ``capability-pc``: several benchmarks at once, after Ruan et al. (2024), "Observational
  Scaling Laws and the Predictability of Language Model Performance". Each benchmark's score
  is put on a logit scale above its chance level, the first principal component of the
  standardised logits is a one-dimensional capability measure, the measure is fitted as linear
  in ``log10 C``, and the target benchmark as a sigmoid of the measure. Needs other benchmarks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from safescale._registry import Registry
from safescale.scaling._laws import FloatArray

K = TypeVar("K")
V = TypeVar("V")

Predictor = Callable[[FloatArray], FloatArray]
"""Score at an array of compute values (FLOP)."""


@dataclass(frozen=True)
class ScoreData:
    """Models to fit a score forecast on."""

    compute: FloatArray
    """``(n,)`` training FLOP."""
    score: FloatArray
    """``(n,)`` benchmark scores."""
    loss: FloatArray | None
    """``(n,)`` loss or bits-per-byte per model, for the two-step method."""
    chance: float
    """Score of a model that knows nothing (floor)."""
    ceiling: float
    """Best possible score."""
    others: FloatArray | None = None
    """``(n, B)`` scores of other benchmarks on the same models (for ``capability-pc``)."""
    others_chance: FloatArray | None = None
    """``(B,)`` chance level of each other benchmark (ceilings are taken as 1)."""

    def subset(self, keep: NDArray[np.bool_]) -> ScoreData:
        """The models selected by the boolean mask ``keep``."""
        loss = None if self.loss is None else self.loss[keep]
        others = None if self.others is None else self.others[keep]
        return ScoreData(
            self.compute[keep], self.score[keep], loss, self.chance, self.ceiling, others,
            self.others_chance,
        )  # fmt: skip


@dataclass(frozen=True)
class ForecastMethod:
    """A named point-forecast method."""

    name: str
    """Registry name."""
    description: str
    """One line for help and reports."""
    needs_loss: bool
    """Whether the method needs a loss per model."""
    fit: Callable[[ScoreData], Predictor]
    """Fit on the data; return the predictor."""
    needs_others: bool = False
    """Whether the method needs other benchmarks' scores."""
    baseline: bool = False
    """A baseline to compare against: backtested and reported, never chosen by ``auto`` (nor
    as a backtest's chosen method) unless it is the only method asked for."""
    fit_many: Callable[[ScoreData, Sequence[Mask]], list[Predictor]] | None = None
    """Optional: ``[fit(data.subset(m)) for m in masks]``, computed together (faster)."""


METHODS: Registry[ForecastMethod] = Registry("forecaster")
"""Score forecasters by name; outside packages add more through ``safescale.forecaster``."""


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


def max_slope(x: FloatArray) -> float:
    """Steepest slope allowed: the rise from 12% to 88% of the way (``4 / k``) must take at
    least the median gap between distinct predictor values. Steeper curves cannot be told
    apart by the data and would let a fit put a cliff just beyond the largest model."""
    gaps = np.diff(np.unique(x))
    return 4.0 / float(np.median(gaps)) if len(gaps) else 1.0


def fit_sigmoid_batch(
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
    w = np.asarray(w, dtype=float)
    k_max = np.full(len(w), max_slope(x))
    return _levenberg_marquardt(
        np.broadcast_to(x, w.shape), np.broadcast_to(s, w.shape), w, floor, ceiling, start, k_max
    )


def _levenberg_marquardt(
    x: FloatArray,
    s: FloatArray,
    w: FloatArray,
    floor: float,
    ceiling: float,
    start: FloatArray,
    k_max: FloatArray,
) -> FloatArray:
    # The fits of fit_sigmoid_batch with a predictor, scores and slope cap per row (x, s, w:
    # (R, n); k_max: (R,)). Rows are independent: stacking fits of different data (padded
    # with zero weights) gives each the fit it would get alone.
    theta = np.array(start, dtype=float)
    span = ceiling - floor
    theta[:, 1] = np.clip(theta[:, 1], -k_max, k_max)

    def denominator(t: FloatArray, xa: FloatArray) -> FloatArray:
        # 1 + exp(-k (x - x0)): the curve is floor + span / denominator.
        return 1.0 + np.exp(-np.clip(t[:, 1:] * (xa - t[:, :1]), -700, 700))

    def cost(den: FloatArray, sa: FloatArray, wa: FloatArray) -> FloatArray:
        r = floor + span / den - sa
        return np.sum(wa * r * r, axis=1)

    den = denominator(theta, x)  # (R, n), kept for the accepted point of every row
    f = cost(den, s, w)
    mu = np.full(len(theta), 1e-3)
    active = np.arange(len(theta))
    for _ in range(200):
        # Only rows still moving are stepped: most starts settle in a few iterations.
        th, wa, xa, sa = theta[active], w[active], x[active], s[active]
        q = 1.0 / den[active]
        r = floor + span * q - sa  # (R, n)
        dq = span * q * (1.0 - q)
        j0, j1 = -th[:, 1:] * dq, (xa - th[:, :1]) * dq  # Jacobian columns
        wj0, wj1 = wa * j0, wa * j1
        h00, h01, h11 = np.sum(wj0 * j0, 1), np.sum(wj0 * j1, 1), np.sum(wj1 * j1, 1)
        g0, g1 = np.sum(wj0 * r, 1), np.sum(wj1 * r, 1)
        m = mu[active]
        a00 = h00 + (m * np.maximum(h00, 1e-300) + 1e-12)
        a11 = h11 + (m * np.maximum(h11, 1e-300) + 1e-12)
        # The damped 2x2 normal equations solved in closed form; a singular system gives a
        # zero step, which ends the row.
        det = a00 * a11 - h01 * h01
        good = det > 0
        det = np.where(good, det, 1.0)
        step = np.stack([(h01 * g1 - a11 * g0) / det, (h01 * g0 - a00 * g1) / det], axis=1)
        trial = th + np.where(good[:, None], step, 0.0)
        km = k_max[active]
        trial[:, 1] = np.clip(trial[:, 1], -km, km)
        den_t = denominator(trial, xa)
        ft = cost(den_t, sa, wa)
        fa = f[active]
        ok = np.isfinite(ft) & (ft <= fa)
        done = ok & (fa - ft <= 1e-12 * np.maximum(fa, 1e-300))
        acc = active[ok]
        theta[acc], f[acc], den[acc] = trial[ok], ft[ok], den_t[ok]
        mu[active] = np.where(ok, m / 5.0, m * 10.0)
        active = active[~(done | (mu[active] > 1e12))]
        if active.size == 0:
            break
    return theta


def sigmoid_starts(x: FloatArray) -> FloatArray:
    """``(72, 2)`` starting ``(x0, k)``: midpoints across and beyond the data, slopes of both
    signs and several steepnesses (the sigmoid is flat far from x0, so one start can stall)."""
    spread = max(float(np.ptp(x)), 1e-9)
    mids = np.linspace(x.min() - 0.5 * spread, x.max() + 0.5 * spread, 9)
    slopes = np.array([0.5, 2.0, 8.0, 32.0]) / spread
    return np.array([(m, sg * k) for m in mids for k in slopes for sg in (1.0, -1.0)])


class _Memo(Generic[K, V]):
    """A bounded, thread-safe map from content keys to fits, oldest use forgotten first."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self._items[key] = value
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def best_sigmoid(
    x: FloatArray, s: FloatArray, floor: float, ceiling: float, keep: int = 16
) -> FloatArray:
    """Least-squares ``(x0, k)`` from the ``keep`` best starts of :func:`sigmoid_starts`
    (ranked by their cost before any step), best end point kept."""
    return best_sigmoids([(x, s)], floor, ceiling, keep)[0]


_SIGMOIDS: _Memo[tuple[bytes, bytes, float, float, int], FloatArray] = _Memo(1024)


def best_sigmoids(
    problems: Sequence[tuple[FloatArray, FloatArray]], floor: float, ceiling: float, keep: int = 16
) -> list[FloatArray]:
    """:func:`best_sigmoid` for each ``(x, s)`` of ``problems``, all fitted in one batch.

    Remembered by content (the most recent 1,024): a backtest fits the same models again
    (every method's full fit, nested cuts) and gets the same answer."""
    keys = [
        (
            np.ascontiguousarray(x, dtype=float).tobytes(),
            np.ascontiguousarray(s, dtype=float).tobytes(),
            float(floor),
            float(ceiling),
            keep,
        )
        for x, s in problems
    ]
    found = {k: v for k in dict.fromkeys(keys) if (v := _SIGMOIDS.get(k)) is not None}
    todo = [k for k in dict.fromkeys(keys) if k not in found]
    if todo:
        data = [(np.frombuffer(k[0]), np.frombuffer(k[1])) for k in todo]
        for key, fit in zip(todo, _fit_sigmoids(data, floor, ceiling, keep), strict=True):
            found[key] = fit
            _SIGMOIDS.put(key, fit)
    return [found[k].copy() for k in keys]


def _fit_sigmoids(
    problems: list[tuple[FloatArray, FloatArray]], floor: float, ceiling: float, keep: int
) -> list[FloatArray]:
    # Each problem's own starts and slope cap, every start of every problem one row of a
    # single Levenberg-Marquardt batch (shorter problems padded with zero weights).
    width = max(len(x) for x, _ in problems)
    rows_x, rows_s, rows_w, rows_start, rows_k, owner = [], [], [], [], [], []
    for i, (x, s) in enumerate(problems):
        starts = sigmoid_starts(x)
        k_max = max_slope(x)
        clipped = np.c_[starts[:, 0], np.clip(starts[:, 1], -k_max, k_max)]
        sig = sigmoid(x[None], clipped[:, :1], clipped[:, 1:], floor, ceiling)
        cost0 = np.sum((sig - s) ** 2, 1)
        picked = starts[np.argsort(cost0, kind="stable")[:keep]]
        pad = width - len(x)
        rows_x.append(np.tile(np.r_[x, np.zeros(pad)], (len(picked), 1)))
        rows_s.append(np.tile(np.r_[s, np.zeros(pad)], (len(picked), 1)))
        rows_w.append(np.tile(np.r_[np.ones(len(x)), np.zeros(pad)], (len(picked), 1)))
        rows_start.append(picked)
        rows_k.append(np.full(len(picked), k_max))
        owner.append(np.full(len(picked), i))
    xs, ss, ws = np.concatenate(rows_x), np.concatenate(rows_s), np.concatenate(rows_w)
    fits = _levenberg_marquardt(
        xs, ss, ws, floor, ceiling, np.concatenate(rows_start), np.concatenate(rows_k)
    )
    r = sigmoid(xs, fits[:, :1], fits[:, 1:], floor, ceiling) - ss
    cost = np.sum(ws * r**2, axis=1)
    who = np.concatenate(owner)
    out = []
    for i in range(len(problems)):
        idx = np.flatnonzero(who == i)
        out.append(np.asarray(fits[idx[int(np.argmin(cost[idx]))]]))
    return out


Mask = NDArray[np.bool_]
"""Which models of a :class:`ScoreData` a fit uses."""


def _everything(data: ScoreData) -> list[Mask]:
    return [np.ones(len(data.compute), dtype=bool)]


def _fit_sigmoid_method(data: ScoreData) -> Predictor:
    return _fit_sigmoid_many(data, _everything(data))[0]


def _fit_sigmoid_many(data: ScoreData, masks: Sequence[Mask]) -> list[Predictor]:
    x = np.log10(data.compute)
    fits = best_sigmoids([(x[m], data.score[m]) for m in masks], data.chance, data.ceiling)
    return [_log_compute_sigmoid(float(x0), float(k), data.chance, data.ceiling) for x0, k in fits]


def _log_compute_sigmoid(x0: float, k: float, floor: float, ceiling: float) -> Predictor:
    return lambda c: sigmoid(np.log10(c), x0, k, floor, ceiling)


_LAWS_FITTED: _Memo[tuple[bytes, bytes], FloatArray] = _Memo(256)


def _compute_laws(compute: FloatArray, loss: FloatArray, masks: Sequence[Mask]) -> list[FloatArray]:
    # The first step depends only on (compute, loss): backtests of several benchmarks on one
    # ladder, and nested cuts, refit the same subsets; fit each once (the most recent 256
    # kept). Each subset gets its own fit: searching the subsets together as weightings of
    # all the models ended 1% away in 10x-extrapolated loss on some synthetic ladders.
    from safescale.scaling._fit import fit_law

    c = np.ascontiguousarray(compute, dtype=float)
    y = np.ascontiguousarray(loss, dtype=float)
    out = []
    for m in masks:
        key = (c[m].tobytes(), y[m].tobytes())
        theta = _LAWS_FITTED.get(key)
        if theta is None:
            theta = np.asarray(fit_law(compute=c[m], loss=y[m], form="compute").theta_, dtype=float)
            _LAWS_FITTED.put(key, theta)
        out.append(theta)
    return out


def _fit_two_step(data: ScoreData) -> Predictor:
    return _fit_two_step_many(data, _everything(data))[0]


def _fit_two_step_many(data: ScoreData, masks: Sequence[Mask]) -> list[Predictor]:
    assert data.loss is not None
    thetas = _compute_laws(data.compute, data.loss, masks)
    fits = best_sigmoids([(data.loss[m], data.score[m]) for m in masks], data.chance, data.ceiling)
    return [
        _two_step_predictor(theta, float(x0), float(k), data.chance, data.ceiling)
        for theta, (x0, k) in zip(thetas, fits, strict=True)
    ]


def _two_step_predictor(
    theta: FloatArray, x0: float, k: float, floor: float, ceiling: float
) -> Predictor:
    from safescale.scaling._laws import LAWS

    form = LAWS.get("compute")

    def predict(c: FloatArray) -> FloatArray:
        cc = np.asarray(c, dtype=float)
        loss = np.exp(form.log_predict(theta, np.log(cc).reshape(-1, 1))).reshape(cc.shape)
        return sigmoid(loss, x0, k, floor, ceiling)

    return predict


def _fit_logistic_4p(data: ScoreData) -> Predictor:
    from scipy.optimize import least_squares  # here: the registry loads without scipy

    x, s = np.log10(data.compute), data.score
    spread = max(float(np.ptp(x)), 1e-9)

    def resid(p: FloatArray) -> FloatArray:
        return np.asarray(sigmoid(x, p[0], p[1], p[2], p[3]) - s)

    def jac(p: FloatArray) -> FloatArray:
        q = 1.0 / (1.0 + np.exp(-np.clip(p[1] * (x - p[0]), -700, 700)))
        dq = (p[3] - p[2]) * q * (1 - q)
        return np.column_stack([-p[1] * dq, (x - p[0]) * dq, 1 - q, q])

    start = np.array([float(np.median(x)), 4.0 / spread, float(s.min()), float(s.max())])
    if start[3] - start[2] < 1e-6:
        start[3] = start[2] + 1e-3
    res = least_squares(resid, start, jac=jac, method="trf", max_nfev=400)
    x0, k, lo, hi = res.x
    return lambda c: sigmoid(np.log10(c), x0, k, lo, hi)


def _logit_scores(scores: FloatArray, chance: FloatArray, ceiling: FloatArray) -> FloatArray:
    # Normalised above chance, clipped off 0 and 1 so the logit stays finite.
    p = (scores - chance) / (ceiling - chance)
    p = np.clip(p, 0.01, 0.99)
    return np.asarray(np.log(p / (1 - p)))


def _fit_capability_pc(data: ScoreData) -> Predictor:
    return _fit_capability_pc_many(data, _everything(data))[0]


def _fit_capability_pc_many(data: ScoreData, masks: Sequence[Mask]) -> list[Predictor]:
    measures = [_capability_measure(data.subset(m)) for m in masks]
    fits = best_sigmoids(
        [(cap, data.score[m]) for (cap, _, _), m in zip(measures, masks, strict=True)],
        data.chance,
        data.ceiling,
    )
    return [
        _measure_sigmoid(slope, icept, float(x0), float(k), data.chance, data.ceiling)
        for (_, slope, icept), (x0, k) in zip(measures, fits, strict=True)
    ]


def _capability_measure(data: ScoreData) -> tuple[FloatArray, float, float]:
    # Per model, the first principal component of the standardised logits; and its linear
    # fit in log10 compute, (measure, slope, intercept).
    assert data.others is not None and data.others_chance is not None
    scores = np.column_stack([data.score, data.others])
    chance = np.r_[data.chance, data.others_chance]
    ceiling = np.r_[data.ceiling, np.ones(len(data.others_chance))]
    z = _logit_scores(scores, chance, ceiling)
    mu, sd = z.mean(axis=0), np.maximum(z.std(axis=0), 1e-6)
    zs = (z - mu) / sd
    # First principal component, signed so that capability grows with the mean logit.
    _, _, vt = np.linalg.svd(zs, full_matrices=False)
    v = vt[0] * (1.0 if vt[0].sum() >= 0 else -1.0)
    cap = zs @ v
    slope, icept = np.polyfit(np.log10(data.compute), cap, 1)
    return np.asarray(cap), float(slope), float(icept)


def _measure_sigmoid(
    slope: float, icept: float, x0: float, k: float, floor: float, ceiling: float
) -> Predictor:
    return lambda c: sigmoid(icept + slope * np.log10(c), x0, k, floor, ceiling)


for _m in (
    ForecastMethod(
        "sigmoid",
        "sigmoid in log10 compute between chance and ceiling",
        False,
        _fit_sigmoid_method,
        fit_many=_fit_sigmoid_many,
    ),
    ForecastMethod(
        "two-step",
        "compute -> loss (E + A/C^alpha) -> sigmoid in loss (OLMo ladder)",
        True,
        _fit_two_step,
        fit_many=_fit_two_step_many,
    ),
    ForecastMethod(
        "capability-pc",
        "sigmoid of a 1-D capability measure (first principal component of all benchmarks' "
        "logits, linear in log10 compute; Ruan et al. 2024)",
        False,
        _fit_capability_pc,
        needs_others=True,
        fit_many=_fit_capability_pc_many,
    ),
    ForecastMethod(
        "logistic-4p",
        "plain 4-parameter logistic in log10 compute (scipy; baseline, never chosen by auto)",
        False,
        _fit_logistic_4p,
        baseline=True,
    ),
):
    METHODS.add(_m.name, _m)


_FITTED: _Memo[tuple[object, ...], Predictor] = _Memo(512)


def fit_method(name: str, data: ScoreData) -> Predictor:
    """``METHODS.get(name).fit(data)``, remembered by the data's content (see
    :func:`fit_methods`)."""
    return fit_methods(name, data, [np.ones(len(data.compute), dtype=bool)])[0]


def fit_methods(name: str, data: ScoreData, masks: Sequence[Mask]) -> list[Predictor]:
    """``[METHODS.get(name).fit(data.subset(m)) for m in masks]``, remembered by content.

    A backtest refits the same models many times: the calibration of every cut's forecast
    cuts the ladder again, and the frontier jackknife's fit without the largest model is the
    calibration's last cut. The fits are deterministic, so each distinct set is fitted once
    (the most recent 512 kept); sets not fitted yet are fitted together where the method can
    (``fit_many``)."""
    subsets = [data.subset(m) for m in masks]
    keys = [(name, data.chance, data.ceiling, *(_bytes(a) for a in _arrays(d))) for d in subsets]
    found = {k: v for k in dict.fromkeys(keys) if (v := _FITTED.get(k)) is not None}
    todo = {k: m for k, m in zip(keys, masks, strict=True) if k not in found}
    if todo:
        method = METHODS.get(name)
        if method.fit_many is not None:
            fitted = method.fit_many(data, list(todo.values()))
        else:
            fitted = [method.fit(data.subset(m)) for m in todo.values()]
        for k, predictor in zip(todo, fitted, strict=True):
            found[k] = predictor
            _FITTED.put(k, predictor)
    return [found[k] for k in keys]


def _arrays(data: ScoreData) -> tuple[FloatArray | None, ...]:
    return (data.compute, data.score, data.loss, data.others, data.others_chance)


def _bytes(a: FloatArray | None) -> tuple[tuple[int, ...], bytes] | None:
    if a is None:
        return None
    c = np.ascontiguousarray(a, dtype=float)
    return c.shape, c.tobytes()


def forget_fits() -> None:
    """Forget every remembered fit (method, sigmoid and compute-law fits), so the next ones
    are really fitted."""
    for memo in (_FITTED, _SIGMOIDS, _LAWS_FITTED):
        memo.clear()


def available_methods(
    has_loss: bool, has_others: bool = False, *, baselines: bool = True
) -> list[str]:
    """Registered methods the data can use (``baselines=False``: leave baselines out)."""
    out = []
    for name in METHODS.names():
        m = METHODS.get(name)
        if not baselines and m.baseline:
            continue
        if (has_loss or not m.needs_loss) and (has_others or not m.needs_others):
            out.append(name)
    return out


def choosable(names: list[str]) -> list[str]:
    """The methods among ``names`` that may be chosen: the non-baselines, or all of them if
    only baselines were given."""
    keep = [n for n in names if not METHODS.get(n).baseline]
    return keep or list(names)
