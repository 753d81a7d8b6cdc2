"""``safescale scaling fit|forecast|backtest``: CSV in, tables, JSON or plots out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.table import Table

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_number, check_seed, check_text, quote
from safescale._io import check_output_path
from safescale.cli._common import console, err_console, print_json, print_table
from safescale.scaling import LAWS, MAX_QUESTIONS, METHODS

if TYPE_CHECKING:
    from safescale.scaling import BandCoverage, Estimate

MAX_BOOTSTRAP = 100_000
"""Most bootstrap replicates of a forecast or backtest (1,000 is plenty for a 95% interval)."""
MAX_FIT_BOOTSTRAP = 5_000
"""Most bootstrap replicates of ``fit`` (each is a fresh grid search and Newton refit)."""
MAX_FIT_WORK = 1_000_000
"""Most bootstrap replicates x rows of ``fit`` (about a minute and a half, under 1 GB)."""
MAX_SCORE_WORK = 10_000_000
"""Most bootstrap replicates x rows of ``forecast``/``backtest`` (the default 1,000 replicates
at the largest CSV's 10,000 rows; each replicate keeps a weight per row)."""
MAX_DISTANCE = 10.0
"""Most decades ``--max-distance`` may reach past a cut."""
MAX_FLOP = 1e35
"""Largest planned compute accepted (about a billion times the largest run of 2025)."""
MAX_SCORE = 1e12
"""Scores, chance and ceiling are benchmark numbers; anything past this is a typo."""
MAX_CSV_ROWS = 10_000
"""Most training runs a backtest walks through (the CSV reader's limit)."""

app = typer.Typer(
    help="Scaling laws and capability forecasts: fit, forecast, backtest.", no_args_is_help=True
)

CsvArg = Annotated[Path, typer.Argument(help="CSV file with a header row.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the bootstrap.")]
ChanceOpt = Annotated[float, typer.Option("--chance", help="Score of random guessing (floor).")]
CeilOpt = Annotated[float, typer.Option("--ceiling", help="Best possible score.")]
LossCol = Annotated[
    str | None, typer.Option("--loss", help="Loss column: enables the two-step method.")
]
WithOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--with",
        help="Another benchmark's score column, as COLUMN or COLUMN:CHANCE (repeatable): "
        "enables the multi-benchmark capability-pc method.",
    ),
]
QuestionsOpt = Annotated[
    int | None,
    typer.Option(
        "--questions",
        help="The benchmark's number of questions (scores as proportions): a ladder whose "
        "scatter is within sampling noise sets its backtest record aside.",
    ),
]
MethodOpt = Annotated[
    str,
    typer.Option(
        "--method",
        help="Forecast method: auto (smallest leave-future-out error; "
        "never the baseline logistic-4p), " + ", ".join(METHODS.names()),
    ),
]


