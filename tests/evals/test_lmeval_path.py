"""The end-to-end comparison in ``benchmarks/bench_evals.py`` compares like with like: lm-eval's
whole path (task YAML over the same JSONL, ``simple_evaluate``) scores what we score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safescale.evals import run_suite
from tests.evals._lmeval import (
    lm_eval_end_to_end,
    lm_eval_sample_loglikelihoods,
    write_lm_eval_task,
)


@pytest.mark.slow
def test_lm_eval_end_to_end_agrees_with_ours(
    model_dir: Path, mc_small: Path, tmp_path: Path
) -> None:
    from inspect_ai.log import read_eval_log

    ours = run_suite(str(mc_small), str(model_dir), log_dir=tmp_path / "logs")
    theirs = lm_eval_end_to_end(
        model_dir, write_lm_eval_task(tmp_path / "tasks", mc_small), include_defaults=False
    )
    samples = sorted(read_eval_log(str(ours.log_path)).samples, key=lambda s: s.id)
    a = np.array([s.metadata["loglikelihoods"] for s in samples])
    b = np.array(lm_eval_sample_loglikelihoods(theirs))
    assert a.shape == b.shape == (24, 4)
    assert np.abs(a - b).max() < 1e-4
    assert (a.argmax(axis=1) == b.argmax(axis=1)).all()
    row = theirs["results"]["safescale_mc"]
    acc = {m.name: m for m in ours.metrics}
    assert acc["acc"].value == pytest.approx(row["acc,none"])
    assert acc["acc_norm"].value == pytest.approx(row["acc_norm,none"])
    assert acc["acc"].n == theirs["n-samples"]["safescale_mc"]["effective"] == 24
