"""Hostile inputs to ``scaling fit|forecast|backtest``: one line on stderr, exit 2, nothing
written (the audit's defects 1-13 and 16, each through the real command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safescale.cli._app import main

LADDER = "".join(
    f"{n:g},{d:g},{6 * n * d:g},{2 + 400 / n**0.3 + 900 / d**0.3:.6f}\n"
    for n in (1e7, 3e7, 1e8, 3e8)
    for d in (2e8, 1e9, 5e9)
)
SCORES = [
    (1e17, 0.2445, 4.5184, 0.2537), (2.8e17, 0.2491, 4.1089, 0.2572),
    (8.1e17, 0.2581, 3.7589, 0.2641), (2.3e18, 0.2815, 3.4598, 0.2773),
    (6.6e18, 0.3249, 3.2041, 0.3020), (1.9e19, 0.3907, 2.9856, 0.3459),
    (5.3e19, 0.5389, 2.7988, 0.4172), (1.5e20, 0.6858, 2.6391, 0.5180),
    (4.3e20, 0.8394, 2.5027, 0.6357), (1.2e21, 0.9330, 2.3861, 0.7457),
]  # fmt: skip


def _scores(
    rows: list[tuple[object, ...]] | None = None, header: str = "flops,acc,loss,other"
) -> str:
    body = "".join(",".join(str(v) for v in r) + "\n" for r in (rows or SCORES))
    return header + "\n" + body


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(tmp_path: Path, capsys, args: list[str], *needles: str) -> str:
    before = _snapshot(tmp_path)
    code = main(["scaling", *args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert out == ""
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert _snapshot(tmp_path) == before
    return lines[0]


@pytest.fixture()
def ladder(tmp_path: Path) -> Path:
    path = tmp_path / "ladder.csv"
    path.write_text("params,tokens,flops,loss\n" + LADDER)
    return path


@pytest.fixture()
def scores(tmp_path: Path) -> Path:
    path = tmp_path / "scores.csv"
    path.write_text(_scores())
    return path


FIT = ("--params", "params", "--tokens", "tokens", "--loss", "loss")
FC = ("--compute", "flops", "--score", "acc", "--at", "1e22", "--chance", "0.25",
      "--bootstrap", "20")  # fmt: skip
BT = ("--compute", "flops", "--score", "acc", "--chance", "0.25", "--bootstrap", "20")


@pytest.mark.parametrize(
    "value", [",", " , ,", "", "chinchilla,chinchilla", "kaplan-nd, chinchilla,kaplan-nd"]
)
def test_compare_naming_no_form(tmp_path, capsys, ladder, value) -> None:  # 1
    _refused(tmp_path, capsys, ["fit", str(ladder), *FIT, "--compare", value], "--compare")


@pytest.mark.parametrize("spec", ["other:nan", "other:inf", "other:1e400", "other:1",
                                  "other:5", "other:-0.1", "other:x", ":0.25"])  # fmt: skip
@pytest.mark.parametrize("cmd", ["forecast", "backtest"])
def test_with_chance_is_checked(tmp_path, capsys, scores, spec, cmd) -> None:  # 2
    flags = FC if cmd == "forecast" else BT
    _refused(tmp_path, capsys, [cmd, str(scores), *flags, "--with", spec], "--with")


@pytest.mark.parametrize("value", ["1e300", "-1", "0", "nan", "inf", "11"])
def test_max_distance_is_bounded(tmp_path, capsys, scores, value) -> None:  # 3
    _refused(tmp_path, capsys, ["backtest", str(scores), *BT, "--max-distance", value],
             "--max-distance")  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-5", "1e3", "1.5", "nan", "inf", "99999999999", "x", ""])
@pytest.mark.parametrize("cmd", ["forecast", "backtest"])
def test_questions_is_a_whole_number_in_range(tmp_path, capsys, scores, value, cmd) -> None:
    flags = FC if cmd == "forecast" else BT
    _refused(tmp_path, capsys, [cmd, str(scores), *flags, "--questions", value], "--questions")


@pytest.mark.parametrize("cmd", ["forecast", "backtest"])
def test_questions_needs_proportions(tmp_path, capsys, cmd) -> None:
    # Scores in percent: the size counts questions, so a score of 24.45 cannot be a share.
    path = tmp_path / "percent.csv"
    path.write_text(_scores([(r[0], 100 * r[1], r[2], r[3]) for r in SCORES]))
    flags = [f for f in (FC if cmd == "forecast" else BT)]
    flags[flags.index("--chance") + 1] = "25"
    line = _refused(
        tmp_path, capsys, [cmd, str(path), *flags, "--ceiling", "100", "--questions", "1000"],
        "proportions in [0, 1]",
    )  # fmt: skip
    assert line.startswith(f"{path}: ") or str(path) in line


@pytest.mark.parametrize("kind", ["folder", "under-file", "proc", "long", "empty", "device"])
@pytest.mark.parametrize("cmd", ["fit", "forecast", "backtest"])
def test_plot_path_checked_first(tmp_path, capsys, ladder, scores, kind, cmd) -> None:  # 4
    (tmp_path / "adir").mkdir(exist_ok=True)
    plot = {
        "folder": str(tmp_path / "adir"), "under-file": str(ladder / "x.png"),
        "proc": "/proc/x.png", "long": str(tmp_path / ("x" * 300 + ".png")), "empty": "",
        "device": "/dev/null",
    }[kind]  # fmt: skip
    args = {"fit": ["fit", str(ladder), *FIT], "forecast": ["forecast", str(scores), *FC],
            "backtest": ["backtest", str(scores), *BT]}[cmd]  # fmt: skip
    _refused(tmp_path, capsys, [*args, "--plot", plot], "--plot")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1.5", "0.1"])
def test_lines_within_chance_and_ceiling(tmp_path, capsys, scores, value) -> None:  # 6
    _refused(tmp_path, capsys, ["backtest", str(scores), *BT, "--line", value], "--line")
    _refused(tmp_path, capsys, ["forecast", str(scores), *FC, "--line", value], "--line")


@pytest.mark.parametrize(("row", "col", "value"), [
    (3, 0, "1e200"), (3, 0, "1e-300"), (3, 1, "1e300"), (3, 1, "5"), (3, 1, "-5"),
    (3, 2, "1e200"), (3, 3, "1.5"),
])  # fmt: skip
def test_csv_values_are_bounded(tmp_path, capsys, row, col, value) -> None:  # 7, 8
    rows = [list(r) for r in SCORES]
    rows[row][col] = value
    path = tmp_path / "s.csv"
    path.write_text(_scores(rows))  # type: ignore[arg-type]
    name = ["flops", "acc", "loss", "other"][col]
    _refused(tmp_path, capsys, ["forecast", str(path), *FC, "--loss", "loss", "--with", "other"],
             f"s.csv:{row + 2}: {name}:", "fix or drop the row")  # fmt: skip


def test_fit_csv_values_are_bounded(tmp_path, capsys) -> None:  # 7
    path = tmp_path / "r.csv"
    path.write_text("params,tokens,flops,loss\n" + LADDER.replace("1e+07,", "1e+200,", 1))
    _refused(tmp_path, capsys, ["fit", str(path), *FIT], "r.csv:2: params:", "out of range")


@pytest.mark.parametrize("extra", [
    ("--params", "params", "--tokens", "params", "--loss", "loss"),
    ("--params", "params", "--tokens", "tokens", "--loss", "params"),
])  # fmt: skip
def test_one_column_two_roles_fit(tmp_path, capsys, ladder, extra) -> None:  # 9
    _refused(tmp_path, capsys, ["fit", str(ladder), *extra], "both name the column")


@pytest.mark.parametrize("extra", [("--loss", "acc"), ("--with", "acc"), ("--with", "flops"),
                                   ("--with", "other", "--with", "other")])  # fmt: skip
def test_one_column_two_roles_scores(tmp_path, capsys, scores, extra) -> None:  # 9
    _refused(tmp_path, capsys, ["forecast", str(scores), *FC, *extra], "both name the column")


def test_duplicate_header_name_is_ambiguous(tmp_path, capsys) -> None:  # 10
    path = tmp_path / "d.csv"
    path.write_text(_scores(header="flops,acc,loss,acc"))
    _refused(tmp_path, capsys, ["forecast", str(path), *FC], "d.csv:1:", "'acc' 2 times")


def test_duplicate_rows_are_warned_about(tmp_path, capsys) -> None:  # 11
    path = tmp_path / "d.csv"
    path.write_text(_scores([*SCORES, SCORES[-1], SCORES[-1]]))
    assert main(["scaling", "forecast", str(path), *FC, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["n_points"] == 12
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "d.csv: lines 12 (= 11), 13 (= 11) repeat" in lines[0], err


@pytest.mark.parametrize(("cell", "needle"), [
    ("0.3\x0b", "\\x0b"), ("0.3\x0c", "\\x0c"), ("0.3\x1c", "\\x1c"), ("0.3\x85", "\\x85"),
    ("\u20280.3", "\\u2028"), ("\x1b0.3", "\\x1b"), ("0.3\u202e", "\\u202e"),
    ("\uff10.3", "plain decimal"), ("\u0660.\u0669", "plain decimal"), ("0.9_0", "plain decimal"),
    ("0x1", "not a number"), ("\xa00.3", "plain decimal"),
])  # fmt: skip
def test_csv_cells_plain_ascii_numbers(tmp_path, capsys, cell, needle) -> None:  # 12
    rows = [list(r) for r in SCORES]
    rows[4][1] = cell
    path = tmp_path / "c.csv"
    path.write_text(_scores(rows), newline="")  # type: ignore[arg-type]
    _refused(tmp_path, capsys, ["forecast", str(path), *FC], "c.csv:6: acc:", needle)


def test_multiline_cell_reports_physical_line(tmp_path, capsys) -> None:  # 12
    path = tmp_path / "m.csv"
    path.write_text('flops,acc\n1e17,"0.25\n\n"\n1e18,0.3\n1e19,0.4\n1e20,oops\n1e21,0.8\n')
    _refused(tmp_path, capsys, ["forecast", str(path), *FC], "m.csv:2: acc:", "\\x0a")
    path.write_text('flops,acc,note\n1e17,0.25,x\n1e18,0.3,"a,b"\n1e19,0.4,y\n1e20,oops,z\n')
    _refused(tmp_path, capsys, ["forecast", str(path), *FC], "m.csv:5: acc:")


def test_blank_lines_are_skipped(tmp_path, capsys) -> None:  # 12
    path = tmp_path / "b.csv"
    path.write_text(_scores() + "\n\n")
    assert main(["scaling", "forecast", str(path), *FC, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_points"] == len(SCORES)


def test_fit_bootstrap_work_is_bounded(tmp_path, capsys, ladder) -> None:  # 13
    _refused(tmp_path, capsys, ["fit", str(ladder), *FIT, "--bootstrap", "100000"],
             "--bootstrap", "5,000")  # fmt: skip
    big = tmp_path / "big.csv"
    big.write_text("params,tokens,flops,loss\n" + LADDER * 25)  # 300 rows
    _refused(tmp_path, capsys, ["fit", str(big), *FIT, "--bootstrap", "5000"],
             "big.csv: --bootstrap:", "give --bootstrap 3,333 or fewer")  # fmt: skip


def test_forecast_bootstrap_work_is_bounded(tmp_path, capsys) -> None:  # 13
    path = tmp_path / "big.csv"
    path.write_text("flops,acc\n" + "".join(f"{1e17 * 1.001**i:.6g},0.5\n" for i in range(2000)))
    _refused(tmp_path, capsys, ["forecast", str(path), *FC[:6], "--bootstrap", "100000"],
             "big.csv: --bootstrap:", "or fewer")  # fmt: skip


@pytest.mark.parametrize(("rows", "needle"), [(0, "0 rows are too few"), (1, "1 row is too few")])
def test_data_problems_name_the_file(tmp_path, capsys, rows, needle) -> None:  # 16
    path = tmp_path / "few.csv"
    path.write_text(_scores(SCORES[:rows]) if rows else "flops,acc,loss,other\n")
    _refused(tmp_path, capsys, ["forecast", str(path), *FC], f"few.csv: {needle}")
    path.write_text(_scores([(1e20, s, 3.0, 0.3) for s in (0.3, 0.4, 0.5, 0.6)]))
    _refused(tmp_path, capsys, ["forecast", str(path), *FC], "few.csv: flops: every row")
