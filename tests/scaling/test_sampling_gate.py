"""The record set aside where a ladder's scatter is within sampling noise (``questions``)."""

import json

import numpy as np
import pytest
from scipy.stats import t as student_t

from safescale._errors import UserError
from safescale.cli._app import main
from safescale.scaling import fit_capability, synthetic_ladder
from safescale.scaling._calibration import overdispersion

QUESTIONS = 1111


def _rising(seed: int = 200, k: int = 10, extra_noise: float = 0.0):
    # Calibration seed 200: at chance for six models, then rising; the first k models.
    lad = synthetic_ladder(seed, n_models=14, questions=QUESTIONS)
    o = np.argsort(lad.compute)
    s = lad.scores[o, 0][:k]
    if extra_noise:
        s = np.clip(s + np.random.default_rng(1).normal(0, extra_noise, k), 0, 1)
    return lad.compute[o][:k], s, lad.loss[o][:k], float(lad.chance[0])


def test_overdispersion_is_about_one_for_binomial_scores_and_grows_with_extra_scatter() -> None:
    rng = np.random.default_rng(0)
    p = np.linspace(0.3, 0.9, 2000)
    s = rng.binomial(QUESTIONS, p) / QUESTIONS
    sigma = float(np.std(s - p))
    assert overdispersion(s, sigma, QUESTIONS) == pytest.approx(1.0, abs=0.1)
    wide = s + rng.normal(0, 0.05, len(s))
    assert overdispersion(wide, float(np.std(wide - p)), QUESTIONS) > 10


def test_a_clean_rising_ladder_sets_its_record_aside_and_the_interval_narrows() -> None:
    c, s, loss, chance = _rising()
    plain = fit_capability(c, s, chance=chance, loss=loss, n_boot=20, level=0.9)
    sized = fit_capability(c, s, chance=chance, loss=loss, n_boot=20, level=0.9, questions=1111)
    assert plain.calibration is not None and sized.calibration is not None
    assert plain.calibration.record_used and plain.calibration.overdispersion is None
    cal = sized.calibration
    assert not cal.record_used and cal.overdispersion < 2 and cal.growth == 0.0
    # s0: the spread about the chosen method's own forecast from compute, n - 2 dof
    resid = s - sized.predict(c).value
    assert cal.s0 == pytest.approx(float(np.sqrt(np.sum(resid**2) / (len(s) - 2))))
    at = np.array([2e21, 1e22])
    # The scale is the in-sample spread and the fit's own jackknife, added.
    expected = np.sqrt(cal.s0**2 + sized.jackknife_variance(at))
    assert np.allclose(sized.scale(at), expected * sized.widening(at))
    # Its t has the spread's n - 2 = 8 degrees of freedom, not the record's (set aside).
    assert cal.dof == 8.0 and plain.calibration.dof != 8.0
    assert cal.as_json()["dof"] == 8.0
    est = sized.predict(at)
    assert np.allclose(est.hi, np.minimum(est.value + sized.scale(at) * student_t.ppf(0.95, 8), 1))
    wide, narrow = plain.predict(at), sized.predict(at)
    assert np.all(narrow.hi - narrow.lo < wide.hi - wide.lo)
    # The four larger models of the ladder (0.854-0.975) lie within the narrower intervals.
    lad = synthetic_ladder(200, n_models=14, questions=QUESTIONS)
    o = np.argsort(lad.compute)
    est = sized.predict(lad.compute[o][10:])
    actual = lad.scores[o, 0][10:]
    assert np.all((est.lo <= actual) & (actual <= est.hi))


def test_a_ladder_whose_loss_does_not_fall_with_compute_keeps_the_record() -> None:
    # Scores a clean function of loss (within sampling about the sigmoid in loss), but the
    # models' compute shuffled within groups of four, as on a grid of sizes and token budgets
    # where a larger model trained on fewer tokens has the higher loss: the two-step forecast
    # goes through the law from compute to loss, and about it the scores scatter far beyond
    # sampling. The record stays (the scatter in loss alone would have set it aside).
    lad = synthetic_ladder(200, n_models=14, questions=QUESTIONS)
    o = np.argsort(lad.compute)
    c, s, loss = lad.compute[o][:12], lad.scores[o, 0][:12], lad.loss[o][:12]
    grid = c.copy()
    for i in range(0, 12, 4):
        grid[i], grid[i + 3] = c[i + 3], c[i]
    chance = float(lad.chance[0])
    fc = fit_capability(grid, s, chance=chance, loss=loss, n_boot=20, level=0.9, questions=1111)
    assert fc.method == "two-step" and fc.calibration is not None
    assert fc.calibration.record_used and fc.calibration.overdispersion > 10
    in_loss = fit_capability(c, s, chance=chance, loss=loss, n_boot=20, level=0.9, questions=1111)
    assert in_loss.calibration is not None and in_loss.calibration.overdispersion < 1.8


