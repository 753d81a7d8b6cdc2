"""Warnings for implausible fits and far extrapolation, through the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safescale.scaling import exponent_warnings, extrapolation_warnings


@pytest.fixture
def steep_csv(tmp_path: Path) -> Path:
    """Runs that follow a law with alpha = beta = 3, far steeper than any language model's."""
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e7, 4), np.geomspace(1e6, 1e8, 4)))
    loss = 1.5 + 1e15 / n**3 + 1e18 / d**3
    path = tmp_path / "steep.csv"
    rows = "".join(f"{a:g},{b:g},{c:.8g}\n" for a, b, c in zip(n, d, loss, strict=True))
    path.write_text("N,D,loss\n" + rows)
    return path


def test_implausible_exponents_and_far_budgets_warn(steep_csv: Path, run_cli) -> None:
    args = ["scaling", "fit", str(steep_csv), "--loss", "loss", "--params", "N", "--tokens", "D"]
    code, out, err = run_cli(*args)
    assert code == 0
    assert "warning: alpha = 3 is implausible" in err and "warning: beta = 3" in err
    # The default budgets stay within 100x of the largest run: no extrapolation warning.
    assert "extrapolate" not in err
    code, out, err = run_cli(*args, "--budget", "1e25", "--json")
    assert code == 0
    warnings = json.loads(out)["warnings"]
    assert any(
        "up to 1e+25 FLOP extrapolate 1.67e+09x beyond the largest run" in w for w in warnings
    )


def test_checks_are_quiet_on_a_plausible_fit() -> None:
    assert exponent_warnings({"E": 1.7, "A": 406.0, "alpha": 0.34, "beta": 0.28}) == []
    assert exponent_warnings({"alpha": 0.01})[0].startswith("alpha = 0.01 is implausible")
    assert extrapolation_warnings([1e20], [1e19]) == []
    assert extrapolation_warnings([1e22], [1e19])
