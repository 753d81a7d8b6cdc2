"""``safescale scaling fit|forecast|backtest``: CSV in, tables, JSON or plots out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from safescale._errors import Problem, UserError
from safescale._input import check_count, check_number, check_optional_number, quote
from safescale.cli._common import console, print_json
from safescale.scaling import (
    LAWS,
    Estimate,
    backtest,
    bootstrap_law,
    compute_optimal,
    fit_capability,
    fit_law,
    plot_forecast,
    plot_law,
    read_columns,
)

MAX_BOOTSTRAP = 100_000
"""Most bootstrap replicates (each refits the law; 1,000 is plenty for a 95% interval)."""
MAX_SEED = 2**32 - 1
"""numpy seeds are 32-bit here."""
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
    str | None, typer.Option("--loss", help="Loss column: forecast by the two-step method.")
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
) -> None:
    """Fit a scaling law by Hoffmann et al. (2022) Approach 3 (Huber on log loss, grid + L-BFGS)."""
    if form not in LAWS:
        raise UserError(
            Problem(f"unknown law {quote(form)}; choose one of: {', '.join(LAWS.names())}",
                    field="--form")
        )  # fmt: skip
    law = LAWS.get(form)
    if tokens and flops and "D" in law.variables:
        raise UserError("give --tokens or --flops, not both")
    check_count(bootstrap, "--bootstrap", lo=0, hi=MAX_BOOTSTRAP)
    check_count(seed, "--seed", hi=MAX_SEED)
    if bootstrap == 1:
        raise UserError("--bootstrap must be 0 or at least 2")
    wanted = {"loss": loss}
    for key, col, flag in (
        ("N", params, "--params"),
        ("D", tokens, "--tokens"),
        ("C", flops, "--flops"),
    ):
        if col:
            wanted[key] = col
        elif key in law.variables and not (key == "D" and flops and params):
            raise UserError(f"the {form} law needs {flag} COLUMN")
    data = read_columns(csv, wanted, positive=tuple(wanted))
    inputs = {v: data.get(v) for v in ("N", "D", "C")}
    if "D" in law.variables and inputs["D"] is None:
        inputs["D"] = data["C"] / (6.0 * data["N"])
    inputs = {v: (a if v in law.variables else None) for v, a in inputs.items()}
    names = dict(wanted)
    if "D" not in wanted and "C" in wanted:
        names["D"] = f"{wanted['C']}/(6*{wanted.get('N', 'N')})"
    kwargs: dict[str, Any] = {
        "params": inputs["N"], "tokens": inputs["D"], "compute": inputs["C"], "names": names
    }  # fmt: skip
    if bootstrap:
        boot = bootstrap_law(loss=data["loss"], form=form, n_boot=bootstrap, seed=seed, **kwargs)
        est = boot.estimate
    else:
        boot, est = None, fit_law(loss=data["loss"], form=form, **kwargs)
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
        }
        if form == "chinchilla":
            out["optimal_exponent"] = boot.optimal_exponent().as_json()
    if plot is not None:
        if inputs["N"] is None or inputs["D"] is None:
            raise UserError("--plot draws iso-FLOP curves and needs the chinchilla form")
        plot_law(boot or est, inputs["N"], inputs["D"], data["loss"], plot)
    if as_json:
        print_json(out)
        return
    _show_fit(out, boot is not None)
    if form == "chinchilla":
        _show_optimal(boot or est, np.geomspace(1e21, 1e25, 5))
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
    console.print(table)
    console.print(
        f"objective (summed Huber, delta={out['huber_delta']:g}): {out['objective']:.10g}"
    )


def _show_optimal(fit: Any, budgets: np.ndarray) -> None:
    opt = compute_optimal(fit, budgets)
    table = Table(title="compute-optimal allocation (C = 6ND)", title_justify="left")
    for col in ("C (FLOP)", "N_opt", "D_opt", "tokens / param"):
        table.add_column(col, justify="right")
    for i, c in enumerate(opt.compute):
        table.add_row(
            f"{c:.1e}", _cell(opt.params, i), _cell(opt.tokens, i), _cell(opt.tokens_per_param, i)
        )
    console.print(table)


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
) -> None:
    """Forecast a benchmark score at a planned compute, with a prediction interval."""
    check_number(at, "--at", lo=0, hi=MAX_FLOP, lo_open=True)
    check_optional_number(line, "--line", lo=-MAX_SCORE, hi=MAX_SCORE)
    _check_common(chance, ceiling, bootstrap, seed)
    data = _score_data(csv, compute, score, loss)
    fc = fit_capability(
        data["C"], data["s"], chance=chance, ceiling=ceiling, loss=data.get("L"),
        n_boot=bootstrap, seed=seed, names=_names(compute, score, loss),
    )  # fmt: skip
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
    }
    if line is not None:
        out["line"] = line
        out["prob_exceeds"] = float(fc.prob_exceeds(at, line))
    if plot is not None:
        plot_forecast(fc, data["C"], data["s"], at=at, line=line, path=plot)
    if as_json:
        print_json(out)
        return
    level = round(100 * fc.level)
    console.print(
        f"score at C = {at:.3g} FLOP: {out['score']:.4f}, {level}% prediction interval "
        f"[{p.lo:.4f}, {p.hi:.4f}]  (n = {fc.n_points} models, against {fc.against})"
    )
    if line is not None:
        console.print(
            f"P(score >= {line:g}) = {out['prob_exceeds']:.3f}  ({bootstrap} bootstrap draws)"
        )
    if plot is not None:
        console.print(f"plot written to {plot}")


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
) -> None:
    """Fit on the smaller models, predict the larger ones; report errors and interval coverage."""
    _check_common(chance, ceiling, bootstrap, seed)
    check_count(min_train, "--min-train", lo=2, hi=MAX_CSV_ROWS)
    data = _score_data(csv, compute, score, loss)
    bt = backtest(
        data["C"], data["s"], chance=chance, ceiling=ceiling, loss=data.get("L"),
        min_train=min_train, n_boot=bootstrap, seed=seed, names=_names(compute, score, loss),
    )  # fmt: skip
    out = {
        "n": bt.n,
        "level": bt.level,
        "mae": bt.mae.as_json(),
        "coverage": bt.coverage.as_json(),
        "rows": [
            {
                "train_max_compute": r.train_max_compute,
                "compute": r.compute,
                "actual": r.actual,
                "predicted": float(r.predicted.value),
                "interval": [float(r.predicted.lo), float(r.predicted.hi)],
                "covered": r.covered,
            }
            for r in bt.rows
        ],
    }
    if as_json:
        print_json(out)
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
    console.print(table)
    level = round(100 * bt.level)
    m, c = bt.mae, bt.coverage
    console.print(
        f"mean absolute error {float(m.value):.4f} [{float(m.lo):.4f}, {float(m.hi):.4f}]"
    )
    console.print(
        f"coverage of {level}% intervals: {float(c.value):.2f} "
        f"[{float(c.lo):.2f}, {float(c.hi):.2f}] "
        f"(n = {bt.n}; rows share fits, so these intervals are optimistic)"
    )


def _check_common(chance: float, ceiling: float, bootstrap: int, seed: int) -> None:
    """The flags forecast and backtest share: finite score bounds, bounded bootstrap."""
    check_number(chance, "--chance", lo=-MAX_SCORE, hi=MAX_SCORE)
    check_number(ceiling, "--ceiling", lo=-MAX_SCORE, hi=MAX_SCORE)
    if not chance < ceiling:
        raise UserError(
            Problem(f"--chance {chance:g} must be below --ceiling {ceiling:g}", field="--chance")
        )
    check_count(bootstrap, "--bootstrap", lo=2, hi=MAX_BOOTSTRAP)
    check_count(seed, "--seed", hi=MAX_SEED)


def _score_data(csv: Path, compute: str, score: str, loss: str | None) -> dict[str, np.ndarray]:
    cols = {"C": compute, "s": score} | ({"L": loss} if loss else {})
    return read_columns(csv, cols, positive=("C", "L"))


def _names(compute: str, score: str, loss: str | None) -> dict[str, str]:
    return {"compute": compute, "score": score} | ({"loss": loss} if loss else {})
