"""Hostile flags of ``compute add`` (the audit's defects 5, 14, 15 and 16): one line on stderr,
exit 2, nothing recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safescale.cli import main

HW = ("--gpu-hours", "10", "--peak-flops", "1e15", "--utilization", "0.4")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def ws(tmp_path: Path, capsys) -> str:  # type: ignore[no-untyped-def]
    folder = str(tmp_path / "w")
    assert main(["--workspace", folder, "init"]) == 0
    capsys.readouterr()
    return folder


def _refused(ws: str, capsys, *args: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    before = _snapshot(Path(ws))
    code = main(["--workspace", ws, "compute", "add", "--model", "m", *args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert _snapshot(Path(ws)) == before


@pytest.mark.parametrize("weights", [
    "openai/" + "a" * 100_000, "openai/" + "a" * 300, "", "openai/gpt\x1b[31m", "openai/g\npt",
    "openai/\u202egpt", "   ",
])  # fmt: skip
def test_weights_is_checked(ws: str, capsys, weights: str) -> None:  # type: ignore[no-untyped-def]
    _refused(ws, capsys, "--flops", "1e20", "--weights", weights, needle="--weights")


@pytest.mark.parametrize("args", [
    ("--params", "1e20", "--tokens", "1e20"),
    ("--params", "1e-320", "--tokens", "1"),
    ("--gpu-hours", "1e20", "--peak-flops", "1e35", "--utilization", "1"),
    ("--flops", "1e-320"),
])  # fmt: skip
def test_derived_flop_is_bounded(ws: str, capsys, args) -> None:  # type: ignore[no-untyped-def]
    _refused(ws, capsys, *args, needle="--flops")


@pytest.mark.parametrize(("args", "needle"), [
    (("--flops", "1e20", "--gpu-hours", "10"), "not both --flops and --gpu-hours"),
    (("--flops", "1e20", "--peak-flops", "1e15"), "not both --flops and --peak-flops"),
    (("--flops", "1e20", "--utilization", "0.5"), "not both --flops and --utilization"),
    (("--params", "1e9", "--tokens", "1e9", *HW), "not both --params and --gpu-hours"),
    (("--method", "count", "--flops", "1e20"), "--method count"),
    (("--method", "count", *HW), "--method count"),
])  # fmt: skip
def test_one_way_to_state_flop(ws: str, capsys, args, needle) -> None:  # type: ignore[no-untyped-def]
    _refused(ws, capsys, *args, needle=needle)


def test_triggers_json_stays_finite(ws: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--workspace", ws, "compute", "add", "--model", "a", "--flops", "1"]) == 0
    assert main(["--workspace", ws, "compute", "add", "--model", "b", "--flops", "1e35"]) == 0
    capsys.readouterr()
    assert main(["--workspace", ws, "compute", "triggers", "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    json.loads(out)
