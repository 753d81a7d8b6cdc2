import numpy as np
import pytest

from safescale._errors import UserError
from safescale.scaling import backtest, fit_capability
from safescale.scaling._methods import max_slope, sigmoid


def _ladder(seed: int, noise: float = 0.015, n: int = 12):
    rng = np.random.default_rng(seed)
    c = np.geomspace(1e19, 3e22, n)
    loss = (1.8 + 2000 / c**0.14) * np.exp(rng.normal(0, 0.003, n))
    score = sigmoid(np.log10(c), 21.3, 2.2, 0.25, 1.0) + rng.normal(0, noise, n)
    return c, loss, score


def test_recovers_the_curve_and_predicts_ahead() -> None:
    c, _, s = _ladder(0, noise=0.005)
    fc = fit_capability(c, s, chance=0.25, n_boot=300, seed=0)
    assert fc.x0 == pytest.approx(21.3, abs=0.05)
    assert fc.slope == pytest.approx(2.2, rel=0.1)
    truth = sigmoid(np.log10(1.2e23), 21.3, 2.2, 0.25, 1.0)
    p = fc.predict(1.2e23)
    assert p.lo <= truth <= p.hi
    # Calibrated on the ladder's own backtests: a decade past the data, still narrow.
    assert p.hi - p.lo < 0.15


def test_probability_of_crossing_is_monotone() -> None:
    c, _, s = _ladder(1)
    fc = fit_capability(c, s, chance=0.25, n_boot=300, seed=0)
    probs = [float(fc.prob_exceeds(1e22, line)) for line in (0.3, 0.6, 0.9, 1.2)]
    assert probs == sorted(probs, reverse=True)
    assert probs[0] > 0.99 and probs[-1] < 0.01
    ahead = fc.prob_exceeds(np.array([1e21, 4e21, 1.6e22]), 0.8)
    assert np.all(np.diff(ahead) >= 0)


def test_two_step_method_goes_through_loss() -> None:
    rng = np.random.default_rng(2)
    c = np.geomspace(1e19, 3e22, 10)
    loss = (1.8 + 2000 / c**0.14) * np.exp(rng.normal(0, 0.003, 10))
    score = sigmoid(loss, 3.7, -5.0, 0.25, 1.0) + rng.normal(0, 0.01, 10)
    fc = fit_capability(c, score, chance=0.25, loss=loss, n_boot=300, seed=0, method="two-step")
    assert fc.against == "loss" and fc.loss_law is not None
    assert fc.slope < 0
    at = 1.2e23
    truth = sigmoid(1.8 + 2000 / at**0.14, 3.7, -5.0, 0.25, 1.0)
    p = fc.predict(at)
    assert p.lo <= truth <= p.hi
    # The sigmoid method, given the same loss, forecasts (and reports) from log compute.
    fc = fit_capability(c, score, chance=0.25, loss=loss, n_boot=50, seed=0, method="sigmoid")
    assert fc.against == "compute" and fc.loss_law is None and fc.slope > 0
    # Too few models to calibrate: the bootstrap fallback is two-step unless another method
    # was named.
    for method, against, used in (("auto", "loss", "two-step"), ("sigmoid", "compute", "sigmoid")):
        fc = fit_capability(c[:5], score[:5], chance=0.25, loss=loss[:5], n_boot=50, method=method)
        assert not fc.calibrated and (fc.against, fc.method) == (against, used)


def test_flat_data_cannot_put_a_cliff_beyond_the_models() -> None:
    rng = np.random.default_rng(3)
    c = np.geomspace(1e19, 1e22, 8)
    s = 0.25 + rng.normal(0, 0.01, 8)
    fc = fit_capability(c, s, chance=0.25, n_boot=200, seed=0)
    assert abs(fc.slope) <= max_slope(np.log10(c)) + 1e-12
    # The data say nothing about where a rise would start, and the forecast must say so.
    assert not fc.rise_observed
    assert fit_capability(*_ladder(0)[::2], chance=0.25, n_boot=50).rise_observed


def test_backtest_reports_errors_and_coverage() -> None:
    c, _, s = _ladder(4, n=10)
    bt = backtest(c, s, chance=0.25, n_boot=200, seed=0)
    assert bt.n == sum(len(c) - k for k in range(4, len(c)))
    assert all(r.compute > r.train_max_compute for r in bt.rows)
    assert 0 <= bt.coverage.lo <= bt.coverage.value <= bt.coverage.hi <= 1
    assert bt.mae.lo <= bt.mae.value <= bt.mae.hi
    # The last cut predicts the largest model from all the others: it should be close.
    last = bt.rows[-1]
    assert abs(last.error) < 0.1