@app.command()
def fit(
    csv: CsvArg,
    loss: Annotated[str, typer.Option("--loss", help="Column of final losses.")],
    params: Annotated[
        str | None, typer.Option("--params", help="Column of model parameters N.")
    ] = None,
    tokens: Annotated[
        str | None, typer.Option("--tokens", help="Column of training tokens D.")
    ] = None,
    flops: Annotated[
        str | None, typer.Option("--flops", help="Column of training FLOP C (D = C / 6N).")
    ] = None,
    form: Annotated[
        str, typer.Option("--form", help="Law form: " + ", ".join(LAWS.names()))
    ] = "chinchilla",
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap replicates (0: none).")
    ] = 0,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the fit.")] = None,
    budget: Annotated[
        list[float] | None,
        typer.Option(
            "--budget",
            help="Compute budget (FLOP) for the compute-optimal allocation; repeatable "
            "(default: five budgets from the smallest run to 100x the largest).",
        ),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Comma-separated forms to choose among by leave-the-largest-out backtest "
            "(the 20% largest-compute runs held out); overrides --form.",
        ),
    ] = None,
) -> None:
    """Fit a scaling law by Hoffmann et al. (2022) Approach 3 (Huber on log loss, grid + L-BFGS)."""
    from safescale.scaling import (
        bootstrap_law,
        check_work,
        exponent_warnings,
        extrapolation_warnings,
        fit_law,
        in_file,
        plot_law,
        read_runs,
        select_law,
    )

    if plot is not None:
        check_output_path(plot, "--plot")
    if compare is not None:
        check_text(compare, "--compare", max_len=1000)
        named = [f.strip() for f in compare.split(",") if f.strip()]
        candidates = list(dict.fromkeys(named))
        if len(candidates) < len(named):
            twice = next(f for f in candidates if named.count(f) > 1)
            raise UserError(
                Problem(f"names {quote(twice)} more than once; give each form once",
                        field="--compare")
            )  # fmt: skip
        if not candidates:
            raise UserError(
                Problem("names no law form; give forms separated by commas "
                        f"({', '.join(LAWS.names())})", field="--compare")
            )  # fmt: skip
    else:
        candidates = [form]
    for f in candidates:
        if f not in LAWS:
            raise UserError(
                Problem(f"unknown law {quote(f)}; choose one of: {', '.join(LAWS.names())}",
                        field="--compare" if compare else "--form")
            )  # fmt: skip
    needed = {v for f in candidates for v in LAWS.get(f).variables}
    law = LAWS.get(candidates[0])
    if plot is not None and not compare and not {"N", "D"} <= set(law.variables):
        raise UserError("--plot draws iso-FLOP curves and needs the chinchilla form")
    if tokens and flops and "D" in needed:
        raise UserError("give --tokens or --flops, not both")
    check_count(bootstrap, "--bootstrap", lo=0, hi=MAX_FIT_BOOTSTRAP)
    check_seed(seed)
    if bootstrap == 1:
        raise UserError("--bootstrap must be 0 or at least 2")
    for b in budget or []:
        check_number(b, "--budget", lo=0, hi=MAX_FLOP, lo_open=True)
    wanted = {"loss": loss}
    for key, col, flag in (
        ("N", params, "--params"),
        ("D", tokens, "--tokens"),
        ("C", flops, "--flops"),
    ):
        if col:
            wanted[key] = col
        elif key in needed and not (key == "D" and flops and params):
            which = next(f for f in candidates if key in LAWS.get(f).variables)
            raise UserError(f"the {which} law needs {flag} COLUMN")
    flags = {"loss": "--loss", "N": "--params", "D": "--tokens", "C": "--flops"}
    notes: list[str] = []  # printed once the fit has worked (a refusal is one line)
    data = read_runs(csv, wanted, positive=tuple(wanted), flags=flags, warn=notes.append)
    check_work(bootstrap, len(data["loss"]), MAX_FIT_WORK, csv)
    inputs = {v: data.get(v) for v in ("N", "D", "C")}
    if "D" in needed and inputs["D"] is None:
        inputs["D"] = data["C"] / (6.0 * data["N"])
    n_col, d_col = inputs["N"], inputs["D"]
    if "C" in needed and inputs["C"] is None and n_col is not None and d_col is not None:
        inputs["C"] = 6.0 * n_col * d_col
    selection = None
    if compare:
        with in_file(csv):
            selection = select_law(
                tuple(candidates), data["loss"], params=inputs["N"], tokens=inputs["D"],
                compute=inputs["C"],
            )  # fmt: skip
        form = selection.chosen
        law = LAWS.get(form)
    else:
        form = candidates[0]
    inputs = {v: (a if v in law.variables else None) for v, a in inputs.items()}
    names = dict(wanted)
    if "D" not in wanted and "C" in wanted:
        names["D"] = f"{wanted['C']}/(6*{wanted.get('N', 'N')})"
    kwargs: dict[str, Any] = {
        "params": inputs["N"], "tokens": inputs["D"], "compute": inputs["C"], "names": names
    }  # fmt: skip
    with in_file(csv):
        if bootstrap:
            boot = bootstrap_law(
                loss=data["loss"], form=form, n_boot=bootstrap, seed=seed, **kwargs
            )
            est = boot.estimate
        else:
            boot, est = None, fit_law(loss=data["loss"], form=form, **kwargs)
    _warn(*notes)
    out: dict[str, Any] = {
        "form": form,
        "params": est.params_,
        "objective": est.objective_,
        "n_points": est.n_points_,
        "huber_delta": est.huber_delta,
    }
    if boot is not None:
        out["intervals"] = {k: [float(e.lo), float(e.hi)] for k, e in boot.intervals.items()}
        out["bootstrap"] = {
            "n_boot": boot.n_boot,
            "seed": seed,
            "level": boot.level,
            "converged": boot.converged,
            "converged_share": boot.converged_share,
            "warning": boot.warning,
        }
        if form == "chinchilla":
            out["optimal_exponent"] = boot.optimal_exponent().as_json()
    run_compute = (
        6.0 * inputs["N"] * inputs["D"]
        if inputs["N"] is not None and inputs["D"] is not None
        else inputs["C"]
    )
    budgets = (
        np.asarray(budget, dtype=float)
        if budget
        else np.geomspace(run_compute.min(), 100 * run_compute.max(), 5)
        if run_compute is not None
        else np.geomspace(1e21, 1e25, 5)
    )
    warnings = exponent_warnings(est.params_)
    if form == "chinchilla" and run_compute is not None:
        warnings += extrapolation_warnings(budgets.tolist(), run_compute.tolist())
    out["warnings"] = warnings
    if selection is not None:
        out["selection"] = {
            "chosen": selection.chosen,
            "n_holdout": selection.n_holdout,
            "forms": [_form_json(sc) for sc in selection.scores],
        }
    if plot is not None:
        if inputs["N"] is None or inputs["D"] is None:
            raise UserError("--plot draws iso-FLOP curves and needs the chinchilla form")
        plot_law(boot or est, inputs["N"], inputs["D"], data["loss"], plot)
    if as_json:
        _print_json(out)
        return
    if selection is not None:
        _show_selection(out["selection"])
    _show_fit(out, boot is not None)
    if boot is not None:
        _show_convergence(boot.converged, boot.n_boot, boot.warning)
    if form == "chinchilla":
        _show_optimal(boot or est, budgets)
    for line in warnings:
        err_console.print(f"warning: {line}", markup=False, soft_wrap=True)
    if plot is not None:
        console.print(f"plot written to {plot}")


