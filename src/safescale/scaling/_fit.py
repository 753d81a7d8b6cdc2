"""Fitting a scaling law: Hoffmann et al. (2022) Approach 3, fast and exact.

The objective is the summed Huber loss (delta = 1e-3) of log residuals, with the coefficients
in log space, minimised from the paper's grid of starts. The reference
(:func:`safescale.scaling._reference.reference_fit`) runs L-BFGS-B from all 4,500 starts. The
fast path reaches the same optimum in three stages:

1. score every grid start at once (``grid_values``: a broadcast sum, no per-start loop);
2. from the best starts in each cell of the exponent grid (the exponents are what separates
   the basins) plus the best starts overall, run batched robust Gauss-Newton (IRLS) steps;
3. polish the best distinct end points with batched exact Newton until the objective stops
   changing in the last digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from safescale._errors import Problem as UserProblem
from safescale._errors import UserError
from safescale.scaling._laws import LAWS, FloatArray, LawForm
from safescale.scaling._newton import newton_batch, solve_batch
from safescale.scaling._objective import (
    HUBER_DELTA,
    Problem,
    evaluate,
    grid_values,
    huber,
    log_predictions,
)
from safescale.scaling._reference import reference_fit

Method = Literal["fast", "reference"]


@dataclass(frozen=True)
class SearchSettings:
    """How widely the fast path searches. Defaults were checked against the full-grid reference."""

    per_cell: int = 4
    """Starts kept per cell of the exponent grid, best first (diversity across basins)."""
    top: int = 32
    """Starts kept overall, best first."""
    irls_iter: int = 40
    """Robust Gauss-Newton iterations from every kept start."""
    polish: int = 8
    """Best end points polished with exact Newton."""

    def __post_init__(self) -> None:
        if self.per_cell < 0:
            raise ValueError("SearchSettings.per_cell must be at least 0")
        for name in ("top", "irls_iter", "polish"):
            if getattr(self, name) < 1:
                raise ValueError(f"SearchSettings.{name} must be at least 1")


def grid_start_values(form: LawForm, problem: Problem) -> FloatArray:
    """Objective at every start of ``form.grid()``, in the same order."""
    axes = _grid_axes(form)
    n_coef = len(form.terms)
    owners = []
    for k, t in enumerate(form.terms):
        ei = None if t.exponent is None else n_coef + form.exponent_names.index(t.exponent)
        owners.append((k, ei))
    return grid_values(problem, axes, owners)


def _grid_axes(form: LawForm) -> list[FloatArray]:
    grid = form.grid()
    return [np.unique(grid[:, j]) for j in range(grid.shape[1])]


def fast_search(
    form: LawForm, problem: Problem, settings: SearchSettings | None = None
) -> tuple[FloatArray, float]:
    """Best parameters and objective found by the three-stage search (module docstring)."""
    res = search_batch(form, problem, np.ones((1, problem.y.shape[0])), settings)
    return res.theta[0], float(res.value[0])


@dataclass(frozen=True)
class SearchResult:
    """Where the three-stage search ended for each of R weightings of the runs."""

    theta: FloatArray
    """``(R, P)`` best parameters per weighting."""
    value: FloatArray
    """``(R,)`` objective at ``theta``."""
    converged: NDArray[np.bool_]
    """``(R,)`` whether the polished optimum is stationary (see :func:`stationary`)."""
    agreed: NDArray[np.bool_]
    """``(R,)`` whether the best grid start and the best extra start ended at the same
    objective (within 1e-9 relative); always True without extra starts."""


def search_batch(
    form: LawForm,
    problem: Problem,
    weights: FloatArray,
    settings: SearchSettings | None = None,
    *,
    extra_starts: FloatArray | None = None,
    chunk: int = 4_000_000,
) -> SearchResult:
    """The three-stage search run for many weightings of the runs at once (bootstrap refits).

    Every weighting (a row of ``weights``, e.g. bootstrap counts) gets the search a fresh fit
    would get: the whole grid is scored under its weights (one matrix product, ``(S, n) @ (n,
    R)``, since the objective is a weighted sum of per-run Huber terms), its own starts are
    picked, refined by IRLS and polished by Newton. ``extra_starts`` (``(E, P)``, e.g. the
    full-data optimum) are polished for every weighting as well.

    Args:
        form: the law form.
        problem: the data, unweighted.
        weights: ``(R, n)`` non-negative run weights.
        settings: search widths.
        extra_starts: starting points added for every weighting.
        chunk: rough cap on ``problems * runs * params`` per batch, to bound memory.
    """
    cfg = settings or SearchSettings()
    grid = form.grid()
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    n_rep, n = w.shape
    per_run = grid_run_values(form, problem)  # (S, n)
    scores = per_run @ w.T  # (S, R)
    if cfg.per_cell == 0:
        # Only the best starts overall: one partial sort of every column at once.
        top = min(cfg.top, len(grid))
        best = np.argpartition(scores, top - 1, axis=0)[:top].T  # (R, top)
        picks = [row[np.isfinite(scores[row, r])] for r, row in enumerate(best)]
    else:
        picks = [np.flatnonzero(_pick_starts(form, grid, scores[:, r], cfg)) for r in range(n_rep)]
    p = grid.shape[1]
    step = max(1, chunk // max(1, n * p * (max(len(k) for k in picks) + cfg.polish)))
    theta = np.empty((n_rep, p))
    value = np.empty(n_rep)
    ok = np.empty(n_rep, dtype=bool)
    agreed = np.ones(n_rep, dtype=bool)
    for lo in range(0, n_rep, step):
        reps = np.arange(lo, min(n_rep, lo + step))
        owner = np.concatenate([np.full(len(picks[r]), i) for i, r in enumerate(reps)])
        starts = grid[np.concatenate([picks[r] for r in reps])]
        rough = newton_batch(
            problem, starts, w[reps][owner], max_iter=cfg.irls_iter, rtol=1e-10, irls=True
        )
        # The best `polish` end points of each weighting, plus the extra starts.
        order = np.lexsort((rough.value, owner))
        first = np.searchsorted(owner[order], np.arange(len(reps)))
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        keep = order[rank < cfg.polish]
        fine_start, fine_owner = rough.theta[keep], owner[keep]
        if extra_starts is not None:
            ex = np.asarray(extra_starts, dtype=float).reshape(-1, p)
            fine_start = np.concatenate([fine_start, np.tile(ex, (len(reps), 1))])
            fine_owner = np.concatenate([fine_owner, np.repeat(np.arange(len(reps)), len(ex))])
        fine = newton_batch(problem, fine_start, w[reps][fine_owner], max_iter=200, rtol=1e-15)
        best = np.lexsort((fine.value, fine_owner))
        best = best[np.searchsorted(fine_owner[best], np.arange(len(reps)))]
        theta[reps], value[reps] = fine.theta[best], fine.value[best]
        if extra_starts is not None:
            # Best end point reached from the extra starts alone, per weighting.
            from_extra = np.full(len(reps), np.inf)
            n_grid = len(keep)
            np.minimum.at(from_extra, fine_owner[n_grid:], fine.value[n_grid:])
            from_grid = np.full(len(reps), np.inf)
            np.minimum.at(from_grid, fine_owner[:n_grid], fine.value[:n_grid])
            agreed[reps] = np.abs(from_extra - from_grid) <= 1e-9 * value[reps]
        ok[reps] = stationary(problem, fine.theta[best], w[reps])
    return SearchResult(theta, value, ok, agreed)


def stationary(
    problem: Problem, theta: FloatArray, w: FloatArray | None = None
) -> NDArray[np.bool_]:
    """Whether each row of ``theta`` is a minimum to working precision.

    The Newton decrement ``g' H^-1 g / 2`` estimates how much further the objective could
    fall; it must be below ``1e-9`` of the objective (and the Hessian positive definite). Where
    the Huber kink makes the Hessian jump, the decrement of either side still bounds the gain.
    """
    ev = evaluate(problem, theta, w)
    assert ev.hess is not None
    try:
        eig_min = np.linalg.eigvalsh(ev.hess)[:, 0]
    except np.linalg.LinAlgError:
        return np.zeros(len(theta), dtype=bool)
    step = solve_batch(ev.hess, ev.grad)
    dec = 0.5 * np.einsum("sp,sp->s", ev.grad, step)
    scale = np.maximum(np.abs(np.einsum("sjj->s", ev.hess)), 1e-300)
    return np.asarray(
        np.isfinite(ev.value) & (eig_min > -1e-9 * scale) & (np.abs(dec) <= 1e-9 * ev.value)
    )


def grid_run_values(form: LawForm, problem: Problem, block: int = 1500) -> FloatArray:
    """``(S, n)`` Huber term of every run at every start of ``form.grid()`` (inf where overflow)."""
    grid = form.grid()
    out = np.empty((len(grid), problem.y.shape[0]))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for lo in range(0, len(grid), block):
            _, m = log_predictions(problem, grid[lo : lo + block])
            out[lo : lo + block] = huber(m - problem.y, problem.delta)
    return np.where(np.isfinite(out), out, 1e300)


def _pick_starts(
    form: LawForm, grid: FloatArray, f0: FloatArray, cfg: SearchSettings
) -> NDArray[np.bool_]:
    # Rank of each start within its exponent cell, and overall; keep the best of both.
    n_exp = len(form.exponent_names)
    cells = grid[:, grid.shape[1] - n_exp :] if n_exp else np.zeros((len(grid), 1))
    _, cell = np.unique(cells, axis=0, return_inverse=True)
    order = np.lexsort((f0, cell.ravel()))
    sorted_cell = cell.ravel()[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_cell)) + 1]
    within = np.arange(len(grid)) - np.repeat(first, np.diff(np.r_[first, len(grid)]))
    rank_cell = np.empty(len(grid), dtype=int)
    rank_cell[order] = within
    rank_all = np.empty(len(grid), dtype=int)
    rank_all[np.argsort(f0, kind="stable")] = np.arange(len(grid))
    return ((rank_cell < cfg.per_cell) | (rank_all < cfg.top)) & np.isfinite(f0)


class ScalingLaw:
    """A scaling law fitted by Approach 3 (scikit-learn style: configure, then ``fit``).

    Args:
        form: a registered law form (``chinchilla``, ``compute``, ``kaplan-n``, ...).
        huber_delta: the Huber threshold on log residuals (Hoffmann et al.: 1e-3).
        method: ``fast`` (default) or ``reference`` (L-BFGS-B from all grid starts; slow).
        search: how widely the fast path searches (defaults suit the Approach 3 grid).

    Attributes:
        params_: fitted parameters on their natural scale (``E``, ``A``, ``alpha``, ...).
        theta_: fitted parameters as optimised (log coefficients, then exponents).
        objective_: summed Huber loss at the optimum.
        n_points_: number of runs fitted.
    """

    def __init__(
        self,
        form: str = "chinchilla",
        *,
        huber_delta: float = HUBER_DELTA,
        method: Method = "fast",
        search: SearchSettings | None = None,
    ) -> None:
        self.form = form
        self.huber_delta = huber_delta
        self.method = method
        self.search = search

    @property
    def law(self) -> LawForm:
        """The :class:`LawForm` named by ``form``."""
        return LAWS.get(self.form)

    def fit(
        self, loss: ArrayLike, *, names: dict[str, str] | None = None, **inputs: ArrayLike | None
    ) -> ScalingLaw:
        """Fit to observed ``loss`` given the form's inputs (``N=``, ``D=``, ``C=`` arrays).

        ``names`` maps ``N``, ``D``, ``C`` and ``loss`` to the column names shown in messages.

        Raises:
            UserError: an input is missing, non-positive, not finite, constant, or too short.
        """
        if self.huber_delta <= 0:
            raise ValueError("huber_delta must be positive")
        law = self.law
        logs, y = prepare(law, loss, inputs, names)
        problem = Problem(law.design(logs), y, self.huber_delta)
        if self.method == "reference":
            ref = reference_fit(law, logs, y, delta=self.huber_delta)
            theta, value = ref.theta, ref.objective
        elif self.method == "fast":
            theta, value = fast_search(law, problem, self.search)
        else:
            raise ValueError(f"method must be 'fast' or 'reference', not {self.method!r}")
        self.theta_ = np.asarray(theta, dtype=float)
        self.params_ = law.to_natural(self.theta_)
        self.objective_ = value
        self.n_points_ = len(y)
        return self

    def predict(self, *values: ArrayLike) -> FloatArray:
        """Predicted loss at the inputs, given in ``law.variables`` order (``N, D``)."""
        law = self.law
        if len(values) != len(law.variables):
            names = ", ".join(law.variables)
            raise TypeError(f"{law.name} predicts from ({names}); got {len(values)} arrays")
        cols = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in values])
        shape = cols[0].shape
        logs = np.log(np.stack([c.ravel() for c in cols], axis=1))
        return np.exp(law.log_predict(self.theta_, logs)).reshape(shape)


def fit_law(
    params: ArrayLike | None = None,
    tokens: ArrayLike | None = None,
    loss: ArrayLike | None = None,
    *,
    compute: ArrayLike | None = None,
    form: str = "chinchilla",
    huber_delta: float = HUBER_DELTA,
    method: Method = "fast",
    names: dict[str, str] | None = None,
) -> ScalingLaw:
    """Fit a scaling law to training runs by Hoffmann et al. (2022) Approach 3.

    Args:
        params: model parameters N per run (forms in N).
        tokens: training tokens D per run (forms in D).
        loss: final loss per run.
        compute: training FLOP C per run (forms in C).
        form: registered law form.
        huber_delta: Huber threshold on log residuals.
        method: ``fast`` or ``reference``.
        names: column names for messages, keyed ``N``, ``D``, ``C``, ``loss``.

    Returns:
        A fitted :class:`ScalingLaw`.
    """
    if loss is None:
        raise TypeError("fit_law needs loss")
    return ScalingLaw(form, huber_delta=huber_delta, method=method).fit(
        loss, names=names, N=params, D=tokens, C=compute
    )


_COLUMN_NAMES: dict[str, str] = {"N": "params", "D": "tokens", "C": "compute"}


def prepare(
    law: LawForm,
    loss: ArrayLike,
    inputs: dict[str, ArrayLike | None],
    names: dict[str, str] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Check the inputs a law needs and return their logs ``(n, V)`` and the log loss ``(n,)``.

    Args:
        law: the form.
        loss: observed losses.
        inputs: arrays by variable (``N``, ``D``, ``C``); extra variables must be None.
        names: display name per variable and for ``loss`` (CSV column names), for messages.

    Raises:
        UserError: naming the column and the 1-based row of the first bad value.
    """
    shown: dict[str, str] = {**_COLUMN_NAMES, "loss": "loss", **(names or {})}
    columns: dict[str, FloatArray] = {}
    for var in law.variables:
        if inputs.get(var) is None:
            raise UserError(UserProblem(f"the {law.name} law needs {shown[var]} ({var})"))
        columns[var] = np.asarray(inputs[var], dtype=float).ravel()
    extra = [v for v, a in inputs.items() if a is not None and v not in law.variables]
    if extra:
        raise UserError(UserProblem(f"the {law.name} law does not use {', '.join(extra)}"))
    columns["loss"] = np.asarray(loss, dtype=float).ravel()
    check_columns(columns, shown, min_rows=law.n_params + 1)
    logs = np.log(np.stack([columns[v] for v in law.variables], axis=1))
    return logs, np.log(columns["loss"])


