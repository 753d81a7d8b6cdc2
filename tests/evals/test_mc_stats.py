"""Pure scoring rules and intervals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safescale.evals import mc_predict, wilson_interval


def test_acc_norm_and_bytes_follow_lm_eval() -> None:
    # ll / chars: -6/3 = -2 vs -4/1 = -4 -> choice 0; raw ll picks choice 1.
    pred = mc_predict([-6.0, -4.0], ["abc", "d"])
    assert (pred.acc, pred.acc_norm, pred.acc_bytes) == (1, 0, 0)
    # "é" is 1 character but 2 bytes: -3/1 < -2.5/1 by chars, but -3/2 > -2.5/1 by bytes.
    pred = mc_predict([-3.0, -2.5], ["é", "x"])
    assert (pred.acc, pred.acc_norm, pred.acc_bytes) == (1, 1, 0)


def test_ties_go_to_the_first_choice_like_numpy() -> None:
    assert mc_predict([-1.0, -1.0, -2.0], ["a", "b", "c"]).acc == 0


@given(st.lists(st.floats(-50, 0), min_size=2, max_size=6))
def test_argmax_matches_numpy(lls: list[float]) -> None:
    import numpy as np

    choices = ["x" * (i + 1) for i in range(len(lls))]
    pred = mc_predict(lls, choices)
    assert pred.acc == int(np.argmax(lls))
    assert pred.acc_norm == int(np.argmax(np.array(lls) / np.array([len(c) for c in choices])))


def test_wilson_interval_known_values() -> None:
    # Reference values from the closed form (Wilson 1927), e.g. statsmodels proportion_confint.
    lo, hi = wilson_interval(7, 10)
    assert lo == pytest.approx(0.39677, abs=1e-4)
    assert hi == pytest.approx(0.89220, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == pytest.approx(1.0)
