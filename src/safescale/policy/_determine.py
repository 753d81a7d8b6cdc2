"""The determination rule: from a policy and a model's evidence, what the model may do next.

Pure functions, no I/O. The rule (DESIGN.md, "Determination rule"):

* each threshold's bound evaluations give a metric with an interval; the threshold is *below*
  only if the interval lies wholly on the safe side of the rule-out line, *crossed* if it lies
  wholly past the threshold line, and *cannot rule out* otherwise;
* missing or stale evidence is *no evidence*, never *below*;
* *cannot rule out* (and *no evidence*) is treated as crossed unless the policy says otherwise;
* an early-warning alert fires when the interval's far bound passes the alert line, or when the
  forecast for the next planned scale-up does;
* required safeguards are the union over thresholds treated as crossed, plus the baseline; each
  is met only by attested evidence that has not lapsed;
* the outcome is the most severe of the outcomes the policy's rules call for.

Because every step is monotone in capability (a higher score can only move a threshold towards
crossed, add alerts, add required safeguards), more capability never relaxes the outcome; the
property tests in ``tests/policy/test_determine.py`` check this.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from safescale._errors import Problem, UserError
from safescale.policy._records import (
    Determination,
    Evidence,
    Interval,
    SafeguardStatus,
    ThresholdStatus,
    canonical_json,
    sha256_hex,
)
from safescale.policy._schema import (
    OUTCOME_SEVERITY,
    CapabilityThreshold,
    EvaluationBinding,
    Policy,
    SafeguardStandard,
)

_STATE_RANK = {"below": 0, "cannot_rule_out": 1, "no_evidence": 1, "crossed": 2}


@dataclass(frozen=True)
class BindingResult:
    """How one evaluation binding of a threshold came out."""

    evaluation: str
    status: str
    """below | cannot_rule_out | crossed | no_evidence"""
    alert: bool
    reason: str
    evidence_id: str | None
    value: float | None
    interval: Interval | None
    forecast: Evidence | None
    n: int | None = None


def select_evidence(
    evidence: Iterable[Evidence],
    model: str,
    subject: str,
    *,
    kinds: Sequence[str],
    metric: str | None = None,
) -> Evidence | None:
    """The most recent evidence of ``kinds`` about ``subject`` for ``model`` (or ``*``)."""
    best: Evidence | None = None
    for ev in evidence:
        if ev.subject != subject or ev.kind not in kinds or ev.model not in (model, "*"):
            continue
        if metric is not None and ev.metric != metric:
            continue
        if best is None or (ev.created, ev.id) > (best.created, best.id):
            best = ev
    return best


def _bounds(ev: Evidence) -> tuple[float, float]:
    if ev.interval is None:
        return ev.value, ev.value
    return ev.interval.lo, ev.interval.hi


def degenerate_reason(ev: Evidence) -> str | None:
    """Why ``ev`` was marked degenerate when it was made (its answers ignore the input)."""
    why = ev.details.get("degenerate") if ev.details else None
    return str(why) if why else None


def _fmt_ev(ev: Evidence) -> str:
    iv = f" [{ev.interval.lo:.3g}, {ev.interval.hi:.3g}]" if ev.interval else " (no interval)"
    n = f", n={ev.n}" if ev.n is not None else ""
    why = degenerate_reason(ev)
    flag = f"; DEGENERATE: {why}" if why else ""
    return f"{ev.metric} {ev.value:.3g}{iv}{n} (evidence {ev.id}{flag})"


def evaluate_binding(
    binding: EvaluationBinding,
    policy: Policy,
    model: str,
    evidence: Sequence[Evidence],
    as_of: datetime,
) -> BindingResult:
    """Status of one evaluation binding from the freshest evaluation evidence.

    Interpretability evidence (an audit's probe or feature check, ``safescale audit``) counts
    as a measurement of the bound evaluation too, so a threshold or research category can be
    bound to an audit by naming the audit check's id as the evaluation.
    """
    metric = binding.metric or policy.evaluation(binding.evaluation).metric
    higher = binding.direction == "higher"
    forecast = select_evidence(
        evidence, model, binding.evaluation, kinds=("forecast",), metric=metric
    )
    ev = select_evidence(
        evidence, model, binding.evaluation, kinds=("evaluation", "interpretability"), metric=metric
    )
    forecast_alert = False
    if forecast is not None and binding.alert is not None:
        _, f_far = _bounds(forecast) if higher else _bounds(forecast)[::-1]
        forecast_alert = f_far >= binding.alert if higher else f_far <= binding.alert
    if ev is None:
        reason = f"{binding.evaluation}: no {metric} evidence for this model"
        reason += near_miss(binding.evaluation, metric, model, evidence)
        return BindingResult(
            binding.evaluation,
            "no_evidence",
            forecast_alert,
            reason + _forecast_note(forecast, forecast_alert, binding),
            None,
            None,
            None,
            forecast,
        )
    if binding.max_age is not None and binding.max_age.add_to(ev.created) < as_of:
        reason = (
            f"{binding.evaluation}: evidence {ev.id} from {ev.created:%Y-%m-%d} is older than "
            f"{binding.max_age} and is stale"
        )
        return BindingResult(
            binding.evaluation,
            "no_evidence",
            forecast_alert,
            reason + _forecast_note(forecast, forecast_alert, binding),
            ev.id,
            ev.value,
            ev.interval,
            forecast,
        )
    lo, hi = _bounds(ev)
    near, far = (lo, hi) if higher else (hi, lo)
    # A point value with no interval, or measured on no samples, shows nothing about how far
    # the true value may be: it can cross a line but never rule one out.
    unsupported = ev.interval is None or ev.n == 0
    safe = not unsupported and (far < binding.rule_out if higher else far > binding.rule_out)
    past = binding.threshold is not None and (
        near > binding.threshold if higher else near < binding.threshold
    )
    word_far, word_near = ("upper", "lower") if higher else ("lower", "upper")
    if past:
        status = "crossed"
        why = f"{word_near} bound {near:.3g} is past the threshold line {binding.threshold:g}"
    elif safe:
        status = "below"
        why = f"{word_far} bound {far:.3g} clears the rule-out line {binding.rule_out:g}"
    else:
        status = "cannot_rule_out"
        why = f"{word_far} bound {far:.3g} does not clear the rule-out line {binding.rule_out:g}"
        if unsupported:
            why = (f"evidence {ev.id} has no interval or no samples (n={ev.n}): a point value "
                   f"cannot clear the rule-out line {binding.rule_out:g}")  # fmt: skip
        if binding.threshold is not None:
            why += (
                f" and the {word_near} bound {near:.3g} is not past the threshold line "
                f"{binding.threshold:g}"
            )
    alert = binding.alert is not None and (far >= binding.alert if higher else far <= binding.alert)
    if alert:
        why += f"; {word_far} bound passes the alert line {binding.alert:g}"
    reason = f"{binding.evaluation}: {_fmt_ev(ev)}: {why}"
    return BindingResult(
        binding.evaluation,
        status,
        alert or forecast_alert,
        reason + _forecast_note(forecast, forecast_alert, binding),
        ev.id,
        ev.value,
        ev.interval,
        forecast,
        ev.n,
    )


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` was most likely meant to be: a prefix either way (``acc`` and
    ``accuracy``), else the closest spelling."""
    pool = sorted(set(candidates))
    prefixed = [c for c in pool if c.startswith(word) or word.startswith(c)]
    if prefixed:
        return prefixed[0]
    found = difflib.get_close_matches(word, pool, n=1, cutoff=0.75)
    return found[0] if found else None


def policy_safeguard(policy: Policy, safeguard: str, field: str) -> SafeguardStandard:
    """The safeguard standard ``safeguard`` of ``policy``; one that the policy does not define is
    refused naming ``field``, with the nearest id the policy does define, else its ids."""
    try:
        return policy.safeguard(safeguard)
    except KeyError:
        pass
    known = [s.id for s in policy.safeguard_standards]
    guess = closest(safeguard, known)
    if guess is not None:
        hint = f"did you mean {guess!r}?"
    else:
        hint = f"choose one of {', '.join(known)}" if known else "define it in the policy first"
    raise UserError(
        Problem(f"policy {policy.id} has no safeguard {safeguard!r}; {hint}", field=field)
    )


def near_miss(evaluation: str, metric: str, model: str, evidence: Sequence[Evidence]) -> str:
    """What the model's evidence holds instead, when a binding found none: the same evaluation
    under other metric names, or a near spelling of the evaluation id; with the fix."""
    mine = [e for e in evidence if e.kind == "evaluation" and e.model in (model, "*")]
    metrics = sorted({e.metric for e in mine if e.subject == evaluation})
    if metrics:
        note = f"; its evidence for {evaluation} has metric {', '.join(metrics)}"
        guess = closest(metric, metrics)
        if guess is not None:
            note += (
                f" (did you mean {guess}? bind `metric: {guess}` in the policy, or record the "
                f"evidence under the name {metric})"
            )
        return note
    guess = closest(evaluation, (e.subject for e in mine))
    if guess is not None:
        return (
            f"; it has evidence for {guess!r} (did you mean {evaluation}? import it with "
            f"--evaluation-id {evaluation})"
        )
    return ""


def _forecast_note(forecast: Evidence | None, fired: bool, binding: EvaluationBinding) -> str:
    if forecast is None:
        return ""
    verb = "passes" if fired else "stays short of"
    return (
        f"; forecast at the next scale-up {_fmt_ev(forecast)} {verb} the alert line {binding.alert}"
    )


def evaluate_threshold(
    threshold: CapabilityThreshold,
    policy: Policy,
    model: str,
    evidence: Sequence[Evidence],
    as_of: datetime,
    ruled_out_by: str | None = None,
) -> ThresholdStatus:
    """Status of one threshold: the least favourable of its bindings (all must be below)."""
    results = [evaluate_binding(b, policy, model, evidence, as_of) for b in threshold.evaluations]
    reasons = [r.reason for r in results]
    alert = any(r.alert for r in results)
    if not results:
        status = "no_evidence"
        reasons.append("no evaluation is bound to this threshold, so it cannot be ruled out")
    else:
        worst = max(results, key=lambda r: (_STATE_RANK[r.status], r.status == "no_evidence"))
        status = worst.status
    if ruled_out_by is not None and status != "crossed":
        reasons.append(f"ruled out because checkpoint {ruled_out_by} is below")
        status = "below"
    rule = threshold.cannot_rule_out or policy.decision_rules.cannot_rule_out
    treated = status == "crossed" or (
        status in ("cannot_rule_out", "no_evidence") and rule == "treat_as_crossed"
    )
    if status in ("cannot_rule_out", "no_evidence"):
        reasons.append(
            {
                "treat_as_crossed": "the policy treats a threshold it cannot rule out as crossed",
                "treat_as_below": "the policy does not treat this as crossed",
                "escalate": "the policy escalates this to the decision-makers",
            }[rule]
        )
    primary = results[0] if results else None
    forecast = primary.forecast if primary else None
    return ThresholdStatus(
        id=threshold.id,
        status=status,  # type: ignore[arg-type]
        treated_as_crossed=treated,
        alert=alert,
        reasons=reasons,
        evidence_ids=[
            i for r in results for i in (r.evidence_id, r.forecast.id if r.forecast else None) if i
        ],
        metric=primary.value if primary else None,
        interval=primary.interval if primary else None,
        n=primary.n if primary else None,
        forecast=forecast.value if forecast else None,
        forecast_interval=forecast.interval if forecast else None,
    )


def safeguard_test_passes(ev: Evidence) -> bool:
    """Whether a safeguard test meets its bound: ``at_least`` judged on the interval's lower
    bound, ``at_most`` on its upper bound (on the value when there is no interval)."""
    lo, hi = _bounds(ev)
    at_least, at_most = ev.details.get("at_least"), ev.details.get("at_most")
    if at_least is None and at_most is None:
        return bool(ev.details.get("passed", False))
    ok = True
    if at_least is not None:
        ok = ok and lo >= float(at_least)
    if at_most is not None:
        ok = ok and hi <= float(at_most)
    return ok


def _latest_for(
    evidence: Sequence[Evidence],
    model: str,
    subject: str,
    kinds: Sequence[str],
    criterion: str | None,
) -> Evidence | None:
    """The most recent evidence of ``kinds`` about ``subject`` and ``criterion`` (None: the
    standard as a whole)."""
    best: Evidence | None = None
    for ev in evidence:
        if ev.subject != subject or ev.kind not in kinds or ev.model not in (model, "*"):
            continue
        if ev.details.get("criterion") != criterion:
            continue
        if best is None or (ev.created, ev.id) > (best.created, best.id):
            best = ev
    return best


def _describe(ev: Evidence) -> str:
    if ev.kind == "safeguard_test":
        bound = " and ".join(
            f"{word} {ev.details[key]:g}"
            for key, word in (("at_least", "at least"), ("at_most", "at most"))
            if ev.details.get(key) is not None
        )
        return f"safeguard test {_fmt_ev(ev)} (needs {bound or 'a pass'})"
    said = f": {ev.elicitation}" if ev.elicitation else ""
    return f"attestation {ev.id}{said}"


def safeguard_met(
    policy: Policy, sid: str, model: str, evidence: Sequence[Evidence], as_of: datetime
) -> tuple[bool, str, list[str]]:
    """Whether safeguard ``sid`` is met, directly or via a stronger standard that includes it;
    returns (met, reason, evidence ids).

    A standard is met by an attestation of the whole standard, or criterion by criterion by
    attestations and safeguard tests naming each criterion (``details["criterion"]``), none
    lapsed. A failing safeguard test or a negative attestation (of the standard or of one of
    its criteria) means not met, whatever else is on record.
    """
    stronger = [s.id for s in policy.safeguard_standards if sid in _included(policy, s.id)]
    gap: tuple[bool, str, list[str]] | None = None
    for candidate in [sid, *stronger]:
        std = policy.safeguard(candidate)

        def lapsed(ev: Evidence, std: SafeguardStandard = std) -> bool:
            interval = std.reapproval_interval
            return interval is not None and interval.add_to(ev.created) < as_of

        whole = _latest_for(evidence, model, candidate, ("attestation",), None)
        per = {
            c.id: _latest_for(evidence, model, candidate, ("attestation", "safeguard_test"), c.id)
            for c in std.criteria
        }
        found = [e for e in (whole, *per.values()) if e is not None]
        if not found:
            continue
        ids = [e.id for e in found]
        for cid, ev in per.items():
            if ev is None or lapsed(ev):
                continue
            ok = safeguard_test_passes(ev) if ev.kind == "safeguard_test" else ev.value >= 1
            if not ok:
                return False, f"{candidate} / {cid}: {_describe(ev)} does not meet it", ids
        via = "" if candidate == sid else f" (via {candidate}, which includes it)"
        if whole is not None:
            said = f": {whole.elicitation}" if whole.elicitation else ""
            if whole.value < 1:
                return (
                    False,
                    f"attestation {whole.id} for {candidate} says it is not met{said}",
                    [whole.id],
                )
            if lapsed(whole):
                return (
                    False,
                    (
                        f"attestation {whole.id} for {candidate} from {whole.created:%Y-%m-%d} "
                        f"lapsed (re-approval every {std.reapproval_interval})"
                    ),
                    [whole.id],
                )
            return True, f"attested by {whole.id}{via}{said}", ids
        gaps = [cid for cid, ev in per.items() if ev is None or lapsed(ev)]
        if not gaps:
            met = "; ".join(f"{cid}: {_describe(ev)}" for cid, ev in per.items() if ev)
            return True, f"every criterion of {candidate} is met{via}: {met}", ids
        gap = gap or (
            False,
            f"{candidate}: no unlapsed evidence yet for criteria {', '.join(gaps)}",
            ids,
        )
    return gap or (False, "no attestation that it is in place", [])


def missing_evaluations(
    policy: Policy,
    model: str,
    evidence: Sequence[Evidence],
    as_of: datetime,
    ruled_out: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[str]:
    """The evaluations bound to the policy's thresholds that lack fresh evidence for ``model``.

    Thresholds ruled out by a checkpoint that is below need nothing more. An assessment with
    anything missing is partial (see :attr:`Determination.scope`).
    """
    out: list[str] = []
    for t in policy.capability_thresholds:
        if t.id in ruled_out:
            continue
        for b in t.evaluations:
            r = evaluate_binding(b, policy, model, evidence, as_of)
            if r.status == "no_evidence" and b.evaluation not in out:
                out.append(b.evaluation)
    return out


def _included(policy: Policy, sid: str) -> set[str]:
    """Every standard that meeting ``sid`` also meets (transitively), ``sid`` excluded."""
    out: set[str] = set()
    stack = list(policy.safeguard(sid).includes)
    while stack:
        cur = stack.pop()
        if cur not in out:
            out.add(cur)
            stack.extend(policy.safeguard(cur).includes)
    return out


def determine(
    policy: Policy,
    model: str,
    evidence: Sequence[Evidence],
    *,
    as_of: datetime,
    policy_sha256: str,
) -> Determination:
    """Apply the policy's determination rule to ``model``'s evidence as of ``as_of``.

    ``evidence`` may hold evaluation, forecast and attestation records for any model; only
    those for ``model`` (and organisation-wide ones, ``model == "*"``) created at or before
    ``as_of`` count. The result depends on nothing else, so the same inputs always give the
    same determination, id included.
    """
    usable = sorted(
        (e for e in evidence if e.model in (model, "*") and e.created <= as_of),
        key=lambda e: (e.created, e.id),
    )
    # Checkpoints first: a checkpoint that is below rules out the thresholds it names.
    checkpoint_status: dict[str, ThresholdStatus] = {}
    for t in policy.capability_thresholds:
        if t.kind == "checkpoint":
            checkpoint_status[t.id] = evaluate_threshold(t, policy, model, usable, as_of)
    ruled_out: dict[str, str] = {}
    for t in policy.capability_thresholds:
        st = checkpoint_status.get(t.id)
        if st is not None and st.status == "below":
            for other in t.rules_out:
                ruled_out.setdefault(other, t.id)
    statuses = [
        checkpoint_status.get(t.id)
        or evaluate_threshold(t, policy, model, usable, as_of, ruled_out.get(t.id))
        for t in policy.capability_thresholds
    ]

    rules = policy.decision_rules
    actions: list[str] = []
    reasons: list[str] = []
    crossed = [s for s in statuses if s.treated_as_crossed]
    for s in statuses:
        t = policy.threshold(s.id)
        if s.alert:
            actions += rules.alert
            reasons.append(f"{s.id}: early-warning alert")
        rule = t.cannot_rule_out or rules.cannot_rule_out
        if s.status in ("cannot_rule_out", "no_evidence") and rule == "escalate":
            actions += rules.escalate
            reasons.append(f"{s.id}: cannot be ruled out; escalated to the decision-makers")
        if s.treated_as_crossed:
            actions += t.on_reach
            word = (
                "crossed"
                if s.status == "crossed"
                else f"treated as crossed ({s.status.replace('_', ' ')})"
            )
            reasons.append(f"{s.id}: {word}")

    # Required safeguards: baseline plus the union over thresholds treated as crossed.
    required: dict[str, list[str]] = {sid: ["baseline"] for sid in policy.baseline_safeguards}
    groups: dict[tuple[str, ...], list[str]] = {}
    for s in crossed:
        req = policy.threshold(s.id).required_safeguards
        for sid in req.all_of:
            required.setdefault(sid, []).append(s.id)
        for group in req.any_of:
            groups.setdefault(tuple(group), []).append(s.id)
    safeguards: list[SafeguardStatus] = []
    for sid, by in required.items():
        met, why, ids = safeguard_met(policy, sid, model, usable, as_of)
        safeguards.append(
            SafeguardStatus(id=sid, required_by=by, met=met, reasons=[why], evidence_ids=ids)
        )
    for members, by in groups.items():
        checks = [safeguard_met(policy, sid, model, usable, as_of) for sid in members]
        met = any(c[0] for c in checks)
        safeguards.append(
            SafeguardStatus(
                id=" | ".join(members),
                required_by=by,
                met=met,
                reasons=[f"{sid}: {c[1]}" for sid, c in zip(members, checks, strict=True)],
                evidence_ids=[i for c in checks for i in c[2]],
            )
        )
    unmet = [g for g in safeguards if not g.met]
    if crossed or unmet:
        if unmet:
            actions += rules.crossed_safeguards_unmet
            reasons.append("required safeguards not met: " + ", ".join(g.id for g in unmet))
        else:
            actions += rules.crossed_safeguards_met
            reasons.append("every required safeguard is met")
    else:
        actions += rules.below
        if not reasons:
            reasons.append("every threshold is ruled out and every baseline safeguard is met")

    used = {i for s in statuses for i in s.evidence_ids}
    used |= {i for g in safeguards for i in g.evidence_ids}
    degenerate = [
        f"{e.id} ({bad})" for e in usable if e.id in used and (bad := degenerate_reason(e))
    ]
    if degenerate:
        reasons.append(
            "this determination rests on degenerate evidence, whose answers do not depend on "
            "the input: " + "; ".join(degenerate)
        )

    missing = missing_evaluations(policy, model, usable, as_of, set(ruled_out))
    if missing:
        reasons.append(
            "partial assessment: no fresh evidence for "
            + ", ".join(missing)
            + "; it does not count as a comprehensive assessment (compute triggers are not reset)"
        )
    ordered = sorted(set(actions), key=lambda a: -OUTCOME_SEVERITY[a])
    ident = sha256_hex(
        canonical_json(
            {
                "model": model,
                "policy": policy_sha256,
                "as_of": as_of.isoformat(),
                "evidence": [e.sha256() for e in usable],
            }
        )
    )[:16]
    return Determination(
        id=f"det-{ident}",
        model=model,
        policy_id=policy.id,
        policy_version=policy.version,
        policy_sha256=policy_sha256,
        as_of=as_of,
        thresholds=statuses,
        safeguards=safeguards,
        outcome=ordered[0],
        actions=ordered,
        reasons=reasons,
        created=as_of,
        scope="partial" if missing else "comprehensive",
        missing=missing,
    )
