import numpy as np

from safescale.scaling import LAWS
from safescale.scaling._fit import grid_start_values
from safescale.scaling._objective import Problem, evaluate, values
from safescale.scaling._reference import reference_objective


def _problem(runs) -> Problem:
    form = LAWS.get("chinchilla")
    return Problem(form.design(np.log(np.c_[runs.params, runs.tokens])), np.log(runs.loss))


def test_batched_objective_matches_reference(chinchilla_runs) -> None:
    p = _problem(chinchilla_runs)
    rng = np.random.default_rng(0)
    theta = LAWS.get("chinchilla").grid()[rng.choice(4500, 40, replace=False)]
    theta = theta + rng.normal(0, 0.1, theta.shape)
    ev = evaluate(p, theta, hessian=False)
    for s in range(len(theta)):
        f, g = reference_objective(theta[s], p.g, p.y)
        assert abs(ev.value[s] - f) <= 1e-12 * abs(f)
        np.testing.assert_allclose(ev.grad[s], g, rtol=1e-9, atol=1e-12 * np.abs(g).max())


def test_hessian_matches_finite_differences_of_the_gradient(chinchilla_runs) -> None:
    p = _problem(chinchilla_runs)
    theta = LAWS.get("chinchilla").from_natural(
        {"E": 1.6, "A": 300.0, "B": 500.0, "alpha": 0.33, "beta": 0.29}
    )
    ev = evaluate(p, theta[None])
    assert ev.hess is not None
    eps = 1e-7
    numeric = np.empty((5, 5))
    for j in range(5):
        e = np.zeros(5)
        e[j] = eps
        numeric[:, j] = (
            reference_objective(theta + e, p.g, p.y)[1]
            - reference_objective(theta - e, p.g, p.y)[1]
        ) / (2 * eps)
    # No residual sits within eps of the Huber kink here, so the Hessian is smooth.
    np.testing.assert_allclose(ev.hess[0], numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


def test_weights_equal_repeated_rows(chinchilla_runs) -> None:
    p = _problem(chinchilla_runs)
    rng = np.random.default_rng(1)
    counts = rng.multinomial(len(p.y), np.full(len(p.y), 1 / len(p.y)))
    rows = np.repeat(np.arange(len(p.y)), counts)
    repeated = Problem(p.g[rows], p.y[rows])
    theta = LAWS.get("chinchilla").grid()[:7] + 0.3
    np.testing.assert_allclose(
        values(p, theta, counts.astype(float)), values(repeated, theta), rtol=1e-12
    )


def test_grid_scores_match_direct_evaluation(chinchilla_runs) -> None:
    form = LAWS.get("chinchilla")
    p = _problem(chinchilla_runs)
    np.testing.assert_allclose(grid_start_values(form, p), values(p, form.grid()), rtol=1e-10)


def test_irls_matrix_is_positive_semidefinite(chinchilla_runs) -> None:
    p = _problem(chinchilla_runs)
    ev = evaluate(p, LAWS.get("chinchilla").grid()[::97], irls=True)
    assert ev.hess is not None
    assert np.linalg.eigvalsh(ev.hess).min() >= -1e-10 * np.abs(ev.hess).max()