def _show_fit(out: dict[str, Any], intervals: bool) -> None:
    table = Table(title=f"{out['form']} law, n = {out['n_points']} runs", title_justify="left")
    table.add_column("parameter")
    table.add_column("estimate", justify="right")
    if intervals:
        level = round(100 * out["bootstrap"]["level"])
        table.add_column(
            f"{level}% interval (bootstrap, {out['bootstrap']['n_boot']})", justify="right"
        )
    for name, value in out["params"].items():
        row = [name, f"{value:.5g}"]
        if intervals:
            lo, hi = out["intervals"][name]
            row.append(f"[{lo:.4g}, {hi:.4g}]")
        table.add_row(*row)
    print_table(table)
    console.print(
        f"objective (summed Huber, delta={out['huber_delta']:g}): {out['objective']:.10g}"
    )


def _form_json(sc: Any) -> dict[str, Any]:
    return {
        "form": sc.form,
        "holdout_error": sc.holdout_error,
        "holdout_bias": sc.holdout_bias,
        "weight": sc.weight,
    }


def _show_selection(sel: dict[str, Any]) -> None:
    table = Table(
        title=f"forms by leave-the-largest-out backtest ({sel['n_holdout']} largest runs held "
        f"out); chosen: {sel['chosen']}",
        title_justify="left",
    )
    for col in ("form", "held-out |log error|", "bias (pred - obs)", "mixture weight"):
        table.add_column(col, justify="right")
    for f in sel["forms"]:
        table.add_row(
            f["form"] + (" *" if f["form"] == sel["chosen"] else ""),
            f"{f['holdout_error']:.4f}", f"{f['holdout_bias']:+.4f}", f"{f['weight']:.3f}",
        )  # fmt: skip
    console.print(table)


