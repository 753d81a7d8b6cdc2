"""Parity with lm-evaluation-harness on a 1,000-question, 4-choice task.

The oracle is lm-eval's ``HFLM.loglikelihood`` (batch size 32) driven directly on the requests
lm-eval builds for a default multiple-choice task; ours is a full Inspect run through the
``safescale/`` provider, read back from its log.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safescale.evals import run_suite
from tests.evals._factory import write_mc_jsonl
from tests.evals._lmeval import hflm, lm_eval_loglikelihoods, lm_eval_requests


@pytest.mark.slow
def test_loglikelihoods_match_lm_eval(model_dir: Path, tmp_path: Path) -> None:
    from inspect_ai.log import read_eval_log

    task = write_mc_jsonl(tmp_path / "mc1000.jsonl", 1000, seed=7)
    result = run_suite(str(task), str(model_dir), log_dir=tmp_path / "logs")
    ours = np.array(
        [s.metadata["loglikelihoods"] for s in read_eval_log(str(result.log_path)).samples]
    )
    pairs, counts = lm_eval_requests(task)
    assert set(counts) == {4}
    theirs = np.array(lm_eval_loglikelihoods(hflm(model_dir), pairs)).reshape(-1, 4)
    assert ours.shape == theirs.shape == (1000, 4)
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()
