import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from safescale.cli._app import main
from safescale.scaling import synthetic_runs
from safescale.scaling._capability import sigmoid


def _write(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture()
def runs_csv(tmp_path: Path) -> Path:
    r = synthetic_runs(seed=7, per_budget=10)
    rows = [
        (f"{n:.17g}", f"{d:.17g}", f"{6 * n * d:.17g}", f"{lo:.17g}")
        for n, d, lo in zip(r.params, r.tokens, r.loss, strict=True)
    ]
    return _write(tmp_path / "runs.csv", ["n", "d", "flops", "loss"], rows)


@pytest.fixture()
def ladder_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    c = np.geomspace(1e19, 3e22, 10)
    s = sigmoid(np.log10(c), 21.3, 2.2, 0.25, 1.0) + rng.normal(0, 0.01, 10)
    loss = 1.8 + 2000 / c**0.14
    return _write(tmp_path / "ladder.csv", ["flops", "score", "loss"], zip(c, s, loss, strict=True))


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["scaling", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_json(runs_csv: Path, capsys) -> None:
    code, out, _ = _run(
        capsys,
        "fit",
        runs_csv,
        "--params",
        "n",
        "--tokens",
        "d",
        "--loss",
        "loss",
        "--bootstrap",
        "50",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["form"] == "chinchilla" and doc["n_points"] == 90
    assert set(doc["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert doc["objective"] > 0
    for name, (lo, hi) in doc["intervals"].items():
        assert lo <= doc["params"][name] <= hi


def test_flops_means_tokens_from_compute(runs_csv: Path, capsys) -> None:
    _, a, _ = _run(
        capsys, "fit", runs_csv, "--params", "n", "--tokens", "d", "--loss", "loss", "--json"
    )
    _, b, _ = _run(
        capsys, "fit", runs_csv, "--params", "n", "--flops", "flops", "--loss", "loss", "--json"
    )
    pa, pb = json.loads(a)["params"], json.loads(b)["params"]
    for key in pa:
        assert pa[key] == pytest.approx(pb[key], rel=1e-6)


def test_fit_table_and_plot(runs_csv: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "law.png"
    code, out, _ = _run(
        capsys, "fit", runs_csv, "--params", "n", "--tokens", "d", "--loss", "loss", "--plot", png
    )
    assert code == 0 and "alpha" in out and "compute-optimal" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _set(col: int, row: int, value: str):
    def edit(rows):
        return [
            [value if (j == col and i == row) else v for j, v in enumerate(r)]
            for i, r in enumerate(rows)
        ]

    return edit


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda rows: rows, "no column 'loss'"),
    (_set(3, 4, "-2.0"),
     "runs.csv:6: loss: -2.0 is not a positive"),
    (_set(3, 0, "nan"),
     "runs.csv:2: loss: 'nan' is not a finite number"),
    (_set(3, 2, "abc"),
     "runs.csv:4: loss: 'abc' is not a number"),
    (lambda rows: rows[:5], "runs.csv: 5 rows are too few"),
    (lambda rows: [[*r[:1], "1e9", *r[2:]] for r in rows], "runs.csv: d: every row has the same value"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, edit, expected) -> None:
    r = synthetic_runs(seed=1, per_budget=4)
    rows = [
        [f"{n:.17g}", f"{d:.17g}", f"{6 * n * d:.17g}", f"{lo:.17g}"]
        for n, d, lo in zip(r.params, r.tokens, r.loss, strict=True)
    ]
    header = ["n", "d", "flops", "loss" if "no column" not in expected else "final"]
    path = _write(tmp_path / "runs.csv", header, edit(rows))
    code, out, err = _run(capsys, "fit", path, "--params", "n", "--tokens", "d", "--loss", "loss")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


def test_missing_flag_is_a_user_error(runs_csv: Path, capsys) -> None:
    code, _, err = _run(capsys, "fit", runs_csv, "--params", "n", "--loss", "loss")
    assert code == 2 and "--tokens" in err


def test_forecast_json_and_plot(ladder_csv: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "fc.png"
    code, out, _ = _run(
        capsys,
        "forecast",
        ladder_csv,
        "--compute",
        "flops",
        "--score",
        "score",
        "--at",
        "1.2e23",
        "--chance",
        "0.25",
        "--line",
        "0.9",
        "--bootstrap",
        "200",
        "--json",
        "--plot",
        png,
    )
    assert code == 0
    doc = json.loads(out)
    lo, hi = doc["interval"]
    assert lo <= doc["score"] <= hi and 0 <= doc["prob_exceeds"] <= 1
    assert doc["n_points"] == 10 and doc["against"] == "compute"
    assert png.stat().st_size > 1000


def test_forecast_two_step_and_backtest(ladder_csv: Path, capsys) -> None:
    code, out, _ = _run(
        capsys,
        "forecast",
        ladder_csv,
        "--compute",
        "flops",
        "--score",
        "score",
        "--loss",
        "loss",
        "--at",
        "1e23",
        "--bootstrap",
        "100",
        "--method",
        "two-step",
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and doc["against"] == "loss" and doc["method"] == "two-step"
    assert doc["loss_bootstrap"]["n_boot"] == 100 and "converged" in doc["loss_bootstrap"]
    # Given a loss but told to forecast from compute, the report is of the sigmoid in log
    # compute (its midpoint in log10 FLOP, its spread about that curve), not the one in loss.
    code, out, _ = _run(
        capsys, "forecast", ladder_csv, "--compute", "flops", "--score", "score", "--loss",
        "loss", "--at", "1e23", "--bootstrap", "100", "--method", "sigmoid", "--json",
    )  # fmt: skip
    other = json.loads(out)
    assert code == 0 and other["against"] == "compute" and other["method"] == "sigmoid"
    assert "loss_bootstrap" not in other
    assert other["sigmoid"]["x0"] > 10 > doc["sigmoid"]["x0"]
    assert other["sigmoid"]["sigma"] != doc["sigmoid"]["sigma"]
    # each method's intervals are floored by the spread in its own space
    assert other["calibration"]["s0"] >= other["sigmoid"]["sigma"]
    assert doc["calibration"]["s0"] >= doc["sigmoid"]["sigma"]
    code, out, _ = _run(
        capsys,
        "backtest",
        ladder_csv,
        "--compute",
        "flops",
        "--score",
        "score",
        "--chance",
        "0.25",
        "--bootstrap",
        "100",
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and doc["n"] == len(doc["rows"]) > 0
    assert 0 <= doc["coverage"]["value"] <= 1


def test_fit_table_reports_convergence(runs_csv: Path, capsys) -> None:
    code, out, _ = _run(
        capsys, "fit", runs_csv, "--params", "n", "--tokens", "d", "--loss", "loss",
        "--bootstrap", "20",
    )  # fmt: skip
    assert code == 0 and "replicates refitted to their own optimum" in out


def test_backtest_chooses_a_method_and_draws_calibration(tmp_path: Path, capsys) -> None:
    from safescale.scaling import synthetic_ladder

    lad = synthetic_ladder(3, n_models=12)
    path = _write(
        tmp_path / "lad.csv", ["flops", "score", "loss"],
        zip(lad.compute, lad.scores[:, 0], lad.loss, strict=True),
    )  # fmt: skip
    png = tmp_path / "cal.png"
    args = ["backtest", path, "--compute", "flops", "--score", "score", "--loss", "loss",
            "--chance", str(lad.chance[0]), "--bootstrap", "20", "--min-train", "6"]  # fmt: skip
    code, out, _ = _run(capsys, *args, "--json", "--plot", png)
    assert code == 0
    doc = json.loads(out)
    names = {m["method"] for m in doc["methods"]}
    assert names == {"sigmoid", "two-step", "logistic-4p"}
    best = min(doc["methods"], key=lambda m: m["mae"]["value"])
    assert doc["method"] == best["method"]
    assert sum(d["n"] for d in doc["by_distance"]) == doc["n"]
    assert sum(b["n"] for b in doc["by_position"]) == doc["n"]
    assert 0 <= doc["brier"]["value"] <= 1 and len(doc["lines"]) == 3
    assert all(0 <= r["pit"] <= 1 for r in doc["rows"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "chosen: " + doc["method"] in out and "Brier" in out
    assert "position on the rise" in out and "decades past the cut" in out
    # one fact a line: none wider than a terminal of 80 columns, tables included
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert re.search(
        r"^coverage of 95% intervals: [\d.]+ \[[\d.]+, [\d.]+\] \(n = \d+\)$", out, re.M
    )
    code, _, err = _run(capsys, *args[:6], "--method", "two-step")
    assert code == 2 and "--loss" in err


def test_fit_compare_chooses_a_form_by_leave_the_largest_out(runs_csv: Path, capsys) -> None:
    code, out, _ = _run(
        capsys, "fit", runs_csv, "--params", "n", "--tokens", "d", "--loss", "loss",
        "--compare", "chinchilla,kaplan-nd", "--json",
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    sel = doc["selection"]
    assert {f["form"] for f in sel["forms"]} == {"chinchilla", "kaplan-nd"}
    assert doc["form"] == sel["chosen"] == "chinchilla"  # the runs come from a Chinchilla law
    code, out, _ = _run(
        capsys, "fit", runs_csv, "--params", "n", "--tokens", "d", "--loss", "loss",
        "--compare", "chinchilla,kaplan-nd",
    )  # fmt: skip
    assert code == 0 and "leave-the-largest-out" in out


def test_forecast_with_other_benchmarks(tmp_path: Path, capsys) -> None:
    from safescale.scaling import synthetic_ladder

    lad = synthetic_ladder(1, n_models=12, n_benchmarks=3)
    rows = zip(lad.compute, *lad.scores.T, strict=True)
    path = _write(tmp_path / "multi.csv", ["flops", "a", "b", "c"], rows)
    args = ["forecast", path, "--compute", "flops", "--score", "a", "--at",
            str(lad.compute.max() * 4), "--chance", str(lad.chance[0]),
            "--with", f"b:{lad.chance[1]}", "--with", f"c:{lad.chance[2]}",
            "--bootstrap", "20", "--line", "0.6"]  # fmt: skip
    code, out, _ = _run(capsys, *args, "--method", "capability-pc", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["method"] == "capability-pc" and doc["calibrated"]
    assert doc["calibration"]["n_cuts"] >= 2 and 0 <= doc["prob_exceeds"] <= 1
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "calibrated on" in out and "capability-pc" in out
    code, _, err = _run(capsys, *args[:-4], "--with", "b:x")
    assert code == 2 and "chance level" in err