def _show_convergence(converged: int, n_boot: int, warning: str | None) -> None:
    console.print(
        f"bootstrap: {converged} of {n_boot} replicates refitted to their own optimum "
        f"({100 * converged / max(n_boot, 1):.1f}%)"
    )
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}")


def _show_optimal(fit: Any, budgets: np.ndarray) -> None:
    from safescale.scaling import compute_optimal

    opt = compute_optimal(fit, budgets)
    table = Table(title="compute-optimal allocation (C = 6ND)", title_justify="left")
    for col in ("C (FLOP)", "N_opt", "D_opt", "tokens / param"):
        table.add_column(col, justify="right")
    for i, c in enumerate(opt.compute):
        table.add_row(
            f"{c:.1e}", _cell(opt.params, i), _cell(opt.tokens, i), _cell(opt.tokens_per_param, i)
        )
    print_table(table)


def _cell(e: Estimate, i: int) -> str:
    v, lo, hi = (float(np.atleast_1d(x)[i]) for x in (e.value, e.lo, e.hi))
    return f"{v:.3g}" if e.level == 0 else f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


@app.command()
def forecast(
    csv: CsvArg,
    compute: Annotated[str, typer.Option("--compute", help="Column of training FLOP.")],
    score: Annotated[str, typer.Option("--score", help="Column of benchmark scores.")],
    at: Annotated[float, typer.Option("--at", help="Planned training compute (FLOP).")],
    chance: ChanceOpt = 0.0,
    ceiling: CeilOpt = 1.0,
    loss: LossCol = None,
    line: Annotated[
        float | None, typer.Option("--line", help="Threshold score: report P(score >= line).")
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates.")] = 1000,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of the forecast.")
    ] = None,
    method: MethodOpt = "auto",
    with_: WithOpt = None,
    questions: QuestionsOpt = None,
) -> None:
    """Forecast a benchmark score at a planned compute, with a prediction interval."""
    from safescale.scaling import fit_capability, in_file, plot_forecast, position_warnings

    check_number(at, "--at", lo=0, hi=MAX_FLOP, lo_open=True)
    _check_common(chance, ceiling, bootstrap, seed, plot)
    if line is not None:
        check_number(line, "--line", lo=chance, hi=ceiling)
    if questions is not None:
        check_count(questions, "--questions", lo=1, hi=MAX_QUESTIONS)
    _check_method(method, loss, with_)
    data, others, others_chance, notes = _read_scores(
        csv, compute, score, loss, with_, chance, ceiling, bootstrap
    )
    with in_file(csv):
        fc = fit_capability(
            data["C"], data["s"], chance=chance, ceiling=ceiling, loss=data.get("L"),
            n_boot=bootstrap, seed=seed, names=_names(compute, score, loss), method=method,
            others=others, others_chance=others_chance, questions=questions,
        )  # fmt: skip
    _warn(*notes)
    p = fc.predict(at)
    out: dict[str, Any] = {
        "against": fc.against,
        "at": at,
        "score": float(p.value),
        "interval": [float(p.lo), float(p.hi)],
        "level": fc.level,
        "n_points": fc.n_points,
        "sigmoid": {
            "x0": fc.x0,
            "slope": fc.slope,
            "chance": chance,
            "ceiling": ceiling,
            "sigma": fc.sigma,
        },
        "n_boot": bootstrap,
        "seed": seed,
        "rise_observed": fc.rise_observed,
        "method": fc.method,
        "calibrated": fc.calibrated,
        "calibration": None if fc.calibration is None else fc.calibration.as_json(),
        "distance_decades": float(fc.distance(at)),
        "position_on_rise": (position := fc.position(at)),
        "scale_widening": float(fc.widening(at)),
        "method_errors": dict(fc.method_errors),
        "warnings": position_warnings(position) + ([] if fc.calibrated else [UNCALIBRATED]),
    }
    if fc.loss_law is not None:
        out["loss_bootstrap"] = fc.loss_law.convergence_json()
    if line is not None:
        out["line"] = line
        out["prob_exceeds"] = float(fc.prob_exceeds(at, line))
    if plot is not None:
        plot_forecast(fc, data["C"], data["s"], at=at, line=line, path=plot)
    if as_json:
        _print_json(out)
        return
    level = round(100 * fc.level)
    # One fact a line, each under 80 columns, so that no value is cut at a terminal's edge.
    widened = out["scale_widening"]
    lines = [
        f"score at C = {at:.3g} FLOP: {out['score']:.4f}",
        f"{level}% prediction interval: [{p.lo:.4f}, {p.hi:.4f}]",
        f"from {fc.n_points} models, method {fc.method}, "
        f"{out['distance_decades']:.2f} decades past the largest",
    ]
    if fc.calibration is not None:
        cal = fc.calibration
        lines += cal.describe()
        lines.append("out-of-sample MAE: " + ", ".join(f"{m} {e:.4f}" for m, e in fc.method_errors))
        if widened != 1.0:
            lines.append(f"scale widened {widened:g}x: the point lies near the floor")
    for text in lines:
        console.print(text, soft_wrap=True)
    if fc.loss_law is not None:
        _show_convergence(fc.loss_law.converged, fc.loss_law.n_boot, fc.loss_law.warning)
    if line is not None:
        how = "calibrated" if fc.calibrated else f"{bootstrap} bootstrap draws"
        console.print(f"P(score >= {line:g}) = {out['prob_exceeds']:.3f}  ({how})")
    if plot is not None:
        console.print(f"plot written to {plot}")
    for warning in out["warnings"]:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)


