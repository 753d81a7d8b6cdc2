import numpy as np

from safescale.scaling import select_law


def _broken_runs():
    # Loss bends: a steep term dominates small runs, a shallow one the large runs. The simple
    # compute law fitted below the bend extrapolates the steep slope and misses low.
    rng = np.random.default_rng(0)
    c = np.geomspace(1e17, 1e21, 24)

    def truth(x):
        return 1.6 + 3000 / x**0.17 + 8 / x**0.03

    return c, truth(c) * np.exp(rng.normal(0, 0.003, len(c))), truth


def test_leave_the_largest_out_scores_every_form_and_picks_the_best() -> None:
    c, loss, _ = _broken_runs()
    sel = select_law(("compute", "compute-broken", "kaplan-c"), loss, compute=c)
    assert sel.n_holdout == 5
    errors = {s.form: s.holdout_error for s in sel.scores}
    assert sel.chosen == min(errors, key=errors.__getitem__)
    # Kaplan's form has no irreducible loss: on a bending curve it extrapolates worst.
    assert errors["kaplan-c"] > 5 * errors[sel.chosen]
    assert abs(sum(s.weight for s in sel.scores) - 1) < 1e-12


def test_model_form_mixture_carries_form_uncertainty() -> None:
    c, loss, truth = _broken_runs()
    sel = select_law(("compute", "compute-broken"), loss, compute=c, n_boot=100, seed=0)
    at = np.array([1e23])
    mix = sel.predict_interval(at)
    (simple,) = [b for b in sel.boots if b.estimate.form == "compute"]
    alone = simple.predict_interval(at)
    # The simple form's own band misses the truth two decades out; the mixture holds it.
    assert not (alone.lo[0] <= truth(at)[0] <= alone.hi[0])
    assert mix.lo[0] <= truth(at)[0] <= mix.hi[0]
