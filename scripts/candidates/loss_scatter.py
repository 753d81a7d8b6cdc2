"""A candidate for the set-aside path of the benchmark-size gate
(``safescale.scaling._calibration.sampling_only``): where the gate sets a two-step forecast's
record aside, carry the loss law's own scatter through the second step instead of dropping the
growth with distance. Scored on 2026-12-05 on the calibration sets and not adopted
(docs/scaling.md, "Where the lab's misses are").

The package's rule is applied first. Where it sets the record aside and the method is
``two-step``, the law from compute to loss is fitted on every model and its residual spread in
log loss taken (``n - 3`` degrees of freedom, three parameters); the loss a decade past the
largest model is drawn from that spread (Gauss-Hermite nodes) and put through the sigmoid from
loss to score; the spread of the resulting scores is the growth per decade. The interval then
grows with distance as the record's does (``sqrt(max(s0^2 + (growth d)^2, jackknife))``)
rather than staying at the in-sample spread plus the jackknife. On a clean ladder the loss
scatter is small and so is the growth; on a grid of sizes times token budgets the losses do not
follow compute and the growth is large.

    .venv/bin/python scripts/lab_calibration.py --out DIR --seeds 0-4 \\
        --candidate scripts/candidates/loss_scatter.py
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from safescale.scaling import _calibration as cal
from safescale.scaling._laws import LAWS
from safescale.scaling._methods import Predictor, ScoreData, _compute_laws, best_sigmoids, sigmoid

_PACKAGE = cal.sampling_only  # the package's rule, taken before the study swaps this file's in
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(41)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def sampling_only(
    c: cal.Calibration, data: ScoreData, point: Predictor, questions: int | None
) -> cal.Calibration:
    out = _PACKAGE(c, data, point, questions)
    if out.record_used or c.method != "two-step" or data.loss is None or len(data.loss) < 5:
        return out
    (theta,) = _compute_laws(data.compute, data.loss, [np.ones(len(data.compute), dtype=bool)])
    form = LAWS.get("compute")
    fitted = form.log_predict(theta, np.log(data.compute).reshape(-1, 1)).reshape(-1)
    resid = np.log(data.loss) - fitted
    sd = float(np.sqrt(np.sum(resid**2) / (len(resid) - 3)))
    ((x0, k),) = best_sigmoids([(data.loss, data.score)], data.chance, data.ceiling)
    far = np.log(np.array([[float(np.max(data.compute)) * 10.0]]))
    mid = float(form.log_predict(theta, far).reshape(-1)[0])
    scores = sigmoid(np.exp(mid + sd * _NODES), x0, k, data.chance, data.ceiling)
    mean = float(np.sum(_WEIGHTS * scores))
    growth = float(np.sqrt(np.sum(_WEIGHTS * (scores - mean) ** 2)))
    return replace(out, record_used=True, growth=growth)
