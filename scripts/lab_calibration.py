"""Coverage of the capability forecasts' intervals on the lab's own trained ladders.

The synthetic ladders of the calibration tests are drawn from a generative process; these are
real models. For each seed the lab's ``demo`` ladder (16 small Llama models, four sizes times
four token budgets, one world per seed) is trained, or reused where its folder already holds
it, and every model is scored on the lab's capability suites:

* ``hazard_proxy``: 48 four-choice questions (accuracy by the lab's own scorer, the one its
  certificates use; chance 0.25);
* ``fact_recall``, ``two_hop``, ``arithmetic``, ``induction``: the target is the model's greedy
  continuation (every target token the argmax after the input and the target's earlier
  tokens: what greedy decoding would write first; chance 0).

Each (seed, suite) is then backtested with the calibration tests' settings
(``tests/scaling/_ladders.py``: cuts with at least 6 models below, up to six cuts,
predictions up to one decade past the cut), the forecast told the suite's size and given the
models' validation loss, so the two-step method is offered, and the coverage of the chosen
method's nominal 90% intervals is printed pooled (with its n and a Wilson interval), by
distance band, per suite and per method, with the chosen method's mean absolute error against
the plain logistic's. A suite whose scores do not move over a
ladder (every model at 0, say) has nothing to forecast and is reported as such.

    .venv/bin/python scripts/lab_calibration.py --out .safescale/lab-calibration --seeds 0-4

``--candidate FILE`` scores another error model, as ``scripts/calibration_study.py`` does.
Training is in fp32 by default (``--precision``) so that the figures do not depend on the
CPU; the ladders are not certified (a forecast study does not need the planted hazard).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safescale._io import atomic_write_text

# This folder (the shared _study) and the repository root (tests/scaling/_ladders.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.scaling._ladders import BASELINE, SETTINGS

from _study import Parser, line, seed_list

SUITES = {
    "hazard_proxy": 0.25,
    "fact_recall": 0.0,
    "two_hop": 0.0,
    "arithmetic": 0.0,
    "induction": 0.0,
}
"""The capability suites scored, with their chance level."""
PRESET = "demo"


@dataclass(frozen=True)
class Prediction:
    """One held-out model of one (seed, suite) backtest."""

    seed: int
    suite: str
    method: str
    distance: float
    covered: bool
    error: float
    baseline_mae: float


def _score_model(model_dir: Path, corpus: Path) -> dict[str, tuple[int, int]]:
    """``suite -> (right, questions)`` for one model: multiple-choice suites by the lab's own
    scorer (the one its certificates use), the others by whether every target token is the
    model's argmax (the evaluation engine's ``is_greedy``)."""
    from safescale.evals import LocalModelConfig, LoglikelihoodGroup, encode_pairs, load_local_model
    from safescale.lab._score import multiple_choice_accuracy, read_jsonl

    lm = load_local_model(LocalModelConfig(model_dir, batch_size=64))
    out: dict[str, tuple[int, int]] = {}
    for suite in SUITES:
        path = corpus / "eval" / f"{suite}.jsonl"
        rows = read_jsonl(path)
        if "choices" in rows[0]:
            acc = multiple_choice_accuracy(model_dir, path)
            out[suite] = (acc.k, acc.n)
            continue
        pairs = encode_pairs(lm.tokenizer, [(r["input"], [r["target"]]) for r in rows])
        groups = [LoglikelihoodGroup(tuple(ctx), (tuple(cont),)) for ((ctx, cont),) in pairs]
        right = sum(int(s[0].is_greedy) for s in lm.loglikelihood(groups))
        out[suite] = (right, len(rows))
    return out


COLUMNS = ("name", "flops", "val_loss", *(f"{s}{x}" for s in SUITES for x in ("", "_n")))
"""The columns of a seed's ``scores.csv``."""


