"""The reference fit: Hoffmann et al. (2022) Approach 3 exactly as described, slowly.

``scipy.optimize.minimize(method="L-BFGS-B")`` from every point of the grid, keeping the best.
It is written per start and without vectorisation so that it can be read against the paper and
used to check the fast path (:func:`safescale.scaling.fit_law`). The tolerances are tight:
Besiroglu et al. (2024), "Chinchilla Scaling: A replication attempt", found that the paper's
own fit stopped short of the optimum. The objective here is ~1e-3, so scipy's relative ``ftol``
(which divides by ``max(|f|, 1)``) acts as an absolute tolerance and must be far below 1e-9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from safescale.scaling._laws import FloatArray, LawForm
from safescale.scaling._objective import HUBER_DELTA


@dataclass(frozen=True)
class ReferenceFit:
    """The best of the grid-started L-BFGS-B runs."""

    theta: FloatArray
    """Best parameter vector (log coefficients, then exponents)."""
    objective: float
    """Summed Huber loss at ``theta``."""
    finals: FloatArray
    """``(S,)`` final objective of every start, in grid order."""


def reference_objective(
    theta: FloatArray, g: FloatArray, y: FloatArray, delta: float = HUBER_DELTA
) -> tuple[float, FloatArray]:
    """Summed Huber loss of log residuals and its gradient, for one parameter vector.

    Args:
        theta: ``(P,)`` parameters.
        g: ``(n, K, P)`` term design (``LawForm.design``).
        y: ``(n,)`` observed log losses.
        delta: Huber threshold.
    """
    u = g @ theta  # (n, K)
    r = logsumexp(u, axis=1) - y
    small = np.abs(r) <= delta
    f = np.sum(np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)))
    slope = np.where(small, r, delta * np.sign(r))
    jac = np.einsum("ik,ikj->ij", softmax(u, axis=1), g)
    return float(f), slope @ jac


def reference_fit(
    form: LawForm,
    logs: FloatArray,
    log_loss: FloatArray,
    *,
    delta: float = HUBER_DELTA,
    starts: FloatArray | None = None,
) -> ReferenceFit:
    """Run L-BFGS-B from every grid start (``form.grid()`` unless ``starts`` is given)."""
    g = form.design(logs)
    grid = form.grid() if starts is None else starts
    best_theta, best_f = grid[0], np.inf
    finals = np.empty(len(grid))
    options = {"ftol": 1e-15, "gtol": 1e-13, "maxiter": 5000, "maxcor": 20}
    for s, start in enumerate(grid):
        res = minimize(
            reference_objective, start, args=(g, log_loss, delta), jac=True,
            method="L-BFGS-B", options=options,
        )  # fmt: skip
        finals[s] = res.fun if np.isfinite(res.fun) else np.inf
        if finals[s] < best_f:
            best_theta, best_f = res.x, finals[s]
    return ReferenceFit(theta=np.asarray(best_theta), objective=float(best_f), finals=finals)
