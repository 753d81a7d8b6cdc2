"""Coverage of the capability forecasts' intervals on the calibration sets, repeatably.

The figures in docs/scaling.md that say how the error model was chosen come from backtests of
three calibration sets, never of the held-out ones:

* ``public``: the public calibration table (Open LLM Leaderboard v2 scores of base models,
  ``tests/scaling/data/obsscaling_base_llm_leaderboard_v2_eval.csv``; BBH, GPQA, MATH level 5
  and MMLU-Pro, chance 0.25, 0.25, 0 and 0.1), each model's compute taken by name from the
  held-out table's compute column; each benchmark from compute alone, cuts with at least 20
  models below (the held-out public test's settings);
* ``one``: synthetic ladders of one benchmark with a loss column (two-step available);
* ``multi``: synthetic ladders of four benchmarks, the first predicted from compute and the
  other three (no loss);

the synthetic ones with the settings of ``tests/scaling/test_calibration.py`` (14 models, cuts
with at least 6 below, up to six cuts, predictions up to one decade past the cut). It prints
the coverage of the chosen method's nominal 90% intervals, pooled (with its n and a Wilson
interval), by distance band and by position on the rise, and per public benchmark.

``--candidate FILE`` scores another error model: FILE defines ``calibrate(method, data, *,
sigma, min_train, max_cuts)`` (the signature of ``safescale.scaling._calibration.calibrate``),
which replaces the package's for the run. Seeds outside ``CALIBRATION_SEEDS`` (the held-out
sets among them) are refused unless ``--held-out`` is given: a choice made on them would
spoil the held-out tests.

    .venv/bin/python scripts/calibration_study.py --sets public,one --seeds 200-231 --jobs 2
"""

from __future__ import annotations

import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# This folder (the shared _study) and the repository root (tests/scaling/_ladders.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _study import Parser, line, seed_list, use_candidate

DATA = Path(__file__).resolve().parents[1] / "tests" / "scaling" / "data"
PUBLIC_CHANCE = {
    "leaderboard_bbh": 0.25,
    "leaderboard_gpqa": 0.25,
    "leaderboard_math_hard": 0.0,
    "leaderboard_mmlu_pro": 0.1,
}
PUBLIC_QUESTIONS = {
    "leaderboard_bbh": 5761,
    "leaderboard_gpqa": 1192,
    "leaderboard_math_hard": 1324,
    "leaderboard_mmlu_pro": 12032,
}
"""Each benchmark's number of questions in the leaderboard's version (BBH's 24 tasks, GPQA's
three sets, MATH's level-5 problems, MMLU-Pro's test set)."""
UNIT_ERROR = "cerebras/btlm-3b-8k-base"
"""Its token count is in the wrong unit in the compute table (left out, as in the tests)."""
SETS = ("public", "one", "multi")
LEVEL = 0.9


def public_table() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The public calibration table: compute (by model name) and each benchmark's scores."""
    with (DATA / "obsscaling_base_llm_benchmark_eval.csv").open(newline="") as f:
        compute = {
            r["Model"]: float(r["FLOPs (1E21)"]) * 1e21
            for r in csv.DictReader(f)
            if r["FLOPs (1E21)"] and r["Model"] != UNIT_ERROR
        }
    with (DATA / "obsscaling_base_llm_leaderboard_v2_eval.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Model"] in compute]
    c = np.array([compute[r["Model"]] for r in rows])
    return c, {b: np.array([float(r[b]) for r in rows]) for b in PUBLIC_CHANCE}


Rows = list[tuple[bool, float, float, float | None]]
"""Per prediction: covered, distance, position on the rise, its cut's overdispersion."""


def _job(task: tuple[str, Any, str | None, bool]) -> tuple[str, str, Rows]:
    """One backtest: (set, name, rows)."""
    kind, key, candidate, sized = task
    use_candidate(candidate)
    from safescale.scaling import backtest, rise_position

    if kind == "public":
        c, scores = public_table()
        chance = PUBLIC_CHANCE[key]
        bt = backtest(
            c, scores[key], chance=chance, min_train=20, n_boot=20, level=LEVEL, max_cuts=6,
            max_distance=1.0, questions=PUBLIC_QUESTIONS[key] if sized else None,
        )  # fmt: skip
    else:
        from tests.scaling._ladders import backtest_ladder, ladder

        lad = ladder(key, kind == "multi")
        chance = float(lad.chance[0])
        bt = backtest_ladder(lad, sized)
    rows = [
        (
            r.covered,
            r.distance,
            rise_position(float(r.predicted.value), chance, 1.0),
            r.overdispersion,
        )
        for r in bt.rows
    ]
    return kind, str(key), rows