UNCALIBRATED = (
    "too few models to calibrate on the ladder's own backtests; the interval is the "
    "bootstrap's and may be too narrow"
)
"""Said (stderr, and under ``warnings`` in JSON) of a forecast that could not be calibrated."""


@app.command("backtest")
def backtest_cmd(
    csv: CsvArg,
    compute: Annotated[str, typer.Option("--compute", help="Column of training FLOP.")],
    score: Annotated[str, typer.Option("--score", help="Column of benchmark scores.")],
    chance: ChanceOpt = 0.0,
    ceiling: CeilOpt = 1.0,
    loss: LossCol = None,
    min_train: Annotated[int, typer.Option("--min-train", help="Fewest models to fit on.")] = 4,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap replicates per fit.")
    ] = 400,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    method: MethodOpt = "auto",
    lines: Annotated[
        list[float] | None,
        typer.Option("--line", help="Score line for the Brier score (repeatable)."),
    ] = None,
    max_distance: Annotated[
        float | None,
        typer.Option("--max-distance", help="Predict at most this many decades past a cut."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG calibration plot.")
    ] = None,
    with_: WithOpt = None,
    questions: QuestionsOpt = None,
) -> None:
    """Fit on the smaller models, predict the larger ones: method, coverage, Brier score.

    Chooses the method with the smallest out-of-sample error; reports coverage by
    extrapolation distance and the Brier score of P(score >= line)."""
    from safescale.scaling import backtest, in_file, plot_calibration

    _check_common(chance, ceiling, bootstrap, seed, plot)
    check_count(min_train, "--min-train", lo=2, hi=MAX_CSV_ROWS)
    for ln in lines or []:
        check_number(ln, "--line", lo=chance, hi=ceiling)
    if max_distance is not None:
        check_number(max_distance, "--max-distance", lo=0, hi=MAX_DISTANCE, lo_open=True)
    if questions is not None:
        check_count(questions, "--questions", lo=1, hi=MAX_QUESTIONS)
    _check_method(method, loss, with_)
    data, others, others_chance, notes = _read_scores(
        csv, compute, score, loss, with_, chance, ceiling, bootstrap
    )
    with in_file(csv):
        bt = backtest(
            data["C"], data["s"], chance=chance, ceiling=ceiling, loss=data.get("L"),
            min_train=min_train, n_boot=bootstrap, seed=seed,
            names=_names(compute, score, loss), methods=None if method == "auto" else (method,),
            lines=tuple(lines) if lines else None, max_distance=max_distance,
            others=others, others_chance=others_chance, questions=questions,
        )  # fmt: skip
    _warn(*notes)
    if plot is not None:
        plot_calibration(bt, plot)
    out = {
        "n": bt.n,
        "level": bt.level,
        "method": bt.method,
        "mae": bt.mae.as_json(),
        "coverage": bt.coverage.as_json(),
        "methods": [
            {
                "method": m.method,
                "n": m.n,
                "mae": m.mae.as_json(),
                "coverage": m.coverage.as_json(),
            }
            for m in bt.methods
        ],
        "by_distance": [
            {
                "decades": [d.lo, None if np.isinf(d.hi) else d.hi],
                "n": d.n,
                "coverage": d.coverage.as_json(),
            }
            for d in bt.by_distance
        ],
        "by_position": [
            {"share_of_rise": [b.lo, b.hi], "n": b.n, "coverage": b.coverage.as_json()}
            for b in bt.by_position
        ],
        "lines": list(bt.lines),
        "brier": None if bt.brier is None else bt.brier.as_json(),
        "rows": [
            {
                "train_max_compute": r.train_max_compute,
                "compute": r.compute,
                "actual": r.actual,
                "predicted": float(r.predicted.value),
                "interval": [float(r.predicted.lo), float(r.predicted.hi)],
                "covered": r.covered,
                "distance_decades": r.distance,
                "pit": r.pit,
                "prob_exceeds": list(r.probs),
                "record_used": r.record_used,
                "overdispersion": r.overdispersion,
            }
            for r in bt.rows
        ],
    }
    if as_json:
        _print_json(out)
        return
    table = Table(title=f"backtest: {bt.n} predictions", title_justify="left")
    for col in ("fit up to C", "predict C", "actual", "predicted", "interval", "covered"):
        table.add_column(col, justify="right")
    for r in bt.rows:
        p = r.predicted
        table.add_row(
            f"{r.train_max_compute:.2e}", f"{r.compute:.2e}", f"{r.actual:.4f}",
            f"{float(p.value):.4f}",
            f"[{float(p.lo):.4f}, {float(p.hi):.4f}]", "yes" if r.covered else "NO",
        )  # fmt: skip
    print_table(table)
    level = round(100 * bt.level)
    m, c = bt.mae, bt.coverage
    for text in (
        f"mean absolute error {float(m.value):.4f} [{float(m.lo):.4f}, {float(m.hi):.4f}]",
        f"coverage of {level}% intervals: {float(c.value):.2f} "
        f"[{float(c.lo):.2f}, {float(c.hi):.2f}] (n = {bt.n})",
        "(rows of one cut share its fit, so these intervals are optimistic)",
    ):
        console.print(text, soft_wrap=True)
    methods = Table(title=f"methods (chosen: {bt.method}, smallest MAE)", title_justify="left")
    for col in ("method", "n", "MAE", f"coverage of {level}%"):
        methods.add_column(col, justify="right")
    for ms in bt.methods:
        methods.add_row(
            ms.method + (" *" if ms.method == bt.method else ""), str(ms.n),
            _est(ms.mae, 4), _est(ms.coverage, 2),
        )  # fmt: skip
    console.print(methods)
    for title, head, bands, label in (
        ("coverage by extrapolation distance", "decades past the cut", bt.by_distance,
         lambda b: f"({b.lo:g}, {'' if np.isinf(b.hi) else f'{b.hi:g}'}]"),
        ("coverage by position on the rise (point forecast)", "share of chance to ceiling",
         bt.by_position, _position_label),
    ):  # fmt: skip
        table = Table(title=title, title_justify="left")
        for col in (head, "n", f"coverage of {level}%"):
            table.add_column(col, justify="right")
        for b in bands:
            table.add_row(label(b), str(b.n), _est(b.coverage, 2))
        console.print(table)
    if bt.brier is not None:
        shown = ", ".join(f"{ln:g}" for ln in bt.lines)
        console.print(f"Brier score of P(score >= line): {_est(bt.brier, 4)}", soft_wrap=True)
        console.print(f"(lines {shown})", soft_wrap=True)
    if plot is not None:
        console.print(f"calibration plot written to {plot}")


