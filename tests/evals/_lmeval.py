"""Drive lm-evaluation-harness's HFLM on the same multiple-choice requests (the parity oracle)."""

from __future__ import annotations

import json
from pathlib import Path


def lm_eval_requests(task: Path) -> tuple[list[tuple[str, str]], list[int]]:
    """(context, continuation) pairs lm-eval builds for a default MC task; choice counts."""
    pairs: list[tuple[str, str]] = []
    counts = []
    for line in task.read_text().splitlines():
        row = json.loads(line)
        ctx = f"Question: {row['question']}\nAnswer:"  # lm-eval's default doc_to_text shape
        pairs += [(ctx, " " + c) for c in row["choices"]]  # target_delimiter " "
        counts.append(len(row["choices"]))
    return pairs, counts


def hflm(model_dir: Path, batch_size: int = 32):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(model_dir), batch_size=batch_size, device="cpu", dtype="float32")


def lm_eval_loglikelihoods(lm, pairs: list[tuple[str, str]]) -> list[float]:
    """``HFLM.loglikelihood`` on the pairs; the sums of continuation log-probabilities."""
    from lm_eval.api.instance import Instance

    reqs = [
        Instance(request_type="loglikelihood", doc={}, arguments=p, idx=i)
        for i, p in enumerate(pairs)
    ]
    return [float(ll) for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
