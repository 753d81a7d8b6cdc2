"""Hostile and careless flags: impossible numbers, hostile ids, usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Build, Case, Refuse, ws_args

LONG_ID = "m" * 100_000
ESCAPE_ID = "evil\x1b[2J\x1b[31mred"
FINITE = "give a finite number"
RANGE = "give a number in"
VALID_ID = "use letters, digits"


def add(*extra: str) -> Build:
    """``compute add --model new ...`` in the case's workspace."""
    return lambda inp, ws: ws_args(ws, "compute", "add", *extra)


def flops_case(flag: str, value: str, fix: str, base: tuple[str, ...] = ()) -> Case:
    args = ("--model", "new", *base, flag, value)
    if flag not in ("--flops", "--params", "--tokens") and not base:
        args = ("--model", "new", "--flops", "1e20", flag, value)
    return Case(f"compute-add{flag}={value}", add(*args), flag, fix)


HW = ("--gpu-hours", "10", "--peak-flops", "1e15", "--utilization", "0.4")

COMPUTE = [
    flops_case("--flops", "inf", FINITE),
    flops_case("--flops", "1e400", FINITE),
    flops_case("--flops", "nan", FINITE),
    flops_case("--flops", "NaN", FINITE),
    flops_case("--flops", "-inf", FINITE),
    flops_case("--flops", "1e36", RANGE),
    flops_case("--flops", "0", RANGE),
    flops_case("--flops", "-1", RANGE),
    flops_case("--flops", "ten", "valid number"),
    flops_case("--flops", "", "valid number"),
    flops_case("--params", "inf", FINITE, ("--tokens", "1e9")),
    flops_case("--params", "nan", FINITE, ("--tokens", "1e9")),
    flops_case("--tokens", "1e400", FINITE, ("--params", "1e9")),
    flops_case("--tokens", "1e21", RANGE, ("--params", "1e9")),
    flops_case("--params", "0", RANGE, ("--tokens", "1e9")),
    flops_case("--effective-multiplier", "inf", FINITE),
    flops_case("--effective-multiplier", "nan", FINITE),
    flops_case("--effective-multiplier", "0", RANGE),
    flops_case("--effective-multiplier", "1e7", RANGE),
    flops_case("--rel-uncertainty", "1e300", RANGE),
    flops_case("--rel-uncertainty", "nan", FINITE),
    flops_case("--rel-uncertainty", "inf", FINITE),
    Case(
        "hw-utilization>1",
        add("--model", "new", "--gpu-hours", "10", "--peak-flops", "1e15", "--utilization", "1.5"),
        "--utilization",
        RANGE,
    ),
    Case(
        "hw-utilization-nan",
        add("--model", "new", "--gpu-hours", "10", "--peak-flops", "1e15", "--utilization", "nan"),
        "--utilization",
        FINITE,
    ),
    Case(
        "hw-gpu-hours-inf",
        add("--model", "new", "--gpu-hours", "inf", "--peak-flops", "1e15", "--utilization", "0.4"),
        "--gpu-hours",
        FINITE,
    ),
    Case(
        "hw-peak-nan",
        add("--model", "new", "--gpu-hours", "10", "--peak-flops", "nan", "--utilization", "0.4"),
        "--peak-flops",
        FINITE,
    ),
    Case(
        "hw-missing-peak",
        add("--model", "new", "--method", "hardware", "--gpu-hours", "10"),
        "--gpu-hours",
        "needs --gpu-hours, --peak-flops",
    ),
    Case(
        "flops-and-params",
        add("--model", "new", "--flops", "1e20", "--params", "1e9"),
        "--flops",
        "not both",
    ),
    Case("no-compute", add("--model", "new"), "--flops", "give --flops"),
    Case(
        "method-unknown",
        add("--model", "new", "--flops", "1e20", "--method", "guess\x1b[1m"),
        "--method",
        "use count or hardware",
    ),
    Case(
        "stage-unknown",
        add("--model", "new", "--flops", "1e20", "--stage", "mid"),
        "'--stage'",
        "compute add --help",
    ),
    Case("model-newline", add("--model", "a\nb", "--flops", "1e20"), "--model", VALID_ID),
    Case("model-escape", add("--model", ESCAPE_ID, "--flops", "1e20"), "--model", VALID_ID),
    Case("model-100kb", add("--model", LONG_ID, "--flops", "1e20"), "--model", "at most 128"),
    Case("model-empty", add("--model", "", "--flops", "1e20"), "--model", VALID_ID),
    Case("model-space", add("--model", "my model", "--flops", "1e20"), "--model", VALID_ID),
    Case("model-markup", add("--model", "[bold]x[/bold]", "--flops", "1e20"), "[bold]", VALID_ID),
    Case("model-bidi", add("--model", "abc\u202edef", "--flops", "1e20"), "\\u202e", VALID_ID),
    Case("model-duplicate", add("--model", "base", "--flops", "1e20"), "--model", "new id"),
    Case(
        "parent-unknown",
        add("--model", "new", "--flops", "1e20", "--parent", "ghost"),
        "--parent",
        "add it first",
    ),
    Case(
        "parent-newline",
        add("--model", "new", "--flops", "1e20", "--parent", "ba\nse"),
        "--parent",
        VALID_ID,
    ),
    Case(
        "lineage-escape",
        add("--model", "new", "--flops", "1e20", "--lineage", ESCAPE_ID),
        "--lineage",
        VALID_ID,
    ),
]


