"""Calibration as a test, on 64 held-out ladders with the benchmark's size given.

``LARGE_HELD_OUT_SEEDS`` (1032-1095) and what is asked of them here were fixed on 2026-12-05
before any of these ladders was drawn: the 16 ladders of ``HELD_OUT_SEEDS`` had been seen too
often to stay a test of choices made since, and on the calibration seeds a 16-ladder set's
pooled coverage scatters with a standard deviation of 0.02-0.035 about its mean (too much to
test a band 0.1 wide). The error model was chosen on calibration seeds (and the lab's
seeds 0-4) alone; these ladders were measured once after each of the two choices made since
they were fixed (0.919 and 0.877, then 0.929 and 0.889; docs/scaling.md).

The criterion is the issue's: the forecasts told each benchmark's size (1,111 questions), the
nominal 90% intervals of the chosen method, pooled over forecasts up to one decade past each
cut, cover between 0.85 and 0.95, in both cases (one benchmark with its loss; four
benchmarks), and the chosen method beats the plain logistic on mean absolute error. Every
method but the baseline, on its own, covers at least 0.85 (not too narrow).
"""

import numpy as np
import pytest

from safescale.scaling import LARGE_HELD_OUT_SEEDS
from tests.scaling._ladders import BASELINE, per_method, pooled

CASES = pytest.mark.parametrize(
    "multi", [False, True], ids=["one-benchmark+loss", "four-benchmarks"]
)


@pytest.mark.slow
@CASES
def test_ninety_percent_intervals_cover_between_85_and_95_percent_pooled(multi: bool) -> None:
    p = pooled(LARGE_HELD_OUT_SEEDS, multi, sized=True)
    assert len(p.covered) > 1000  # about 19 predictions a ladder
    assert 0.85 <= p.coverage <= 0.95, (p.coverage, len(p.covered))
    assert np.mean(p.chosen_error) < np.mean(p.baseline_mae)


@pytest.mark.slow
@CASES
def test_no_method_is_too_narrow_on_its_own(multi: bool) -> None:
    covers = per_method(LARGE_HELD_OUT_SEEDS, multi, sized=True)
    assert BASELINE in covers and len(covers) >= 3
    for method, cov in covers.items():
        if method != BASELINE:
            assert cov >= 0.85, (method, cov)