def test_backtest_coverage_by_band_counts_every_prediction_once() -> None:
    # The ladder spans the whole rise, so its predictions fall near the floor, on the rise and
    # near the ceiling; each band's count and coverage are recomputed from the rows.
    rng = np.random.default_rng(5)
    c = np.geomspace(1e19, 3e22, 14)
    s = sigmoid(np.log10(c), 21.9, 2.2, 0.25, 1.0) + rng.normal(0, 0.015, 14)
    bt = backtest(c, s, chance=0.25, n_boot=50, seed=0, min_train=5)
    pos = np.clip((np.array([float(r.predicted.value) for r in bt.rows]) - 0.25) / 0.75, 0, 1)
    dist = np.array([r.distance for r in bt.rows])
    hit = np.array([r.covered for r in bt.rows])
    for bands, v in ((bt.by_position, pos), (bt.by_distance, dist)):
        assert sum(b.n for b in bands) == bt.n
        for k, b in enumerate(bands):
            sel = ((v >= b.lo) if k == 0 else (v > b.lo)) & (v <= b.hi)
            assert b.n == sel.sum() and float(b.coverage.value) == pytest.approx(hit[sel].mean())
            assert b.coverage.lo <= b.coverage.value <= b.coverage.hi
    assert [b.lo for b in bt.by_position] == [0.0, 0.1, 0.9]
    # The calibration plot's third panel draws one bar per band, at its coverage.
    from safescale.scaling import plot_calibration

    fig = plot_calibration(bt)
    bars = [p.get_height() for p in fig.axes[2].patches]
    bands = [*bt.by_distance, *bt.by_position]
    assert bars == pytest.approx([float(b.coverage.value) for b in bands])
    labels = [t.get_text() for t in fig.axes[2].get_xticklabels()]
    assert labels[-3:] == ["near the floor", "rising", "near the ceiling"]


def test_bad_inputs_name_the_column() -> None:
    c, _, s = _ladder(5)
    with pytest.raises(UserError, match="chance"):
        fit_capability(c, s, chance=1.0, ceiling=1.0)
    c_bad = c.copy()
    c_bad[3] = -1
    with pytest.raises(UserError, match=r"flops: row 4"):
        fit_capability(c_bad, s, names={"compute": "flops"})
    with pytest.raises(UserError, match="too few"):
        fit_capability(c[:2], s[:2])


def test_calibrated_interval_grows_with_distance_and_says_how_it_was_made() -> None:
    from safescale.scaling import synthetic_ladder

    lad = synthetic_ladder(3, n_models=12)
    fc = fit_capability(
        lad.compute, lad.scores[:, 0], chance=float(lad.chance[0]), loss=lad.loss, n_boot=50
    )
    assert fc.calibrated and fc.calibration is not None
    assert fc.method == min(fc.method_errors, key=lambda me: me[1])[0]
    top = lad.compute.max()
    # The error scale grows with extrapolation distance on this ladder (before the band is
    # clipped to the metric's range near the ceiling).
    cal = fc.calibration
    assert cal.growth > 0
    assert cal.scale(0.0) < cal.scale(1.0) < cal.scale(2.0)
    assert float(fc.distance(top * 10)) == pytest.approx(1.0)
    # The exceedance probability and the interval come from one distribution.
    p = fc.predict(top * 10, level=0.8)
    assert float(fc.prob_exceeds(top * 10, float(p.hi))) == pytest.approx(0.1, abs=1e-6) or (
        float(p.hi) >= fc.ceiling
    )


def test_short_ladder_falls_back_to_the_bootstrap() -> None:
    c, _, s = _ladder(6, n=5)
    fc = fit_capability(c, s, chance=0.25, n_boot=100, seed=0)
    assert not fc.calibrated and fc.method == "sigmoid"
    with pytest.raises(UserError, match="needs a loss"):
        fit_capability(c, s, chance=0.25, method="two-step")


def test_auto_never_chooses_the_baseline() -> None:
    from safescale.scaling import synthetic_ladder

    lad = synthetic_ladder(7, n_models=12)
    fc = fit_capability(lad.compute, lad.scores[:, 0], chance=float(lad.chance[0]), n_boot=20)
    assert fc.method == "sigmoid" and "logistic-4p" not in dict(fc.method_errors)
    bt = backtest(lad.compute, lad.scores[:, 0], chance=float(lad.chance[0]), n_boot=20)
    assert bt.method == "sigmoid" and "logistic-4p" in {m.method for m in bt.methods}
    # Asked for alone, the baseline is what is used.
    only = backtest(
        lad.compute, lad.scores[:, 0], chance=float(lad.chance[0]), methods=("logistic-4p",)
    )
    assert only.method == "logistic-4p"


