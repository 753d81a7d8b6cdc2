"""``safescale redteam ...`` end to end, in-process."""

from __future__ import annotations

import json

from inspect_ai.log import read_eval_log


def test_redteam_run_on_a_stack_records_evidence_in_the_ledger(run_cli, lab_model, tmp_path):
    ws = tmp_path / "ws"
    assert run_cli("--workspace", str(ws), "init")[0] == 0
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        f"name: cli\nmodel: {lab_model}\nlayers:\n  - {{name: leak, stage: output, classifier: lab-leak}}\n"
    )
    code, out, err = run_cli(
        "--workspace",
        str(ws),
        "redteam",
        "run",
        "--target",
        str(stack),
        "--behaviours",
        "lab:6",
        "--attacks",
        "role-play,best-of-n",
        "--budget",
        "3",
        "--held-out",
        "best-of-n",
        "--benign",
        "lab",
        "--safeguard",
        "LAB-DEPLOY-2",
        "--model-id",
        "s3",
        "--log-dir",
        str(tmp_path / "logs"),
        "--plot",
        str(tmp_path / "stack.png"),
        "--json",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc["by_family"]) == {"role-play", "best-of-n"}
    assert doc["held_out"]["n"] == 6 and doc["seen"]["n"] == 6
    assert [layer["name"] for layer in doc["stack"]["layers"]] == ["model", "leak"]
    assert doc["ledger"] is True and len(doc["evidence"]) == 3
    log = read_eval_log(doc["log"])
    assert len(log.samples) == doc["queries"]
    assert (tmp_path / "stack.png").read_bytes().startswith(b"\x89PNG")
    from safescale.ledger import Workspace

    with Workspace.find(ws) as w:
        kinds = sorted(e.kind for e in w.evidence("s3"))
    assert kinds == ["attestation", "safeguard_test", "safeguard_test"]


def test_redteam_user_errors_are_one_line_with_status_2(run_cli, tmp_path):
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"id": "a"}\n')
    code, out, err = run_cli(
        "redteam", "run", "--target", "mockllm/model", "--behaviours", str(bad)
    )
    assert code == 2 and "b.jsonl:1: behaviour" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("redteam", "run", "--target", "nowhere", "--behaviours", "lab:2")
    assert code == 2 and "target" in err
    code, _, err = run_cli(
        "redteam", "run", "--target", "mockllm/model", "-b", "lab:2", "-a", "nope"
    )
    assert code == 2 and "unknown attacks 'nope'" in err


def test_behaviours_attacks_and_garak_commands(run_cli, tmp_path):
    out_file = tmp_path / "b.jsonl"
    assert run_cli("redteam", "behaviours", "--out", str(out_file), "--n", "5")[0] == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 5 and all(r["compound"] in r["behaviour"] for r in rows)
    code, out, _ = run_cli("redteam", "attacks")
    assert code == 0 and "best-of-n" in out and "gcg" in out
    report = tmp_path / "g.jsonl"
    report.write_text(
        json.dumps({"entry_type": "eval", "probe": "p", "detector": "d", "passed": 7, "total": 10})
        + "\n"
    )
    code, out, _ = run_cli(
        "redteam",
        "import-garak",
        str(report),
        "--model-id",
        "m",
        "--safeguard",
        "LAB-DEPLOY-2",
        "--json",
    )
    assert code == 0 and json.loads(out)["evidence"][0]["value"] == 0.3


def test_one_garak_report_recorded_for_two_models_and_two_safeguards(run_cli, tmp_path):
    """The evidence id held the report and the probe only: the second model's (or
    safeguard's) import was taken for a re-import and dropped, with exit status 0."""
    from safescale.ledger import Workspace

    ws = tmp_path / ".safescale"
    Workspace.init(ws, author="t").close()
    report = tmp_path / "g.jsonl"
    report.write_text(
        json.dumps({"entry_type": "eval", "probe": "p", "detector": "d", "passed": 95,
                    "total": 100}) + "\n"
    )  # fmt: skip

    def imp(model: str, safeguard: str) -> str:
        code, out, err = run_cli(
            "--workspace", str(ws), "redteam", "import-garak", str(report), "--model-id", model,
            "--safeguard", safeguard, "--policy", "lab",
        )  # fmt: skip
        assert code == 0, err
        return out

    assert "recorded 2 entries in the ledger" in imp("m", "LAB-DEPLOY-2")
    assert "recorded 2 entries in the ledger" in imp("m2", "LAB-DEPLOY-2")
    assert "recorded 2 entries in the ledger" in imp("m", "LAB-SECURITY-2")
    out = imp("m", "LAB-DEPLOY-2")  # the same again: recognised, not appended twice
    assert "recorded 0 entries in the ledger; 2 already there" in out
    with Workspace.open(ws) as w:
        got = {(e.model, e.subject) for e in w.evidence()}
        assert len(w.evidence()) == 6
    assert got == {("m", "LAB-DEPLOY-2"), ("m2", "LAB-DEPLOY-2"), ("m", "LAB-SECURITY-2")}
