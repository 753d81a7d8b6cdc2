"""Warnings for implausible fits and far extrapolation, through the command."""

from __future__ import annotations

import json
import re
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


def test_position_on_the_rise_and_its_warning() -> None:
    from safescale.scaling import position_warnings, rise_position

    assert rise_position(0.25, 0.25, 1.0) == 0.0 and rise_position(0.1, 0.25, 1.0) == 0.0
    assert rise_position(0.625, 0.25, 1.0) == pytest.approx(0.5)
    assert rise_position(1.2, 0.25, 1.0) == 1.0
    assert position_warnings(0.5) == [] and position_warnings(0.11) == []
    (low,) = position_warnings(0.05)
    assert "near the floor" in low and "5.0%" in low and "not begun" in low
    # near the ceiling the backtests' intervals over-covered: nothing to warn of
    assert position_warnings(0.95) == [] and position_warnings(1.0) == []


def test_forecast_near_the_floor_warns_and_one_on_the_rise_does_not(
    tmp_path: Path, run_cli
) -> None:
    # A ladder still flat at chance: its forecast one decade on lies near the floor.
    c = np.geomspace(1e19, 1e21, 10)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, 10)
    for name, mid, warned in (("flat", 23.5, True), ("rising", 21.5, False)):
        score = 0.25 + 0.75 / (1 + np.exp(-2.0 * (np.log10(c) - mid))) + noise
        path = tmp_path / f"{name}.csv"
        rows = "".join(f"{x:.17g},{y:.17g}\n" for x, y in zip(c, score, strict=True))
        path.write_text("flops,score\n" + rows)
        args = ["scaling", "forecast", str(path), "--compute", "flops", "--score", "score",
                "--chance", "0.25", "--at", "1e22", "--bootstrap", "50"]  # fmt: skip
        code, _, err = run_cli(*args)
        assert code == 0 and ("warning: the forecast lies near the floor" in err) is warned, err
        code, out, _ = run_cli(*args, "--json")
        doc = json.loads(out)
        assert code == 0 and bool(doc["warnings"]) is warned
        assert (doc["position_on_rise"] <= 0.1) is warned
        # the calibrated interval near the floor is widened, and the output says by how much
        assert doc["calibrated"] and doc["scale_widening"] == (1.5 if warned else 1.0)
        code, out, _ = run_cli(*args)
        assert ("scale widened 1.5x: the point lies near the floor" in out) is warned
        # one fact a line, none wider than a terminal of 80 columns (no value cut at its edge)
        assert all(len(line) <= 80 for line in out.splitlines()), out
        assert re.search(r"^95% prediction interval: \[[\d.]+, [\d.]+\]$", out, re.M), out
        assert re.search(
            r"^from 10 models, method \S+, [\d.]+ decades past the largest$", out, re.M
        )
