"""The assessment loop: triggers -> evidence -> forecasts -> determination -> ledger."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from safescale._input import quote
from safescale.assess._forecast import Forecast, forecast_evaluations, forecast_png
from safescale.compute import ComputeSummary, TriggerResult, evaluate_triggers, lineage_summary
from safescale.ledger import Workspace
from safescale.policy import (
    Determination,
    Evaluation,
    Evidence,
    ModelRecord,
    Policy,
    canonical_json,
    check_one_weights,
    determine,
    policy_sha256,
    select_evidence,
    utcnow,
)

Evaluator = Callable[[Workspace, ModelRecord, Evaluation], Sequence[Evidence]]
"""Runs one policy evaluation on one model (storing any artifacts in the workspace) and
returns the evidence it produced; the loop appends that evidence to the ledger."""


@dataclass(frozen=True)
class Assessment:
    """One model's assessment: why it ran, what was measured and forecast, what was decided."""

    model: str
    determination: Determination
    triggers: tuple[TriggerResult, ...]
    forecasts: tuple[Forecast, ...]
    new_evidence: tuple[Evidence, ...] = field(default_factory=tuple)
    """Evidence produced during this assessment (evaluations run, forecasts)."""


def _with_figure(ws: Workspace, f: Forecast) -> Forecast:
    """Store the forecast's figure as an artifact and cite it from the evidence."""
    try:
        sha = ws.add_artifact(forecast_png(f))
    except ImportError:  # matplotlib is optional; the forecast stands without its figure
        return f
    ev = f.evidence.model_copy(update={"artifacts": {**f.evidence.artifacts, "figure": sha}})
    return replace(f, evidence=ev)


def models_needing_assessment(
    triggers: Sequence[TriggerResult], summaries: Sequence[ComputeSummary]
) -> list[str]:
    """Models for which a compute or calendar trigger (or a regulatory line) has fired."""
    fired = {
        t.model
        for t in triggers
        if t.fired and t.kind in ("effective_compute", "calendar", "regulatory")
    }
    return [s.model for s in summaries if s.model in fired]


def _needs_run(
    spec: Evaluation, model: str, evidence: Sequence[Evidence], as_of: datetime, policy: Policy
) -> bool:
    ev = select_evidence(evidence, model, spec.id, kinds=("evaluation",), metric=spec.metric)
    if ev is None or ev.model != model:
        return True
    ages = [
        b.max_age
        for t in policy.capability_thresholds
        for b in t.evaluations
        if b.evaluation == spec.id and b.max_age is not None
    ]
    return any(age.add_to(ev.created) < as_of for age in ages)


def assess(
    ws: Workspace,
    policy: Policy,
    *,
    models: Sequence[str] | None = None,
    evaluator: Evaluator | None = None,
    as_of: datetime | None = None,
    seed: int = 0,
    forecast: bool = True,
    on_progress: Callable[[str], None] | None = None,
) -> list[Assessment]:
    """Assess ``models`` (default: every model whose triggers fired) under ``policy``.

    Evaluations the policy binds are run through ``evaluator`` when a model lacks fresh
    evidence for them (without an evaluator, recorded evidence is used as it stands); forecasts
    for the next planned scale-up are fitted over the model's lineage; the determination and
    all new evidence are appended to the ledger.
    """
    as_of = as_of or utcnow()
    say = on_progress or (lambda _msg: None)
    records = ws.models()
    by_id = {m.id: m for m in records}
    determinations = ws.determinations()
    summaries = lineage_summary(records, determinations)
    triggers = evaluate_triggers(policy, records, determinations, as_of)
    chosen = list(models) if models is not None else models_needing_assessment(triggers, summaries)
    unknown = [m for m in chosen if m not in by_id]
    if unknown:
        from safescale._errors import UserError

        raise UserError(
            f"model {quote(unknown[0])} is not in the ledger; record it with "
            f"`safescale compute add` (known: {', '.join(sorted(by_id)) or 'none'})"
        )
    sha = policy_sha256(policy)
    # The policy itself is kept as an artifact named by its hash, so a report can be rebuilt
    # from the ledger alone, whatever file the policy came from.
    ws.add_artifact(canonical_json(policy.to_dict()))
    results = []
    summary_of = {s.model: s for s in summaries}
    # Evaluations first, for every chosen model, so that forecasts see the whole ladder.
    produced: dict[str, list[Evidence]] = {m: [] for m in chosen}
    if evaluator is not None:
        evidence = ws.evidence()
        for model in chosen:
            for spec in policy.evaluations:
                if not any(
                    b.evaluation == spec.id
                    for t in policy.capability_thresholds
                    for b in t.evaluations
                ):
                    continue
                if _needs_run(spec, model, evidence, as_of, policy):
                    say(f"evaluating {model} on {spec.id}")
                    new = list(evaluator(ws, by_id[model], spec))
                    check_one_weights([*evidence, *(e for v in produced.values() for e in v)], new)
                    for ev in new:
                        ws.append_evidence(ev)
                    produced[model] += new
    evidence = ws.evidence()
    for model in chosen:
        forecasts: list[Forecast] = []
        if forecast:
            say(f"forecasting {model} at {policy.planned_scale_up:g}x")
            forecasts = forecast_evaluations(
                policy, summary_of[model], summaries, evidence, seed=seed
            )
            forecasts = [_with_figure(ws, f) for f in forecasts]
            for f in forecasts:
                ws.append_evidence(f.evidence)
        usable = [*evidence, *(f.evidence for f in forecasts)]
        # Evidence produced during this assessment is stamped a moment after ``as_of``;
        # the determination is made as of the newest of it, so none is left out.
        decided_at = max([as_of, *(e.created for e in usable if e.model == model)])
        det = determine(policy, model, usable, as_of=decided_at, policy_sha256=sha)
        ws.append_determination(det)
        results.append(
            Assessment(
                model=model,
                determination=det,
                triggers=tuple(t for t in triggers if t.model == model),
                forecasts=tuple(forecasts),
                new_evidence=tuple(produced[model]) + tuple(f.evidence for f in forecasts),
            )
        )
    return results
