"""Hostile and careless evaluation inputs: JSONL suites, lm-eval results, Inspect logs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.conftest import (
    Build,
    Case,
    Content,
    Refuse,
    not_plain_files,
    put,
    special,
    ws_args,
)

MC = {"question": "Which?", "choices": ["a", "b", "c", "d"], "answer": 1}
UTF8 = "save the file as UTF-8"


def mc(i: int, **change: Any) -> str:
    row = {**MC, "id": f"q{i}", **change}
    return json.dumps({k: v for k, v in row.items() if v is not None})


def suite(content: Content) -> Build:
    """``eval run task.jsonl --model none/none`` on ``content``: the task is checked first."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "task.jsonl", content)
        return ws_args(ws, "eval", "run", str(path), "--model", "none/none")

    return build


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


GOOD = [mc(i) for i in range(1, 6)]


def nested(depth: int) -> str:
    return json.dumps(MC)[:-1] + ', "meta": ' + "[" * depth + "]" * depth + "}"


SUITES = [
    Case(
        "suite-latin1",
        suite(
            lines(*GOOD[:2]).encode()
            + '{"question": "caf\xe9?", "choices": ["a", "b"], "answer": 0}\n'.encode("latin-1")
        ),
        "task.jsonl:3",
        UTF8,
    ),
    Case(
        "suite-20mb-question",
        suite(lines(GOOD[0], mc(2, question="x" * (20 << 20)))),
        "task.jsonl:2",
        "split or shorten it",
    ),
    Case(
        "suite-duplicate-id",
        suite(lines(*GOOD[:3], mc(1))),
        "task.jsonl:4: id",
        "is also on line 1",
    ),
    Case(
        "suite-ten-same-id",
        suite(lines(*[mc(7)] * 10)),
        "task.jsonl:2: id",
        "give every sample its own id",
    ),
    Case(
        "suite-duplicate-int-id",
        suite(lines(mc(1, id=5), mc(2, id=5))),
        "task.jsonl:2",
        "is also on line 1",
    ),
    Case(
        "suite-nested-100",
        suite(lines(GOOD[0], nested(100))),
        "task.jsonl:2",
        "nested more than 16 levels",
    ),
    Case(
        "suite-nested-100000",
        suite(lines(GOOD[0], nested(100_000))),
        "task.jsonl:2",
        "this is not the expected file",
    ),
    Case(
        "suite-nan",
        suite(lines(GOOD[0], '{"question": "q", "choices": ["a", "b"], "answer": NaN}')),
        "task.jsonl:2",
        "write a finite number",
    ),
    Case(
        "suite-infinity",
        suite(lines('{"text": "t", "weight": Infinity}')),
        "task.jsonl:1",
        "write a finite number",
    ),
    Case(
        "suite-bad-json",
        suite(lines(GOOD[0], '{"question": "q",')),
        "task.jsonl:2",
        "write one JSON object per line",
    ),
    Case(
        "suite-not-object", suite(lines(GOOD[0], "[1, 2]")), "task.jsonl:2", "must be a JSON object"
    ),
    Case(
        "suite-answer-range",
        suite(lines(GOOD[0], mc(2, answer=4))),
        "task.jsonl:2: answer",
        "(0-3)",
    ),
    Case(
        "suite-answer-bool",
        suite(lines(mc(1, answer=True))),
        "task.jsonl:1: answer",
        "0-based index",
    ),
    Case(
        "suite-answer-1e400",
        suite(lines(GOOD[0], mc(2)[:-1] + ', "answer": 1e400}')),
        "task.jsonl:2: answer",
        "0-based index",
    ),
    Case(
        "suite-choices-string",
        suite(lines(mc(1, choices="abcd"))),
        "task.jsonl:1: choices",
        "list of at least two strings",
    ),
    Case(
        "suite-27-choices",
        suite(lines(mc(1, choices=[str(i) for i in range(27)]))),
        "task.jsonl:1: choices",
        "at most 26",
    ),
    Case("suite-id-escape", suite(lines(mc(1, id="q\x1b[2J"))), "task.jsonl:1: id", "remove it"),
    Case("suite-id-newline", suite(lines(mc(1, id="q\nFAKE"))), "task.jsonl:1: id", "remove it"),
    Case(
        "suite-id-bool", suite(lines(mc(1, id=True))), "task.jsonl:1: id", "a string or an integer"
    ),
    Case("suite-id-long", suite(lines(mc(1, id="q" * 1000))), "task.jsonl:1: id", "at most 128"),
    Case("suite-empty", suite(""), "task.jsonl", "needs at least one JSON line"),
    Case("suite-blank-lines", suite("\n\n  \n"), "task.jsonl", "needs at least one JSON line"),
    Case(
        "suite-mixed",
        suite(lines(GOOD[0], '{"input": "x", "target": "y"}')),
        "task.jsonl:2",
        "keep one shape per file",
    ),
    Case(
        "suite-no-shape",
        suite(lines('{"prompt": "x"}')),
        "task.jsonl:1",
        "question/choices/answer, input/target or text",
    ),
    Case(
        "suite-empty-question",
        suite(lines(mc(1, question=""))),
        "task.jsonl:1: question",
        "non-empty string",
    ),
    Case(
        "suite-target-number",
        suite(lines('{"input": "x", "target": 3}')),
        "task.jsonl:1: target",
        "must be a string",
    ),
    *not_plain_files("suite", suite, "task.jsonl", sparse_mib=600),
    *(
        Case(
            f"task-arg-{name}",
            lambda i, w, v=value: ws_args(
                w, "eval", "run", str(i / "no.jsonl"), "--model", "none/none", "-T", f"n={v}"
            ),
            "-T n",
            fix,
        )
        for name, value, fix in [
            (
                "aliases",
                "&a [&b [&c [1,1,1,1,1,1,1,1,1,1],*c,*c,*c,*c,*c,*c,*c,*c,*c],"
                + ",".join(["*b"] * 200)
                + "]",
                "expands to more than 10,000",
            ),
            ("deep", "[" * 200 + "]" * 200, "nested too deeply"),
            ("escape", '"\\e[2J"', "control character"),
            ("control", "a\x1bb", "control character"),
            ("long", "x" * 100_000, "at most 4,096"),
        ]
    ),
    Case(
        "suite-missing",
        lambda i, w: ws_args(w, "eval", "run", str(i / "no.jsonl"), "--model", "none/none"),
        "no.jsonl",
        "check the path",
    ),
]

