"""Tables fit 80 columns: a table too wide for the terminal is printed a row at a time,
whole values wrapped, nothing cut."""

from __future__ import annotations

import pytest

from safescale.ledger import Workspace
from safescale.policy import ModelRecord


def test_wide_tables_fit_80_columns(tmp_path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
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
    monkeypatch.setenv("COLUMNS", "200")
    with Workspace.init(tmp_path / "ws") as ws:
        ws.append_model(ModelRecord(id="m0", flops=1e15))
    code, out, _ = run_cli("--workspace", str(tmp_path / "ws"), "compute", "show")
    assert code == 0 and "┃ model" in out
