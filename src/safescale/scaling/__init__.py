"""Scaling laws and capability forecasts with honest uncertainty.

Fit ``L(N, D) = E + A/N^alpha + B/D^beta`` (and other registered forms) by Hoffmann et al.
(2022) Approach 3, bootstrap it over runs, allocate compute, forecast a benchmark score at a
planned compute with a prediction interval calibrated on the ladder's own leave-future-out
backtests, and backtest those forecasts (coverage by distance, Brier score, method choice).
"""

from safescale.scaling._bootstrap import (
    ComputeOptimal,
    Estimate,
    LawBootstrap,
    bootstrap_law,
    compute_optimal,
)
from safescale.scaling._calibration import FLOOR_WIDENING, Calibration, calibrate
from safescale.scaling._capability import (
    DISTANCE_BINS,
    POSITION_BINS,
    POSITION_NAMES,
    BacktestResult,
    BacktestRow,
    BandCoverage,
    CapabilityForecast,
    DistanceCoverage,
    MethodScore,
    backtest,
    fit_capability,
)
from safescale.scaling._checks import (
    exponent_warnings,
    extrapolation_warnings,
    position_warnings,
    rise_position,
)
from safescale.scaling._csv import CsvColumns, read_columns, read_table
from safescale.scaling._fit import ScalingLaw, SearchSettings, fit_law
from safescale.scaling._inputs import (
    check_work,
    finite_json,
    in_file,
    read_runs,
    read_score_data,
)
from safescale.scaling._laws import LAWS, LawForm, Term
from safescale.scaling._methods import METHODS, ForecastMethod, ScoreData
from safescale.scaling._objective import HUBER_DELTA
from safescale.scaling._plot import plot_calibration, plot_forecast, plot_law
from safescale.scaling._reference import ReferenceFit, reference_fit
from safescale.scaling._select import FormScore, LawSelection, select_law
from safescale.scaling._synthetic import (
    CALIBRATION_SEEDS,
    CHINCHILLA,
    HELD_OUT_SEEDS,
    Ladder,
    Runs,
    synthetic_ladder,
    synthetic_runs,
)

__all__ = [
    "CALIBRATION_SEEDS",
    "CHINCHILLA",
    "DISTANCE_BINS",
    "FLOOR_WIDENING",
    "HELD_OUT_SEEDS",
    "HUBER_DELTA",
    "LAWS",
    "METHODS",
    "POSITION_BINS",
    "POSITION_NAMES",
    "BacktestResult",
    "BacktestRow",
    "BandCoverage",
    "Calibration",
    "CapabilityForecast",
    "ComputeOptimal",
    "CsvColumns",
    "DistanceCoverage",
    "Estimate",
    "ForecastMethod",
    "FormScore",
    "Ladder",
    "LawBootstrap",
    "LawForm",
    "LawSelection",
    "MethodScore",
    "ReferenceFit",
    "Runs",
    "ScalingLaw",
    "ScoreData",
    "SearchSettings",
    "Term",
    "backtest",
    "bootstrap_law",
    "calibrate",
    "check_work",
    "compute_optimal",
    "exponent_warnings",
    "extrapolation_warnings",
    "finite_json",
    "fit_capability",
    "fit_law",
    "in_file",
    "plot_calibration",
    "plot_forecast",
    "plot_law",
    "position_warnings",
    "read_columns",
    "read_runs",
    "read_score_data",
    "read_table",
    "reference_fit",
    "rise_position",
    "select_law",
    "synthetic_ladder",
    "synthetic_runs",
]
