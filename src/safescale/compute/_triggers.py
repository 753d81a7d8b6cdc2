"""Assessment triggers: which policy rules the compute facts fire, for every model.

:func:`evaluate_triggers` is a pure function of the policy, the model records, the
determinations and the time. Uncertain FLOP is treated the way the determination rule treats
uncertain evidence: a trigger whose line lies inside the 95% interval *cannot be ruled out*
and counts as fired.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from safescale.compute._lineage import ComputeSummary, lineage_summary
from safescale.policy import (
    CalendarTrigger,
    Determination,
    EffectiveComputeTrigger,
    EventTrigger,
    ModelRecord,
    PauseRule,
    Policy,
    RegulatoryOverlay,
)

Z95 = 1.959963984540054
"""Two-sided 95% normal quantile, for intervals on FLOP ratios."""

Status = Literal["fired", "cannot_rule_out", "no_baseline", "not_fired", "not_evaluated"]


@dataclass(frozen=True)
class TriggerResult:
    """One rule evaluated for one model."""

    model: str
    trigger: str
    """The policy's id for the rule (trigger, overlay or pause rule)."""
    kind: str
    """``effective_compute``, ``calendar``, ``event``, ``discretion``, ``regulatory``, ``pause``."""
    fired: bool
    """True for ``fired``, ``cannot_rule_out`` and ``no_baseline``."""
    status: Status
    rule: str
    """The rule in words, with its line."""
    requires: str
    """What the policy requires next when the rule fires."""
    value: float | None = None
    """The measured quantity (a ratio, FLOP or days)."""
    threshold: float | None = None
    """The line it is compared with, in the same unit."""
    lo: float | None = None
    """Lower end of the 95% interval on ``value`` (equal to it when the FLOP is exact)."""
    hi: float | None = None
    """Upper end of the 95% interval on ``value``."""
    anchor: str | None = None
    """The model compared with (the last comprehensively assessed one, or the paused one)."""
    deadline: datetime | None = None
    """Notification deadline of a regulatory overlay."""
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (times as ISO-8601 text)."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["deadline"] = self.deadline.isoformat() if self.deadline else None
        return out


def _status(value: float, hi: float, line: float) -> Status:
    if value >= line:
        return "fired"
    return "cannot_rule_out" if hi >= line else "not_fired"


def _ratio_interval(
    model: ComputeSummary, anchor: ComputeSummary, by_id: dict[str, ModelRecord]
) -> tuple[float, float, float]:
    # R = (m_M / m_A) * F_M / F_A, F = FLOP summed over a parent chain. First-order error
    # propagation over each stage k (independent): dR/df_k = R (1[k in M]/F_M - 1[k in A]/F_A).
    ratio = model.effective_compute / anchor.effective_compute
    chain_m = {model.model, *model.ancestors}
    chain_a = {anchor.model, *anchor.ancestors}
    var = 0.0
    for k in chain_m | chain_a:
        rec = by_id[k]
        grad = (k in chain_m) / model.cumulative_flops - (k in chain_a) / anchor.cumulative_flops
        var += (ratio * grad * rec.flops * rec.flops_rel_uncertainty) ** 2
    half = Z95 * math.sqrt(var)
    return ratio, max(ratio - half, 0.0), ratio + half


def _anchor(s: ComputeSummary, summaries: Sequence[ComputeSummary], as_of: datetime) -> Any:
    """The most recent comprehensively assessed model of ``s``'s lineage (as of ``as_of``)."""
    done = [
        x
        for x in summaries
        if x.lineage == s.lineage and x.assessed_at is not None and x.assessed_at <= as_of
    ]
    return max(done, key=lambda x: x.assessed_at) if done else None  # type: ignore[arg-type,return-value]