def check_columns(
    columns: dict[str, FloatArray], shown: dict[str, str], *, min_rows: int, positive: bool = True
) -> None:
    """Equal lengths, finite (and positive) values, enough rows, no constant column."""
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise UserError(UserProblem("columns have different lengths: " + _lengths(columns, shown)))
    for key, col in columns.items():
        bad = ~np.isfinite(col) | ((col <= 0) if positive else False)
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            need = "a positive number" if positive else "a finite number"
            raise UserError(
                UserProblem(
                    f"row {row}: {float(col[row - 1])!r} is not {need}; fix or drop the row",
                    field=shown[key],
                )
            )
    n = lengths.pop() if lengths else 0
    if n < min_rows:
        raise UserError(
            UserProblem(
                f"{'1 row is' if n == 1 else f'{n} rows are'} too few: this fit needs at least "
                f"{min_rows} (more rows than parameters)"
            )
        )
    for key, col in columns.items():
        if np.ptp(col) == 0:
            raise UserError(
                UserProblem(
                    f"every row has the same value ({col[0]:g}); the fit needs it to vary",
                    field=shown[key],
                )
            )


def _lengths(columns: dict[str, FloatArray], shown: dict[str, str]) -> str:
    return ", ".join(f"{shown[k]}={len(c)}" for k, c in columns.items())
