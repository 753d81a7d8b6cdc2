"""Calibration as a test: forecasts on ladders drawn from a known generative process.

The ladders are drawn from ``HELD_OUT_SEEDS``, disjoint from ``CALIBRATION_SEEDS`` (the seeds
the error model was chosen on): nothing in the methods was chosen on these, though their
results were seen before the last change of the error model (docs/scaling.md says which).
"""

import numpy as np
import pytest

from safescale.scaling import (
    CALIBRATION_SEEDS,
    HELD_OUT_SEEDS,
    LARGE_HELD_OUT_SEEDS,
)
from safescale.scaling._calibration import (
    Calibration,
    FutureErrors,
    intra_cut_correlation,
    reach_weights,
    weighted_growth,
)
from tests.scaling._ladders import BASELINE, ladder_backtest, per_method, pooled


def test_held_out_seeds_are_disjoint_from_calibration_seeds_and_each_other() -> None:
    assert not set(HELD_OUT_SEEDS) & set(CALIBRATION_SEEDS)
    assert not set(LARGE_HELD_OUT_SEEDS) & (set(CALIBRATION_SEEDS) | set(HELD_OUT_SEEDS))
    # seeds 1016-1031 were measured once and reported; the large set was fixed after them
    assert min(LARGE_HELD_OUT_SEEDS) > 1031 and len(LARGE_HELD_OUT_SEEDS) == 64


def test_degrees_of_freedom_follow_the_within_cut_correlation() -> None:
    # Six cuts of eight errors: errors that move as one per cut give k - 1 degrees of freedom,
    # independent ones nearly m - 1; the correlation is estimated, not assumed.
    rng = np.random.default_rng(0)
    cut = np.repeat(np.arange(6), 8).astype(float)
    shared = np.repeat(rng.normal(size=6), 8)
    assert intra_cut_correlation(shared + 1e-6 * rng.normal(size=48), cut) > 0.99
    rho = [intra_cut_correlation(rng.normal(size=48), cut) for _ in range(200)]
    assert np.mean(rho) < 0.1
    d = np.tile(np.linspace(0.1, 1.0, 8), 6)

    def cal(r: float) -> Calibration:
        return Calibration("sigmoid", d, shared, 6, 0.05, 0.1, None, r)

    assert cal(1.0).dof == 5 and cal(0.0).dof == 47
    assert 5 < cal(0.3).dof < 47
    assert cal(0.3).n_effective == pytest.approx(48 / (1 + 7 * 0.3))


def test_a_cut_that_reaches_a_hundredth_of_a_decade_counts_little_in_the_growth() -> None:
    # Two cuts reach a decade (growth about 0.1 per decade); the last reaches 0.01 decades,
    # where an error of 0.05 is a growth of 5 per decade. Each cut is weighted by the share of
    # the variance at its farthest error that the growth explains, at the plain root mean
    # square of the growths (2.9 here, inflated by the last cut itself, which therefore still
    # gets a quarter of a cut's weight).
    d = np.array([0.2, 0.5, 1.0, 0.3, 1.0, 0.01])
    r = np.array([0.05, -0.06, 0.11, 0.04, -0.1, 0.05])
    fe = FutureErrors(d, r, np.array([0.0, 0, 0, 1, 1, 2]), 3)
    per_cut = np.array([0.1, 0.1, 5.0])
    rms = weighted_growth(per_cut, np.ones(3))
    assert rms == pytest.approx(np.sqrt(np.mean(per_cut**2)))
    weight = reach_weights(fe, 0.05, rms)
    u2 = (rms * 0.01 / 0.05) ** 2
    assert weight[2] == pytest.approx(u2 / (1 + u2)) and weight[2] < 0.3
    assert weight[0] == weight[1] > 0.99
    assert weighted_growth(per_cut, weight) < 0.6 * rms
    # a cut without errors has no weight; with no growth at all every weight is zero
    empty = FutureErrors(d[:3], r[:3], np.zeros(3), 2)
    assert reach_weights(empty, 0.05, 0.1)[1] == 0.0
    assert weighted_growth(np.zeros(3), reach_weights(fe, 0.05, 0.0)) == 0.0


CASES = pytest.mark.parametrize(
    "multi", [False, True], ids=["one-benchmark+loss", "four-benchmarks"]
)


