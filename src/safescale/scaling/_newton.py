"""Batched damped Newton (Levenberg-Marquardt with the exact Hessian) for the Huber objective.

All S problems (grid starts, or bootstrap replicates as per-run weights) advance together in
numpy, so one iteration costs a few array passes instead of S Python-level optimiser steps.
Each problem keeps its own damping ``mu``: a step that lowers the objective is taken and
``mu`` shrinks; otherwise the step is refused and ``mu`` grows (Nocedal & Wright 2006, ch. 10).
Near the optimum ``mu`` falls to zero and the iteration is Newton's method, which converges
quadratically once the set of residuals inside the Huber threshold stops changing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from safescale.scaling._laws import FloatArray
from safescale.scaling._objective import Problem, evaluate, values


@dataclass(frozen=True)
class BatchResult:
    """Where each of the S problems ended."""

    theta: FloatArray
    """``(S, P)`` final parameters."""
    value: FloatArray
    """``(S,)`` final objective values."""
    grad_norm: FloatArray
    """``(S,)`` final gradient norms, scaled by the parameter design (see ``_scaled_norm``)."""
    iterations: int
    """Iterations run."""


def newton_batch(
    problem: Problem,
    theta0: FloatArray,
    w: FloatArray | None = None,
    *,
    max_iter: int = 100,
    rtol: float = 1e-15,
    irls: bool = False,
) -> BatchResult:
    """Minimise the objective from every row of ``theta0`` (``(S, P)``).

    Args:
        problem: the data.
        theta0: starting points.
        w: per-run weights, ``(n,)`` or ``(S, n)``.
        max_iter: iteration cap.
        rtol: a problem is done when a Newton step changes its objective by less than
            ``rtol`` relative, or it cannot find a step that lowers it.
        irls: use the reweighted Gauss-Newton matrix in place of the exact Hessian (robust far
            from the optimum, linear convergence near it).
    """
    theta = np.array(theta0, dtype=float)
    s, p = theta.shape
    w_full = None if w is None else np.broadcast_to(w, (s, problem.y.shape[0]))
    ev = evaluate(problem, theta, w_full, irls=irls)
    f, grad, hess = ev.value, ev.grad, ev.hess
    assert hess is not None
    # Damping is relative to the Hessian's diagonal scale, so it does not depend on the units
    # of a parameter (exponents multiply log N ~ 20, coefficients multiply 1).
    scale = np.maximum(np.abs(np.einsum("sjj->sj", hess)), 1e-300)
    mu = np.full(s, 1e-3)
    active = np.ones(s, dtype=bool)
    eye = np.eye(p)
    it = 0
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        damp = mu[idx, None, None] * scale[idx][:, :, None] * eye
        step = solve_batch(hess[idx] + damp, -grad[idx])
        trial = theta[idx] + step
        w_idx = None if w_full is None else w_full[idx]
        f_trial = values(problem, trial, w_idx)
        ok = np.isfinite(f_trial) & (f_trial <= f[idx])
        gain = f[idx] - f_trial
        acc = idx[ok]
        if acc.size:
            theta[acc] = trial[ok]
            ev = evaluate(problem, theta[acc], None if w_full is None else w_full[acc], irls=irls)
            f[acc], grad[acc] = ev.value, ev.grad
            assert ev.hess is not None
            hess[acc] = ev.hess
            scale[acc] = np.maximum(np.abs(np.einsum("sjj->sj", ev.hess)), 1e-300)
        mu[acc] = np.maximum(mu[acc] / 10.0, 0.0 if it > 3 else 1e-12)
        mu[acc[mu[acc] < 1e-12]] = 0.0
        rej = idx[~ok]
        mu[rej] = np.where(mu[rej] == 0.0, 1e-8, mu[rej] * 10.0)
        # Stop a problem once an accepted step gains nothing measurable, or damping explodes.
        tiny = gain[ok] <= rtol * np.abs(f[acc])
        active[acc[tiny]] = False
        active[rej[mu[rej] > 1e12]] = False
    return BatchResult(theta, f, _scaled_norm(grad, problem), it)


def solve_batch(a: FloatArray, b: FloatArray) -> FloatArray:
    """Batched ``(S, P, P)`` solve; a singular system gives a zero step, which callers refuse."""
    try:
        return np.asarray(np.linalg.solve(a, b[..., None])[..., 0], dtype=np.float64)
    except np.linalg.LinAlgError:
        out = np.zeros_like(b)
        for i in range(len(a)):
            try:
                out[i] = np.linalg.solve(a[i], b[i])
            except np.linalg.LinAlgError:
                out[i] = 0.0
        return out


def _scaled_norm(grad: FloatArray, problem: Problem) -> FloatArray:
    # Gradient per unit of each parameter's typical design magnitude (|log N| for exponents).
    mag = np.abs(problem.g).max(axis=(0, 1))
    return np.asarray(np.linalg.norm(grad / np.maximum(mag, 1.0), axis=1), dtype=float)
