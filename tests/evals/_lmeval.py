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


TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def write_lm_eval_task(folder: Path, data: Path, name: str = "safescale_mc") -> Path:
    """An lm-eval task YAML for a multiple-choice JSONL file (lm-eval's default MC prompt).

    ``datasets`` reads the local file with its packaged ``json`` builder, offline; its Arrow
    cache goes under ``folder`` so that nothing outside it is touched. Returns the folder, for
    ``TaskManager(include_path=...)``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        TASK_YAML.format(name=name, data=data.resolve(), cache=(folder / "hf-datasets").resolve())
    )
    return folder


def lm_eval_end_to_end(
    model_dir: Path,
    task_dir: Path,
    name: str = "safescale_mc",
    batch_size: int = 32,
    include_defaults: bool = True,
) -> dict:
    """lm-eval's whole path, as ``lm_eval --model hf --tasks NAME --include_path DIR`` runs it:
    task building from the JSONL, HFLM loaded from the folder, scoring, metrics, samples.

    ``include_defaults=False`` keeps ``TaskManager`` from indexing lm-eval's built-in tasks.
    """
    import logging

    import lm_eval
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    return lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=float32",
        tasks=[name],
        batch_size=batch_size,
        device="cpu",
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=include_defaults),
    )


def lm_eval_sample_loglikelihoods(results: dict, name: str = "safescale_mc") -> list[list[float]]:
    """Per-question, per-choice log-likelihoods from ``simple_evaluate``'s logged samples."""
    samples = sorted(results["samples"][name], key=lambda s: s["doc_id"])
    return [[float(r[0][0]) for r in s["resps"]] for s in samples]
