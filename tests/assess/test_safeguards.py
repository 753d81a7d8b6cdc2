"""Attestations and safeguard tests for a user's own policy, from the command line and from
Python; assess uses them to meet safeguards and the report shows them. Real SQLite workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safescale._errors import UserError
from safescale.assess import attestation, safeguard_test
from safescale.ledger import Workspace
from safescale.policy import Evidence, Interval, ModelRecord, load_policy

MINIMAL = Path(__file__).parents[1] / "policy" / "minimal.yaml"
CRITERIA = """    criteria:
      - {id: access-control, text: Weights behind two-party access control, evidence: [attestation]}
      - {id: exfiltration, text: Red-team exfiltration attempts succeed at most 5%, evidence: [safeguard_test]}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The minimal test policy, its safeguard given two criteria: a user's own policy."""
    text = MINIMAL.read_text().replace(
        "    reapproval_interval: P1Y\n", "    reapproval_interval: P1Y\n" + CRITERIA
    )
    path = tmp_path / "own-policy.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def ws(tmp_path: Path):
    with Workspace.init(tmp_path / "ws") as w:
        w.append_model(ModelRecord(id="m1", flops=1e20))
        # Past the threshold line: the policy requires Secure-Weights.
        w.append_evidence(
            Evidence(id="ev-h", model="m1", kind="evaluation", subject="hazard-proxy",
                     value=0.9, interval=Interval(lo=0.85, hi=0.95), n=400)
        )  # fmt: skip
        yield w


def _secure_weights(run_cli, root: str, policy: Path) -> dict:
    code, out, err = run_cli(
        "--workspace", root, "assess", "--policy", str(policy), "--model", "m1",
        "--no-run-evals", "--json",
    )  # fmt: skip
    assert code == 0, err
    (det,) = json.loads(out)
    (sg,) = [s for s in det["safeguards"] if s["id"] == "Secure-Weights"]
    return sg


def test_attest_and_test_from_the_command_line_meet_the_safeguard(
    ws: Workspace, policy_file: Path, run_cli, tmp_path: Path
) -> None:
    root = str(ws.root)
    assert not _secure_weights(run_cli, root, policy_file)["met"]
    audit = tmp_path / "access-audit.pdf"
    audit.write_bytes(b"%PDF two-party access control audit")
    code, out, err = run_cli(
        "--workspace", root, "attest", "Secure-Weights", "--model", "m1",
        "--criterion", "access-control", "--by", "CISO",
        "--statement", "two-party control on every weights bucket, audited 2025-03",
        "--artifact", f"audit={audit}", "--policy", str(policy_file), "--json",
    )  # fmt: skip
    assert code == 0, err
    att = json.loads(out)
    assert att["kind"] == "attestation" and att["details"]["by"] == "CISO"
    assert Workspace.open(ws.root).artifact_path(att["artifacts"]["audit"]).read_bytes() == (
        audit.read_bytes()
    )
    # One criterion attested, the other untested: not met yet, and it says what is missing.
    sg = _secure_weights(run_cli, root, policy_file)
    assert not sg["met"] and "exfiltration" in sg["reasons"][0]
    code, out, err = run_cli(
        "--workspace", root, "safeguard", "test", "Secure-Weights", "--model", "m1",
        "--criterion", "exfiltration", "--metric", "exfiltration_success_rate",
        "--successes", "1", "--n", "200", "--at-most", "0.05", "--by", "red team",
        "--policy", str(policy_file),
    )  # fmt: skip
    assert code == 0, err
    assert "meets Secure-Weights / exfiltration for m1" in out
    sg = _secure_weights(run_cli, root, policy_file)
    assert sg["met"] and att["id"] in sg["evidence_ids"] and len(sg["evidence_ids"]) == 2

    page = tmp_path / "report.md"
    code, _, err = run_cli("--workspace", root, "report", "--format", "md", "--out", str(page))
    assert code == 0, err
    text = page.read_text()
    assert "Attestations and safeguard tests" in text
    assert "CISO" in text and att["artifacts"]["audit"] in text
    assert "exfiltration_success_rate" in text and "meets <= 0.05" in text

    # A later failing test means not met, whatever was attested.
    code, _, err = run_cli(
        "--workspace", root, "safeguard", "test", "Secure-Weights", "--model", "m1",
        "--criterion", "exfiltration", "--metric", "exfiltration_success_rate",
        "--successes", "30", "--n", "200", "--at-most", "0.05", "--by", "red team",
        "--policy", str(policy_file),
    )  # fmt: skip
    assert code == 0, err
    sg = _secure_weights(run_cli, root, policy_file)
    assert not sg["met"] and "does not meet it" in sg["reasons"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attest", "Nope", "--by", "x", "--statement", "y"], "has no safeguard 'Nope'"),
        (["attest", "Secure-Weights", "--criterion", "c", "--by", "x", "--statement", "y"],
         "'c' is not a criterion of Secure-Weights"),
        (["attest", "Secure-Weights", "--by", " ", "--statement", "y"], "--by: must not be"),
        (["attest", "Secure-Weights", "--by", "x", "--statement", "y", "--artifact", "/no/file"],
         "artifact file not found"),
        (["safeguard", "test", "Secure-Weights", "--criterion", "exfiltration", "--metric", "r",
          "--successes", "5", "--n", "3", "--at-most", "0.1", "--by", "x"], "successes <= n"),
        (["safeguard", "test", "Secure-Weights", "--criterion", "exfiltration", "--metric", "r",
          "--successes", "1", "--n", "3", "--by", "x"], "--at-least X or --at-most X"),
    ],
)  # fmt: skip
def test_bad_safeguard_evidence_is_one_line_and_writes_nothing(
    ws: Workspace, policy_file: Path, run_cli, args: list[str], message: str
) -> None:
    before = ws.count()
    code, _, err = run_cli(
        "--workspace", str(ws.root), *args, "--model", "m1", "--policy", str(policy_file)
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert Workspace.open(ws.root).count() == before
    code, _, err = run_cli(
        "--workspace", str(ws.root), "attest", "Secure-Weights", "--model", "ghost", "--by", "x",
        "--statement", "y", "--policy", str(policy_file),
    )  # fmt: skip
    assert code == 2 and "model 'ghost' is not in the ledger" in err


def test_python_api_builds_the_same_records(policy_file: Path) -> None:
    policy = load_policy(str(policy_file))
    att = attestation(policy, "Secure-Weights", model="m1", by="CISO", statement="in place")
    assert (att.kind, att.subject, att.value, att.details["criterion"]) == (
        "attestation", "Secure-Weights", 1.0, None,
    )  # fmt: skip
    test = safeguard_test(
        policy, "Secure-Weights", model="m1", criterion="exfiltration", metric="rate",
        successes=0, n=100, at_most=0.05, by="red team",
    )  # fmt: skip
    assert test.details["passed"] and test.interval is not None and test.interval.hi < 0.05
    weak = safeguard_test(
        policy, "Secure-Weights", model="m1", criterion="exfiltration", metric="rate",
        successes=0, n=20, at_most=0.05, by="red team",
    )  # fmt: skip
    # 0 of 20 is not enough: the upper bound (0.16) does not clear 0.05.
    assert not weak.details["passed"]
    with pytest.raises(UserError, match="not a criterion"):
        attestation(policy, "Secure-Weights", model="m1", by="x", statement="y", criterion="z")