def report(kind: str, results: list[tuple[str, Rows]]) -> None:
    """Print one set's coverage: pooled, by distance, by position, per public benchmark; and
    the overdispersion of its cuts where the benchmarks' sizes were given."""
    from safescale.scaling import POSITION_BINS, POSITION_NAMES

    rows = [r for _, rs in results for r in rs]
    print(f"{kind}: nominal {LEVEL:.0%} intervals, {len(results)} ladders")
    print(line("pooled", [r[0] for r in rows]))
    print(line("0-0.5 decade", [r[0] for r in rows if r[1] <= 0.5]))
    print(line("0.5-1 decade", [r[0] for r in rows if r[1] > 0.5]))
    for i, name in enumerate(POSITION_NAMES):
        lo, hi = POSITION_BINS[i], POSITION_BINS[i + 1]
        # The backtest's own bands: the first [lo, hi], the others (lo, hi].
        band = [r[0] for r in rows if (r[2] >= lo if i == 0 else r[2] > lo) and r[2] <= hi]
        print(line(name, band))
    if kind == "public":
        for name, rs in results:
            print(line(name.removeprefix("leaderboard_"), [r[0] for r in rs]))
    _overdispersion("overdispersion", results)
    if kind == "public":
        for name, rs in results:
            _overdispersion(f"  {name.removeprefix('leaderboard_')}", [(name, rs)])


def _overdispersion(label: str, results: list[tuple[str, Rows]]) -> None:
    # One value per cut: the rows a cut predicts share it.
    phis = sorted({r[3] for _, rs in results for r in rs if r[3] is not None})
    if phis:
        q = np.percentile(phis, [0, 10, 50, 90, 100])
        print(
            f"  {label}: {len(phis)} cuts, median {q[2]:.2f} (10th-90th percentile "
            f"{q[1]:.2f}-{q[3]:.2f}, range {q[0]:.2f}-{q[4]:.2f})"
        )


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="calibration_study", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sets", default="public,one,multi", help="any of public, one, multi")
    p.add_argument("--seeds", default="200-231", help="synthetic seeds, e.g. 200-231,300-363")
    p.add_argument("--candidate", help="a Python file defining calibrate() to score instead")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--held-out", action="store_true", help="allow held-out seeds")
    p.add_argument(
        "--no-questions",
        action="store_true",
        help="forecast without the benchmarks' sizes (the record always used)",
    )
    a = p.parse_args(argv)
    sets = [s.strip() for s in a.sets.split(",") if s.strip()]
    if not sets or any(s not in SETS for s in sets):
        p.error(f"--sets: choose from {', '.join(SETS)}")
    if not 1 <= a.jobs <= 64:
        p.error("--jobs: 1 to 64")
    from safescale.scaling import CALIBRATION_SEEDS

    try:
        seeds = seed_list(a.seeds, "200-231,300", most=1000)
    except ValueError as exc:
        p.error(f"--seeds: {exc}")
    p.candidate(a.candidate)  # here once, so that a bad file is one line, not a traceback
    held = sorted(set(seeds) - set(CALIBRATION_SEEDS))
    if held and not a.held_out:
        p.error(
            f"--seeds: {held[0]} is not a calibration seed (0-999); pass --held-out to score it "
            "anyway"
        )
    tasks: list[tuple[str, Any, str | None, bool]] = []
    for s in sets:
        keys: list[Any] = list(PUBLIC_CHANCE) if s == "public" else seeds
        tasks += [(s, k, a.candidate, not a.no_questions) for k in keys]
    t0 = time.perf_counter()
    if a.jobs == 1:
        done = [_job(t) for t in tasks]
    else:
        with ProcessPoolExecutor(a.jobs) as pool:
            done = list(pool.map(_job, tasks))
    for s in sets:
        report(s, [(name, rows) for kind, name, rows in done if kind == s])
    print(f"({len(tasks)} backtests in {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
