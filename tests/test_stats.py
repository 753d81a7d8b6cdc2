"""The one Wilson interval every room uses."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from safescale._stats import wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 43), (43, 43), (27, 48), (1, 3), (500, 1000)])
def test_matches_scipys_wilson_interval(k, n):
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)


def test_empty_sample_is_uninformative_and_bounds_stay_in_range():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for n in (1, 2, 10):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n, 0.9)
            assert 0.0 <= lo <= k / n <= hi <= 1.0 and not math.isnan(lo)
