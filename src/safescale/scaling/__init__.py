"""Scaling laws and capability forecasts with honest uncertainty.

Fit ``L(N, D) = E + A/N^alpha + B/D^beta`` (and other registered forms) by Hoffmann et al.
(2022) Approach 3, bootstrap it over runs, allocate compute, forecast a benchmark score at a
planned compute with a prediction interval calibrated on the ladder's own leave-future-out
backtests, and backtest those forecasts (coverage by distance, Brier score, method choice).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        MAX_QUESTIONS,
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
        LARGE_HELD_OUT_SEEDS,
        Ladder,
        Runs,
        synthetic_ladder,
        synthetic_runs,
    )

_WHERE: dict[str, str] = {
    "BacktestResult": "_capability",
    "BacktestRow": "_capability",
    "BandCoverage": "_capability",
    "CALIBRATION_SEEDS": "_synthetic",
    "CHINCHILLA": "_synthetic",
    "Calibration": "_calibration",
    "CapabilityForecast": "_capability",
    "ComputeOptimal": "_bootstrap",
    "CsvColumns": "_csv",
    "DISTANCE_BINS": "_capability",
    "DistanceCoverage": "_capability",
    "Estimate": "_bootstrap",
    "FLOOR_WIDENING": "_calibration",
    "ForecastMethod": "_methods",
    "FormScore": "_select",
    "HELD_OUT_SEEDS": "_synthetic",
    "LARGE_HELD_OUT_SEEDS": "_synthetic",
    "HUBER_DELTA": "_objective",
    "LAWS": "_laws",
    "Ladder": "_synthetic",
    "LawBootstrap": "_bootstrap",
    "LawForm": "_laws",
    "LawSelection": "_select",
    "METHODS": "_methods",
    "MethodScore": "_capability",
    "POSITION_BINS": "_capability",
    "POSITION_NAMES": "_capability",
    "ReferenceFit": "_reference",
    "Runs": "_synthetic",
    "ScalingLaw": "_fit",
    "ScoreData": "_methods",
    "SearchSettings": "_fit",
    "Term": "_laws",
    "backtest": "_capability",
    "bootstrap_law": "_bootstrap",
    "calibrate": "_calibration",
    "check_work": "_inputs",
    "MAX_QUESTIONS": "_inputs",
    "compute_optimal": "_bootstrap",
    "exponent_warnings": "_checks",
    "extrapolation_warnings": "_checks",
    "finite_json": "_inputs",
    "fit_capability": "_capability",
    "fit_law": "_fit",
    "in_file": "_inputs",
    "plot_calibration": "_plot",
    "plot_forecast": "_plot",
    "plot_law": "_plot",
    "position_warnings": "_checks",
    "read_columns": "_csv",
    "read_runs": "_inputs",
    "read_score_data": "_inputs",
    "read_table": "_csv",
    "reference_fit": "_reference",
    "rise_position": "_checks",
    "select_law": "_select",
    "synthetic_ladder": "_synthetic",
    "synthetic_runs": "_synthetic",
}
"""The module each public name lives in. Names are imported when first used (PEP 562), so a
command that does not fit a law does not pay for scipy at start-up."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CALIBRATION_SEEDS",
    "CHINCHILLA",
    "DISTANCE_BINS",
    "FLOOR_WIDENING",
    "HELD_OUT_SEEDS",
    "HUBER_DELTA",
    "LARGE_HELD_OUT_SEEDS",
    "LAWS",
    "MAX_QUESTIONS",
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
