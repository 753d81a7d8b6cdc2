"""A warning when prompts exceed the model's context (real tiny model, real tokens)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safescale.evals import ContextWarning, LocalModelConfig, LoglikelihoodGroup, load_local_model


def test_prompts_longer_than_the_context_warn(model_dir: Path) -> None:
    lm = load_local_model(LocalModelConfig(model_dir, max_length=16))
    ids = lm.encode("The river of Zorbia is red and lies near Quell. " * 4)
    assert len(ids) > 16
    with pytest.warns(ContextWarning, match=r"1 of 2 prompts are longer than the model's context"):
        lm.generate([ids, ids[:4]], 2)
    group = LoglikelihoodGroup(context=tuple(ids), continuations=(tuple(ids[:2]),))
    with pytest.warns(ContextWarning, match="1 of 1 log-likelihood requests are longer"):
        lm.loglikelihood([group])


def test_prompts_within_the_context_do_not_warn(model_dir: Path) -> None:
    import warnings

    lm = load_local_model(LocalModelConfig(model_dir, max_length=64))
    ids = lm.encode("The river of Zorbia is red.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ContextWarning)
        lm.generate([ids], 2)