def _compute_trigger(
    t: EffectiveComputeTrigger,
    s: ComputeSummary,
    anchor: ComputeSummary | None,
    by_id: dict[str, ModelRecord],
) -> TriggerResult:
    rule = f"effective compute >= {t.ratio:g}x the last comprehensively assessed model"
    base: dict[str, Any] = dict(
        model=s.model, trigger=t.id, kind=t.kind, rule=rule, requires=t.leads_to
    )
    if anchor is None:
        return TriggerResult(
            **base, fired=True, status="no_baseline", threshold=t.ratio,
            reasons=(f"lineage {s.lineage!r} has no comprehensively assessed model",),
        )  # fmt: skip
    ratio, lo, hi = _ratio_interval(s, anchor, by_id)
    status = _status(ratio, hi, t.ratio)
    why = (
        f"{s.effective_compute:.3g} / {anchor.effective_compute:.3g} effective FLOP = "
        f"{ratio:.3g}x {anchor.model} (95% interval {lo:.3g}-{hi:.3g}x; line {t.ratio:g}x)"
    )
    return TriggerResult(
        **base, fired=status != "not_fired", status=status, value=ratio, threshold=t.ratio,
        lo=lo, hi=hi, anchor=anchor.model, reasons=(why,),
    )  # fmt: skip


def _calendar_trigger(
    t: CalendarTrigger,
    s: ComputeSummary,
    anchor: ComputeSummary | None,
    summaries: dict[str, ComputeSummary],
    as_of: datetime,
) -> TriggerResult:
    basis = {
        "accumulated_post_training": "of accumulated post-training",
        "since_last_assessment": "since the last assessment",
    }
    rule = f"{t.interval} {basis.get(t.basis, t.basis.replace('_', ' '))}"
    base: dict[str, Any] = dict(
        model=s.model, trigger=t.id, kind=t.kind, rule=rule, requires=t.leads_to
    )
    line = t.interval.days()
    if anchor is None or anchor.assessed_at is None:
        return TriggerResult(
            **base, fired=True, status="no_baseline", threshold=line,
            reasons=(f"lineage {s.lineage!r} has no comprehensively assessed model",),
        )  # fmt: skip
    start = anchor.assessed_at
    if t.basis == "accumulated_post_training":
        # Post-training counts only once a fine-tuning or RL stage follows the assessment in
        # this model's chain. Its calendar time is bounded by the time since the assessment;
        # we take that bound (the conservative reading: records do not hold start dates).
        chain = [summaries[m] for m in (s.model, *s.ancestors)]
        post = [c for c in chain if c.stage in ("finetuning", "rl") and c.created >= start]
        if not post:
            return TriggerResult(
                **base, fired=False, status="not_fired", value=0.0, threshold=line,
                anchor=anchor.model,
                reasons=(f"no post-training recorded after assessing {anchor.model}",),
            )  # fmt: skip
    days = (as_of - start).total_seconds() / 86400.0
    due = t.interval.add_to(start)
    fired = due <= as_of
    why = (
        f"{days:.0f} days since {anchor.model} was assessed on {start:%Y-%m-%d}; due {due:%Y-%m-%d}"
    )
    return TriggerResult(
        **base, fired=fired, status="fired" if fired else "not_fired", value=days,
        threshold=line, lo=days, hi=days, anchor=anchor.model, reasons=(why,),
    )  # fmt: skip


def _overlay(o: RegulatoryOverlay, s: ComputeSummary, as_of: datetime) -> TriggerResult:
    rule = f"{o.name} ({o.jurisdiction}): cumulative training FLOP >= {o.threshold_flop:.3g}"
    requires = "; ".join([o.effect, *o.duties])
    base: dict[str, Any] = dict(
        model=s.model, trigger=o.id, kind="regulatory", rule=rule, requires=requires
    )
    if o.status != "active":
        return TriggerResult(
            **base, fired=False, status="not_evaluated", threshold=o.threshold_flop,
            reasons=(f"overlay is {o.status}",),
        )  # fmt: skip
    value = s.cumulative_flops
    lo, hi = max(value - Z95 * s.cumulative_sigma, 0.0), value + Z95 * s.cumulative_sigma
    status = _status(value, hi, o.threshold_flop)
    reasons = [f"{value:.3g} FLOP (95% interval {lo:.3g}-{hi:.3g}) vs {o.threshold_flop:.3g}"]
    deadline = None
    if status != "not_fired" and o.notify_within is not None:
        # The clock starts when the crossing is known, which is when the run was recorded.
        deadline = o.notify_within.add_to(s.created)
        late = " (overdue)" if deadline < as_of else ""
        reasons.append(f"notify {o.notify_to or 'the regulator'} by {deadline:%Y-%m-%d}{late}")
    return TriggerResult(
        **base, fired=status != "not_fired", status=status, value=value,
        threshold=o.threshold_flop, lo=lo, hi=hi, deadline=deadline, reasons=tuple(reasons),
    )  # fmt: skip