def _position_label(b: BandCoverage) -> str:
    from safescale.scaling import POSITION_BINS, POSITION_NAMES

    k = POSITION_BINS.index(b.lo)  # the first band includes its start
    return f"{POSITION_NAMES[k]} {'[' if k == 0 else '('}{b.lo:g}, {b.hi:g}]"


def _est(e: Estimate, digits: int) -> str:
    return f"{float(e.value):.{digits}f} [{float(e.lo):.{digits}f}, {float(e.hi):.{digits}f}]"


def _check_common(
    chance: float, ceiling: float, bootstrap: int, seed: int, plot: Path | None
) -> None:
    """The flags forecast and backtest share: finite score bounds, bounded bootstrap, and a
    writable --plot path (checked before any work)."""
    check_number(chance, "--chance", lo=-MAX_SCORE, hi=MAX_SCORE)
    check_number(ceiling, "--ceiling", lo=-MAX_SCORE, hi=MAX_SCORE)
    if not chance < ceiling:
        raise UserError(
            Problem(f"--chance {chance:g} must be below --ceiling {ceiling:g}", field="--chance")
        )
    check_count(bootstrap, "--bootstrap", lo=2, hi=MAX_BOOTSTRAP)
    check_seed(seed)
    if plot is not None:
        check_output_path(plot, "--plot")


