"""Evaluations: our Inspect run against lm-evaluation-harness (HFLM, batch size 32), same run.

A 4-layer, 256-wide Llama saved in Hugging Face format, a 1,000-question 4-choice JSONL task.
Ours is the whole ``run_suite`` (Inspect, the ``safescale/`` provider, the log written and read
back, evidence built). The reference is lm-eval's ``HFLM.loglikelihood`` on the same 4,000
requests (model load included, lm-eval's task framework left out, which favours the
reference). Target: ours at least 2x faster. The engines alone are compared too.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TARGET = 2.0


def main() -> bool:
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.evals._factory import build_model, write_mc_jsonl
    from tests.evals._lmeval import hflm, lm_eval_loglikelihoods, lm_eval_requests

    from safescale.evals import LocalModelConfig, LoglikelihoodGroup, load_local_model, run_suite

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_model(root / "model", hidden=256, layers=4, heads=4, vocab=2048, steps=5)
        task = write_mc_jsonl(root / "mc.jsonl", 1000, seed=3)
        pairs, _ = lm_eval_requests(task)

        t0 = time.perf_counter()
        result = run_suite(str(task), str(model), log_dir=root / "logs")
        ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        ref_lm = hflm(model, batch_size=32)
        theirs_ll = lm_eval_loglikelihoods(ref_lm, pairs)
        theirs = time.perf_counter() - t0

        # Engines alone: our shared-context scorer vs HFLM on the same requests.
        lm = load_local_model(LocalModelConfig(model, batch_size=32))
        groups = []
        for i in range(0, len(pairs), 4):
            enc = [lm.encode_pair(c, x) for c, x in pairs[i : i + 4]]
            groups.append(LoglikelihoodGroup(tuple(enc[0][0]), tuple(tuple(e[1]) for e in enc)))
        t0 = time.perf_counter()
        ours_ll = [s.logprob for g in lm.loglikelihood(groups) for s in g]
        ours_engine = time.perf_counter() - t0
        t0 = time.perf_counter()
        lm_eval_loglikelihoods(ref_lm, pairs)
        theirs_engine = time.perf_counter() - t0

    diff = float(np.abs(np.array(ours_ll) - np.array(theirs_ll)).max())
    ratio = theirs / ours
    print(
        f"end to end, 1000 questions x 4 choices: ours (Inspect + safescale/) {ours:.1f} s, "
        f"lm-eval HFLM bs32 {theirs:.1f} s, speed-up {ratio:.2f}x (target {TARGET}x)"
    )
    print(
        f"engines alone: ours {ours_engine:.1f} s, HFLM bs32 {theirs_engine:.1f} s, "
        f"speed-up {theirs_engine / ours_engine:.2f}x; max |ll diff| {diff:.2e}; "
        f"acc {result.metrics[0].value:.3f} (n={result.metrics[0].n})"
    )
    return ratio >= TARGET and diff < 1e-4


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
