"""Scaling laws and capability forecasts with honest uncertainty.

Fit ``L(N, D) = E + A/N^alpha + B/D^beta`` (and other registered forms) by Hoffmann et al.
(2022) Approach 3, bootstrap it over runs, allocate compute, forecast a benchmark score at a
planned compute with a prediction interval, and backtest those forecasts.
"""

from safescale.scaling._bootstrap import (
    ComputeOptimal,
    Estimate,
    LawBootstrap,
    bootstrap_law,
    compute_optimal,
)
from safescale.scaling._capability import (
    BacktestResult,
    BacktestRow,
    CapabilityForecast,
    backtest,
    fit_capability,
)
from safescale.scaling._checks import exponent_warnings, extrapolation_warnings
from safescale.scaling._csv import read_columns
from safescale.scaling._fit import ScalingLaw, SearchSettings, fit_law
from safescale.scaling._laws import LAWS, LawForm, Term
from safescale.scaling._objective import HUBER_DELTA
from safescale.scaling._plot import plot_forecast, plot_law
from safescale.scaling._reference import ReferenceFit, reference_fit
from safescale.scaling._synthetic import CHINCHILLA, Runs, synthetic_runs

__all__ = [
    "CHINCHILLA",
    "HUBER_DELTA",
    "LAWS",
    "BacktestResult",
    "BacktestRow",
    "CapabilityForecast",
    "ComputeOptimal",
    "Estimate",
    "LawBootstrap",
    "LawForm",
    "ReferenceFit",
    "Runs",
    "ScalingLaw",
    "SearchSettings",
    "Term",
    "backtest",
    "bootstrap_law",
    "compute_optimal",
    "exponent_warnings",
    "extrapolation_warnings",
    "fit_capability",
    "fit_law",
    "plot_forecast",
    "plot_law",
    "read_columns",
    "reference_fit",
    "synthetic_runs",
]
