"""Figures a person would want: the fitted law over its data, and a forecast band with its line.

matplotlib is optional (``pip install 'safescale[plot]'``) and imported only here, with the
Agg backend so that plots render without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from safescale._errors import UserError
from safescale.scaling._bootstrap import LawBootstrap, compute_optimal
from safescale.scaling._capability import CapabilityForecast
from safescale.scaling._fit import ScalingLaw

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'safescale[plot]'") from None
    return plt


def _save(fig: Figure, path: str | Path | None) -> None:
    if path is not None:
        from io import BytesIO

        from safescale._io import atomic_write_bytes

        buf = BytesIO()
        fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
        atomic_write_bytes(path, buf.getvalue())


def plot_law(
    fit: ScalingLaw | LawBootstrap,
    params: ArrayLike,
    tokens: ArrayLike,
    loss: ArrayLike,
    path: str | Path | None = None,
) -> Figure:
    """Iso-FLOP view of a Chinchilla fit: loss against N, one colour per compute budget.

    Runs are grouped by compute ``C = 6 N D`` (budgets within 5% are one group). Each group
    gets the law's curve at that budget; the compute-optimal N_opt(C) is marked on every curve.
    With a bootstrap, the curves carry their 95% band.
    """
    plt = _pyplot()
    est = fit.estimate if isinstance(fit, LawBootstrap) else fit
    n = np.asarray(params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    y = np.asarray(loss, dtype=float)
    c = 6.0 * n * d
    budgets = _group(c)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cmap = plt.get_cmap("viridis")
    for i, b in enumerate(budgets):
        colour = cmap(i / max(len(budgets) - 1, 1))
        sel = np.abs(np.log(c / b)) < 0.05
        ax.scatter(n[sel], y[sel], s=14, color=colour, zorder=3)
        grid = np.geomspace(n[sel].min() / 1.5, n[sel].max() * 1.5, 100)
        curve = est.predict(grid, b / (6.0 * grid))
        ax.plot(grid, curve, color=colour, lw=1.4, label=f"C = {b:.1e}")
        if isinstance(fit, LawBootstrap):
            band = fit.predict_interval(grid, b / (6.0 * grid), kind="confidence")
            ax.fill_between(grid, band.lo, band.hi, color=colour, alpha=0.15, lw=0)
    if est.form == "chinchilla":
        opt = compute_optimal(est, budgets)
        ax.plot(opt.params.value, opt.loss.value, "k--", lw=1, label="compute-optimal N")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    p = est.params_
    ax.set_title(
        f"{est.form}: "
        + ", ".join(f"{k}={v:.3g}" for k, v in p.items())
        + f"  (n={est.n_points_})",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both", lw=0.5)
    _save(fig, path)
    return fig


def _group(c: np.ndarray) -> np.ndarray:
    # Distinct budgets, merging values within 5% (iso-FLOP designs repeat C up to rounding).
    out: list[float] = []
    for v in np.sort(c):
        if not out or np.log(v / out[-1]) > 0.05:
            out.append(float(v))
    return np.array(out)


def plot_forecast(
    forecast: CapabilityForecast,
    compute: ArrayLike,
    score: ArrayLike,
    *,
    at: float | None = None,
    line: float | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Score against compute: the models, the fitted curve with its prediction band, the chance
    floor, the threshold line and the planned compute with ``P(score >= line)``."""
    plt = _pyplot()
    c = np.asarray(compute, dtype=float)
    s = np.asarray(score, dtype=float)
    hi_c = max(c.max(), at or 0.0) * 3
    grid = np.geomspace(c.min() / 3, hi_c, 120)
    est = forecast.predict(grid)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    level = round(100 * forecast.level)
    ax.fill_between(
        grid, est.lo, est.hi, color="tab:blue", alpha=0.2, lw=0, label=f"{level}% prediction band"
    )
    ax.plot(grid, est.value, color="tab:blue", lw=1.6, label=f"fit (against {forecast.against})")
    ax.scatter(c, s, color="black", s=16, zorder=3, label=f"models (n={forecast.n_points})")
    ax.axhline(forecast.chance, color="grey", lw=0.8, ls=":", label="chance")
    if line is not None:
        ax.axhline(line, color="tab:red", lw=1.2, ls="--", label=f"threshold {line:g}")
    if at is not None:
        p = forecast.predict(at)
        ax.errorbar([at], [float(p.value)], yerr=[[float(p.value - p.lo)], [float(p.hi - p.value)]],
                    fmt="o", color="tab:orange", capsize=4, zorder=4,
                    label=f"planned C = {at:.2g}")  # fmt: skip
        if line is not None:
            prob = float(forecast.prob_exceeds(at, line))
            ax.text(0.98, 0.04, f"P(score >= {line:g}) at planned C = {prob:.3f}", ha="right",
                    transform=ax.transAxes, fontsize=9, color="tab:red")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOP)")
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    _save(fig, path)
    return fig
