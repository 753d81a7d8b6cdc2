"""Choosing a law form by how well it extrapolates, and carrying the choice into the interval.

A form that fits the runs in hand can still be biased beyond them (fitting Chinchilla's form
to runs up to ~400M parameters and predicting 7B can miss by several percent). Here each
candidate form is fitted to all runs except the largest-compute ones and scored on those
(leave-the-largest-out); the form with the smallest mean absolute log error is chosen.
Model-form uncertainty is carried into predictions by a mixture: each form's bootstrap
replicates are drawn in proportion to its weight ``w_f ~ 1 / err_f^2`` (inverse squared
held-out error), so a form that extrapolated nearly as well widens the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from safescale._errors import Problem, UserError
from safescale.scaling._bootstrap import Estimate, LawBootstrap, bootstrap_law
from safescale.scaling._fit import fit_law
from safescale.scaling._laws import LAWS, FloatArray


@dataclass(frozen=True)
class FormScore:
    """One candidate form's leave-the-largest-out record."""

    form: str
    """Law form name."""
    holdout_error: float
    """Mean absolute log error on the held-out largest runs (a relative error)."""
    holdout_bias: float
    """Mean signed log error (predicted minus observed) on the held-out runs."""
    weight: float
    """Weight in the model-form mixture (sums to one over forms)."""


@dataclass(frozen=True)
class LawSelection:
    """Forms compared by leave-the-largest-out backtest, the chosen one and the mixture."""

    chosen: str
    """The form with the smallest held-out error."""
    scores: tuple[FormScore, ...]
    """Every form tried."""
    n_holdout: int
    """Runs held out (the largest by compute)."""
    boots: tuple[LawBootstrap, ...] = ()
    """Each form's bootstrap, in ``scores`` order (empty when not bootstrapped)."""

    def predict_interval(self, *values: ArrayLike, seed: int = 0) -> Estimate:
        """Loss a new run would show at ``values`` (the chosen form's variables), with a
        prediction interval from the model-form mixture of bootstrap replicates."""
        if not self.boots:
            raise ValueError("select_law(..., n_boot=...) was not bootstrapped")
        rng = np.random.default_rng(seed)
        chosen = next(b for b in self.boots if b.estimate.form == self.chosen)
        full = chosen.estimate.predict(*values)
        total = chosen.n_boot
        draws = []
        for sc, b in zip(self.scores, self.boots, strict=True):
            k = round(sc.weight * total)
            if k == 0:
                continue
            law = b.estimate.law
            cols = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in values])
            logs = np.log(np.stack([c.ravel() for c in cols], axis=1))
            pick = rng.integers(0, b.n_boot, size=k)
            d = law.log_predict(b.thetas[pick], logs) + rng.choice(b.residuals, size=(k, 1))
            draws.append(np.exp(d))
        all_draws = np.concatenate(draws)
        tail = 100 * (1 - chosen.level) / 2
        lo, hi = np.percentile(all_draws, [tail, 100 - tail], axis=0)
        shape = np.shape(full)
        return Estimate(full, lo.reshape(shape), hi.reshape(shape), chosen.level)


def select_law(
    forms: tuple[str, ...],
    loss: ArrayLike,
    *,
    params: ArrayLike | None = None,
    tokens: ArrayLike | None = None,
    compute: ArrayLike | None = None,
    holdout: float = 0.2,
    n_boot: int = 0,
    seed: int = 0,
) -> LawSelection:
    """Compare law forms by leave-the-largest-out backtest.

    Args:
        forms: candidate forms, all using inputs that are given.
        loss: final loss per run.
        params, tokens, compute: inputs (``compute`` defaults to ``6 N D`` for ordering).
        holdout: share of runs held out, the largest by compute (at least one run).
        n_boot: bootstrap replicates per form for the mixture interval (0: none).
        seed: bootstrap seed.

    Raises:
        UserError: too few runs to hold any out, or a form needs an input not given.
    """
    y = np.asarray(loss, dtype=float).ravel()
    inputs = {"N": params, "D": tokens, "C": compute}
    arrays = {
        k: None if v is None else np.asarray(v, dtype=float).ravel() for k, v in inputs.items()
    }
    order_by = arrays["C"]
    if order_by is None and arrays["N"] is not None and arrays["D"] is not None:
        order_by = 6.0 * arrays["N"] * arrays["D"]
    if order_by is None:
        raise UserError(Problem("leave-the-largest-out needs compute, or params and tokens"))
    k = max(1, round(holdout * len(y)))
    cut = np.sort(order_by)[len(y) - k]
    test = order_by >= cut
    train = ~test
    results: list[tuple[str, float, float]] = []
    for name in forms:
        law = LAWS.get(name)
        use = {v: arrays[v] for v in law.variables}
        if any(a is None for a in use.values()):
            raise UserError(Problem(f"form {name!r} needs {', '.join(law.variables)}"))
        fit = fit_law(
            loss=y[train],
            params=None if "N" not in use else use["N"][train],  # type: ignore[index]
            tokens=None if "D" not in use else use["D"][train],  # type: ignore[index]
            compute=None if "C" not in use else use["C"][train],  # type: ignore[index]
            form=name,
        )
        pred = fit.predict(*[use[v][test] for v in law.variables])  # type: ignore[index]
        err = np.log(pred) - np.log(y[test])
        results.append((name, float(np.mean(np.abs(err))), float(np.mean(err))))
    inv = np.array([1.0 / max(e, 1e-12) ** 2 for _, e, _ in results])
    weights = inv / inv.sum()
    scores = tuple(
        FormScore(n, e, b, float(w)) for (n, e, b), w in zip(results, weights, strict=True)
    )
    chosen = min(scores, key=lambda s: s.holdout_error).form
    boots: tuple[LawBootstrap, ...] = ()
    if n_boot:
        boots = tuple(_boot(s.form, y, arrays, n_boot, seed) for s in scores)
    return LawSelection(chosen, scores, int(test.sum()), boots)


def _boot(
    form: str, y: FloatArray, arrays: dict[str, FloatArray | None], n_boot: int, seed: int
) -> LawBootstrap:
    used = LAWS.get(form).variables
    pick = {v: (arrays[v] if v in used else None) for v in ("N", "D", "C")}
    return bootstrap_law(
        pick["N"], pick["D"], y, compute=pick["C"], form=form, n_boot=n_boot, seed=seed
    )