@pytest.mark.slow
@CASES
def test_ninety_percent_intervals_are_not_too_narrow_within_a_decade(multi: bool) -> None:
    # Sixteen ladders per case: the predictions from one ladder move together, so fewer
    # ladders leave the pooled coverage too noisy to test. Pooled, in each half-decade band and
    # for every method but the baseline, the intervals cover at least 0.85: they are not too
    # narrow. They are too wide on these clean ladders (pooled 0.977 and 0.960; the test below
    # records it), and the chosen method beats the plain logistic on mean absolute error.
    p = pooled(HELD_OUT_SEEDS, multi)
    hit, dist = p.covered, p.distance
    assert p.coverage >= 0.85, (p.coverage, len(hit))
    for band in (dist <= 0.5, dist > 0.5):
        assert np.mean(hit[band]) >= 0.85, (np.mean(hit[band]), int(band.sum()))
    assert np.mean(p.chosen_error) < np.mean(p.baseline_mae)
    # Every method offered for the case, each on its own, except the plain logistic (the
    # baseline to beat, whose floor and ceiling are free; docs/scaling.md gives its figure).
    for method, cov in per_method(HELD_OUT_SEEDS, multi).items():
        if method != BASELINE:
            assert cov >= 0.85, (method, cov)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="on the held-out ladders (scores binomial, as real accuracies are) the intervals "
    "over-cover: pooled 0.977 and 0.960, the near half-decade 0.987 and 0.981 (one benchmark "
    "+ loss, four benchmarks); see docs/scaling.md",
)
@CASES
def test_intervals_are_not_too_wide_pooled_in_any_band_or_method(multi: bool) -> None:
    p = pooled(HELD_OUT_SEEDS, multi)
    hit, dist = p.covered, p.distance
    assert p.coverage <= 0.95, (p.coverage, len(hit))
    for band in (dist <= 0.5, dist > 0.5):
        assert np.mean(hit[band]) <= 0.95, (np.mean(hit[band]), int(band.sum()))
    assert all(cov <= 0.95 for m, cov in per_method(HELD_OUT_SEEDS, multi).items() if m != BASELINE)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="by position on the rise the held-out intervals are too wide where the score rises "
    "(0.994 one benchmark + loss) and near the ceiling (1.000 in both cases), and near the "
    "floor with four benchmarks (0.988, since the floor widening); see docs/scaling.md",
)
@CASES
def test_intervals_are_calibrated_at_every_position_on_the_rise(multi: bool) -> None:
    hits: dict[float, list[float]] = {}
    for seed in HELD_OUT_SEEDS:
        for b in ladder_backtest(seed, multi).by_position:
            k, n = hits.setdefault(b.lo, [0.0, 0.0])
            hits[b.lo] = [k + float(b.coverage.value) * b.n, n + b.n]
    assert set(hits) == {0.0, 0.1, 0.9}
    for lo, (k, n) in hits.items():
        assert 0.85 <= k / n <= 0.95, (lo, k / n, n)


@pytest.mark.slow
@CASES
def test_with_the_benchmark_size_intervals_are_not_too_narrow_pooled(multi: bool) -> None:
    # The same held-out ladders, the forecasts told each benchmark's size (1,111 questions):
    # where a ladder's scatter is within sampling noise its record is set aside, and the
    # interval is the in-sample spread plus the fit's jackknife. Pooled (the issue's
    # criterion), and for every method but the baseline, at least 0.85 in both cases, and the
    # chosen method beats the plain logistic. By distance band these are not tested: the
    # four-benchmark case's far half-decade covers 0.833 on these seeds (0.855-0.869 on the
    # 64-ladder calibration sets, 0.866 on seeds 1016-1031, 0.859 on the 64 larger held-out
    # ladders of test_held_out_large.py); docs/scaling.md has the figures.
    p = pooled(HELD_OUT_SEEDS, multi, sized=True)
    assert p.coverage >= 0.85, (p.coverage, len(p.covered))
    assert np.mean(p.chosen_error) < np.mean(p.baseline_mae)
    for method, cov in per_method(HELD_OUT_SEEDS, multi, sized=True).items():
        if method != BASELINE:
            assert cov >= 0.85, (method, cov)


@pytest.mark.slow
@pytest.mark.parametrize(
    "multi",
    [
        pytest.param(
            False,
            id="one-benchmark+loss",
            marks=pytest.mark.xfail(
                strict=True,
                reason="with the size given, one benchmark + loss over-covers on these 16 "
                "seeds: pooled 0.966 (0.932 on 192 calibration ladders, 0.901 on seeds "
                "1016-1031, 0.929 on the 64 larger held-out ladders, which are tested in "
                "test_held_out_large.py); see docs/scaling.md",
            ),
        ),
        pytest.param(True, id="four-benchmarks"),
    ],
)
def test_with_the_benchmark_size_intervals_are_not_too_wide_pooled(multi: bool) -> None:
    p = pooled(HELD_OUT_SEEDS, multi, sized=True)
    assert p.coverage <= 0.95, (p.coverage, len(p.covered))
    sizes = per_method(HELD_OUT_SEEDS, multi, sized=True)
    assert all(cov <= 0.95 for m, cov in sizes.items() if m != BASELINE)
