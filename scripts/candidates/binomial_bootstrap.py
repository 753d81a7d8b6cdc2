"""A candidate for the set-aside path of the benchmark-size gate
(``safescale.scaling._calibration.sampling_only``): where the gate finds the scatter within
sampling noise and sets the record aside, let the interval grow with distance by as much as
sampling noise alone moves the forecast. Scored on 2026-12-05 on the calibration sets and not
adopted (docs/scaling.md, "Where the lab's misses are").

The package's rule is applied first. Where it sets the record aside, the models' scores are
drawn again ``DRAWS`` times as binomial shares of the benchmark's questions at the chosen
method's own fitted scores, the method's sigmoid (in log compute, or in loss for ``two-step``,
whose law from compute to loss the scores do not move) is fitted to each draw, and the spread
of the refitted forecasts a decade past the largest model is the growth per decade. The
interval then grows with distance as the record's does (``sqrt(max(s0^2 + (growth d)^2,
jackknife))``). On a benchmark of a thousand questions the draws hardly move a fitted rise; on
one of 24-48 questions whose models sit near the floor they can move it a long way.

    .venv/bin/python scripts/lab_calibration.py --out DIR --seeds 0-4 \\
        --candidate scripts/candidates/binomial_bootstrap.py
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from safescale.scaling import _calibration as cal
from safescale.scaling._laws import LAWS
from safescale.scaling._methods import Predictor, ScoreData, _compute_laws, best_sigmoids, sigmoid

_PACKAGE = cal.sampling_only  # the package's rule, taken before the study swaps this file's in
DRAWS = 64


def sampling_only(
    c: cal.Calibration, data: ScoreData, point: Predictor, questions: int | None
) -> cal.Calibration:
    out = _PACKAGE(c, data, point, questions)
    if out.record_used or questions is None or c.method not in ("two-step", "sigmoid"):
        return out
    if c.method == "two-step" and data.loss is None:
        return out
    rng = np.random.default_rng(0)
    fitted = np.clip(np.asarray(point(data.compute), dtype=float), 0.0, 1.0)
    draws = rng.binomial(questions, fitted, size=(DRAWS, len(fitted))) / questions
    far_c = float(np.max(data.compute)) * 10.0
    if c.method == "two-step":
        assert data.loss is not None
        (theta,) = _compute_laws(data.compute, data.loss, [np.ones(len(data.compute), dtype=bool)])
        x = data.loss
        far_x = float(np.exp(LAWS.get("compute").log_predict(theta, np.log([[far_c]]))[0]))
    else:
        x = np.log10(data.compute)
        far_x = float(np.log10(far_c))
    fits = best_sigmoids([(x, d) for d in draws], data.chance, data.ceiling)
    far = np.array([sigmoid(far_x, x0, k, data.chance, data.ceiling) for x0, k in fits])
    return replace(out, record_used=True, growth=float(np.std(far, ddof=1)))
