"""Backtest on held-out public data: base models' benchmark scores against training compute.

The table (tests/scaling/data/README.md has its source, commit and license) was not used to
choose anything in ``safescale.scaling``; the error model was chosen on another table of the
same release (Open LLM Leaderboard v2 benchmarks of base models, with their compute taken
from this table by model name) and on the synthetic calibration seeds. Its results were seen
before the degrees of freedom of the intervals were chosen (on the calibration data). The
models form one ladder across families, so the scatter about any curve in compute is wide
(families differ in data and recipe).
"""

import csv
from pathlib import Path

import numpy as np
import pytest

from safescale.scaling import backtest

DATA = Path(__file__).parent / "data" / "obsscaling_base_llm_benchmark_eval.csv"
CHANCE = {"MMLU": 0.25, "ARC-C": 0.25, "HellaSwag": 0.25, "GSM8K": 0.0}
"""Four-way multiple choice for the first three; GSM8K is free-form (no guessing floor)."""
QUESTIONS = {"MMLU": 14042, "ARC-C": 1172, "HellaSwag": 10042, "GSM8K": 1319}
"""Each benchmark's test set size, given to the forecasts as a user would: the scatter of
models of many families about any curve is tens of times the sampling variance, so the
ladder's record is used throughout (the figures are those without the sizes)."""
UNIT_ERROR = {"cerebras/btlm-3b-8k-base"}
"""Its token count is in the wrong unit (627 "trillion" tokens for a 3B model)."""


def _ladder() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with DATA.open(newline="") as f:
        rows = [
            r
            for r in csv.DictReader(f)
            if r["FLOPs (1E21)"] and all(r[b] for b in CHANCE) and r["Model"] not in UNIT_ERROR
        ]
    c = np.array([float(r["FLOPs (1E21)"]) for r in rows]) * 1e21
    order = np.argsort(c, kind="stable")
    scores = {b: np.array([float(r[b]) for r in rows])[order] for b in CHANCE}
    return c[order], scores


def test_the_table_is_the_cited_one() -> None:
    import hashlib

    digest = hashlib.sha256(DATA.read_bytes()).hexdigest()
    assert digest == "511996815735a4c46251dc585dcc525e370d148201f86561e6f927f9df2d0db8"
    c, scores = _ladder()
    assert len(c) == 119 and all(len(s) == 119 for s in scores.values())


CALIBRATION_DATA = Path(__file__).parent / "data" / "obsscaling_base_llm_leaderboard_v2_eval.csv"
"""The public table the error model was chosen on (other benchmarks of the same models)."""

CALIBRATED = {"MMLU", "HellaSwag"}
"""Benchmarks whose held-out coverage is within 0.85-0.95; ARC-C and GSM8K over-cover (their
intervals are too wide, not too narrow: docs/scaling.md has the figures)."""


def test_the_calibration_table_is_the_cited_one() -> None:
    import hashlib

    digest = hashlib.sha256(CALIBRATION_DATA.read_bytes()).hexdigest()
    assert digest == "ace728c962dfb2b9133fe92081c818e3fba01391694c9590fa0198f850062563"
    with CALIBRATION_DATA.open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 72


@pytest.mark.slow
def test_public_ladder_ninety_percent_intervals_within_a_decade() -> None:
    # Each benchmark from compute alone (sigmoid; logistic-4p as the baseline), cuts with at
    # least 20 models below, predictions up to 10x the cut. Per benchmark: MMLU and HellaSwag
    # within 0.85-0.95; ARC-C (0.965) and GSM8K (1.000) at least 0.85 (they over-cover). Pooled
    # within.
    c, scores = _ladder()
    covered: list[bool] = []
    chosen_err: list[float] = []
    logistic_err: list[float] = []
    for bench, chance in CHANCE.items():
        bt = backtest(
            c, scores[bench], chance=chance, min_train=20, n_boot=20, level=0.9, max_cuts=6,
            max_distance=1.0, questions=QUESTIONS[bench],
        )  # fmt: skip
        assert bt.method != "logistic-4p"
        cov = float(bt.coverage.value)
        assert cov >= 0.85, (bench, cov, bt.n)
        if bench in CALIBRATED:
            assert cov <= 0.95, (bench, cov, bt.n)
        covered += [r.covered for r in bt.rows]
        chosen_err += [abs(r.error) for r in bt.rows]
        (plain,) = [m for m in bt.methods if m.method == "logistic-4p"]
        logistic_err += [float(plain.mae.value)] * bt.n
    coverage = float(np.mean(covered))
    assert 0.85 <= coverage <= 0.95, (coverage, len(covered))
    assert np.mean(chosen_err) < np.mean(logistic_err)