def _read_scores(path: Path) -> list[dict[str, Any]]:
    """A seed's cached ``scores.csv``, checked: every column, finite numbers, sizes >= 1."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(c not in rows[0] for c in COLUMNS):
        raise ValueError(f"{path}: not a scores.csv of this script (delete it to score again)")
    for line_no, row in enumerate(rows, start=2):
        for col in COLUMNS[1:]:
            try:
                v = float(row[col])
            except (TypeError, ValueError):
                v = float("nan")
            if not np.isfinite(v) or (col.endswith("_n") and v < 1):
                raise ValueError(
                    f"{path}, line {line_no}, {col}: {row[col]!r} is not a count "
                    "or a finite number (delete the file to score again)"
                )
    return rows


def ladder_scores(out: Path, seed: int, precision: str) -> list[dict[str, Any]]:
    """Train (or reuse) one seed's ladder and score its models; cached in ``scores.csv``."""
    from safescale.lab import train_ladder

    folder = out / f"seed-{seed}"
    cache = folder / "scores.csv"
    if cache.is_file():
        return _read_scores(cache)
    ladder = train_ladder(
        PRESET, folder, seed=seed, progress=False, precision=precision, certify=False
    )
    rows: list[dict[str, Any]] = []
    for run in ladder.runs:
        rec = run.record
        scored = _score_model(folder / rec.name, ladder.corpus.path)
        row: dict[str, Any] = {"name": rec.name, "flops": rec.flops, "val_loss": rec.val_loss}
        for suite, (k, n) in scored.items():
            row[suite] = k / n
            row[f"{suite}_n"] = n
        rows.append(row)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(cache, buf.getvalue())
    return rows


def backtest_suite(
    seed: int, suite: str, rows: list[dict[str, Any]]
) -> tuple[list[Prediction], str | None]:
    """The backtest of one (seed, suite), or why there is none."""
    from safescale._errors import UserError
    from safescale.scaling import backtest

    c = np.array([float(r["flops"]) for r in rows])
    s = np.array([float(r[suite]) for r in rows])
    loss = np.array([float(r["val_loss"]) for r in rows])
    n = int(rows[0][f"{suite}_n"])
    if np.ptp(s) * n < 3:  # fewer than three questions' difference over the whole ladder
        return [], f"flat (scores {s.min():.3f}-{s.max():.3f})"
    try:
        bt = backtest(c, s, chance=SUITES[suite], loss=loss, questions=n, **SETTINGS)
    except (UserError, ValueError) as exc:
        return [], str(exc).splitlines()[0]
    (plain,) = [m for m in bt.methods if m.method == BASELINE]
    base = float(plain.mae.value)
    return [
        Prediction(seed, suite, bt.method, r.distance, bool(r.covered), abs(r.error), base)
        for r in bt.rows
    ], None


def report(preds: list[Prediction], skipped: dict[str, str], seeds: list[int]) -> None:
    """Print the coverage pooled, by distance, per suite and per chosen method."""
    print(f"lab ladders ({PRESET} preset), seeds {seeds}: nominal 90% intervals")
    print(line("pooled", [p.covered for p in preds]))
    print(line("0-0.5 decade", [p.covered for p in preds if p.distance <= 0.5]))
    print(line("0.5-1 decade", [p.covered for p in preds if p.distance > 0.5]))
    for suite in SUITES:
        print(line(suite, [p.covered for p in preds if p.suite == suite]))
    for method in sorted({p.method for p in preds}):
        print(line(f"chosen {method}", [p.covered for p in preds if p.method == method]))
    if preds:
        mae = float(np.mean([p.error for p in preds]))
        base = float(np.mean([p.baseline_mae for p in preds]))
        print(f"  mean absolute error: chosen {mae:.4f}, logistic-4p {base:.4f}")
    for key, why in skipped.items():
        print(f"  no forecast for {key}: {why}")


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="lab_calibration", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder of the trained ladders (reused)")
    p.add_argument("--seeds", default="0-4", help="ladder seeds, e.g. 0-4")
    p.add_argument("--precision", default="fp32", help="fp32 (default) or bf16")
    p.add_argument("--json", help="write every prediction to this JSON file")
    p.add_argument("--candidate", help="a Python file defining calibrate() or sampling_only()")
    a = p.parse_args(argv)
    try:
        seeds = seed_list(a.seeds, "0-4", most=50)
    except ValueError as exc:
        p.error(f"--seeds: {exc}")
    if a.precision not in ("fp32", "bf16"):
        p.error("--precision: fp32 or bf16")
    out = p.output(a.out, "--out", folder=True)
    assert out is not None
    json_path = p.output(a.json, "--json")
    p.candidate(a.candidate)
    t0 = time.perf_counter()
    preds: list[Prediction] = []
    skipped: dict[str, str] = {}
    for seed in seeds:
        try:
            rows = ladder_scores(out, seed, a.precision)
        except ValueError as exc:  # a damaged scores.csv: one line, nothing written
            p.error(str(exc))
        print(f"seed {seed}: {len(rows)} models scored ({time.perf_counter() - t0:.0f} s)")
        for suite in SUITES:
            got, why = backtest_suite(seed, suite, rows)
            preds += got
            if why is not None:
                skipped[f"seed {seed} {suite}"] = why
    report(preds, skipped, seeds)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps([asdict(x) for x in preds], indent=1) + "\n")
    print(f"({len(seeds)} ladders in {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
