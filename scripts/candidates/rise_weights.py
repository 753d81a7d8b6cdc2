"""A candidate error model, scored and not adopted (docs/scaling.md, 2026-12-05): the inner
cuts of the ladder's record weighted by how much of the rise they saw.

On a clean ladder the record is pessimistic where the score rises: its early cuts were fitted
before the rise showed and leapt (errors of 0.1-0.24 a decade out), while the forecast, fitted
on models that show it, errs by a few hundredths. Here cut ``i`` counts with weight
``min(1, r_i / r)^P``, ``r_i`` the share of the way from chance to the ceiling that the cut's
best model reached and ``r`` the forecast's own (all weights 1 when ``r`` is under 0.1), in
the likelihood of ``s0`` and in the per-cut growth. Score it with

    .venv/bin/python scripts/calibration_study.py --candidate scripts/candidates/rise_weights.py
"""

from __future__ import annotations

import os

import numpy as np

from safescale.scaling import _calibration as cal
from safescale.scaling._methods import ScoreData

P = float(os.environ.get("RISE_WEIGHT_POWER", "1"))
"""The weights' power (``RISE_WEIGHT_POWER``; scored at 1 and 2)."""


def _rise(data: ScoreData, keep: np.ndarray | None = None) -> float:
    s = data.score if keep is None else data.score[keep]
    return float(np.clip((np.max(s) - data.chance) / (data.ceiling - data.chance), 0.0, 1.0))


def calibrate(
    method: str, data: ScoreData, *, sigma: float, min_train: int = 4, max_cuts: int = 8
) -> cal.Calibration | None:
    fe = cal.future_errors(method, data, min_train=min_train, max_cuts=max_cuts)
    if fe.n_cuts < cal.MIN_CUTS or len(fe.errors) < 3:
        return None
    cuts = cal.ladder_cuts(data.compute, min_train=min_train, max_cuts=max_cuts)
    whole = _rise(data)
    v = np.ones(fe.n_cuts)
    if whole > 0.1:
        v = np.array([min(1.0, _rise(data, data.compute <= c) / whole) ** P for c in cuts])
    s0, g_pooled = cal.fit_scale(fe.distances, fe.errors, sigma, v[fe.cut.astype(int)])
    per_cut = cal.cut_growths(fe, s0, g_pooled)
    weight = cal.reach_weights(fe, s0, cal.weighted_growth(per_cut, v))
    g = cal.weighted_growth(per_cut, weight * v)
    z = fe.errors / np.sqrt(s0**2 + (g * fe.distances) ** 2)
    rho = cal.intra_cut_correlation(z, fe.cut)
    return cal.Calibration(
        method, fe.distances, fe.errors, fe.n_cuts, s0, g, per_cut, rho, cut_weight=weight
    )
