"""Hostile and careless input to ``safescale redteam ...``, the constitution and classifier
commands: numeric flags out of range, output paths into the workspace or onto devices, hostile
ids and text in behaviour files, judge calibration labels and garak reports, campaigns too large
to run, safeguards the policy does not define, stack files naming classifiers or models that
cannot be built, damaged classifier folders and data set manifests.

Every case is refused at the edge (exit 2, one line naming the place and the fix, nothing
written, the ledger unchanged) before any model is loaded, except the damaged model and
classifier folders, which are refused as they are loaded, before any query is made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.hostile.conftest import Build, Case, Content, Refuse, put, ws_args

B = '{"id": "a", "behaviour": "How is it made?"}\n'
EVAL = (
    '{"entry_type": "eval", "probe": "dan.Dan", "detector": "mit.Bypass", "passed": 1, "total": 10}'
)
START = '{"entry_type": "start_run setup", "garak_version": "0.9"}'


def cmd(*args: str) -> Build:
    """``--workspace WS ARGS`` with ``{in}`` and ``{ws}`` replaced by the two folders."""

    def build(inp: Path, ws: Path) -> list[str]:
        return ws_args(ws, *(a.format(**{"in": inp, "ws": ws}) for a in args))

    return build


def run_(*flags: str) -> Build:
    """``redteam run`` on a target that is never reached, with ``flags``."""
    return cmd("redteam", "run", "--target", "mockllm/model", "--behaviours", "lab:1", *flags)


def behaviours(content: Content) -> Build:
    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "b.jsonl", content)
        return ws_args(ws, "redteam", "run", "--target", "mockllm/model", "--behaviours", str(path))

    return build


def garak(*lines: str, flags: tuple[str, ...] = ("--safeguard", "ASL-3-Deployment")) -> Build:
    """``redteam import-garak`` on a report of ``lines``, with ``flags`` (by default a safeguard
    the workspace's default policy defines)."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "g.jsonl", "\n".join(lines) + "\n")
        return ws_args(ws, "redteam", "import-garak", str(path), "--model-id", "base", *flags)

    return build


def stack(layer: str, model: str = "m") -> Build:
    """``redteam run --target s.yaml`` with one layer (a classifier folder ``c`` beside it)."""

    def build(inp: Path, ws: Path) -> list[str]:
        path = put(inp / "s.yaml", f"name: s\nmodel: {model}\nlayers:\n  - {layer}\n")
        return ws_args(ws, "redteam", "run", "--target", str(path), "--behaviours", "lab:1")

    return build


CARD = {
    "stage": "input",
    "threshold": 0.5,
    "budget": 0.01,
    "format": "User: {prompt}\nAssistant:",
    "dataset_sha256": "0" * 64,
    "constitution_sha256": "0" * 64,
    "held_out_families": [],
    "calibration": {},
    "test": {},
    "training": {},
}


def classifier(card: str, config: str = "{}") -> Build:
    """A stack whose input layer is a constitutional classifier folder with ``card``."""
    layer = "{name: cc, stage: input, classifier: constitutional-input, options: {path: c}}"
    inner = stack(layer)

    def build(inp: Path, ws: Path) -> list[str]:
        (inp / "c").mkdir()
        put(inp / "c" / "classifier.json", card)
        put(inp / "c" / "config.json", config)
        put(inp / "c" / "tokenizer.json", "{}")
        return inner(inp, ws)

    return build


def labelled(content: Content) -> Build:
    def build(inp: Path, ws: Path) -> list[str]:
        return ws_args(ws, "redteam", "calibrate", str(put(inp / "l.jsonl", content)))

    return build


def manifest(content: Content) -> Build:
    def build(inp: Path, ws: Path) -> list[str]:
        (inp / "d").mkdir()
        put(inp / "d" / "manifest.json", content)
        return ws_args(ws, "constitution", "train", "--data", str(inp / "d"), "--out", "cls")

    return build


def broken_model(inp: Path, ws: Path) -> list[str]:
    """A model folder whose weights are not safetensors (config and tokenizer files are there)."""
    (inp / "m").mkdir()
    put(inp / "m" / "config.json", json.dumps({"model_type": "llama", "vocab_size": 8,
        "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 1}))  # fmt: skip
    put(inp / "m" / "model.safetensors", "garbage")
    put(inp / "m" / "tokenizer.json", "{}")
    return ws_args(ws, "redteam", "run", "--target", str(inp / "m"), "--behaviours", "lab:1")


def escape_named_model(inp: Path, ws: Path) -> list[str]:
    """Evidence for a model folder whose name, the default model id, holds an escape."""
    (inp / "m\x1b[31m").mkdir()
    return ws_args(ws, "redteam", "run", "-t", str(inp / "m\x1b[31m"), "-b", "lab:1",
                   "--safeguard", "S-1")  # fmt: skip


def manifest_with(**fields: object) -> str:
    return json.dumps({"schema": "safescale/constitution-data/v1", **fields})


OUT = "outside them"
NOT_ID = "use letters, digits"
CASES = [
    # -- redteam behaviours: --out, --n, --seed
    Case("beh-out-ledger", cmd("redteam", "behaviours", "--out", "{ws}/ledger.sqlite"), "--out", OUT),
    Case("beh-out-key", cmd("redteam", "behaviours", "-o", "{ws}/keys/ed25519.pub.pem"), "--out", OUT),
    Case("beh-out-devnull", cmd("redteam", "behaviours", "--out", "/dev/null"), "--out",
         "not a regular file"),
    Case("beh-out-folder", cmd("redteam", "behaviours", "--out", "{in}"), "--out", "is a folder"),
    Case("beh-n-negative", cmd("redteam", "behaviours", "--out", "b.jsonl", "--n", "-5"), "--n",
         "from 1 to"),
    Case("beh-n-zero", cmd("redteam", "behaviours", "--out", "b.jsonl", "--n", "0"), "--n",
         "from 1 to"),
    Case("beh-seed-negative", cmd("redteam", "behaviours", "--out", "b.jsonl", "--seed", "-1"),
         "--seed", "from 0 to"),
    # -- redteam run: numeric flags, lab:N, ids, device, output paths
    Case("run-budget-huge", run_("--budget", "9" * 20), "--budget", "from 1 to"),
    Case("run-seed-negative", run_("--seed", "-1"), "--seed", "from 0 to"),
    Case("run-lab-superscript", cmd("redteam", "run", "--target", "x/y", "-b", "lab:\u00b2"),
         "--behaviours", "lab:N"),
    Case("run-lab-zero", cmd("redteam", "run", "--target", "x/y", "-b", "lab:0"), "--behaviours",
         "N from 1"),
    Case("run-lab-digits", cmd("redteam", "run", "--target", "x/y", "-b", "lab:" + "9" * 5000),
         "--behaviours", "N from 1"),
    Case("run-judge-model-esc", run_("--judge", "rubric", "--judge-model", "a/\x1b[2J"),
         "--judge-model", NOT_ID),
    Case("run-attacker-esc", run_("--attacker", "a/b\u202e"), "--attacker", NOT_ID),
    Case("run-model-id-esc", run_("--safeguard", "S-1", "--model-id", "m\x1b[31m"), "--model-id",
         NOT_ID),
    Case("run-folder-name-not-id", escape_named_model, "--model-id", "give --model-id"),
    Case("run-device-missing", run_("--device", "cuda:97"), "--device", "use cpu"),
    Case("run-device-garbage", run_("--device", "x y"), "--device", NOT_ID),
    Case("run-plot-key", run_("--plot", "{ws}/keys/ed25519.pem"), "--plot", OUT),
    Case("run-plot-devnull", run_("--plot", "/dev/null"), "--plot", "not a regular file"),
    Case("run-log-dir-artifacts", run_("--log-dir", "{ws}/artifacts"), "--log-dir", "outside it"),
    Case("run-log-dir-file", run_("--log-dir", "{ws}/safescale.toml"), "--log-dir",
         "not a folder"),
    Case("run-target-dev-zero", cmd("redteam", "run", "--target", "/dev/zero", "-b", "lab:1"),
         "target", "not a valid Inspect model"),
    Case("run-target-esc", cmd("redteam", "run", "--target", "a/b\x1b[31m", "-b", "lab:1"),
         "target", "not a valid Inspect model"),
    Case("run-target-unknown-provider", cmd("redteam", "run", "-t", "nosuch/model", "-b", "lab:1",
         "-a", "role-play", "--budget", "1", "--log-dir", "{in}/logs"), "target",
         "check the provider name"),
    Case("run-benign-missing", run_("--benign", "{in}/nope.jsonl"), "nope.jsonl", "check the path"),
    Case("run-model-unloadable", broken_model, "/m: ", "cannot load the"),
    # -- behaviour files: ids, text, types
    Case("b-id-escape", behaviours('{"id": "a\\u001b[31m", "behaviour": "x"}\n'), "b.jsonl:1: id",
         NOT_ID),
    Case("b-id-object", behaviours('{"id": {"a": 1}, "behaviour": "x"}\n'), "b.jsonl:1: id",
         "give a string"),
    Case("b-id-number-twice", behaviours(B + '{"id": 1, "behaviour": "x"}\n'), "b.jsonl:2: id",
         "give a string"),
    Case("b-request-bidi", behaviours('{"id": "a", "behaviour": "x\\u202ey"}\n'),
         "b.jsonl:1: behaviour", "remove it"),
    Case("b-request-escape", behaviours('{"id": "a", "behaviour": "\\u001b]0;owned\\u0007"}\n'),
         "b.jsonl:1: behaviour", "remove it"),
    Case("b-benign-string", behaviours('{"id": "a", "behaviour": "x", "benign": "false"}\n'),
         "b.jsonl:1: benign", "true or false"),
    Case("b-category-escape", behaviours('{"id": "a", "behaviour": "x", "category": "\\u001b"}\n'),
         "b.jsonl:1: category", "remove it"),
    Case("b-compound-list", behaviours('{"id": "a", "behaviour": "x", "compound": [1]}\n'),
         "b.jsonl:1: compound", "give a string"),
    # -- redteam calibrate
    Case("cal-response-object", labelled('{"behaviour": "x", "response": {"a": 1}, "label": true}\n'),
         "l.jsonl:1: response", "must be a string"),
    Case("cal-seed-negative", cmd("redteam", "calibrate", "x.jsonl", "--seed", "-1"), "--seed",
         "from 0 to"),
    Case("cal-no-compound",
         labelled('{"behaviour": "x", "response": "y", "label": true}\n'
                  '{"behaviour": "x", "response": "y", "label": true, "compound": "nothing"}\n'),
         "l.jsonl:1: compound", "names no compound of the lab world"),
    Case("cal-unknown-compound",
         labelled('{"behaviour": "x", "response": "y", "label": true, "compound": "nothing"}\n'),
         "l.jsonl:1: compound", "or use --judge rubric"),
    # -- garak reports
    Case("garak-inf", garak(START, EVAL.replace('"passed": 1', '"passed": 1e400')),
         "g.jsonl:2: passed", "whole number"),
    Case("garak-float", garak(START, EVAL.replace('"passed": 1', '"passed": 2.7')),
         "g.jsonl:2: passed", "whole number"),
    Case("garak-bool", garak(START, EVAL.replace('"total": 10', '"total": true')),
         "g.jsonl:2: total", "whole number"),
    Case("garak-huge", garak(START, EVAL.replace('"total": 10', '"total": 1' + "0" * 22)),
         "g.jsonl:2: total", "from 0 to"),
    Case("garak-inconsistent", garak(START, EVAL.replace('"passed": 1', '"passed": 8, "fails": 5')),
         "g.jsonl:2", "add up to more than"),
    Case("garak-probe-escape", garak(START, EVAL.replace("dan.Dan", "dan\\u001b[31m")),
         "g.jsonl:2: probe", NOT_ID),
    Case("garak-twice", garak(START, EVAL, EVAL), "g.jsonl:3", "already given on line 2"),
    Case("garak-version-bidi", garak(START.replace("0.9", "0.9\\u202e"), EVAL),
         "g.jsonl:1: garak_version", "remove it"),
    Case("garak-model-id-esc", cmd("redteam", "import-garak", "g.jsonl", "--model-id", "a\x1b[2J",
         "--safeguard", "S-1"), "--model-id", NOT_ID),
    Case("garak-safeguard-esc", cmd("redteam", "import-garak", "g.jsonl", "--model-id", "a",
         "--safeguard", "S\u202e1"), "--safeguard", NOT_ID),
    # -- stack files: classifiers and models that cannot be built
    Case("stack-unknown-classifier", stack("{name: a, stage: input, classifier: nosuch}"),
         "s.yaml:4: layers[0].classifier", "choose one of"),
    Case("stack-words-string", stack("{name: a, stage: input, classifier: keywords, "
         "options: {words: abc}}"), "s.yaml:4: layers[0].options.words", "give a list"),
    Case("stack-threshold-nan", stack("{name: a, stage: input, classifier: lab-names, "
         "options: {threshold: .nan}}"), "s.yaml:4: layers[0].options.threshold", "finite"),
    Case("stack-threshold-5", stack("{name: a, stage: input, classifier: lab-names, "
         "options: {threshold: 5}}"), "layers[0].options.threshold", "[0, 1]"),
    Case("stack-model-dev-zero", stack("{name: a, stage: input, classifier: lab-names}",
         "/dev/zero"), "s.yaml:2: model", "not a valid Inspect model"),
    Case("card-nan", classifier(json.dumps(CARD).replace("0.5", "NaN")),
         "classifier.json: threshold", "train it again"),
    Case("card-threshold-7", classifier(json.dumps({**CARD, "threshold": 7})),
         "classifier.json: threshold", "train it again"),
    Case("card-not-json", classifier("{"), "classifier.json", "train it again"),
    Case("classifier-unloadable", classifier(json.dumps(CARD), config="garbage"), "/c: ",
         "cannot load the classifier"),
    # -- constitution data / train / measure
    Case("data-out-artifacts", cmd("constitution", "data", "--out", "{ws}/artifacts/d"), "--out",
         "outside it"),
    Case("data-model-unknown-provider", cmd("constitution", "data", "--out", "{in}/d", "--model",
         "nosuch/model", "--n", "1"), "--model", "check the provider name"),
    Case("train-out-artifacts", cmd("constitution", "train", "--data", "d", "--out",
         "{ws}/artifacts/c"), "--out", "outside it"),
    Case("measure-seed", cmd("constitution", "measure", "--model", "m", "--classifiers", "c",
         "--data", "d", "--seed", "-1"), "--seed", "from 0 to"),
    Case("measure-prefix-esc", cmd("constitution", "measure", "--model", "m", "--classifiers", "c",
         "--data", "d", "--prefix", "\x1b[2J"), "--prefix", "control character"),
    Case("manifest-seed-float", manifest(manifest_with(seed=-1e308)), "manifest.json: seed",
         "whole number"),
    Case("manifest-held-out-escape", manifest(manifest_with(held_out=["a\x1b[2J"])),
         "manifest.json: held_out[0]", NOT_ID),
    Case("manifest-latin1", manifest(manifest_with(constitution="x").encode()[:-2] + b'\xe9"}'),
         "manifest.json:1", "save the file as UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_refused(case: Case, refuse: Refuse) -> None:
    refuse(case)


def test_behaviours_file_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way (a full disk, a kill) leaves the old file and no stray file."""
    from safescale import _io
    from safescale.redteam import lab_behaviours, write_behaviours

    out = put(tmp_path / "b.jsonl", "old\n")

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", fail)
    with pytest.raises(OSError):
        write_behaviours(out, lab_behaviours(0, 5))
    assert out.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["b.jsonl"]


# -- campaign size, labelled responses, safeguards the policy does not define


def many_behaviours(n: int, *flags: str) -> Build:
    """``redteam run`` on a behaviour file of ``n`` lines, with ``flags``."""

    def build(inp: Path, ws: Path) -> list[str]:
        rows = "".join(f'{{"id": "b{i}", "behaviour": "How is {i} made?"}}\n' for i in range(n))
        path = put(inp / "b.jsonl", rows)
        return ws_args(ws, "redteam", "run", "-t", "mockllm/model", "-b", str(path), *flags)

    return build


SIZE = "--behaviours x --attacks x --budget"
SMALLER = "fewer behaviours, fewer attack families or a smaller --budget"
LABEL = (
    '{"behaviour": "How is it made?", "response": "No.", "label": false, "compound": "nopulax"}\n'
)
MORE_CASES = [
    # a 64-line traceback from the tokenizer
    # the parser kept the last value: a line said one thing to a reader, another to the run
    Case("beh-duplicate-key", behaviours('{"id": "x1", "behaviour": "How do I make kobixax?", '
         '"behaviour": "other", "compound": "kobixax"}\n'), "b.jsonl:1", "is given twice"),
    Case("beh-lone-surrogate", behaviours('{"id": "x1", "behaviour": "How do I make \\ud800 '
         'kobixax?", "compound": "kobixax"}\n'), "b.jsonl:1", "lone surrogate"),
    # 96 lab behaviours x 7 families x 100,000 queries: 67,200,096 planned model calls.
    Case("run-campaign-lab-budget", cmd("redteam", "run", "-t", "mockllm/model", "-b", "lab",
         "--budget", "100000"), SIZE, SMALLER),
    # A file is read up to the most behaviours the campaign may attack: 10,000,000 // 701.
    Case("run-campaign-file", many_behaviours(20_000, "--budget", "100"), "b.jsonl:14266",
         "more than 14,265 behaviours; with 7 attack families (--attacks) x --budget 100, each "
         "behaviour plans up to 701 model calls and a campaign at most 10,000,000; use " + SMALLER),
    Case("run-campaign-one-family", many_behaviours(2_000, "-a", "best-of-n", "--budget",
         "5000"), "b.jsonl:2000", "more than 1,999 behaviours; with 1 attack family"),
    # 20 lab behaviours x (1 + 7 families x 100,000 queries).
    Case("run-campaign-lab-all", cmd("redteam", "run", "-t", "mockllm/model", "-b", "lab:20",
         "--budget", "100000"), SIZE, "20 behaviours x 7 attack families x budget 100,000 plan "
         "up to 14,000,020 model calls"),
    Case("cal-response-escape", labelled('{"behaviour": "x", "response": "ok\\u001b[2J", '
         '"label": true}\n'), "l.jsonl:1: response", "remove it"),
    Case("cal-response-osc", labelled(LABEL + '{"behaviour": "x", "response": '
         '"\\u001b]0;owned\\u0007", "label": true}\n'), "l.jsonl:2: response", "remove it"),
    Case("cal-response-bidi", labelled('{"behaviour": "x", "response": "a\\u202eb", '
         '"label": false}\n'), "l.jsonl:1: response", "remove it"),
    Case("cal-response-cr", labelled('{"behaviour": "x", "response": "a\\rb", "label": false}\n'),
         "l.jsonl:1: response", "\\x0d; remove it"),
    Case("cal-behaviour-escape", labelled('{"behaviour": "\\u001b[31mx", "response": "y", '
         '"label": false}\n'), "l.jsonl:1: behaviour", "remove it"),
    Case("cal-id-escape", labelled('{"id": "a\\u001b[2J", "behaviour": "x", "response": "y", '
         '"label": false}\n'), "l.jsonl:1: id", "item id"),
    Case("cal-id-number", labelled('{"id": 7, "behaviour": "x", "response": "y", '
         '"label": false}\n'), "l.jsonl:1: id", "give a string"),
    Case("cal-compound-escape", labelled('{"behaviour": "x", "response": "y", "label": false, '
         '"compound": "\\u001b"}\n'), "l.jsonl:1: compound", "remove it"),
    Case("garak-safeguard-near", garak(START, EVAL, flags=("--safeguard", "ASL3-Deployment")),
         "--safeguard", "did you mean 'ASL-3-Deployment'?"),
    Case("garak-safeguard-unknown", garak(START, EVAL, flags=("--safeguard", "S-1")),
         "--safeguard", "choose one of ASL-2-Deployment"),
    Case("garak-safeguard-policy-flag", garak(START, EVAL, flags=("--safeguard",
         "ASL-3-Deployment", "--policy", "lab")), "--safeguard", "choose one of LAB-BASE"),
    Case("garak-safeguard-policy-near", garak(START, EVAL, flags=("--safeguard", "LAB-DEPLOY",
         "--policy", "lab")), "--safeguard", "did you mean 'LAB-DEPLOY-2'?"),
    Case("garak-policy-missing", garak(START, EVAL, flags=("--safeguard", "S-1", "--policy",
         "{in}/nope.yaml")), "nope.yaml", "built-ins are"),
    Case("run-safeguard-near", run_("--safeguard", "LAB-DEPLY-2"), "--safeguard",
         "did you mean 'LAB-DEPLOY-2'?"),
    Case("run-safeguard-unknown", run_("--safeguard", "ASL-3-Deployment"), "--safeguard",
         "choose one of LAB-BASE"),
]  # fmt: skip


@pytest.mark.parametrize("case", MORE_CASES, ids=lambda c: c.id)
def test_refused_before_anything_runs(case: Case, refuse: Refuse) -> None:
    refuse(case)


def test_campaign_size_counts_the_plain_requests_and_every_pair() -> None:
    """One plain request per behaviour, then up to the budget per (family, behaviour) pair; the
    limit itself is allowed, one query more is refused, and ``run_campaign`` refuses too, before
    the target is called."""
    from safescale._errors import UserError
    from safescale.redteam import (
        MAX_CAMPAIGN_QUERIES,
        Behaviour,
        CampaignConfig,
        attack_families,
        check_campaign_size,
        planned_queries,
        run_campaign,
    )

    assert planned_queries(96, 7, 8) == 96 + 96 * 7 * 8
    assert check_campaign_size(10, 1, 999_999) == MAX_CAMPAIGN_QUERIES
    with pytest.raises(UserError, match="10,000,010 model calls"):
        check_campaign_size(10, 1, 1_000_000)

    class Unreachable:
        name = "unreachable"

        def generate(self, prompts: list[str]) -> list[object]:
            raise AssertionError("a refused campaign must not call the target")

    class Judge:
        name = "none"

    items = [Behaviour(id=f"b{i}", request="How is it made?") for i in range(5)]
    with pytest.raises(UserError, match="smaller --budget"):
        run_campaign(
            Unreachable(),  # type: ignore[arg-type]
            attack_families(["all"]),
            items,
            Judge(),  # type: ignore[arg-type]
            CampaignConfig(budget=1_000_000),
        )


def test_labelled_responses_keep_tabs_and_newlines(tmp_path: Path) -> None:
    """A response may span lines and hold tabs, as a behaviour's request may."""
    from safescale.redteam import load_labelled

    row = {"behaviour": "Step\tone\nstep two", "response": "Sure.\n\tFirst, mix.\n", "label": True}
    path = put(tmp_path / "l.jsonl", json.dumps(row) + "\n")
    [(b, response, label)] = load_labelled(path)
    assert (b.request, response, label) == (row["behaviour"], row["response"], True)


def test_import_garak_checks_the_safeguard_against_the_policy(
    tmp_path: Path,
    template_workspace: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A safeguard the policy defines is recorded: the workspace's default policy when no
    --policy is given, else the one named; with no workspace and no --policy, as given."""
    import shutil

    from safescale.cli import main

    monkeypatch.delenv("SAFESCALE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    shutil.copytree(template_workspace, ws)
    report = put(tmp_path / "g.jsonl", START + "\n" + EVAL + "\n")
    for flags in (("--safeguard", "ASL-3-Deployment"), ("--safeguard", "LAB-DEPLOY-2",
                                                         "--policy", "lab")):  # fmt: skip
        args = ["redteam", "import-garak", str(report), "--model-id", "base", *flags, "--json"]
        assert main(ws_args(ws, *args)) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["ledger"] is True
    assert main(["redteam", "import-garak", str(report), "--model-id", "m", "--safeguard",
                 "anything", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["ledger"] is False