def scaling(*args: str) -> Build:
    """``scaling ...`` on a small, valid CSV (so only the flag is at fault)."""

    def build(inp: Path, ws: Path) -> list[str]:
        csv = inp / "runs.csv"
        csv.write_text(
            "c,s,n,d,loss\n"
            + "".join(
                f"{10.0 ** (18 + i)},{0.1 * i},{1e6 * (i + 1)},{1e8 * (i + 1)},{3 - 0.2 * i}\n"
                for i in range(6)
            )
        )
        return ["scaling", *[str(csv) if a == "CSV" else a for a in args]]

    return build


FC = ("forecast", "CSV", "--compute", "c", "--score", "s")
BT = ("backtest", "CSV", "--compute", "c", "--score", "s")
FIT = ("fit", "CSV", "--params", "n", "--tokens", "d", "--loss", "loss")

SCALING = [
    Case("forecast-at-nan", scaling(*FC, "--at", "nan"), "--at", FINITE),
    Case("forecast-at-inf", scaling(*FC, "--at", "inf"), "--at", FINITE),
    Case("forecast-at-1e400", scaling(*FC, "--at", "1e400"), "--at", FINITE),
    Case("forecast-at-0", scaling(*FC, "--at", "0"), "--at", RANGE),
    Case("forecast-at-neg", scaling(*FC, "--at", "-1e20"), "--at", RANGE),
    Case("forecast-at-1e40", scaling(*FC, "--at", "1e40"), "--at", RANGE),
    Case("forecast-line-nan", scaling(*FC, "--at", "1e24", "--line", "nan"), "--line", FINITE),
    Case(
        "forecast-chance-nan", scaling(*FC, "--at", "1e24", "--chance", "nan"), "--chance", FINITE
    ),
    Case(
        "forecast-ceiling-inf",
        scaling(*FC, "--at", "1e24", "--ceiling", "inf"),
        "--ceiling",
        FINITE,
    ),
    Case(
        "forecast-chance-above-ceiling",
        scaling(*FC, "--at", "1e24", "--chance", "0.9", "--ceiling", "0.5"),
        "--chance",
        "below",
    ),
    Case(
        "forecast-bootstrap-1",
        scaling(*FC, "--at", "1e24", "--bootstrap", "1"),
        "--bootstrap",
        "from 2 to",
    ),
    Case(
        "forecast-bootstrap-huge",
        scaling(*FC, "--at", "1e24", "--bootstrap", "1000000000"),
        "--bootstrap",
        "from 2 to",
    ),
    Case(
        "forecast-seed-negative",
        scaling(*FC, "--at", "1e24", "--seed", "-1"),
        "--seed",
        "from 0 to",
    ),
    Case("forecast-at-text", scaling(*FC, "--at", "lots"), "'--at'", "valid number"),
    Case("backtest-min-train-1", scaling(*BT, "--min-train", "1"), "--min-train", "from 2 to"),
    Case("backtest-chance-inf", scaling(*BT, "--chance", "-inf"), "--chance", FINITE),
    Case("fit-bootstrap-negative", scaling(*FIT, "--bootstrap", "-3"), "--bootstrap", "from 0 to"),
    Case("fit-bootstrap-1", scaling(*FIT, "--bootstrap", "1"), "--bootstrap", "at least 2"),
    Case("fit-unknown-form", scaling(*FIT, "--form", "magic\x1b[5m"), "--form", "choose one of"),
    Case("fit-tokens-and-flops", scaling(*FIT, "--flops", "c"), "--tokens or --flops", "not both"),
    Case(
        "fit-missing-column-flag",
        scaling("fit", "CSV", "--loss", "loss", "--tokens", "d"),
        "--params",
        "needs --params COLUMN",
    ),
]

