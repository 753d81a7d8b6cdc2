"""Reports rebuilt from the ledger alone: the determination, its policy, evidence and figures."""

from __future__ import annotations

from safescale._errors import Problem, UserError
from safescale._input import quote
from safescale.compute import evaluate_triggers
from safescale.ledger import Workspace
from safescale.policy import Determination, Evidence, Policy, check_policy_text
from safescale.report._content import Figure, ReportInput, TriggerLine
from safescale.scaling import position_warnings


def policy_for(ws: Workspace, det: Determination) -> Policy:
    """The exact policy a determination was made under, from the artifact store."""
    path = ws.artifact_path(det.policy_sha256)
    if not path.exists():
        raise UserError(
            f"the policy {det.policy_id} {det.policy_version} (sha256 "
            f"{det.policy_sha256[:16]}...) is not in the artifact store; re-run safescale assess"
        )
    policy, problems = check_policy_text(path.read_bytes(), source=str(path))
    if policy is None:
        raise UserError(*problems)
    return policy


def latest_determination(
    ws: Workspace, *, model: str | None = None, determination_id: str | None = None
) -> Determination:
    """The newest determination (for ``model``), or the one with ``determination_id``."""
    dets = ws.determinations(model)
    if determination_id is not None:
        dets = [d for d in dets if d.id == determination_id]
        if not dets:
            where = f" for model {quote(model)}" if model else ""
            raise UserError(
                Problem(
                    f"no determination {quote(determination_id)}{where} in this workspace; list "
                    "them with `safescale ledger log --kind determination`",
                    field="--determination",
                )
            )
    if not dets:
        what = f"for model {quote(model)}" if model else "in this workspace"
        raise UserError(f"no determination {what}; run `safescale assess` first")
    return dets[-1]


def forecast_caption(ev: Evidence) -> str:
    """The caption of a forecast's figure: the forecast, its band, and what the band does
    not cover (an onset the ladder has not shown; a forecast near the floor)."""
    p_alert = ev.details.get("prob_over_alert")
    at = ev.details.get("at_effective_compute")
    caption = (
        f"{ev.subject} against effective compute over {ev.n} ladder models, with the "
        f"95% prediction band; forecast at {at:.3g} FLOP: {ev.value:.3f} "
        f"[{ev.interval.lo:.3f}, {ev.interval.hi:.3f}]"
        if ev.interval is not None and isinstance(at, float)
        else ev.subject
    )
    if isinstance(p_alert, float):
        caption += f"; P(score >= alert line) = {p_alert:.2f}"
    if ev.details.get("rise_observed") is False:
        caption += (
            ". No rise above the floor is seen across the ladder, so the fit "
            "cannot place the onset; the band does not cover an unseen onset"
        )
    position = ev.details.get("position_on_rise")
    if isinstance(position, float):
        caption += "".join(f". Caution: {w}" for w in position_warnings(position))
    widening = ev.details.get("scale_widening")
    if isinstance(widening, float) and widening != 1.0:
        caption += f" (the band was widened {widening:g}x there)"
    cal = ev.details.get("calibration")
    phi = cal.get("overdispersion") if isinstance(cal, dict) else None
    if isinstance(cal, dict) and cal.get("record_used") is False and isinstance(phi, float):
        caption += (
            f". The ladder scatters {phi:.2f}x the sampling variance of its scores, so the band "
            "is its in-sample spread plus the fit's jackknife, not its backtest record"
        )
    return caption + f" (evidence {ev.id})."


def report_input(
    ws: Workspace,
    *,
    model: str | None = None,
    determination_id: str | None = None,
    notes: tuple[str, ...] = (),
) -> ReportInput:
    """Everything a report on the latest (or the named) determination needs, from the ledger."""
    det = latest_determination(ws, model=model, determination_id=determination_id)
    policy = policy_for(ws, det)
    models = ws.models()
    by_id = {m.id: m for m in models}
    lineage = []
    current = by_id.get(det.model)
    while current is not None:
        lineage.append(current)
        current = by_id.get(current.parent) if current.parent else None
    lineage.reverse()
    evidence = [e for e in ws.evidence() if e.model in (det.model, "*")]
    earlier = [d for d in ws.determinations(det.model) if d.as_of < det.as_of and d.id != det.id]
    figures = []
    cited = {i for st in det.thresholds for i in st.evidence_ids}
    for ev in evidence:
        sha = ev.artifacts.get("figure")
        if ev.id in cited and sha and ws.artifact_path(sha).exists():
            figures.append(
                Figure(
                    f"Forecast: {ev.subject}",
                    ws.artifact_path(sha).read_bytes(),
                    forecast_caption(ev),
                )
            )
    triggers = [
        TriggerLine(
            t.trigger, t.fired, f"{t.status}: {t.rule}" + (f"; {t.requires}" if t.fired else "")
        )
        # The triggers as they stood when the assessment was made, before this determination.
        for t in evaluate_triggers(
            policy, models, [d for d in ws.determinations() if d.as_of < det.as_of], det.as_of
        )
        if t.model == det.model
    ]
    signoffs = ws.sign_offs(det.id)
    if signoffs:
        from safescale.policy import SignOff

        det = det.model_copy(
            update={
                "sign_offs": [
                    SignOff(
                        role=s.role,
                        identity=s.identity,
                        decision=s.decision,
                        text=s.text,
                        signed=s.created,
                    )
                    for s in signoffs
                ]
            }
        )
    return ReportInput(
        policy=policy,
        determination=det,
        lineage=lineage,
        evidence=evidence,
        previous=earlier[-1] if earlier else None,
        figures=figures,
        triggers=triggers,
        ledger_head=ws.head(),
        notes=notes,
    )
