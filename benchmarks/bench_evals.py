"""Evaluations: our whole path against lm-evaluation-harness's whole path, same run, same file.

A 4-layer, 256-wide Llama saved in Hugging Face format and a 1,000-question, 4-choice JSONL
task. Each side goes from the JSONL file and the model folder to scored results:

* ours: ``run_suite(TASK.jsonl, MODEL_DIR)``, what ``safescale eval run`` runs: the file
  checked, the model loaded, the task scored by the batched runner, its Inspect log written
  and its scores read back, evidence built;
* ours with ``runner="inspect"``: the same, but every sample through Inspect's own loop
  (solver, ``generate``, scorer, full transcript), timed and printed too;
* lm-eval: ``lm_eval.simple_evaluate(model="hf", tasks=[...], batch_size=32,
  task_manager=TaskManager(include_path=DIR))`` on the same file through a task YAML
  (``datasets`` reads it offline), what ``lm_eval --model hf --include_path DIR`` runs: task
  building, HFLM loaded, scoring, metrics, per-sample records kept in memory (not written).

Both load the model in every run (our model cache is emptied first). ``TaskManager`` indexes
every built-in lm-eval task on construction; the same path with ``include_defaults=False``,
which skips that, is timed too and printed. Runs are interleaved, three rounds, best of each
(the machine is shared); torch runs on ``THREADS`` threads on both sides. The accuracies must
agree, and lm-eval's per-choice log-likelihoods (from its logged samples) must match ours
from our log within 1e-4 with the same chosen answer on every question. The engines alone
(ours vs ``HFLM.loglikelihood``, batch size 32, on pre-built requests) are a second line.

Target: ours at least 2x faster than lm-eval's end-to-end path (``TaskManager`` as given).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

TARGET = 2.0
ROUNDS = 3
THREADS = int(os.environ.get("SAFESCALE_BENCH_THREADS", "1"))
"""Torch threads for both sides. One by default: on a shared 2-core machine two OpenMP
threads that wait on each other's core run both engines several times slower."""