def _unmet(rule: PauseRule, determinations: Sequence[Determination]) -> dict[str, list[str]]:
    """Models whose latest determination has required safeguards unmet (and not the
    rule's sufficient ones in place): model -> unmet safeguard ids."""
    latest: dict[str, Determination] = {}
    for det in determinations:
        prev = latest.get(det.model)
        if prev is None or (det.as_of, det.created) >= (prev.as_of, prev.created):
            latest[det.model] = det
    out = {}
    for model, det in latest.items():
        unmet = [g.id for g in det.safeguards if not g.met]
        met = {g.id for g in det.safeguards if g.met}
        if unmet and not (rule.sufficient_safeguards and met >= set(rule.sufficient_safeguards)):
            out[model] = unmet
    return out


def _pause(
    rule: PauseRule, s: ComputeSummary, blocked: dict[str, list[str]], by: dict[str, ComputeSummary]
) -> TriggerResult:
    text = f"effective compute >= {rule.ratio:g}x a model whose required safeguards are unmet"
    base: dict[str, Any] = dict(
        model=s.model, trigger=rule.id, kind="pause", rule=text, requires=rule.action
    )
    hits = [
        m
        for m in blocked
        if m in by and s.effective_compute >= rule.ratio * by[m].effective_compute
    ]
    if not hits:
        return TriggerResult(**base, fired=False, status="not_fired", threshold=rule.ratio)
    anchor = min(hits, key=lambda m: by[m].effective_compute)
    reasons = tuple(
        f"{s.effective_compute / by[m].effective_compute:.3g}x {m}, whose safeguards "
        f"{', '.join(blocked[m])} are unmet"
        for m in hits
    )
    return TriggerResult(
        **base, fired=True, status="fired",
        value=s.effective_compute / by[anchor].effective_compute, threshold=rule.ratio,
        anchor=anchor, reasons=reasons,
    )  # fmt: skip


def evaluate_triggers(
    policy: Policy,
    models: Sequence[ModelRecord],
    determinations: Sequence[Determination],
    as_of: datetime,
) -> list[TriggerResult]:
    """Evaluate every assessment trigger, regulatory overlay and the pause rule for every model.

    Event and discretion triggers never fire from compute facts: they come back
    ``not_evaluated``, naming what a person must watch for.
    """
    summaries = lineage_summary(models, determinations)
    by_summary = {s.model: s for s in summaries}
    by_id = {m.id: m for m in models}
    pause = policy.unmet_safeguards.training_pause
    blocked = _unmet(pause, determinations) if pause else {}
    results: list[TriggerResult] = []
    for s in summaries:
        anchor = _anchor(s, summaries, as_of)
        for t in policy.assessment_triggers:
            if isinstance(t, EffectiveComputeTrigger):
                results.append(_compute_trigger(t, s, anchor, by_id))
            elif isinstance(t, CalendarTrigger):
                results.append(_calendar_trigger(t, s, anchor, by_summary, as_of))
            else:
                need = (
                    f"events: {', '.join(t.events)}"
                    if isinstance(t, EventTrigger)
                    else f"{t.role} may order an assessment at any time"
                )
                results.append(
                    TriggerResult(
                        model=s.model, trigger=t.id, kind=t.kind, fired=False,
                        status="not_evaluated", rule=t.description or need,
                        requires=t.leads_to, reasons=(f"needs a person: {need}",),
                    )
                )  # fmt: skip
        results.extend(_overlay(o, s, as_of) for o in policy.regulatory_overlays)
        if pause is not None:
            results.append(_pause(pause, s, blocked, by_summary))
    return results
