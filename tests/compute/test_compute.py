"""FLOP estimates, lineages and triggers, and the compute commands end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safescale.compute import (
    evaluate_triggers,
    hardware_flops,
    lineage_summary,
    training_flops,
)
from safescale.policy import Determination, ModelRecord, SafeguardStatus, load_builtin

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RSP = "anthropic-rsp-2.2"


def rec(id: str, flops: float, days: float = 0, **kw: object) -> ModelRecord:
    return ModelRecord(id=id, flops=flops, created=T0 + timedelta(days=days), **kw)  # type: ignore[arg-type]


def fired(results: list, model: str, trigger: str) -> bool:  # type: ignore[type-arg]
    (hit,) = [r for r in results if r.model == model and r.trigger == trigger]
    return bool(hit.fired)


def test_six_n_d_and_hardware() -> None:
    assert training_flops(1e9, 2e10) == 1.2e20
    est = hardware_flops(gpu_hours=1000, peak_flops=1e15, utilization=0.4)
    assert est.flops == pytest.approx(1000 * 3600 * 1e15 * 0.4)
    assert est.rel_uncertainty == 0.3 and est.method == "hardware"
    with pytest.raises(ValueError):
        hardware_flops(1, 1e15, 1.5)


def test_cumulative_flops_follow_parents() -> None:
    models = [
        rec("base", 1e24, assessed=True),
        rec("sft", 1e22, 1, parent="base", stage="finetuning", flops_rel_uncertainty=0.5),
        rec("rl", 2e22, 2, parent="sft", stage="rl", effective_multiplier=2.0),
    ]
    by = {s.model: s for s in lineage_summary(models)}
    assert by["rl"].ancestors == ("sft", "base")
    assert by["rl"].cumulative_flops == pytest.approx(1.03e24)
    assert by["rl"].effective_compute == pytest.approx(2.06e24)
    assert by["rl"].cumulative_sigma == pytest.approx(0.5e22)
    with pytest.raises(ValueError, match="not recorded"):
        lineage_summary([rec("x", 1, parent="ghost")])


def test_effective_compute_trigger_fires_at_four_x() -> None:
    policy = load_builtin(RSP)
    models = [rec("m1", 1e21, assessed=True), rec("m2", 3e21, 1), rec("m3", 5e21, 2)]
    results = evaluate_triggers(policy, models, [], T0 + timedelta(days=3))
    trig = "notably-more-capable-compute"
    assert not fired(results, "m2", trig) and fired(results, "m3", trig)
    (m3,) = [r for r in results if r.model == "m3" and r.trigger == trig]
    assert (m3.value, m3.anchor, m3.requires) == (5.0, "m1", "comprehensive_assessment")


def test_uncertain_flops_cannot_rule_out() -> None:
    policy = load_builtin(RSP)
    models = [rec("m1", 1e21, assessed=True), rec("m2", 3.5e21, 1, flops_rel_uncertainty=0.3)]
    (r,) = [
        r for r in evaluate_triggers(policy, models, [], T0)
        if r.model == "m2" and r.kind == "effective_compute"
    ]  # fmt: skip
    assert r.status == "cannot_rule_out" and r.fired
    assert r.lo is not None and r.hi is not None and r.lo < 3.5 < 4 < r.hi


def test_regulatory_overlays_and_notification_clock() -> None:
    policy = load_builtin(RSP)
    results = evaluate_triggers(policy, [rec("big", 2e25)], [], T0 + timedelta(days=20))
    (eu,) = [r for r in results if r.trigger == "eu-ai-act-art51"]
    (ca,) = [r for r in results if r.trigger == "ca-sb53"]
    assert eu.fired and not ca.fired
    assert eu.deadline == T0 + timedelta(days=14)
    assert any("overdue" in reason for reason in eu.reasons)


def test_calendar_trigger_after_six_months_of_post_training() -> None:
    policy = load_builtin(RSP)
    models = [
        rec("base", 1e24, assessed=True),
        rec("ft", 1e21, 10, parent="base", stage="finetuning"),
    ]
    trig = "notably-more-capable-post-training"
    assert not fired(evaluate_triggers(policy, models, [], T0 + timedelta(days=100)), "ft", trig)
    assert fired(evaluate_triggers(policy, models, [], T0 + timedelta(days=200)), "ft", trig)
    # The base model has no post-training after its assessment.
    assert not fired(evaluate_triggers(policy, models, [], T0 + timedelta(days=200)), "base", trig)


def _determination(model: str, met: bool) -> Determination:
    return Determination(
        id=f"d-{model}", model=model, policy_id=RSP, policy_version="2.2", policy_sha256="0" * 64,
        as_of=T0, thresholds=[], outcome="upgrade_safeguards", actions=[], reasons=[],
        safeguards=[SafeguardStatus(id="ASL-3-Security", required_by=["cbrn"], met=met,
                                    reasons=[], evidence_ids=[])],
    )  # fmt: skip


def test_pause_rule_uses_unmet_safeguards() -> None:
    policy = load_builtin(RSP)
    models = [rec("a", 1e24), rec("b", 5e23, 1), rec("c", 2e24, 2)]
    results = evaluate_triggers(policy, models, [_determination("a", met=False)], T0)
    assert [fired(results, m, "pretraining-pause") for m in "abc"] == [True, False, True]
    results = evaluate_triggers(policy, models, [_determination("a", met=True)], T0)
    assert not any(fired(results, m, "pretraining-pause") for m in "abc")


def test_event_and_discretion_need_a_person() -> None:
    results = evaluate_triggers(load_builtin(RSP), [rec("m", 1e20, assessed=True)], [], T0)
    people = [r for r in results if r.kind in ("event", "discretion")]
    assert people and all(r.status == "not_evaluated" and not r.fired for r in people)


def test_done_when_scenario_through_the_command(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAFESCALE_HOME", raising=False)
    assert run_cli("init")[0] == 0
    assert run_cli("compute", "add", "--model", "m1", "--flops", "1e21", "--assessed")[0] == 0
    assert run_cli("compute", "add", "--model", "m2", "--flops", "3e21")[0] == 0
    assert run_cli("compute", "add", "--model", "m3", "--flops", "5e21")[0] == 0
    code, out, _ = run_cli("compute", "triggers", "--policy", RSP, "--json")
    assert code == 0
    rows = json.loads(out)
    compute = {
        r["model"]: r["fired"] for r in rows if r["trigger"] == "notably-more-capable-compute"
    }
    assert compute == {"m1": False, "m2": False, "m3": True}
    code, out, _ = run_cli("compute", "show", "--json")
    assert [m["effective_compute"] for m in json.loads(out)] == [1e21, 3e21, 5e21]
    assert run_cli("ledger", "verify")[0] == 0


def test_compute_add_user_errors(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = str(tmp_path / "w")
    assert run_cli("--workspace", ws, "init")[0] == 0
    code, _, err = run_cli("--workspace", ws, "compute", "add", "--model", "x")
    assert code == 2 and "--flops" in err
    code, _, err = run_cli("--workspace", ws, "compute", "add", "--model", "x", "--flops", "1",
                           "--parent", "ghost")  # fmt: skip
    assert code == 2 and "ghost" in err
    code, _, err = run_cli("--workspace", ws, "compute", "add", "--model", "x", "--method",
                           "hardware", "--gpu-hours", "10")  # fmt: skip
    assert code == 2 and "--peak-flops" in err
    assert run_cli("--workspace", ws, "compute", "add", "--model", "h", "--gpu-hours", "10",
                   "--peak-flops", "1e15", "--utilization", "0.5")[0] == 0  # fmt: skip
    code, out, _ = run_cli("--workspace", ws, "compute", "show", "--json")
    assert json.loads(out)[0]["cumulative_sigma"] == pytest.approx(0.3 * 10 * 3600 * 1e15 * 0.5)


def test_missing_workspace_exit_2(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("--workspace", str(tmp_path / "none"), "compute", "show")
    assert code == 2 and "safescale init" in err


def test_records_whose_parents_do_not_form_a_tree_are_one_line_in_every_command(
    tmp_path: Path, run_cli: Any
) -> None:
    from safescale.ledger import Workspace
    from safescale.policy import ModelRecord

    root = tmp_path / ".safescale"
    ws = Workspace.init(root, author="t")
    # Every append refuses a parent that is not recorded; re-recording a model can still
    # close a loop (and a ledger written before that check may hold an orphan).
    ws.append_model(ModelRecord(id="a", flops=1e20))
    ws.append_model(ModelRecord(id="b", parent="a", flops=1e20))
    ws.append_model(ModelRecord(id="a", parent="b", flops=1e20))  # through Python
    ws.close()
    for args in (("compute", "show"), ("compute", "triggers", "--policy", "lab"),
                 ("compute", "add", "--model", "m2", "--flops", "1e21")):  # fmt: skip
        code, _, err = run_cli("--workspace", str(root), *args)
        assert code == 1 and err.count("\n") == 1 and "cycle" in err, err