USAGE = [
    Case("unknown-command", lambda i, w: ["bogus"], "'bogus'", "safescale --help"),
    Case(
        "unknown-subcommand",
        lambda i, w: ["compute", "subtract"],
        "'subtract'",
        "safescale compute --help",
    ),
    Case(
        "unknown-option",
        lambda i, w: ws_args(w, "compute", "show", "--colour"),
        "--colour",
        "safescale compute show --help",
    ),
    Case(
        "init-workspace-after",
        lambda i, w: ["init", "--workspace", str(i / "x")],
        "--workspace",
        "before the sub-command",
    ),
    Case(
        "debug-after",
        lambda i, w: ws_args(w, "compute", "show", "--debug"),
        "--debug",
        "before the sub-command",
    ),
    Case(
        "missing-option",
        lambda i, w: ws_args(w, "compute", "add"),
        "'--model'",
        "compute add --help",
    ),
    Case(
        "missing-argument", lambda i, w: ["scaling", "fit"], "argument 'csv'", "scaling fit --help"
    ),
    Case(
        "missing-value", lambda i, w: ws_args(w, "compute", "add", "--model"), "--model", "--help"
    ),
    Case(
        "bad-int",
        lambda i, w: ws_args(w, "ledger", "log", "--limit", "many"),
        "'--limit'",
        "ledger log --help",
    ),
    Case(
        "unknown-command-markup",
        lambda i, w: [":100: [bold]x"],
        ":100: [bold]x",
        "safescale --help",
    ),
    Case(
        "unknown-command-escape", lambda i, w: ["\x1b[2Jclear"], "\\x1b[2Jclear", "safescale --help"
    ),
    Case("unknown-command-huge", lambda i, w: ["x" * 100_000], "xxxx", "safescale --help"),
    Case(
        "ledger-log-model-newline",
        lambda i, w: ws_args(w, "ledger", "log", "--model", "a\nb"),
        "--model",
        VALID_ID,
    ),
    Case(
        "report-model-escape",
        lambda i, w: ws_args(w, "report", "--model", ESCAPE_ID),
        "--model",
        VALID_ID,
    ),
    Case(
        "report-format",
        lambda i, w: ws_args(w, "report", "--format", "pdf"),
        "--format",
        "choose one of",
    ),
    Case(
        "assess-model-100kb",
        lambda i, w: ws_args(w, "assess", "--model", LONG_ID),
        "--model",
        "at most 128",
    ),
    Case(
        "assess-limit-0", lambda i, w: ws_args(w, "assess", "--limit", "0"), "--limit", "from 1 to"
    ),
    Case(
        "import-model-id-newline",
        lambda i, w: ws_args(w, "eval", "import", "x.json", "--model-id", "a\nb"),
        "--model-id",
        VALID_ID,
    ),
    Case(
        "import-evaluation-id-escape",
        lambda i, w: ws_args(w, "eval", "import", "x.json", "--evaluation-id", ESCAPE_ID),
        "--evaluation-id",
        VALID_ID,
    ),
    Case(
        "init-author-newline",
        lambda i, w: ["--workspace", str(i / "new"), "init", "--author", "me\nFAKE: ok"],
        "--author",
        "remove it",
    ),
    Case(
        "init-database-url-bogus",
        lambda i, w: ["--workspace", str(i / "new"), "init", "--database-url", "mysql://x/y"],
        "database_url",
        "use sqlite or postgresql",
    ),
    Case(
        "init-database-url-garbage",
        lambda i, w: ["--workspace", str(i / "new"), "init", "--database-url", "::not a url::"],
        "database_url",
        "use sqlite:///ledger.sqlite",
    ),
    Case(
        "init-existing",
        lambda i, w: ["--workspace", str(w), "init"],
        "safescale.toml",
        "use it, or pick another folder",
    ),
]


