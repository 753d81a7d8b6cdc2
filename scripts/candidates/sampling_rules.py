"""Variants of the rule that sets a ladder's record aside where its scatter is within sampling
noise (``safescale.scaling._calibration.sampling_only``), as scored on 2026-12-05 before the
chosen one (docs/scaling.md, "Scatter within sampling noise"). Chosen by environment:

* ``SAMPLING_TEST``: ``chi2:Q`` (the scatter within the ``Q`` quantile of a chi-square with
  ``n - 2`` degrees of freedom; the package uses ``chi2:0.95``) or ``phi:T`` (the
  overdispersion at most ``T``);
* ``SAMPLING_COMBINE``: ``sum`` (the in-sample spread and the frontier jackknife added in
  variance, as the package does) or ``max`` (the larger of the two, as the record and the
  jackknife are combined);
* ``SAMPLING_FLOOR``: ``1`` (only a ladder whose best model has left its floor, as the
  package does) or ``0`` (any ladder);
* ``SAMPLING_RISE``: how far up its rise (0 to 1) a ladder's best model must be for the floor
  rule to count it as having left its floor (the package's ``EDGE_OF_RISE``, 0.1, until
  2026-12-05; 0.5, the sigmoid's midpoint, since);
* ``SAMPLING_DOF``: ``record`` (the t keeps the record's degrees of freedom, as every variant
  was scored before the t took the spread's) or ``spread`` (the in-sample spread's
  ``n - 2``, as the package does since);
* ``SAMPLING_SPREAD``: ``space`` (the scatter about the plain sigmoid in the method's own space,
  loss for the two-step method, as every variant was scored before the lab's ladders were
  looked at) or ``forecast`` (about the method's own forecast from compute, as the package
  does since).

    SAMPLING_TEST=phi:2 SAMPLING_COMBINE=max SAMPLING_FLOOR=0 .venv/bin/python \\
        scripts/calibration_study.py --candidate scripts/candidates/sampling_rules.py
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
from scipy.stats import chi2

from safescale.scaling import _calibration as cal
from safescale.scaling._checks import EDGE_OF_RISE
from safescale.scaling._methods import Predictor, ScoreData

TEST, _, LEVEL = os.environ.get("SAMPLING_TEST", "chi2:0.95").partition(":")
COMBINE = os.environ.get("SAMPLING_COMBINE", "sum")
FLOOR = os.environ.get("SAMPLING_FLOOR", "1") == "1"
RISE = float(os.environ.get("SAMPLING_RISE", str(EDGE_OF_RISE)))
DOF = os.environ.get("SAMPLING_DOF", "record")
SPREAD = os.environ.get("SAMPLING_SPREAD", "space")
if (
    TEST not in ("chi2", "phi")
    or COMBINE not in ("sum", "max")
    or DOF not in ("record", "spread")
    or SPREAD not in ("space", "forecast")
):
    raise ValueError(
        "SAMPLING_TEST is chi2:Q or phi:T, SAMPLING_COMBINE sum or max, SAMPLING_DOF record "
        "or spread, SAMPLING_SPREAD space or forecast"
    )


def _spread(c: cal.Calibration, data: ScoreData, point: Predictor) -> float:
    if SPREAD == "forecast":
        return cal.forecast_spread(data, point)
    # the plain sigmoid's spread in the method's own space, as fit_capability computed it
    from safescale.scaling._capability import _plain_sigmoid, _space

    in_loss = _space(c.method) == "loss" and data.loss is not None
    x = data.loss if in_loss else np.log10(data.compute)
    return float(_plain_sigmoid(x, data.score, data.chance, data.ceiling).sigma)


def sampling_only(
    c: cal.Calibration, data: ScoreData, point: Predictor, questions: int | None
) -> cal.Calibration:
    if questions is None:
        return c
    sigma = _spread(c, data, point)
    phi = cal.overdispersion(data.score, sigma, questions)
    k = len(data.score) - 2
    limit = float(chi2.ppf(float(LEVEL), k)) / k if TEST == "chi2" else float(LEVEL)
    left = (float(np.max(data.score)) - data.chance) / (data.ceiling - data.chance)
    if k >= 1 and (left >= RISE or not FLOOR) and phi <= limit:
        # "max": growth 0 with the record kept is sqrt(max(s0^2, v_J)) in Calibration.scale
        aside = COMBINE == "sum"
        s0 = max(sigma, 1e-6)
        dof = float(k) if DOF == "spread" and aside else None
        return replace(
            c, s0=s0, growth=0.0, overdispersion=phi, record_used=not aside, spread_dof=dof
        )
    return replace(c, overdispersion=phi)
