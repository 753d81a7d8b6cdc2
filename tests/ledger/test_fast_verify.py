"""The fast verification pass: it accepts clean ledgers, in one process or two, with the
report the diagnosing verifier gives, and gives up on anything else (test_tamper.py holds it
to that for every changed byte)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safescale.ledger import Workspace, _scan, _workspace
from safescale.ledger._checkpoint import read_checkpoint
from safescale.ledger._verify import VerifyReport

from .helpers import evidence, model


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Entries 1..41 in 10 transactions of different sizes (ending at 1, 2, 4, 7, 11, 16, 22,
    29, 37, 41), entries 8-11 referencing an artifact; a checkpoint taken at 22
    (``halfway.json``)."""
    root = tmp_path_factory.mktemp("fast") / ".safescale"
    with Workspace.init(root) as ws:
        sha = ws.add_artifact(b"log " * 50)
        ws.append_model(model(0))
        for t in range(8):
            records = [evidence(10 * t + i, **({"artifacts": {"log": sha}} if t == 3 else {}))
                       for i in range(1 + t)]  # fmt: skip
            ws.append_many(records)
            if ws.count() == 22:
                shutil.copy(ws.checkpoint_path, root.parent / "halfway.json")
        assert ws.count() == 37
        ws.append_many([model(1), model(2), model(3), model(4)])
    return root


def _diagnosed(ws: Workspace, **kw: Any) -> VerifyReport:
    """``ws.verify(**kw)`` with the fast pass switched off: the diagnosing verifier only."""

    def no_fast_pass(*args: Any) -> tuple[None, Any]:
        return None, args[-1]()  # still run the page check it runs alongside

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_workspace, "scan_clean", no_fast_pass)
        return ws.verify(**kw)


def _check_clean_pass(ledger: Path, parallel: bool) -> None:
    """The fast pass on the clean ledger gives the diagnosing verifier's report (with and
    without a checkpoint), split in two processes or not."""
    if parallel:
        _scan.PARALLEL_MIN_ENTRIES = 2  # a process of its own: nothing to restore
        assert _scan._can_fork(), "a fresh interpreter has one thread: the split is taken"
    with Workspace.open(ledger) as ws:
        # The last head at or before entry 41 // 2 = 20.
        assert _scan.split_point(ws.engine) == (16 if parallel else None)
        halfway = read_checkpoint(ledger.parent / "halfway.json")
        for given in ([], [("halfway", halfway)]):
            anchors = [c.anchor(name) for name, c in given]
            clean, pages = ws._verify_clean(ws.public_key(), ws.root / "artifacts", anchors)
            assert clean is not None and pages == []
            assert clean.ok and clean.entries == 41 and clean.signatures == 10
            assert clean.artifacts == 1 and clean.head == ws.head()
            assert ws.verify(checkpoints=given) == _diagnosed(ws, checkpoints=given)


def test_a_clean_ledger_passes_the_fast_pass_with_the_same_report(ledger: Path) -> None:
    _check_clean_pass(ledger, parallel=False)


def test_a_clean_ledger_passes_the_fast_pass_split_in_two(ledger: Path) -> None:
    # In a fresh interpreter: the suite's own threads (servers, pools) rightly stop a fork here.
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(
        target=_check_clean_pass, args=(ledger, True)
    )
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode == 0, "the check failed in its own process (its traceback is above)"


@pytest.mark.parametrize(
    ("seq", "bad"),  # a changed head fails its whole transaction's signature
    [(3, {3}), (16, set(range(12, 17))), (17, {17}), (41, set(range(38, 42)))],
)  # the first range, its last entry, the second range, its last entry
def test_a_change_on_either_side_of_the_split_is_diagnosed(
    ledger: Path, tmp_path: Path, seq: int, bad: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_scan, "PARALLEL_MIN_ENTRIES", 2)
    root = tmp_path / ".safescale"
    shutil.copytree(ledger, root)
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute("UPDATE entries SET record_id = record_id || 'x' WHERE seq = ?", (seq,))
    with Workspace.open(root) as ws:
        clean, _ = ws._verify_clean(ws.public_key(), ws.root / "artifacts", [])
        assert clean is None
        report = ws.verify()
    assert not report.ok and report.bad_seqs == bad


def test_what_the_fast_pass_does_not_judge_is_still_reported(
    ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Clean entries, but a changed artifact and the last transaction gone (the workspace
    # checkpoint names 41 entries): the fast pass accepts the entries, the report does not.
    monkeypatch.setattr(_scan, "PARALLEL_MIN_ENTRIES", 2)
    root = tmp_path / ".safescale"
    shutil.copytree(ledger, root)
    (artifact,) = [p for p in (root / "artifacts").rglob("*") if p.is_file()]
    artifact.write_bytes(b"changed")
    with sqlite3.connect(root / "ledger.sqlite") as db:
        db.execute("DELETE FROM entries WHERE seq > 37")
        db.execute("DELETE FROM heads WHERE seq > 37")
    with Workspace.open(root) as ws:
        clean, _ = ws._verify_clean(ws.public_key(), ws.root / "artifacts", [])
        assert clean is not None and clean.entries == 37 and not clean.ok
        report = ws.verify()
        assert report == _diagnosed(ws)
    assert {p.what for p in report.problems} == {"artifact", "checkpoint"}
    assert report.bad_seqs == {8, 9, 10, 11}


def test_the_cli_split_in_two_prints_once(ledger: Path) -> None:
    # `safescale ledger verify` in a process of its own, its ledger split in two: the verdict
    # is printed once, and so is a line the process had buffered before the fork (stdout is a
    # pipe, so block buffered).
    code = (
        "import sys\n"
        "from safescale.ledger import _scan\n"
        "_scan.PARALLEL_MIN_ENTRIES = 2\n"
        "print('before')\n"
        "from safescale.cli import main\n"
        f"code = main(['--workspace', {str(ledger)!r}, 'ledger', 'verify'])\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(_scan.__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("before") == 1, done.stdout
    assert done.stdout.count("ok: 41 entries") == 1, done.stdout
