"""Tables fit 80 columns: a table too wide for the terminal is printed a row at a time,
whole values wrapped, nothing cut."""

from __future__ import annotations

import pytest

from safescale.ledger import Workspace
from safescale.policy import ModelRecord


def _columns(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """A terminal ``n`` columns wide. The command's console reads COLUMNS once, when it is
    made (on import, in whatever environment that was: a parallel test process sets its own),
    so its width is set too."""
    from safescale.cli._common import console

    monkeypatch.setenv("COLUMNS", str(n))
    monkeypatch.setattr(console, "width", n)


def test_wide_tables_fit_80_columns(tmp_path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _columns(monkeypatch, 80)
    with Workspace.init(tmp_path / "ws") as ws:
        ws.append_model(ModelRecord(id="m0", flops=1e15, extra={"lineage": "ladder"}))
        ws.append_model(ModelRecord(id="m1", flops=1e16, extra={"lineage": "ladder"}))
    code, out, err = run_cli(
        "--workspace", str(tmp_path / "ws"), "compute", "triggers", "--policy", "lab"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines and max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in out
    flat = " ".join(out.split())
    # A whole rule, not "comprehe…".
    assert "effective compute >= 4x the last comprehensively assessed model" in flat
    code, out, _ = run_cli("--workspace", str(tmp_path / "ws"), "compute", "show")
    assert code == 0 and "…" not in out and "pretraining" in out
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80


def test_narrow_tables_stay_tables(tmp_path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _columns(monkeypatch, 200)
    with Workspace.init(tmp_path / "ws") as ws:
        ws.append_model(ModelRecord(id="m0", flops=1e15))
    code, out, _ = run_cli("--workspace", str(tmp_path / "ws"), "compute", "show")
    assert code == 0 and "┃ model" in out
