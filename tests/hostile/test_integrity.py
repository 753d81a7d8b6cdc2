"""Integrity defects from the ledger audit: exports cut short, output paths that would
overwrite the workspace's own files, results without sample counts, tampered ledgers."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from safescale.cli import main
from safescale.ledger import Workspace
from safescale.policy import ModelRecord
from tests.hostile.conftest import Case, Refuse, _snapshot, put, ws_args

PROTECTED = ["ledger.sqlite", "keys/ed25519.pem", "keys/ed25519.pub.pem", "checkpoint.json",
             "safescale.toml", "artifacts/ab/x"]  # fmt: skip


def _out(cmd: list[str], flag: str, rel: str):  # type: ignore[no-untyped-def]
    return lambda d, ws: ws_args(ws, *cmd, flag, str(ws / rel))


OUTPUT_CASES = [
    Case(f"{' '.join(cmd)}-{rel}", _out(cmd, flag, rel), flag, "workspace's own files")
    for cmd, flag in (
        (["ledger", "checkpoint"], "--out"),
        (["ledger", "export", "--json"], "--output"),
        (["report", "--model", "base", "--format", "md"], "--out"),
    )
    for rel in PROTECTED
] + [
    Case("checkpoint-out-folder", lambda d, ws: ws_args(ws, "ledger", "checkpoint", "--out",
                                                        str(d)), "--out", "is a folder"),
    Case("log-limit-negative", lambda d, ws: ws_args(ws, "ledger", "log", "--limit", "-1"),
         "--limit", "give a whole number"),
    Case("log-limit-huge", lambda d, ws: ws_args(ws, "ledger", "log", "--limit", "9" * 23),
         "--limit", "give a whole number"),
    Case("log-kind-garbage", lambda d, ws: ws_args(ws, "ledger", "log", "--kind", "garbage"),
         "--kind", "choose one of"),
]  # fmt: skip


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=lambda c: c.id)
def test_output_flags_refuse_workspace_files(refuse: Refuse, case: Case) -> None:
    refuse(case)


GOOD = {"results": {"hazard": {"acc,none": 0.05}}, "n-samples": {"hazard": {"original": 100,
        "effective": 100}}, "config": {"model": "hf", "model_name": "m1"}}  # fmt: skip


def _results(text: str):  # type: ignore[no-untyped-def]
    def build(d: Path, ws: Path) -> list[str]:
        f = put(d / "results.json", text)
        return ws_args(ws, "eval", "import", str(f), "--evaluation-id", "e1", "--model-id", "base")

    return build


def _with(**changes: object) -> str:
    doc = json.loads(json.dumps(GOOD))
    doc.update(changes)
    return json.dumps(doc)


RESULTS_CASES = [
    Case("no-n-samples", _results(json.dumps({k: v for k, v in GOOD.items() if k != "n-samples"})),
         "n-samples.hazard", "n-samples"),
    Case("metric-esc", _results(_with(results={"hazard": {"acc\x1b[31m,none": 0.1}})),
         "results.hazard", "control character"),
    Case("metric-newline", _results(_with(results={"hazard": {"acc\nX,none": 0.1}})),
         "results.hazard", "control character"),
    Case("metric-empty", _results(_with(results={"hazard": {",none": 0.1}})),
         "results.hazard", "is empty"),
    Case("metric-long", _results(_with(results={"hazard": {"a" * 100_000 + ",none": 0.1}})),
         "results.hazard", "at most 256"),
    Case("version-esc", _results(_with(lm_eval_version="\x1b[2J0.4")), "lm_eval_version",
         "control character"),
    Case("version-long", _results(_with(lm_eval_version="1" * 500_000)), "lm_eval_version",
         "at most 256"),
    Case("duplicate-key", _results(json.dumps(GOOD)[:-1] + ', "results": {}}'), "results.json",
         "given twice"),
    Case("perplexity-negative", _results(_with(results={"hazard": {"word_perplexity,none": -5}})),
         "word_perplexity", "[1, inf)"),
    Case("bigint", _results(_with(results={"hazard": {"acc,none": 0}}).replace(
         '"acc,none": 0', '"acc,none": ' + "9" * 5000)), "results.json", "thousands of digits"),
]  # fmt: skip


@pytest.mark.parametrize("case", RESULTS_CASES, ids=lambda c: c.id)
def test_results_files_are_refused(refuse: Refuse, case: Case) -> None:
    refuse(case)


# -- tampered ledgers: exit 1, one line naming the entry, nothing written ----------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    ws = Workspace.init(root, author="tester")
    ws.append_model(ModelRecord(id="base", flops=1e21))
    ws.append_model(ModelRecord(id="base-v2", flops=3e21, parent="base"))
    ws.append_model(ModelRecord(id="other", flops=1e22))
    ws.close()
    return root


TAMPER = {
    "payload-not-json": ["update entries set payload=CAST('not json' AS BLOB) where seq=2"],
    "payload-nan": ["update entries set payload=CAST(replace(CAST(payload AS TEXT),'3e+21','NaN')"
                    " AS BLOB) where seq=2"],
    "payload-missing-field": ["update entries set payload=CAST(replace(CAST(payload AS TEXT),"
                              "'\"flops\":3e+21,','') AS BLOB) where seq=2"],
    "payload-one-byte": ["update entries set payload=CAST(replace(CAST(payload AS TEXT),'3e+21',"
                         "'4e+21') AS BLOB) where seq=2"],
    "kind-wrong": ["update entries set kind='evidence' where seq=2"],
    "delete-first": ["delete from entries where seq=1", "delete from heads where seq=1"],
    "extra-head": ["insert into heads select 10,author,time,key_id,signature from heads "
                   "where seq=3"],
    "version-text": ["update entries set version='x' where seq=2"],
}  # fmt: skip
COMMANDS = {
    "compute-show": ["compute", "show"],
    "compute-add": ["compute", "add", "--model", "new", "--flops", "1e20"],
    "compute-triggers": ["compute", "triggers"],
    "ledger-log": ["ledger", "log"],
    "ledger-export": ["ledger", "export", "--json"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("tamper", TAMPER)
def test_a_tampered_ledger_is_one_line_exit_1(
    ledger: Path, tamper: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(ledger / "ledger.sqlite") as conn:
        for sql in TAMPER[tamper]:
            conn.execute(sql)
    before = _snapshot(ledger)
    count = sqlite3.connect(ledger / "ledger.sqlite").execute("select count(*) from entries")
    n_before = count.fetchone()[0]
    capsys.readouterr()
    code = main(ws_args(ledger, *COMMANDS[command]))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 0:  # a read that does not use the changed column (`ledger verify` names it)
        assert command != "compute-add"
    else:
        assert code == 1, err
        assert len(err.splitlines()) == 1, err
        assert err.startswith("error: ") and "entry" in err and "ledger verify" in err, err
    if command == "compute-add":
        assert code == 1, "an append to a changed ledger is refused"
        assert _snapshot(ledger) == before
        count = sqlite3.connect(ledger / "ledger.sqlite").execute("select count(*) from entries")
        assert count.fetchone()[0] == n_before


def test_a_checkpoint_that_is_a_folder_is_one_line(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ledger / "checkpoint.json").unlink()
    (ledger / "checkpoint.json").mkdir()
    assert main(ws_args(ledger, "ledger", "verify")) == 1
    assert main(ws_args(ledger, "compute", "add", "--model", "x", "--flops", "1e20")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "checkpoint is not readable" in err


# -- exports: count, head and the signed checkpoint pin the entries --------------------------


def _export(ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    assert main(ws_args(ledger, "ledger", "export", "--json", "-o", str(tmp_path / "e.json"))) == 0
    shutil.copy(ledger / "keys" / "ed25519.pub.pem", tmp_path / "pub.pem")
    capsys.readouterr()
    return json.loads((tmp_path / "e.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("cut", ["emptied", "last-dropped", "last-dropped-and-relabelled",
                                 "checkpoint-removed"])  # fmt: skip
def test_an_export_cut_short_fails(
    ledger: Path, tmp_path: Path, cut: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _export(ledger, tmp_path, capsys)
    if cut == "emptied":
        doc["entries"] = []
    else:
        doc["entries"] = doc["entries"][:-1]
    if cut in ("last-dropped-and-relabelled", "checkpoint-removed"):
        doc["count"], doc["head"] = 2, doc["entries"][-1]["entry_hash"]
    if cut == "checkpoint-removed":
        doc["checkpoint"] = None
    (tmp_path / "cut.json").write_text(json.dumps(doc))
    args = ["ledger", "verify", "--export", str(tmp_path / "cut.json")]
    assert main([*args, "--public-key", str(tmp_path / "pub.pem")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and ("export" in out or "checkpoint" in out)


def test_an_export_verifies_and_takes_checkpoints(
    ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _export(ledger, tmp_path, capsys)
    key = ["--public-key", str(tmp_path / "pub.pem")]
    assert main(["ledger", "verify", "--export", str(tmp_path / "e.json"), *key]) == 0
    cp = tmp_path / "cp.json"
    assert main(ws_args(ledger, "ledger", "checkpoint", "--out", str(cp))) == 0
    doc["entries"], doc["count"], doc["checkpoint"] = doc["entries"][:-1], 2, None
    doc["head"] = doc["entries"][-1]["entry_hash"]
    (tmp_path / "cut.json").write_text(json.dumps(doc))
    args = ["ledger", "verify", "--export", str(tmp_path / "cut.json"), *key]
    assert main([*args, "--checkpoint", str(cp)]) == 1
    assert "was taken at 3" in capsys.readouterr().out


# -- policies, safeguard flags ----------------------------------------------------------------


def _policy(old: str, new: str):  # type: ignore[no-untyped-def]
    def build(d: Path, ws: Path) -> list[str]:
        from safescale.policy._load import builtin_path

        text = builtin_path("lab").read_text()
        assert old in text
        return ["policy", "validate", str(put(d / "p.yaml", text.replace(old, new, 1)))]

    return build


POLICY_CASES = [
    Case("name-esc", _policy("name: ", 'name: "\\e[31m" #'), "p.yaml:", "control character"),
    Case("name-bidi", _policy("name: ", 'name: "a\\u202eb" #'), "p.yaml:", "control character"),
    Case("name-nul", _policy("name: ", 'name: "a\\0b" #'), "p.yaml:", "control character"),
    Case("bigint", _policy("chance: ", "chance: " + "9" * 5000 + " #"), "p.yaml",
         "thousands of digits"),
    Case("chance-negative", _policy("chance: ", "chance: -1 #"), "chance", "range [0, 1]"),
    Case("chance-5", _policy("chance: ", "chance: 5 #"), "chance", "range [0, 1]"),
]  # fmt: skip
for _d in ("P99999999999D", "PT99999999999999H", "P999999999Y", "P" + "9" * 5000 + "D"):
    POLICY_CASES.append(Case(f"max-age-{_d[:14]}", _policy("max_age: P30D", f"max_age: {_d}"),
                             "max_age", "longer than 100 years"))  # fmt: skip
for _d in ("P0D", "PT0S"):
    POLICY_CASES.append(Case(f"max-age-{_d}", _policy("max_age: P30D", f"max_age: {_d}"),
                             "max_age", "is zero"))  # fmt: skip

SG = ["safeguard", "test", "Secure-Weights", "--model", "base", "--criterion", "exfiltration"]
SAFEGUARD_CASES = [
    Case("attest-by-esc", lambda d, ws: ws_args(ws, "attest", "Secure-Weights", "--model", "base",
         "--by", "a\x1bb", "--statement", "s"), "--by", "control character"),
    Case("attest-statement-bidi", lambda d, ws: ws_args(ws, "attest", "Secure-Weights", "--model",
         "base", "--by", "a", "--statement", "a\u202eb"), "--statement", "control character"),
    Case("attest-statement-long", lambda d, ws: ws_args(ws, "attest", "Secure-Weights", "--model",
         "base", "--by", "a", "--statement", "s" * 5000), "--statement", "at most"),
    Case("attest-artifact-newline", lambda d, ws: ws_args(ws, "attest", "Secure-Weights",
         "--model", "base", "--by", "a", "--statement", "s", "--artifact", "a\nb=x"),
         "--artifact", "control character"),
    Case("test-metric-empty", lambda d, ws: ws_args(ws, *SG, "--metric", "", "--successes", "1",
         "--n", "10", "--by", "a"), "--metric", "is empty"),
    Case("test-method-esc", lambda d, ws: ws_args(ws, *SG, "--metric", "r", "--successes", "1",
         "--n", "10", "--by", "a", "--method", "\x1b[2J"), "--method", "control character"),
    Case("test-n-huge", lambda d, ws: ws_args(ws, *SG, "--metric", "r", "--successes", "1",
         "--n", "9" * 23, "--by", "a"), "--n", "whole number"),
    Case("test-bounds-crossed", lambda d, ws: ws_args(ws, *SG, "--metric", "r", "--successes",
         "1", "--n", "10", "--by", "a", "--at-least", "0.2", "--at-most", "0.1"), "--at-least",
         "no rate could meet both"),
]  # fmt: skip


@pytest.mark.parametrize("case", POLICY_CASES + SAFEGUARD_CASES, ids=lambda c: c.id)
def test_policy_strings_durations_and_safeguard_flags(refuse: Refuse, case: Case) -> None:
    refuse(case)
