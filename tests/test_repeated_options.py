"""An option that takes one value, given twice, is a usage error (the parser would keep the
last value without a word); options that may repeat and flags are not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize(
    "args",
    [
        ["compute", "add", "--model", "m", "--flops", "1e20", "--flops", "1e22"],
        ["--workspace", "a", "--workspace", "b", "compute", "show"],
        ["scaling", "forecast", "x.csv", "--compute", "c", "--score", "s", "--at", "1e24",
         "--at=1e25"],
        ["compute", "add", "--model", "m", "--flops=1e20", "--flops", "1e21"],
    ],
    ids=["flops", "global-workspace", "at-with-equals", "equals-first"],
)  # fmt: skip
def test_an_option_given_twice_is_one_line_and_exit_2(
    run_cli: Any, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*args)
    assert code == 2 and err.count("\n") == 1 and "is given twice; give it once" in err, err
    assert out == "" and not any(tmp_path.iterdir())  # refused before anything ran


def test_options_that_may_repeat_and_repeated_flags_are_accepted(
    run_cli: Any, tmp_path: Path
) -> None:
    code, out, _ = run_cli("policy", "show", "lab", "--json", "--json")
    assert code == 0 and out.startswith("{")
    csv = tmp_path / "s.csv"
    csv.write_text("flops,acc\n" + "".join(f"1e{18 + i},{0.3 + i / 20}\n" for i in range(8)))
    code, out, err = run_cli("scaling", "backtest", str(csv), "--compute", "flops", "--score",
                             "acc", "--line", "0.5", "--line", "0.6")  # fmt: skip
    assert code == 0 and "given twice" not in err, err
