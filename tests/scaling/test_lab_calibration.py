"""scripts/lab_calibration.py: forecast coverage on the lab's trained ladders."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from safescale.scaling import synthetic_ladder
from tests._scripts import SCRIPTS, script_module

SCRIPT_FILE = SCRIPTS / "lab_calibration.py"


@pytest.fixture(scope="module")
def study():
    with script_module("lab_calibration") as module:
        yield module


def _refused(study, capsys, args: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as exc:
        study.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "the following arguments are required: --out"),
        (["--out", "x", "--seeds", "a-b"], "--seeds: 'a-b': write seeds as e.g. 0-4"),
        (["--out", "x", "--seeds", "4-0"], "a range low-high"),
        (["--out", "x", "--seeds", "0-99"], "at most 50 seeds"),
        (["--out", "x", "--seeds", "0-29,30-59"], "at most 50 seeds in all"),
        (["--out", "x", "--seeds", "0-4,3"], "seed 3 is given twice"),
        (["--out", "x", "--precision", "fp8"], "--precision: fp32 or bf16"),
    ],
)
def test_usage_errors_are_one_line_and_exit_two(study, capsys, args, says) -> None:
    _refused(study, capsys, args, says)


def test_bad_paths_and_a_damaged_cache_are_one_line_and_exit_two(study, tmp_path, capsys):
    out = str(tmp_path)
    _refused(study, capsys, ["--out", out, "--json", out], "--json: ")
    _refused(study, capsys, ["--out", str(SCRIPT_FILE)], "--out: ")
    # A seed's scores.csv damaged: a missing column, then a value that is not finite.
    cache = tmp_path / "seed-0" / "scores.csv"
    cache.parent.mkdir()
    cache.write_text("name,flops\nm0,1\n")
    _refused(study, capsys, ["--out", out, "--seeds", "0"], "not a scores.csv of this script")
    cache.write_text(",".join(study.COLUMNS) + "\nm0,nan" + ",1" * (len(study.COLUMNS) - 2) + "\n")
    says = "line 2, flops: 'nan' is not a count or a finite number"
    _refused(study, capsys, ["--out", out, "--seeds", "0", "--json", f"{out}/p.json"], says)
    assert not (tmp_path / "p.json").exists()


def _rows(seed: int, suite: str) -> list[dict[str, object]]:
    lad = synthetic_ladder(seed, n_models=16, questions=1111)
    return [
        {"flops": c, "val_loss": loss, suite: s, f"{suite}_n": 1111}
        for c, loss, s in zip(lad.compute, lad.loss, lad.scores[:, 0], strict=True)
    ]


def test_a_rising_suite_is_backtested_as_the_calibration_tests_do(study) -> None:
    # A ladder of 16 models whose score rises: every prediction is within a decade of its
    # cut, the chosen method is never the baseline, and it beats it on this ladder.
    preds, why = study.backtest_suite(201, "fact_recall", _rows(201, "fact_recall"))
    assert why is None and len(preds) > 10
    assert all(0 < p.distance <= 1 + 1e-9 for p in preds)
    assert {p.method for p in preds} <= {"sigmoid", "two-step"}
    assert np.mean([p.error for p in preds]) < preds[0].baseline_mae


def test_a_suite_that_never_moves_has_no_forecast(study) -> None:
    rows = [
        {"flops": 10.0**k, "val_loss": 5 - k / 10, "two_hop": 0.0, "two_hop_n": 24}
        for k in range(16)
    ]
    preds, why = study.backtest_suite(0, "two_hop", rows)
    assert preds == [] and why is not None and why.startswith("flat")


def test_models_are_scored_on_every_suite(study, smoke_ladder) -> None:
    # The smoke ladder's largest model, on the lab's own evaluation sets: one (right, n)
    # per suite, n the set's size.
    model = smoke_ladder.path / smoke_ladder.runs[-1].record.name
    got = study._score_model(model, smoke_ladder.corpus.path)
    assert set(got) == set(study.SUITES)
    for suite, (k, n) in got.items():
        lines = (smoke_ladder.corpus.path / "eval" / f"{suite}.jsonl").read_text().splitlines()
        assert n == len(lines) and 0 <= k <= n
    assert got["hazard_proxy"][1] == 48  # the multiple-choice set


def test_scores_are_cached_and_the_report_reads_them(study, tmp_path, capsys) -> None:
    # A seed whose scores.csv exists is not retrained: the report comes from the file.
    folder = tmp_path / "seed-3"
    folder.mkdir()
    rows = _rows(203, "hazard_proxy")
    header = ["name", "flops", "val_loss"] + [f"{s}{x}" for s in study.SUITES for x in ("", "_n")]
    lines = [",".join(header)]
    for i, r in enumerate(rows):
        vals = [f"m{i}", str(r["flops"]), str(r["val_loss"])]
        for s in study.SUITES:
            vals += [str(r["hazard_proxy"]), "1111"] if s == "hazard_proxy" else ["0", "48"]
        lines.append(",".join(vals))
    (folder / "scores.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "preds.json"
    assert study.main(["--out", str(tmp_path), "--seeds", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pooled" in text and "no forecast for seed 3 two_hop: flat" in text
    preds = json.loads(out.read_text())
    assert preds and {p["suite"] for p in preds} == {"hazard_proxy"}


LAB = Path(__file__).resolve().parent / "data" / "lab_ladders"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seeds", "folder"),
    [(range(0, 5), LAB), (range(5, 10), LAB), (range(5, 10), LAB / "bf16"), (range(10, 15), LAB)],
    ids=["chosen-on", "held-out", "held-out-bf16", "held-out-later"],
)
def test_the_lab_ladders_intervals_cover_85_to_95_percent_pooled(study, seeds, folder) -> None:
    # The lab's trained ladders (data/lab_ladders: every model's compute, loss and scores on
    # the five capability suites), backtested as the script does: nominal 90% intervals
    # within 0.85-0.95 pooled over the four suites that move, and the chosen method beats
    # the plain logistic on mean absolute error. Seeds 0-4 chose the gate's spread; 5-9 did
    # not, and were trained in both precisions (fp32, and bf16 in data/lab_ladders/bf16);
    # 10-14 were trained later, before a rule scored on 0-4 was rejected (docs/scaling.md).
    preds = []
    for seed in seeds:
        with (folder / f"seed-{seed}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 16
        for suite in study.SUITES:
            got, why = study.backtest_suite(seed, suite, rows)
            assert (why is not None) == (suite == "induction"), (seed, suite, why)
            preds += got
    assert len(preds) == 580
    coverage = float(np.mean([p.covered for p in preds]))
    assert 0.85 <= coverage <= 0.95, coverage
    assert np.mean([p.error for p in preds]) < np.mean([p.baseline_mae for p in preds])