def main() -> bool:
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from inspect_ai.log import read_eval_log
    from tests.evals._factory import build_model, write_mc_jsonl
    from tests.evals._lmeval import (
        hflm,
        lm_eval_end_to_end,
        lm_eval_loglikelihoods,
        lm_eval_requests,
        lm_eval_sample_loglikelihoods,
        write_lm_eval_task,
    )

    from safescale.evals import (
        LocalModelConfig,
        LoglikelihoodGroup,
        load_local_model,
        run_suite,
        unload_local_models,
    )

    torch.set_num_threads(THREADS)
    times: dict[str, list[float]] = {
        "ours": [], "ours, inspect runner": [], "lm-eval": [], "lm-eval lean": []
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_model(root / "model", hidden=256, layers=4, heads=4, vocab=2048, steps=5)
        task = write_mc_jsonl(root / "mc.jsonl", 1000, seed=3)
        task_dir = write_lm_eval_task(root / "lm-eval-tasks", task)

        def ours() -> object:
            unload_local_models()  # every run loads the model, as lm-eval's does
            return run_suite(str(task), str(model), log_dir=root / "logs")

        def ours_inspect() -> object:
            unload_local_models()
            return run_suite(str(task), str(model), log_dir=root / "logs-i", runner="inspect")

        # lm-eval's progress bars ignore TQDM_DISABLE; their text goes nowhere (timed alike).
        def theirs() -> dict:
            with contextlib.redirect_stderr(io.StringIO()):
                return lm_eval_end_to_end(model, task_dir)

        def theirs_lean() -> dict:
            with contextlib.redirect_stderr(io.StringIO()):
                return lm_eval_end_to_end(model, task_dir, include_defaults=False)

        sides = [
            ("ours", ours),
            ("lm-eval", theirs),
            ("ours, inspect runner", ours_inspect),
            ("lm-eval lean", theirs_lean),
        ]
        out: dict[str, object] = {}
        for r in range(ROUNDS):
            for name, run in sides[r % 4 :] + sides[: r % 4]:  # rotate who goes first
                t0 = time.perf_counter()
                out[name] = run()
                times[name].append(time.perf_counter() - t0)

        result = out["ours"]
        log = read_eval_log(str(result.log_path))  # type: ignore[attr-defined]
        ours_ll = np.array(
            [s.metadata["loglikelihoods"] for s in sorted(log.samples, key=lambda s: s.id)]
        )
        res = out["lm-eval"]
        theirs_ll = np.array(lm_eval_sample_loglikelihoods(res))  # type: ignore[arg-type]
        ours_acc = {m.name: m.value for m in result.metrics}  # type: ignore[attr-defined]
        theirs_acc = res["results"]["safescale_mc"]  # type: ignore[index]
        acc_agree = all(
            abs(ours_acc[k] - theirs_acc[f"{k},none"]) < 1e-12 for k in ("acc", "acc_norm")
        )
        e2e_diff = float(np.abs(ours_ll - theirs_ll).max())
        same_answers = bool((ours_ll.argmax(axis=1) == theirs_ll.argmax(axis=1)).all())

        # Engines alone: our shared-context scorer vs HFLM on the same pre-built requests.
        pairs, _ = lm_eval_requests(task)
        ref_lm = hflm(model, batch_size=32)
        lm = load_local_model(LocalModelConfig(model, batch_size=32))
        groups = []
        for i in range(0, len(pairs), 4):
            enc = [lm.encode_pair(c, x) for c, x in pairs[i : i + 4]]
            groups.append(LoglikelihoodGroup(tuple(enc[0][0]), tuple(tuple(e[1]) for e in enc)))
        engine: dict[str, list[float]] = {"ours": [], "HFLM": []}
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            engine_ll = [s.logprob for g in lm.loglikelihood(groups) for s in g]
            engine["ours"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                hflm_ll = lm_eval_loglikelihoods(ref_lm, pairs)
            engine["HFLM"].append(time.perf_counter() - t0)
        engine_diff = float(np.abs(np.array(engine_ll) - np.array(hflm_ll)).max())

    best = {k: min(v) for k, v in times.items()}
    ratio = best["lm-eval"] / best["ours"]
    lean = best["lm-eval lean"] / best["ours"]
    via_inspect = best["lm-eval"] / best["ours, inspect runner"]
    eng = min(engine["HFLM"]) / min(engine["ours"])
    acc = result.metrics[0]  # type: ignore[attr-defined]
    print(f"torch threads {THREADS}; best of {ROUNDS} interleaved rounds; 1000 questions x 4")
    print(
        f"end to end, JSONL -> scored results: ours (safescale eval run, batched runner, "
        f"Inspect log written) {best['ours']:.1f} s, lm-eval simple_evaluate hf bs32 "
        f"{best['lm-eval']:.1f} s, speed-up {ratio:.2f}x (target {TARGET}x)"
    )
    print(
        f"  ours with --runner inspect (every sample through Inspect's loop) "
        f"{best['ours, inspect runner']:.1f} s, speed-up {via_inspect:.2f}x"
    )
    print(
        f"  lm-eval with TaskManager(include_defaults=False) (no index of built-in tasks) "
        f"{best['lm-eval lean']:.1f} s, speed-up {lean:.2f}x; all runs (s): "
        + "; ".join(f"{k} " + ", ".join(f"{t:.1f}" for t in v) for k, v in times.items())
    )
    print(
        f"  acc {acc.value:.3f} (n={acc.n}, 95% CI {acc.lo:.3f}-{acc.hi:.3f}) on both sides: "
        f"{acc_agree}; per-choice max |ll diff| vs lm-eval's logged samples {e2e_diff:.1e}; "
        f"same answer on every question: {same_answers}"
    )
    print(
        f"engines alone: ours {min(engine['ours']):.2f} s, HFLM bs32 "
        f"{min(engine['HFLM']):.2f} s, speed-up {eng:.2f}x; max |ll diff| {engine_diff:.1e}"
    )
    checks = acc_agree and same_answers and e2e_diff < 1e-4 and engine_diff < 1e-4
    return ratio >= TARGET and checks


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
