"""``safescale init`` makes a whole workspace or leaves the folder as it was: paths in the way
and folders it cannot write to are one line and exit status 2, with nothing left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda d: (d / "w").write_text("x"), "w"),
        (lambda d: ((d / "w").mkdir(), (d / "w" / "artifacts").write_text("")), "w/artifacts"),
        (lambda d: ((d / "w").mkdir(), (d / "w" / "keys").write_text("")), "w/keys"),
        (lambda d: (d / "w" / "checkpoint.json").mkdir(parents=True), "w/checkpoint.json"),
        (lambda d: (d / "w" / "ledger.sqlite").mkdir(parents=True), "w/ledger.sqlite"),
    ],
    ids=[
        "workspace-is-a-file",
        "artifacts-is-a-file",
        "keys-is-a-file",
        "checkpoint-is-a-folder",
        "database-is-a-folder",
    ],
)
def test_paths_in_the_way_are_one_line_and_nothing_is_created(
    tmp_path: Path, run_cli: Any, make: Callable[[Path], object], names: str
) -> None:
    make(tmp_path)
    before = _tree(tmp_path)
    code, out, err = run_cli("--workspace", str(tmp_path / "w"), "init")
    assert code == 2 and err.count("\n") == 1 and names in err, err
    assert "Traceback" not in err
    assert _tree(tmp_path) == before


def test_a_folder_that_cannot_be_made_is_one_line(run_cli: Any) -> None:
    for target in ("/sys/safescale-test", "/dev/null/w"):
        code, _, err = run_cli("--workspace", target, "init")
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not Path("/sys/safescale-test").exists()


def test_a_failed_creation_removes_what_it_made(
    tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safescale.ledger import _workspace

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "w" / "config.toml"))

    monkeypatch.setattr(_workspace, "write_config", full_disk)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "notes.txt").write_text("the user's own file")
    code, _, err = run_cli("--workspace", str(tmp_path / "w"), "init")
    assert code == 2 and "No space left on device" in err and err.count("\n") == 1
    assert _tree(tmp_path) == {"w", "w/notes.txt"}  # keys, database, checkpoint removed again