X = "\udcff"
"""A byte that is not UTF-8 (0xff) in an argument, as Python holds it (``surrogateescape``):
no record, file or terminal can take it (it was a traceback in free-text options)."""
UTF8 = "is not valid UTF-8 (byte \\xff); give it in UTF-8"


def w(*args: str) -> Build:
    return lambda inp, ws: ws_args(ws, *args)


NON_UTF8 = [
    Case("utf8-compute-model", w("compute", "add", "--model", X, "--flops", "1e20"), "--model", UTF8),
    Case("utf8-compute-author=", w("compute", "add", "--model", "n", "--flops", "1e20",
                                   f"--author={X}"), "--author", UTF8),
    Case("utf8-init-author", lambda inp, ws: ["--workspace", str(inp / "new"), "init", "--author",
                                              f"a{X}"], "--author", UTF8),
    Case("utf8-attest-by", w("attest", "ASL-3-Security", "--model", "base", "--by", X,
                             "--statement", "x"), "--by", UTF8),
    Case("utf8-attest-statement", w("attest", "ASL-3-Security", "--model", "base", "--by", "me",
                                    "--statement", f"ok{X}"), "--statement", UTF8),
    Case("utf8-attest-artifact", w("attest", "ASL-3-Security", "--model", "base", "--by", "me",
                                   "--statement", "x", "--artifact", f"{X}=f"), "--artifact", UTF8),
    Case("utf8-sign-note", w("assess", "sign", "latest", "--role", "RSO", "--note", X), "--note",
         UTF8),
    Case("utf8-safeguard-method", w("safeguard", "test", "ASL-3-Security", "--model", "base",
                                    "--criterion", "c", "--metric", "m", "--successes", "1",
                                    "--n", "2", "--by", "me", "--method", X), "--method", UTF8),
    Case("utf8-positional", w("ledger", "log", X), "argument 5", UTF8),
]  # fmt: skip


@pytest.mark.parametrize("case", COMPUTE + SCALING + USAGE + NON_UTF8, ids=lambda c: c.id[:60])
def test_refused(case: Case, refuse: Refuse) -> None:
    refuse(case)


@pytest.mark.parametrize(
    ("author", "fix"),
    [("evil\x1b[2J", "holds the control character \\x1b"), (f"me{X}", UTF8),
     ("a" * 300, "at most 256")],
    ids=["escape", "non-utf8", "long"],
)  # fmt: skip
def test_the_author_from_the_environment_is_checked(
    author: str, fix: str, refuse: Refuse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$SAFESCALE_AUTHOR`` is recorded and signed with every entry and printed by `ledger
    log`, as ``--author`` is: an escape sequence was recorded raw, and a name longer than the
    ledger's column taken (PostgreSQL refuses it at the insert)."""
    from safescale.ledger import Workspace

    def add(inp: Path, ws: Path) -> list[str]:
        own = inp / "own" / ".safescale"  # a workspace that names no author of its own
        Workspace.init(own).close()
        monkeypatch.setenv("SAFESCALE_AUTHOR", author)
        return ws_args(own, "compute", "add", "--model", "n", "--flops", "1e20")

    refuse(Case("env-author", add, "$SAFESCALE_AUTHOR", fix))


CASES = COMPUTE + SCALING + USAGE + NON_UTF8
