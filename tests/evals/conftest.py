"""Shared fixtures: a real small model saved in Hugging Face format, and MC tasks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import torch_threads

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("INSPECT_DISPLAY", "none")

from tests.evals._factory import build_model, write_mc_jsonl


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(torch_threads())
    return build_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def mc_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mc_jsonl(tmp_path_factory.mktemp("mc") / "mc.jsonl", 24, seed=1)


@pytest.fixture
def server(model_dir: Path):  # type: ignore[no-untyped-def]
    """``serve-model``'s server for the tiny model on a free loopback port."""
    from safescale.evals import LocalModelConfig, ModelServer, load_local_model

    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0).start()
    yield srv
    srv.close()
