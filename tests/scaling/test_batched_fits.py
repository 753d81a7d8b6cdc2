"""Refits fitted together (a calibration's cuts, the frontier jackknife) match lone fits."""

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.optimize import least_squares

from safescale.scaling import synthetic_ladder
from safescale.scaling._methods import (
    METHODS,
    ScoreData,
    best_sigmoids,
    fit_methods,
    forget_fits,
    sigmoid,
)


@pytest.fixture(autouse=True)
def _forget_fits() -> Iterator[None]:
    # Every fit below must really be fitted, not recalled from an earlier test.
    forget_fits()
    yield
    forget_fits()


def _subsets(compute: np.ndarray) -> list[np.ndarray]:
    # The ladder's cuts (as a calibration makes them) and the frontier jackknife's subsets.
    cuts = [compute <= cut for cut in np.sort(compute)[5:-1]]
    largest = np.argsort(compute)[::-1][:3]
    return cuts + [np.arange(len(compute)) != i for i in largest]


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_fits_made_together_match_fits_made_one_at_a_time(seed: int) -> None:
    # Tolerance: 1e-6 in score (a thousandth of a percentage point) at the largest model and
    # at 10x its compute, for every method that fits subsets together.
    lad = synthetic_ladder(seed, n_models=14, n_benchmarks=4)
    data = ScoreData(
        lad.compute, lad.scores[:, 0], lad.loss, float(lad.chance[0]), 1.0,
        lad.scores[:, 1:], lad.chance[1:],
    )  # fmt: skip
    masks = _subsets(lad.compute)
    ahead = lad.compute.max() * np.array([1.0, 10.0])
    for name in ("sigmoid", "two-step", "capability-pc"):
        assert METHODS.get(name).fit_many is not None
        together = fit_methods(name, data, masks)
        for mask, predictor in zip(masks, together, strict=True):
            forget_fits()
            alone = METHODS.get(name).fit(data.subset(mask))
            assert np.max(np.abs(predictor(ahead) - alone(ahead))) <= 1e-6, name


def test_batched_sigmoid_fits_reach_an_optimum() -> None:
    # scipy's least squares, started from each batched fit, finds nothing lower (1e-9
    # relative): every subset's fit is a minimum, not a stall.
    lad = synthetic_ladder(104, n_models=20, n_benchmarks=1)
    x, s, floor = np.log10(lad.compute), lad.scores[:, 0], float(lad.chance[0])
    masks = _subsets(lad.compute)
    fits = best_sigmoids([(x[m], s[m]) for m in masks], floor, 1.0)
    for m, theta in zip(masks, fits, strict=True):

        def resid(p: np.ndarray, m: np.ndarray = m) -> np.ndarray:
            return np.asarray(sigmoid(x[m], p[0], p[1], floor, 1.0) - s[m])

        ours = float(np.sum(resid(theta) ** 2))
        polished = least_squares(resid, theta, method="lm", xtol=1e-15, ftol=1e-15)
        assert float(np.sum(polished.fun**2)) >= ours * (1 - 1e-9)
