"""Hostile and careless files: scaling CSVs and policy files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Build, Case, Content, Refuse, not_plain_files, put, ws_args

MINIMAL = (Path(__file__).parents[1] / "policy" / "minimal.yaml").read_text()
GOOD_ROWS = [f"{1e6 * 2**i:g},{1e9 * 2**i:g},{3.0 - 0.2 * i:g}" for i in range(8)]
UTF8 = "save the file as UTF-8"
ROW = "fix or drop the row"
CELLS = "one cell per column"


def csv(content: Content, *flags: str, cmd: str = "fit") -> Build:
    """``scaling fit runs.csv --params n --tokens d --loss loss`` on ``content``."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "runs.csv", content)
        if cmd == "fit":
            args = flags or ("--params", "n", "--tokens", "d", "--loss", "loss")
            return ["scaling", "fit", str(path), *args]
        return ["scaling", cmd, str(path), "--compute", "n", "--score", "s", *flags]

    return build


def rows(*lines: str, header: str = "n,d,loss") -> str:
    return "\n".join([header, *lines]) + "\n"


def bad_row(cell: str) -> str:
    """The good CSV with the loss of data row 3 (file line 4) replaced by ``cell``."""
    lines = list(GOOD_ROWS)
    n, d, _ = lines[2].split(",")
    lines[2] = f"{n},{d},{cell}"
    return rows(*lines)


CSV = [
    Case(
        "csv-latin1",
        csv(rows(*GOOD_ROWS).encode() + "caf\xe9,1,2\n".encode("latin-1")),
        "runs.csv:10",
        UTF8,
    ),
    Case("csv-latin1-header", csv("n,d,lo\xdfs\n1,2,3\n".encode("latin-1")), "runs.csv:1", UTF8),
    Case("csv-nul", csv(rows(*GOOD_ROWS[:3]) + "1,\x00,2\n"), "runs.csv:5: d", ROW),
    Case(
        "csv-huge-field",
        csv(rows(*GOOD_ROWS[:3]) + '1,"' + "9" * 200_000 + '",2\n'),
        "runs.csv",
        "plain comma-separated",
    ),
    Case("csv-empty", csv(""), "runs.csv", "needs a header row"),
    Case(
        "csv-missing-column",
        csv(rows(*GOOD_ROWS), "--params", "n", "--tokens", "d", "--loss", "L"),
        "runs.csv:1",
        "the header has",
    ),
    Case(
        "csv-column-escape",
        csv(rows(*GOOD_ROWS), "--params", "n", "--tokens", "d", "--loss", "\x1b[31mloss"),
        "runs.csv:1",
        "the header has",
    ),
    Case("csv-text", csv(bad_row("abc")), "runs.csv:4", ROW),
    # "runs.csv:100:" must print as written, not as rich's :100: emoji.
    Case("csv-line-100", csv(rows(*(GOOD_ROWS * 13)[:98], "1e6,1e9,x")), "runs.csv:100:", ROW),
    Case("csv-inf", csv(bad_row("inf")), "runs.csv:4", ROW),
    Case("csv-nan", csv(bad_row("nan")), "runs.csv:4", ROW),
    Case("csv-1e400", csv(bad_row("1e400")), "runs.csv:4", ROW),
    Case("csv-negative", csv(bad_row("-2.5")), "runs.csv:4", ROW),
    Case("csv-zero-loss", csv(bad_row("0")), "runs.csv:4", ROW),
    Case("csv-empty-cell", csv(bad_row("")), "runs.csv:4", ROW),
    Case("csv-short-row", csv(rows(*GOOD_ROWS[:4], "1e6,1e9")), "runs.csv:6", CELLS),
    # a cell too many: its last value was dropped and the fit ran on the rest, exit 0
    Case("csv-long-row", csv(rows(*GOOD_ROWS[:4], "1e6,1e9,7,9")), "runs.csv:6", CELLS),
    Case("csv-long-number", csv(bad_row("9" * 500)), "runs.csv:4", ROW),
    Case(
        "csv-10001-rows",
        csv(rows(*(GOOD_ROWS * 1251)[:10_001])),
        "runs.csv:10002",
        "aggregate or sample the rows",
    ),
    Case(
        "csv-1e6-rows",
        csv(rows(*["1e6,1e9,2.5"] * 1_000_000)),
        "runs.csv:10002",
        "aggregate or sample the rows",
    ),
    *not_plain_files("csv", csv, "runs.csv", sparse_mib=100),
    Case(
        "csv-missing",
        lambda i, w: [
            "scaling",
            "fit",
            str(i / "nope.csv"),
            "--params",
            "n",
            "--tokens",
            "d",
            "--loss",
            "loss",
        ],
        "nope.csv",
        "check the path",
    ),
    Case(
        "forecast-score-nan",
        csv(rows("1e18,0.1", "1e19,nan", "1e20,0.5", header="n,s"), "--at", "1e22", cmd="forecast"),
        "runs.csv:3",
        ROW,
    ),
    Case(
        "forecast-compute-zero",
        csv(rows("0,0.1", "1e19,0.2", "1e20,0.5", header="n,s"), "--at", "1e22", cmd="forecast"),
        "runs.csv:2",
        ROW,
    ),
    Case(
        "backtest-score-inf",
        csv(rows("1e18,0.1", "1e19,inf", "1e20,0.5", header="n,s"), cmd="backtest"),
        "runs.csv:3",
        ROW,
    ),
]


