"""Shared fixtures: a real small model saved in Hugging Face format, and MC tasks."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def two_finals(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``a/final`` (the fixture's weights) and ``b/final`` (the same model, other weights)."""
    import torch
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("runs")
    a, b = root / "a" / "final", root / "b" / "final"
    shutil.copytree(model_dir, a)
    shutil.copytree(model_dir, b)
    weights = load_file(str(b / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.dtype == torch.float32 and v.ndim == 2)
    weights[name] = weights[name] * 1.01
    save_file(weights, str(b / "model.safetensors"), metadata={"format": "pt"})
    return a, b


@pytest.fixture
def server(model_dir: Path):  # type: ignore[no-untyped-def]
    """``serve-model``'s server for the tiny model on a free loopback port."""
    from safescale.evals import LocalModelConfig, ModelServer, load_local_model

    lm = load_local_model(LocalModelConfig(model_dir))
    srv = ModelServer(lm, name="tiny", port=0).start()
    yield srv
    srv.close()