RESULTS: dict[str, Any] = {
    "results": {"hazard": {"alias": "hazard", "acc,none": 0.5, "acc_stderr,none": 0.05}},
    "n-samples": {"hazard": {"original": 100, "effective": 100}},
    "config": {"model": "hf", "model_name": "org/model-1"},
    "lm_eval_version": "0.4.9",
}


def results(edit: Any, name: str = "results.json", *flags: str) -> Build:
    """``eval import results.json`` on lm-eval results edited by ``edit`` (a function of a copy
    of :data:`RESULTS`, raw text, or a file maker)."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = inp / name
        if isinstance(edit, str | bytes) or getattr(edit, "__name__", "") == "make":
            put(path, edit)
        else:
            doc = copy.deepcopy(RESULTS)
            edit(doc)
            path.write_text(json.dumps(doc))
        return ws_args(ws, "eval", "import", str(path), *flags)

    return build


def setting(*path_value: Any) -> Any:
    *path, value = path_value

    def edit(doc: dict[str, Any]) -> None:
        cur = doc
        for key in path[:-1]:
            cur = cur[key]
        if value is ...:
            del cur[path[-1]]
        else:
            cur[path[-1]] = value

    return edit


ACC = ("results", "hazard", "acc,none")
LMEVAL = [
    Case(
        "lmeval-acc-5",
        results(setting(*ACC, 5.0)),
        "results.hazard.acc,none",
        "give a number in [0, 1]",
    ),
    Case(
        "lmeval-acc-negative",
        results(setting(*ACC, -0.1)),
        "results.hazard.acc,none",
        "give a number in [0, 1]",
    ),
    Case(
        "lmeval-acc-nan",
        results(json.dumps(RESULTS).replace("0.5", "NaN")),
        "results.hazard.acc,none",
        "give a finite number",
    ),
    Case(
        "lmeval-acc-infinity",
        results(json.dumps(RESULTS).replace("0.5", "Infinity")),
        "results.hazard.acc,none",
        "give a finite number",
    ),
    Case(
        "lmeval-acc-1e400",
        results(json.dumps(RESULTS).replace("0.5", "1e400")),
        "results.hazard.acc,none",
        "give a finite number",
    ),
    Case(
        "lmeval-exact-match-2",
        results(lambda d: d["results"]["hazard"].update({"exact_match,strict": 2.0})),
        "exact_match,strict",
        "give a number in [0, 1]",
    ),
    Case(
        "lmeval-stderr-negative",
        results(setting("results", "hazard", "acc_stderr,none", -1)),
        "acc_stderr,none",
        "give a number in [0, inf)",
    ),
    Case(
        "lmeval-n-negative",
        results(setting("n-samples", "hazard", "effective", -5)),
        "n-samples.hazard.effective",
        "give a whole number from 0",
    ),
    Case(
        "lmeval-n-huge",
        results(setting("n-samples", "hazard", "effective", 10**12)),
        "n-samples.hazard.effective",
        "give a whole number from 0",
    ),
    Case(
        "lmeval-n-float",
        results(setting("n-samples", "hazard", "effective", 99.5)),
        "n-samples.hazard.effective",
        "give one",
    ),
    Case(
        "lmeval-n-samples-list",
        results(setting("n-samples", [1, 2])),
        "n-samples",
        "mapping of tasks",
    ),
    Case(
        "lmeval-task-row-list",
        results(setting("results", "hazard", [0.5])),
        "results.hazard",
        "mapping of metrics",
    ),
    Case("lmeval-config-list", results(setting("config", ["x"])), "config", "mapping of settings"),
    Case(
        "lmeval-model-newline",
        results(setting("config", "model_name", "org/m\nFAKE: ok")),
        "config.model_name",
        "use letters, digits",
    ),
    Case(
        "lmeval-model-escape",
        results(setting("config", "model_name", "\x1b]0;title\x07m")),
        "config.model_name",
        "use letters, digits",
    ),
    Case(
        "lmeval-model-100kb",
        results(setting("config", "model_name", "m" * 100_000)),
        "config.model_name",
        "use at most 128",
    ),
    Case(
        "lmeval-model-number",
        results(setting("config", "model_name", 42)),
        "config.model_name",
        "give a string",
    ),
    Case(
        "lmeval-task-escape",
        results(lambda d: d["results"].update({"\x1b[31mtask": {"acc,none": 0.5}})),
        "results",
        "use letters, digits",
    ),
    Case(
        "lmeval-no-metrics",
        results(setting("results", "hazard", {"alias": "x"})),
        "results.json",
        "no metrics found",
    ),
    Case(
        "lmeval-results-list",
        results(setting("results", [1])),
        "results.json",
        "not an lm-evaluation-harness results file",
    ),
    Case(
        "lmeval-latin1",
        results(json.dumps(RESULTS).replace("org/model-1", "caf\xe9").encode("latin-1")),
        "results.json:1",
        UTF8,
    ),
    Case(
        "lmeval-deep",
        results('{"results": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "results.json",
        "not the expected file",
    ),
    Case(
        "lmeval-nested-65",
        results('{"results": {}, "x": ' + "[" * 65 + "]" * 65 + "}"),
        "results.json",
        "nested more than 64 levels",
    ),
    Case(
        "lmeval-bad-json",
        results('{"results": {"hazard": '),
        "results.json:1",
        "give the log or results file as written",
    ),
    *not_plain_files(
        "lmeval", results, "results.json", sparse_mib=1100, kinds=("zero", "fifo", "sparse")
    ),
    Case(
        "lmeval-wrong-suffix",
        results(setting("config", {}), "results.txt"),
        "results.txt",
        "expected an Inspect .eval/.json log",
    ),
    Case(
        "lmeval-missing",
        lambda i, w: ws_args(w, "eval", "import", str(i / "nope.json")),
        "nope.json",
        "check the path",
    ),
]


def inspect_log(fmt: str = "json", **change: Any) -> Build:
    """``eval import`` of a small real Inspect log, changed in one way."""

    def build(inp: Path, ws: Path) -> list[str]:
        from inspect_ai.log import (
            EvalConfig,
            EvalDataset,
            EvalLog,
            EvalResults,
            EvalSample,
            EvalSpec,
            write_eval_log,
        )
        from inspect_ai.scorer import Score

        values = change.get("values", (1.0, 0.0, 1.0))
        spec = EvalSpec(
            eval_id="e1", run_id="r1", created="2025-01-01T00:00:00+00:00",
            task=change.get("task", "hazard"), task_id="t1", task_version=0,
            dataset=EvalDataset(name="d", location="d.jsonl", samples=len(values)),
            model=change.get("model", "org/model-1"), config=EvalConfig(),
        )  # fmt: skip
        log = EvalLog(
            eval=spec,
            status=change.get("status", "success"),
            samples=[
                EvalSample(id=i + 1, epoch=1, input="q", target="A",
                           scores={"choice": Score(value=v)})
                for i, v in enumerate(values)
            ],
            results=EvalResults(total_samples=len(values), completed_samples=len(values)),
        )  # fmt: skip
        path = inp / f"log.{fmt}"
        write_eval_log(log, str(path), format=fmt)  # type: ignore[arg-type]
        return ws_args(ws, "eval", "import", str(path))

    return build


INSPECT = [
    Case(
        "inspect-model-newline",
        inspect_log(model="org/m\nFAKE"),
        "eval.model",
        "use letters, digits",
    ),
    Case(
        "inspect-model-escape",
        inspect_log(fmt="eval", model="o/\x1b[2Jm"),
        "eval.model",
        "use letters, digits",
    ),
    Case(
        "inspect-model-long", inspect_log(model="o/" + "m" * 5000), "eval.model", "use at most 128"
    ),
    Case("inspect-task-escape", inspect_log(task="t\x1b[1mx"), "eval.task", "use letters, digits"),
    Case(
        "inspect-score-inf",
        inspect_log(fmt="eval", values=(1.0, float("inf"))),
        "scores.accuracy",
        "finite number",
    ),
    Case("inspect-status-error", inspect_log(status="error"), "log.json", "nothing recorded"),
    Case("inspect-no-samples", inspect_log(values=()), "log.json", "no scored samples"),
    Case(
        "inspect-eval-garbage",
        results(b"PK\x03\x04 not really a zip", "log.eval"),
        "log.eval",
        "cannot read as an Inspect log",
    ),
    Case(
        "inspect-json-garbage",
        results('{"eval": {"task": 1}}', "log.json"),
        "log.json",
        "cannot read as an Inspect log",
    ),
    Case(
        "inspect-eval-fifo", results(special("fifo"), "log.eval"), "log.eval", "not a regular file"
    ),
]


@pytest.mark.parametrize("case", SUITES + LMEVAL + INSPECT, ids=lambda c: c.id)
def test_refused(case: Case, refuse: Refuse) -> None:
    refuse(case)


def test_a_good_results_file_is_accepted(tmp_path: Path) -> None:
    # The control for LMEVAL: the unedited file imports, with the interval around the value.
    from safescale.evals import read_log_evidence

    path = tmp_path / "results.json"
    path.write_text(json.dumps(RESULTS))
    metrics, evidence = read_log_evidence(path)
    ev = evidence[0]
    assert ev.model == "org/model-1" and ev.value == 0.5 and ev.n == 100
    assert ev.interval is not None and ev.interval.lo < 0.5 < ev.interval.hi <= 1


CASES = SUITES + LMEVAL + INSPECT
