import numpy as np
import pytest

from safescale._errors import UserError
from safescale.scaling import LAWS, LawForm, Term


def test_builtin_forms_are_registered() -> None:
    assert {"chinchilla", "compute", "kaplan-n", "kaplan-d", "kaplan-c"} <= set(LAWS.names())
    with pytest.raises(UserError, match="choose one of"):
        LAWS.get("nope")


def test_chinchilla_grid_is_the_papers() -> None:
    form = LAWS.get("chinchilla")
    grid = form.grid()
    assert form.param_names == ("E", "A", "B", "alpha", "beta")
    assert grid.shape == (4500, 5)
    assert sorted(np.unique(grid[:, 0])) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert sorted(np.unique(grid[:, 1])) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert sorted(np.unique(grid[:, 4])) == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_log_predict_is_the_law() -> None:
    form = LAWS.get("chinchilla")
    p = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    theta = form.from_natural(p)
    n, d = np.array([1e8, 7e10]), np.array([2e9, 1.4e12])
    expected = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    got = np.exp(form.log_predict(theta, np.log(np.c_[n, d])))
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    assert form.to_natural(theta) == pytest.approx(p, rel=1e-13)


def test_single_variable_forms() -> None:
    law = LAWS.get("compute")
    assert law.variables == ("C",) and law.param_names == ("E", "A", "alpha")
    assert LAWS.get("kaplan-n").grid().shape == (30, 2)


def test_bad_term_is_refused() -> None:
    with pytest.raises(ValueError, match="both exponent and variable"):
        LawForm("bad", "", (Term("A", "alpha"),))