def test_frontier_jackknife_widens_a_forecast_that_hinges_on_its_largest_model() -> None:
    # Flat at chance, then the largest model alone shows the rise: without it the curve stays
    # flat, with it the curve climbs, so the forecast a decade on rests on one model.
    c = np.geomspace(1e19, 1e22, 10)
    s = np.full(10, 0.25) + np.array(
        [0.004, -0.003, 0.002, -0.004, 0.003, 0, -0.002, 0.001, 0.0, 0.0]
    )
    s[-1] = 0.45
    fc = fit_capability(c, s, chance=0.25, method="sigmoid", n_boot=20)
    assert fc.calibrated and fc.calibration is not None and len(fc.frontier) == 3
    ahead = c.max() * np.array([1.0, 3.0, 10.0])
    d, v = fc.distance(ahead), fc.jackknife_variance(ahead)
    record = fc.calibration.scale(d)
    assert np.allclose(fc.scale(ahead) ** 2, np.maximum(record**2, v))
    assert v[-1] > record[-1] ** 2  # the fit's own instability exceeds the ladder's record
    assert float(fc.predict(ahead[-1], level=0.9).lo) < 0.45 < float(fc.predict(ahead[-1]).hi)


def test_synthetic_scores_are_proportions_of_the_questions() -> None:
    # A benchmark score is a share of questions answered right: never outside [0, 1], a
    # multiple of 1/questions, and exact at a floor of zero or at the ceiling.
    from safescale.scaling import synthetic_ladder

    for seed in range(40):
        s = synthetic_ladder(seed, n_models=14, n_benchmarks=4).scores
        assert s.min() >= 0.0 and s.max() <= 1.0
        assert np.allclose(s * 1111, np.round(s * 1111), atol=1e-9)
    few = synthetic_ladder(0, n_models=14, questions=10).scores
    assert np.allclose(few * 10, np.round(few * 10), atol=1e-9)
    with pytest.raises(ValueError, match="questions"):
        synthetic_ladder(0, questions=0)


def test_backtest_skips_cuts_whose_smaller_models_all_scored_the_same() -> None:
    # The first seven models score exactly zero (a free-form benchmark before its rise): a cut
    # among them has nothing to fit and is skipped; later cuts are backtested as usual.
    c = np.geomspace(1e19, 1e22, 16)
    rng = np.random.default_rng(3)
    p = 1 / (1 + np.exp(-3.0 * (np.log10(c) - 21.3)))
    s = np.where(np.arange(16) < 7, 0.0, rng.binomial(400, p) / 400)
    bt = backtest(c, s, chance=0.0, min_train=4, n_boot=20, level=0.9, max_cuts=12)
    assert bt.n > 0
    assert all(np.ptp(s[c <= r.train_max_compute]) > 0 for r in bt.rows)
    assert min(r.train_max_compute for r in bt.rows) == c[7]
    with pytest.raises(UserError, match="scores that vary"):
        backtest(c, np.zeros(16), chance=0.0, min_train=4, n_boot=20)


def test_a_forecast_near_the_floor_has_its_scale_widened() -> None:
    # On a rising ladder, the forecast at its smallest model lies near the floor and its
    # predictive scale is FLOOR_WIDENING times the calibration's; past its largest model (on
    # the rise) it is not widened.
    from scipy.stats import t as student_t

    from safescale.scaling import FLOOR_WIDENING

    c = np.geomspace(1e19, 1e22, 14)
    p = 0.25 + 0.75 / (1 + np.exp(-2.0 * (np.log10(c) - 21.0)))
    s = np.random.default_rng(5).binomial(1111, p) / 1111
    fc = fit_capability(c, s, chance=0.25, n_boot=20)
    assert fc.calibration is not None
    at = np.array([c[0], c[-1] * 3])
    assert fc.position(float(at[0])) <= 0.1 < fc.position(float(at[1]))
    base = fc.calibration.scale(fc.distance(at), fc.jackknife_variance(at))
    assert np.allclose(fc.scale(at) / base, [FLOOR_WIDENING, 1.0])
    # the interval and the exceedance probability come from the widened distribution
    est = fc.predict(at, level=0.9)
    t95 = student_t.ppf(0.95, fc.calibration.dof)
    assert np.allclose(est.hi, np.minimum(np.asarray(est.value) + t95 * fc.scale(at), 1.0))
    assert np.allclose(fc.prob_exceeds(at[:1], float(est.hi[0])), 0.05, atol=1e-6)