def policy(content: Content, *cmd: str) -> Build:
    """``policy validate p.yaml`` (or ``CMD... p.yaml`` in the workspace) on ``content``."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "p.yaml", content)
        if not cmd:
            return ["policy", "validate", str(path)]
        return ws_args(ws, *cmd, str(path))

    return build


def sub(old: str, new: str, text: str = MINIMAL) -> str:
    """minimal.yaml with one edit."""
    assert old in text, old
    return text.replace(old, new, 1)


BINDING = "capability_thresholds[0].evaluations[0]"
BASE_STD = """  - id: Secure-Base
    name: Baseline security
    category: security
"""
CYCLE2 = sub(
    "    reapproval_interval: P1Y\n",
    "    reapproval_interval: P1Y\n    includes: [Secure-Base]\n"
    + BASE_STD
    + "    includes: [Secure-Weights]\n",
)
SELF = sub(
    "    reapproval_interval: P1Y\n",
    "    reapproval_interval: P1Y\n    includes: [Secure-Weights]\n",
)
CYCLE3 = sub(
    "    reapproval_interval: P1Y\n",
    "    reapproval_interval: P1Y\n    includes: [Secure-Base]\n"
    + BASE_STD
    + "    includes: [Secure-Mid]\n"
    + "  - id: Secure-Mid\n    name: Mid\n    category: security\n"
    + "    includes: [Secure-Weights]\n",
)
OVERLAY = "regulatory_overlays:\n  - {id: eu, name: EU AI Act, jurisdiction: EU, effect: notify, threshold_flop: %s}\n"
FINITE_P = "finite number"

SURROGATE = "lone surrogate"
LONE = sub("name: Minimal test policy", 'name: "Minimal \\ud800 policy"')

POLICY = [
    # validate said ok; show and diff were tracebacks (no UTF-8 text can hold the half)
    Case("policy-lone-surrogate", policy(LONE), "p.yaml:6", SURROGATE),
    Case("policy-lone-surrogate-show", policy(LONE, "policy", "show"), "p.yaml:6", SURROGATE),
    Case(
        "policy-threshold-true",
        policy(sub("threshold: 0.5", "threshold: true")),
        f"p.yaml:29: {BINDING}.threshold",
        "write a finite number",
    ),
    Case(
        "policy-threshold-false",
        policy(sub("threshold: 0.5", "threshold: false")),
        f"{BINDING}.threshold",
        "write a finite number",
    ),
    Case(
        "policy-threshold-inf",
        policy(sub("threshold: 0.5", "threshold: .inf")),
        f"p.yaml:29: {BINDING}.threshold",
        FINITE_P,
    ),
    Case(
        "policy-threshold-nan",
        policy(sub("threshold: 0.5", "threshold: .nan")),
        f"{BINDING}.threshold",
        FINITE_P,
    ),
    Case(
        "policy-rule-out-nan",
        policy(sub("rule_out: 0.2", "rule_out: .NaN")),
        f"p.yaml:27: {BINDING}.rule_out",
        FINITE_P,
    ),
    Case(
        "policy-alert-minus-inf",
        policy(sub("alert: 0.35", "alert: -.inf")),
        f"{BINDING}.alert",
        FINITE_P,
    ),
    Case(
        "policy-threshold-list",
        policy(sub("threshold: 0.5", "threshold: [0.5]")),
        f"{BINDING}.threshold",
        "valid number",
    ),
    Case(
        "policy-threshold-above-1",
        policy(sub("threshold: 0.5", "threshold: 1.5")),
        f"{BINDING}.threshold",
        "give a line within it",
    ),
    Case(  # the metric's name in capitals was taken for a metric of no known range
        "policy-threshold-above-1-Accuracy",
        policy(
            sub("threshold: 0.5", "threshold: 1.5", sub("metric: accuracy", "metric: Accuracy"))
        ),
        f"{BINDING}.threshold",
        "give a line within it",
    ),
    Case(
        "policy-rule-out-negative",
        policy(sub("rule_out: 0.2", "rule_out: -0.1")),
        f"{BINDING}.rule_out",
        "give a line within it",
    ),
    Case(
        "policy-rate-line-above-1",
        policy(
            sub(
                "threshold: 0.5",
                "threshold: 2",
                sub("metric: accuracy", "metric: attack_success_rate"),
            )
        ),
        f"{BINDING}.threshold",
        "'attack_success_rate' [0, 1]",
    ),
    Case(
        "policy-ratio-inf",
        policy(sub("ratio: 4", "ratio: .inf")),
        "p.yaml:41: assessment_triggers[0].ratio",
        FINITE_P,
    ),
    Case(
        "policy-ratio-nan",
        policy(sub("ratio: 4", "ratio: .nan")),
        "assessment_triggers[0].ratio",
        FINITE_P,
    ),
    Case(
        "policy-ratio-true",
        policy(sub("ratio: 4", "ratio: true")),
        "assessment_triggers[0].ratio",
        "write a finite number",
    ),
    Case(
        "policy-scale-up-inf",
        policy(sub("planned_scale_up: 4", "planned_scale_up: .inf")),
        "planned_scale_up",
        FINITE_P,
    ),
    Case(
        "policy-scale-up-true",
        policy(sub("planned_scale_up: 4", "planned_scale_up: true")),
        "planned_scale_up",
        "write a finite number",
    ),
    Case(
        "policy-overlay-inf",
        policy(MINIMAL + OVERLAY % ".inf"),
        "regulatory_overlays[0].threshold_flop",
        FINITE_P,
    ),
    Case(
        "policy-overlay-true",
        policy(MINIMAL + OVERLAY % "true"),
        "regulatory_overlays[0].threshold_flop",
        "write a finite number",
    ),
    Case(
        "policy-chance-nan",
        policy(sub("    metric: accuracy\n", "    metric: accuracy\n    chance: .nan\n")),
        "evaluations[0].chance",
        FINITE_P,
    ),
    Case(
        "policy-include-cycle",
        policy(CYCLE2),
        "safeguard_standards[1].includes[0]",
        "remove one include",
    ),
    Case(
        "policy-include-self",
        policy(SELF),
        "safeguard_standards[0].includes[0]",
        "remove one include",
    ),
    Case(
        "policy-include-cycle-3",
        policy(CYCLE3),
        "safeguard_standards[2].includes[0]",
        "remove one include",
    ),
    Case(
        "policy-cycle-in-triggers",
        policy(CYCLE2, "compute", "triggers", "--policy"),
        "p.yaml:",
        "remove one include",
    ),
    Case("policy-cycle-in-show", policy(CYCLE2, "policy", "show"), "p.yaml:", "remove one include"),
    Case(
        "policy-control-char",
        policy(sub("name: Minimal test policy", 'name: "Min\x1b[2J"')),
        "p.yaml:6",
        "remove it",
    ),
    *not_plain_files("policy", policy, "p.yaml", sparse_mib=6, kinds=("zero", "fifo", "sparse")),
    Case(
        "policy-latin1",
        policy(MINIMAL.replace("Minimal", "Minimal caf\xe9").encode("latin-1")),
        "p.yaml",
        "save the policy as UTF-8",
    ),
    Case(
        "policy-deep-nesting",
        policy(("x: " + "[" * 20_000 + "]" * 20_000).encode()),
        "p.yaml",
        "nested too deeply",
    ),
    Case(
        "policy-alias-bomb",
        policy(
            (
                "a: &a ["
                + ",".join(["x"] * 50)
                + "]\n"
                + "".join(
                    f"{c}: &{c} [" + ",".join([f"*{p}"] * 50) + "]\n"
                    for p, c in zip("abcde", "bcdef", strict=True)
                )
            ).encode()
        ),
        "p.yaml",
        "anchors and aliases",
    ),
]


@pytest.mark.parametrize("case", CSV + POLICY, ids=lambda c: c.id)
def test_refused(case: Case, refuse: Refuse) -> None:
    refuse(case)


CASES = CSV + POLICY
