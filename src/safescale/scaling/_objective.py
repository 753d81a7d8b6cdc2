"""The Approach 3 objective of Hoffmann et al. (2022), batched over many parameter vectors.

``f(theta) = sum_i w_i * huber_delta(LSE_k(G[i, k] @ theta) - log L_i)``, with ``delta = 1e-3``.
Shapes: S parameter vectors (starts or bootstrap replicates), n runs, K terms, P parameters.
The Hessian is exact: the Huber loss is piecewise quadratic in the residual, and the Hessian of
a log-sum-exp of linear terms is the covariance of the term gradients under the softmax weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from safescale.scaling._laws import FloatArray

HUBER_DELTA = 1e-3
"""Hoffmann et al. (2022), Approach 3: the Huber threshold on log-loss residuals."""


def huber(r: FloatArray, delta: float) -> FloatArray:
    """Huber loss: quadratic within ``delta`` of zero, linear beyond."""
    a = np.abs(r)
    with np.errstate(over="ignore"):  # far-off grid starts; their value is simply inf
        return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


@dataclass(frozen=True)
class Problem:
    """One fitting problem in a form the batched objective can use directly."""

    g: FloatArray
    """``(n, K, P)`` term design: ``u[i, k] = g[i, k] @ theta``."""
    y: FloatArray
    """``(n,)`` observed log losses."""
    delta: float = HUBER_DELTA
    """Huber threshold."""

    @cached_property
    def flat(self) -> FloatArray:
        """``(P, K * n)`` term-major design, so that ``theta @ flat`` is one matrix product."""
        n, k, p = self.g.shape
        return np.ascontiguousarray(self.g.transpose(1, 0, 2).reshape(k * n, p).T)

    @cached_property
    def gg(self) -> FloatArray:
        """``(K * n, P * P)`` outer products of term gradients (term-major), for the Hessian."""
        n, k, p = self.g.shape
        return np.einsum("ikj,ikl->kijl", self.g, self.g).reshape(k * n, p * p)


@dataclass(frozen=True)
class Evaluation:
    """Objective, gradient and (optionally) Hessian at S parameter vectors."""

    value: FloatArray
    """``(S,)`` objective values."""
    grad: FloatArray
    """``(S, P)`` gradients."""
    hess: FloatArray | None
    """``(S, P, P)`` Hessians, when asked for."""


def log_predictions(problem: Problem, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Softmax weights over terms, ``(S, K, n)``, and the log prediction, ``(S, n)``."""
    # Terms are few (K <= 3), so explicit loops over K beat numpy reductions on a short axis.
    n, k, _ = problem.g.shape
    with np.errstate(invalid="ignore", over="ignore"):  # a start past the edge: NaN, not noise
        u = (theta @ problem.flat).reshape(len(theta), k, n)
    top = u[:, 0].copy()
    for j in range(1, k):
        np.maximum(top, u[:, j], out=top)
    e = np.exp(u - top[:, None])
    total = e[:, 0].copy()
    for j in range(1, k):
        total += e[:, j]
    e /= total[:, None]
    return e, top + np.log(total)


def values(problem: Problem, theta: FloatArray, w: FloatArray | None = None) -> FloatArray:
    """Objective values at ``theta`` (``(S, P)``), with optional per-run weights ``w``."""
    _, m = log_predictions(problem, theta)
    h = huber(m - problem.y, problem.delta)
    return h.sum(axis=1) if w is None else (h * w).sum(axis=1)


def evaluate(
    problem: Problem,
    theta: FloatArray,
    w: FloatArray | None = None,
    *,
    hessian: bool = True,
    irls: bool = False,
) -> Evaluation:
    """Objective, gradient and Hessian at every row of ``theta``.

    Args:
        problem: the data.
        theta: ``(S, P)`` parameter vectors (log coefficients, then exponents).
        w: per-run weights, ``(n,)`` or ``(S, n)`` (bootstrap counts); None means all ones.
        hessian: also compute the ``(S, P, P)`` Hessians.
        irls: return the iteratively-reweighted Gauss-Newton matrix
            ``sum_i w_i psi(r_i)/r_i J_i J_i^T`` in place of the exact Hessian. It is positive
            semi-definite and keeps its scale when every residual is beyond ``delta``, where the
            exact Hessian is tiny and indefinite (Holland & Welsch 1977, robust regression by IRLS).
    """
    p, m = log_predictions(problem, theta)
    r = m - problem.y
    d = problem.delta
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.where(np.isfinite(r), r, np.inf)
    inside = np.abs(r) <= d
    weights = np.ones_like(r) if w is None else np.broadcast_to(w, r.shape)
    value = (weights * np.where(inside, 0.5 * r * r, d * (np.abs(r) - 0.5 * d))).sum(axis=1)
    h1 = weights * np.clip(r, -d, d)  # (S, n) weighted Huber slopes
    jac = p[:, 0, :, None] * problem.g[:, 0]  # (S, n, P) d m / d theta, summed over terms
    for k in range(1, p.shape[1]):
        jac += p[:, k, :, None] * problem.g[:, k]
    grad = (h1[:, None, :] @ jac)[:, 0]
    if not hessian:
        return Evaluation(value, grad, None)
    if irls:
        coef = weights * np.minimum(1.0, d / np.maximum(np.abs(r), 1e-300))
        jt = (coef[:, :, None] * jac).transpose(0, 2, 1)
        return Evaluation(value, grad, jt @ jac)
    s, k, n = p.shape
    n_p = theta.shape[1]
    # sum_i h1_i * (E_p[g g^T] - J J^T) + sum_i w_i 1[inside] J J^T
    hess = ((h1[:, None, :] * p).reshape(s, k * n) @ problem.gg).reshape(s, n_p, n_p)
    coef = weights * inside - h1  # (S, n)
    hess += (coef[:, :, None] * jac).transpose(0, 2, 1) @ jac
    return Evaluation(value, grad, hess)


def grid_values(
    problem: Problem, axes: list[FloatArray], owners: list[tuple[int, int | None]]
) -> FloatArray:
    """Objective at every point of a Cartesian grid, without forming each point's terms.

    Term ``k`` depends only on its own coefficient axis and exponent axis, so its values over
    the grid take ``len(coef axis) * len(exponent axis)`` distinct vectors; the prediction at
    every grid point is a broadcast sum of those (``L = E + A N^-alpha + B D^-beta`` in natural
    scale). For Chinchilla that is 65 exponentials of length n instead of 13,500.

    Args:
        problem: the data.
        axes: the grid's axes, in parameter order.
        owners: per term, ``(coefficient index, exponent index or None)`` into ``axes``.

    Returns:
        Objective values, flattened in ``np.meshgrid(..., indexing="ij")`` order.
    """
    n_axes = len(axes)
    n = problem.y.shape[0]
    total = np.zeros((1,) * n_axes + (n,))
    for k, (ci, ei) in enumerate(owners):
        shape = [1] * n_axes + [n]
        shape[ci] = len(axes[ci])
        # log of term k, (len(c axis), [len(s axis)], n), from g's slope on the exponent
        log_term = axes[ci][:, None] + 0.0 * problem.g[None, :, k, ci]
        if ei is not None:
            shape[ei] = len(axes[ei])
            log_term = (
                log_term[:, None, :] + axes[ei][None, :, None] * problem.g[None, None, :, k, ei]
            )
        total = total + np.exp(log_term).reshape(shape)
    with np.errstate(divide="ignore"):
        r = np.log(total) - problem.y
    return huber(r, problem.delta).sum(axis=-1).ravel()