def _read_scores(
    csv: Path,
    compute: str,
    score: str,
    loss: str | None,
    with_: list[str] | None,
    chance: float,
    ceiling: float,
    bootstrap: int,
) -> tuple[dict[str, Any], Any, Any, list[str]]:
    """The score columns (``read_score_data``), with the bootstrap's work checked against
    them, and the notes to print once the fit has worked (a refusal stays one line)."""
    from safescale.scaling import check_work, read_score_data

    notes: list[str] = []
    data, others, others_chance = read_score_data(
        csv, compute, score, loss, with_, chance, ceiling, notes.append
    )
    check_work(bootstrap, len(data["s"]), MAX_SCORE_WORK, csv)
    return data, others, others_chance, notes


def _check_method(method: str, loss: str | None, with_: list[str] | None) -> None:
    if method == "auto":
        return
    chosen = METHODS.get(method)
    if chosen.needs_loss and not loss:
        raise UserError(Problem(f"method {quote(method)} needs --loss COLUMN", field="--method"))
    if chosen.needs_others and not with_:
        raise UserError(
            Problem(f"method {quote(method)} needs other benchmarks (--with COLUMN)",
                    field="--method")
        )  # fmt: skip


def _print_json(out: dict[str, Any]) -> None:
    """``out`` as JSON on stdout, with a non-finite number as null (JSON has no NaN)."""
    from safescale.scaling import finite_json

    print_json(finite_json(out))


def _warn(*texts: str) -> None:
    for text in texts:
        err_console.print(f"warning: {text}", markup=False, soft_wrap=True)


def _names(compute: str, score: str, loss: str | None) -> dict[str, str]:
    return {"compute": compute, "score": score} | ({"loss": loss} if loss else {})
