"""Figures a person would want: the fitted law over its data, and a forecast band with its line.

matplotlib is optional (``pip install 'safescale[plot]'``) and imported only here, with the
Agg backend so that plots render without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from safescale._errors import Problem, UserError
from safescale.scaling._bootstrap import LawBootstrap, compute_optimal
from safescale.scaling._capability import (
    POSITION_BINS,
    POSITION_NAMES,
    BacktestResult,
    CapabilityForecast,
)
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
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            raise UserError(
                Problem(f"{path} cannot be written ({exc.strerror or exc}); give another path",
                        field="--plot")
            ) from None  # fmt: skip


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
    line_label: str = "threshold",
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
        ax.axhline(line, color="tab:red", lw=1.2, ls="--", label=f"{line_label} {line:g}")
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


def plot_calibration(result: BacktestResult, path: str | Path | None = None) -> Figure:
    """Three calibration panels for a backtest of the chosen method.

    Left: the share of actual scores inside the central predictive interval against its
    nominal level (from the rows' PIT values); a calibrated forecast lies on the diagonal.
    Right: a reliability diagram of ``P(score >= line)``: predicted probability (binned by
    tenths) against the observed frequency, with the count per bin.
    Third: coverage of the nominal-level intervals by extrapolation distance and by position on
    the rise, with Wilson intervals and counts (a pooled figure can hide bands off the line).
    """
    plt = _pyplot()
    fig, (left, right, bands) = plt.subplots(1, 3, figsize=(15, 4.4))
    levels = np.linspace(0.05, 0.95, 19)
    left.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    left.plot(levels, [result.coverage_at(lv) for lv in levels], "o-", ms=3, color="tab:blue")
    left.set_xlabel("nominal coverage of central interval")
    left.set_ylabel("observed coverage")
    left.set_title(f"intervals: {result.method}, n = {result.n}", fontsize=10)
    right.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    if result.lines:
        p = np.array([r.probs for r in result.rows]).ravel()
        y = np.array([[r.actual >= ln for ln in result.lines] for r in result.rows]).ravel()
        edges = np.linspace(0, 1, 11)
        which = np.clip(np.digitize(p, edges) - 1, 0, 9)
        for b in range(10):
            sel = which == b
            if sel.any():
                right.scatter(p[sel].mean(), y[sel].mean(), s=12 + 4 * sel.sum(),
                              color="tab:orange", alpha=0.8)  # fmt: skip
                right.annotate(str(int(sel.sum())), (p[sel].mean(), y[sel].mean()), fontsize=7)
        if result.brier is not None:
            right.set_title(f"P(score >= line): Brier {float(result.brier.value):.3f}", fontsize=10)
    right.set_xlabel("forecast probability")
    right.set_ylabel("observed frequency")
    for ax in (left, right):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, lw=0.5)
    _band_panel(bands, result)
    _save(fig, path)
    return fig


def _band_panel(ax: Any, result: BacktestResult) -> None:
    """Coverage per band: distance bands (blue), then position-on-the-rise bands (green)."""
    shown = [
        (f"{b.lo:g}-{'' if np.isinf(b.hi) else f'{b.hi:g}'} dec", b, "tab:blue")
        for b in result.by_distance
    ] + [(POSITION_NAMES[POSITION_BINS.index(b.lo)], b, "tab:green") for b in result.by_position]
    for x, (_, b, color) in enumerate(shown):
        v, lo, hi = float(b.coverage.value), float(b.coverage.lo), float(b.coverage.hi)
        ax.bar(x, v, color=color, alpha=0.6)
        ax.errorbar(x, v, yerr=[[v - lo], [hi - v]], color="black", lw=1, capsize=3)
        ax.annotate(f"n={b.n}", (x, 0.02), ha="center", fontsize=7)
    ax.axhline(result.level, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(shown)), [label for label, _, _ in shown], fontsize=8, rotation=30)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"coverage of {round(100 * result.level)}% intervals")
    ax.set_title("by distance (blue) and position on the rise (green)", fontsize=10)
    ax.grid(alpha=0.3, lw=0.5, axis="y")
