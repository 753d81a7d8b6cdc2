"""Backtests of synthetic ladders as the calibration tests run them, and their pooled figures."""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from safescale.scaling import BacktestResult, Ladder, backtest, synthetic_ladder

QUESTIONS = 1111
"""Each synthetic benchmark's number of questions (``synthetic_ladder``'s default); given to
the forecasts in the ``sized`` case, as a user gives a benchmark's size (a ladder whose scatter
is within sampling noise then sets its record aside)."""

BASELINE = "logistic-4p"
"""The plain four-parameter logistic: the method to beat, never chosen."""


SETTINGS: dict[str, Any] = {
    "min_train": 6, "n_boot": 20, "level": 0.9, "max_cuts": 6, "max_distance": 1.0,
}  # fmt: skip
"""How the calibration tests backtest a ladder: cuts with at least 6 models below, at most six
cuts, predictions up to one decade past the cut, nominal 90% intervals (the study scripts
use the same)."""


def ladder(seed: int, multi: bool) -> Ladder:
    """14 models over three decades (scores a noisy sigmoid of a noisy loss law, at different
    stages of their rise); four benchmarks with ``multi``, else one."""
    return synthetic_ladder(seed, n_models=14, n_benchmarks=4 if multi else 1, questions=QUESTIONS)


def run_backtest(seed: int, multi: bool, sized: bool = False) -> BacktestResult:
    """:func:`backtest_ladder` of the ladder of ``seed``."""
    return backtest_ladder(ladder(seed, multi), sized)


def backtest_ladder(lad: Ladder, sized: bool = False) -> BacktestResult:
    """Fit on the models up to a cut, calibrate on those alone, predict every model up to 10x
    the cut's compute. A ladder of several benchmarks predicts the first from compute and the
    others (no loss); one of a single benchmark, from compute and loss. With ``sized``, the
    forecasts are told the benchmark's size, as a user can tell them."""
    extra = (
        {"others": lad.scores[:, 1:], "others_chance": lad.chance[1:]}
        if lad.scores.shape[1] > 1
        else {"loss": lad.loss}
    )
    return backtest(
        lad.compute, lad.scores[:, 0], chance=float(lad.chance[0]),
        questions=QUESTIONS if sized else None, **SETTINGS, **extra,
    )  # fmt: skip


ladder_backtest = cache(run_backtest)
""":func:`run_backtest`, each ladder once per process (the tests' error model never changes
within a run; the study scripts, which swap in candidates, call :func:`backtest_ladder`)."""


@dataclass(frozen=True)
class Pooled:
    """The chosen method's predictions over a set of ladders."""

    covered: np.ndarray
    """``(m,)`` whether each nominal 90% interval held its model's score."""
    distance: np.ndarray
    """``(m,)`` orders of magnitude past the cut."""
    chosen_error: np.ndarray
    """``(m,)`` absolute errors of the chosen method."""
    baseline_mae: np.ndarray
    """``(m,)`` the baseline's mean absolute error on each prediction's ladder."""

    @property
    def coverage(self) -> float:
        return float(np.mean(self.covered))


def pooled(seeds: Iterable[int], multi: bool, sized: bool = False) -> Pooled:
    """The chosen method's predictions on ``seeds``' ladders, pooled (never the baseline)."""
    covered: list[bool] = []
    err: list[float] = []
    base: list[float] = []
    dist: list[float] = []
    for seed in seeds:
        bt = ladder_backtest(seed, multi, sized)
        assert bt.method != BASELINE
        assert all(0 < r.distance <= 1.0 + 1e-9 for r in bt.rows)
        covered += [r.covered for r in bt.rows]
        err += [abs(r.error) for r in bt.rows]
        dist += [r.distance for r in bt.rows]
        (plain,) = [m for m in bt.methods if m.method == BASELINE]
        base += [float(plain.mae.value)] * bt.n
    return Pooled(np.array(covered), np.array(dist), np.array(err), np.array(base))


def per_method(seeds: Iterable[int], multi: bool, sized: bool = False) -> dict[str, float]:
    """Each method's coverage on its own over ``seeds``' ladders, pooled."""
    kn: dict[str, list[float]] = {}
    for seed in seeds:
        for m in ladder_backtest(seed, multi, sized).methods:
            kn.setdefault(m.method, [0.0, 0.0])
            kn[m.method][0] += float(m.coverage.value) * m.n
            kn[m.method][1] += m.n
    return {name: k / n for name, (k, n) in kn.items()}