def test_scatter_beyond_sampling_keeps_the_record() -> None:
    c, s, loss, chance = _rising(extra_noise=0.04)
    fc = fit_capability(c, s, chance=chance, loss=loss, n_boot=20, level=0.9, questions=1111)
    assert fc.calibration is not None
    assert fc.calibration.record_used and fc.calibration.overdispersion > 3


def test_a_ladder_still_at_its_floor_keeps_the_record() -> None:
    # The first six models have not left chance (0.5): within sampling noise, but where a
    # rise would begin nothing in the data says, so the record (and the floor widening) stay.
    c, s, loss, chance = _rising(k=6)
    assert (s.max() - chance) / (1 - chance) < 0.1
    fc = fit_capability(c, s, chance=chance, loss=loss, n_boot=20, level=0.9, questions=1111)
    assert fc.calibration is not None and fc.calibration.record_used


@pytest.mark.parametrize(
    ("questions", "scores_scale", "says"),
    [
        (0, 1.0, "0 is not from 1 to 1,000,000,000"),
        (10**10, 1.0, "is not from 1 to"),
        (True, 1.0, "must be a whole number of questions"),
        (1.5, 1.0, "must be a whole number of questions"),
        (100, 100.0, "scores must be proportions in [0, 1]"),
    ],
)
def test_bad_sizes_are_refused(questions, scores_scale, says) -> None:
    c, s, loss, chance = _rising()
    with pytest.raises(UserError, match=None) as exc:
        fit_capability(c, s * scores_scale, chance=chance, loss=loss, n_boot=5, questions=questions)
    assert says in str(exc.value)


def _csv(tmp_path):
    c, s, loss, _ = _rising()
    path = tmp_path / "ladder.csv"
    path.write_text(
        "C,score,loss\n"
        + "".join(f"{a:.6g},{b:.6f},{d:.6f}\n" for a, b, d in zip(c, s, loss, strict=True))
    )
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["scaling", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_takes_the_size_and_says_what_it_did(tmp_path, capsys) -> None:
    path = _csv(tmp_path)
    base = ["forecast", str(path), "--compute", "C", "--score", "score", "--loss", "loss"]
    base += ["--chance", "0.5", "--at", "1e22", "--bootstrap", "50"]
    code, out, _ = _run(capsys, *base, "--questions", "1111")
    assert code == 0, out
    assert "record set aside" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    code, out, _ = _run(capsys, *base, "--questions", "1111", "--json")
    cal = json.loads(out)["calibration"]
    assert cal["record_used"] is False and cal["overdispersion"] < 2
    code, out, err = _run(capsys, *base, "--questions", "0")
    assert code == 2 and "--questions" in err and not out
    assert len(err.strip().splitlines()) == 1


def test_backtest_takes_the_size(tmp_path, capsys) -> None:
    path = _csv(tmp_path)
    args = ["backtest", str(path), "--compute", "C", "--score", "score", "--chance", "0.5"]
    args += ["--bootstrap", "20", "--json"]
    plain = json.loads(_run(capsys, *args)[1])
    sized = json.loads(_run(capsys, *args, "--questions", "1111")[1])
    width = [
        np.mean([r["interval"][1] - r["interval"][0] for r in x["rows"]]) for x in (plain, sized)
    ]
    assert width[1] < width[0]
    assert not any(r["record_used"] is False for r in plain["rows"])
    assert any(r["record_used"] is False for r in sized["rows"])
    assert all(r["overdispersion"] is None for r in plain["rows"])
    assert all(
        (r["overdispersion"] > 0) if r["record_used"] is not None else r["overdispersion"] is None
        for r in sized["rows"]
    )


def test_scores_exactly_on_a_curve_still_get_an_interval() -> None:
    # No scatter at all (phi = 0): the record is set aside and the scale floored, never zero.
    from safescale.scaling._capability import sigmoid

    c = np.geomspace(1e19, 1e21, 9)
    s = sigmoid(np.log10(c), 20.0, 2.0, 0.25, 1.0)
    fc = fit_capability(c, s, chance=0.25, n_boot=10, level=0.9, questions=1000)
    assert fc.calibration is not None and not fc.calibration.record_used
    est = fc.predict(3e21)
    assert np.isfinite([est.value, est.lo, est.hi]).all() and est.lo < est.hi
    assert 0.0 <= float(fc.prob_exceeds(3e21, 0.9)) <= 1.0
