"""Calibration as a test: forecasts on ladders drawn from a known generative process."""

import numpy as np
import pytest

from safescale.scaling import backtest, synthetic_ladder

SEEDS = range(0, 8)


@pytest.mark.slow
def test_ninety_percent_intervals_cover_ninety_percent_within_a_decade() -> None:
    # Eight ladders of 14 models over three decades (scores a noisy sigmoid of a noisy loss
    # law, at different stages of their rise). Each is backtested: fit on the models up to a
    # cut, calibrate on those alone, predict every model up to 10x the cut's compute.
    covered: list[bool] = []
    chosen_err: list[float] = []
    logistic_err: list[float] = []
    for seed in SEEDS:
        lad = synthetic_ladder(seed, n_models=14)
        bt = backtest(
            lad.compute, lad.scores[:, 0], chance=float(lad.chance[0]), loss=lad.loss,
            min_train=6, n_boot=20, level=0.9, max_cuts=6, max_distance=1.0,
        )  # fmt: skip
        covered += [r.covered for r in bt.rows]
        chosen_err += [abs(r.error) for r in bt.rows]
        (plain,) = [m for m in bt.methods if m.method == "logistic-4p"]
        logistic_err += [float(plain.mae.value)] * bt.n
        assert all(0 < r.distance <= 1.0 + 1e-9 for r in bt.rows)
    coverage = float(np.mean(covered))
    assert 0.85 <= coverage <= 0.95, (coverage, len(covered))
    assert np.mean(chosen_err) < np.mean(logistic_err)
