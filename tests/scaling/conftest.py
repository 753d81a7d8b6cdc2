"""Shared data for the scaling tests: synthetic runs from known laws."""

from __future__ import annotations

import numpy as np
import pytest

from safescale.scaling import Runs, synthetic_runs


def with_outliers(runs: Runs, k: int, seed: int) -> Runs:
    """Multiply the loss of ``k`` random runs by a large log-normal factor."""
    rng = np.random.default_rng(seed)
    loss = runs.loss.copy()
    bad = rng.choice(len(loss), k, replace=False)
    loss[bad] *= np.exp(rng.normal(0, 0.2, k))
    return Runs(runs.params, runs.tokens, loss)


SMALL_TRUTH = {"E": 2.0, "A": 1500.0, "B": 90.0, "alpha": 0.5, "beta": 0.2}


def small_runs(seed: int = 4, noise: float = 0.01) -> Runs:
    """56 iso-FLOP runs from a law unlike Chinchilla's."""
    budgets = np.geomspace(1e17, 1e20, 7)
    return synthetic_runs(SMALL_TRUTH, budgets=budgets, per_budget=8, seed=seed, noise=noise)


@pytest.fixture(scope="session")
def chinchilla_runs() -> Runs:
    """252 iso-FLOP runs from the paper's law with 1% noise."""
    return synthetic_runs(seed=1)
