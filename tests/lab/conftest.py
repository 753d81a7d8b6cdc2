"""Shared, session-scoped lab artifacts: a small corpus and the smoke ladder (built once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tests.conftest import torch_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    # The test machine is small and shared; two threads is what the presets are sized for.
    torch.set_num_threads(torch_threads())


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30k-token corpus (seed 0)."""
    from safescale.lab import write_corpus

    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, tokens=30_000, seed=0)
    return out
