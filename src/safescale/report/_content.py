"""What a report says, independent of how it is rendered.

A report is built from records only (policy, determination, model records, evidence), so that
anyone holding a ledger export can rebuild it. The Markdown and HTML renderers walk the same
:class:`ReportDocument`, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from safescale._registry import Registry
from safescale.policy import (
    Determination,
    Evidence,
    ModelRecord,
    Policy,
    safeguard_test_passes,
)


@dataclass(frozen=True)
class Figure:
    """A figure to embed: PNG bytes and a caption."""

    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class TriggerLine:
    """One assessment trigger as evaluated for the model (from the compute room)."""

    trigger: str
    fired: bool
    detail: str


@dataclass(frozen=True)
class ReportInput:
    """Everything a Capability and Safeguards Report is made from."""

    policy: Policy
    determination: Determination
    lineage: Sequence[ModelRecord]
    """The model and its ancestors, oldest first."""
    evidence: Sequence[Evidence]
    """Every evidence record the determination cites (and any others worth listing)."""
    previous: Determination | None = None
    """The last determination for this model or its lineage, for "what changed"."""
    figures: Sequence[Figure] = ()
    triggers: Sequence[TriggerLine] = ()
    ledger_head: str | None = None
    """Hash of the ledger entry this report was built at, so a reader can check it."""
    notes: Sequence[str] = field(default_factory=tuple)
    """Extra limitations or context from the producer (the demo says it runs on the lab)."""


@dataclass(frozen=True)
class Row:
    """A table row: cells as text plus an optional style class for the status cell."""

    cells: tuple[str, ...]
    tone: str = ""
    """ok | warn | bad | '' (renderers colour the row's status)."""


@dataclass(frozen=True)
class Table:
    """A titled table."""

    title: str
    header: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Section:
    """A titled section: paragraphs, bullet lists, tables and figures, in that order."""

    title: str
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class ReportDocument:
    """A rendered-neutral report: title, headline and sections."""

    title: str
    subtitle: str
    outcome: str
    outcome_tone: str
    headline: tuple[str, ...]
    sections: tuple[Section, ...]


STATUS_WORDS = {
    "below": "ruled out",
    "cannot_rule_out": "cannot rule out",
    "crossed": "crossed",
    "no_evidence": "no evidence",
}


def _tone_for_outcome(outcome: str) -> str:
    from safescale.policy import OUTCOME_SEVERITY

    rank = OUTCOME_SEVERITY.get(outcome, 0)
    if rank <= OUTCOME_SEVERITY["continue"]:
        return "ok"
    if rank <= OUTCOME_SEVERITY["intensify_evaluation"]:
        return "warn"
    return "bad"


def _uncertainty_rule(rule: str) -> str:
    return {
        "treat_as_crossed": "treats as crossed.",
        "treat_as_below": "does not treat as crossed.",
        "escalate": "escalates to its decision-makers.",
    }[rule]


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _flop(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _safeguard_evidence_row(e: Evidence) -> Row:
    """One attestation or safeguard test: who, what, against which criterion, what it backs."""
    crit = e.details.get("criterion") or "(whole standard)"
    by = str(e.details.get("by") or e.producer)
    if e.kind == "attestation":
        ok = e.value >= 1
        what, result = (e.elicitation or "-"), ("in place" if ok else "NOT in place")
    else:
        ok = safeguard_test_passes(e)
        bound = " and ".join(
            f"{word} {e.details[key]:g}"
            for key, word in (("at_least", ">="), ("at_most", "<="))
            if e.details.get(key) is not None
        )
        what = f"{e.metric} {_num(e.value)} {_interval(e)}, n={e.n}"
        result = f"{'meets' if ok else 'FAILS'} {bound}".strip()
    arts = ", ".join(f"{k}: sha256 {v}" for k, v in sorted(e.artifacts.items())) or "-"
    return Row((e.id, f"{e.subject} / {crit}", by, what, result, arts), "ok" if ok else "bad")


def _interval(ev: Evidence | None) -> str:
    if ev is None or ev.interval is None:
        return "-"
    return f"[{ev.interval.lo:.3g}, {ev.interval.hi:.3g}]"


SectionBuilder = Callable[[ReportInput], Section | None]

SECTIONS: Registry[SectionBuilder] = Registry("report_sections")
"""Report sections in order: each builds one :class:`Section` from the input (or None to leave
it out). Names sort into the report's order (``050-safeguards``); an outside package adds a
section through the entry-point group ``safescale.report_sections`` with a name that sorts
where it belongs. Adding a section touches no other."""


def build_report(data: ReportInput) -> ReportDocument:
    """Lay out the Capability Report and the Safeguards Report for one determination."""
    p, det = data.policy, data.determination
    outcome_words = ", ".join(a.replace("_", " ") for a in det.actions)
    headline = (
        f"Outcome: {det.outcome.replace('_', ' ')} (all actions called for: {outcome_words}).",
        *det.reasons,
    )
    sections = []
    for name in SECTIONS.names():
        section = SECTIONS.get(name)(data)
        if section is not None:
            sections.append(section)
    return ReportDocument(
        title=f"Capability and Safeguards Report: {det.model}",
        subtitle=f"{p.framework.name} {p.version} ({p.framework.developer}) - {det.as_of:%Y-%m-%d}",
        outcome=det.outcome,
        outcome_tone=_tone_for_outcome(det.outcome),
        headline=headline,
        sections=tuple(sections),
    )


def _threshold_word(p: Policy) -> str:
    return p.framework.terminology.get("threshold", "capability threshold")


@SECTIONS.register("010-capability")
def capability_section(data: ReportInput) -> Section:
    """The thresholds: metric, interval, n, lines, status, forecast."""
    p, det = data.policy, data.determination
    by_id = {e.id: e for e in data.evidence}
    threshold_word = _threshold_word(p)
    rows = []
    for st in det.thresholds:
        t = p.threshold(st.id)
        binding = t.evaluations[0] if t.evaluations else None
        ev = next(
            (by_id[i] for i in st.evidence_ids if i in by_id and by_id[i].kind == "evaluation"),
            None,
        )
        fc = next(
            (by_id[i] for i in st.evidence_ids if i in by_id and by_id[i].kind == "forecast"), None
        )
        lines = "-"
        if binding is not None:
            lines = f"{binding.rule_out:g} / {_num(binding.alert)} / {_num(binding.threshold)}"
        status = STATUS_WORDS[st.status] + (" + alert" if st.alert else "")
        if st.treated_as_crossed:
            tone = "bad"
        elif st.alert or st.status != "below":
            tone = "warn"
        else:
            tone = "ok"
        rows.append(
            Row(
                (
                    st.id,
                    binding.evaluation if binding else "-",
                    _num(st.metric),
                    _interval(ev),
                    str(ev.n) if ev and ev.n is not None else "-",
                    lines,
                    status,
                    "yes" if st.treated_as_crossed else "no",
                    f"{_num(st.forecast)} {_interval(fc)}" if fc else "-",
                ),
                tone,
            )
        )
    threshold_table = Table(
        f"{threshold_word}s",
        (
            "threshold",
            "evaluation",
            "value",
            "95% interval",
            "n",
            "rule-out / alert / threshold",
            "status",
            "treated as crossed",
            f"forecast at {p.planned_scale_up:g}x",
        ),
        tuple(rows),
    )
    return Section(
        f"Capability Report: {det.model}",
        paragraphs=(
            f"Determination {det.id} under {p.framework.name} {p.version} "
            f"({p.framework.developer}; policy sha256 {det.policy_sha256[:16]}...), as of "
            f"{det.as_of:%Y-%m-%d %H:%M} UTC. Rule: a {threshold_word.lower()} is ruled out only "
            "if the interval's bound clears the rule-out line, crossed if it lies past the "
            "threshold line; otherwise it cannot be ruled out, which this policy "
            + _uncertainty_rule(p.decision_rules.cannot_rule_out),
            *(
                ()
                if det.scope == "comprehensive"
                else (
                    "This is a partial assessment: no fresh evidence for "
                    + ", ".join(det.missing)
                    + ". It does not count as a comprehensive assessment, so the policy's "
                    "compute triggers are not reset by it.",
                )
            ),
        ),
        tables=(threshold_table,),
        figures=tuple(data.figures),
    )


@SECTIONS.register("020-reasons")
def reasons_section(data: ReportInput) -> Section:
    """Each threshold's reasons, in words."""
    p, det = data.policy, data.determination
    detail_bullets = []
    for st in det.thresholds:
        t = p.threshold(st.id)
        detail_bullets.append(f"{st.id} ({t.name}; {t.kind}): " + "; ".join(st.reasons) + ".")
    return Section("Reasons, threshold by threshold", bullets=tuple(detail_bullets))


@SECTIONS.register("030-compute")
def compute_section(data: ReportInput) -> Section:
    """Lineage, training compute and assessment triggers."""
    cumulative = 0.0
    lineage_rows = []
    for m in data.lineage:
        cumulative += m.flops
        unc = f" ± {m.flops_rel_uncertainty:.0%}" if m.flops_rel_uncertainty else ""
        lineage_rows.append(
            Row(
                (
                    m.id,
                    m.stage,
                    _flop(m.params),
                    _flop(m.tokens),
                    _flop(m.flops) + unc,
                    m.flops_method,
                    _flop(cumulative),
                    _flop(cumulative * m.effective_multiplier),
                    "yes" if m.assessed else "no",
                )
            )
        )
    lineage_table = Table(
        "Lineage and training compute",
        (
            "model",
            "stage",
            "parameters",
            "tokens",
            "FLOP",
            "method",
            "cumulative FLOP",
            "effective compute",
            "assessed",
        ),
        tuple(lineage_rows),
    )
    trigger_table = Table(
        "Assessment triggers",
        ("trigger", "fired", "detail"),
        tuple(
            Row((t.trigger, "yes" if t.fired else "no", t.detail), "warn" if t.fired else "")
            for t in data.triggers
        ),
    )
    return Section(
        "Model lineage and compute",
        tables=(lineage_table, trigger_table) if data.triggers else (lineage_table,),
    )


@SECTIONS.register("040-changes")
def changes_section(data: ReportInput) -> Section:
    """What changed since the previous determination."""
    det = data.determination
    changes: list[str] = []
    if data.previous is None:
        changes.append("First assessment recorded for this model under this policy.")
    else:
        prev = {s.id: s for s in data.previous.thresholds}
        if data.previous.outcome != det.outcome:
            changes.append(f"Outcome: {data.previous.outcome} -> {det.outcome}.")
        for st in det.thresholds:
            old = prev.get(st.id)
            if old is None:
                changes.append(f"{st.id}: new threshold.")
            elif (old.status, old.alert) != (st.status, st.alert):
                changes.append(
                    f"{st.id}: {STATUS_WORDS[old.status]}"
                    f"{' + alert' if old.alert else ''} -> {STATUS_WORDS[st.status]}"
                    f"{' + alert' if st.alert else ''}."
                )
            elif old.metric is not None and st.metric is not None and old.metric != st.metric:
                changes.append(
                    f"{st.id}: metric {old.metric:.3g} -> {st.metric:.3g}, status unchanged."
                )
        if data.previous.policy_sha256 != det.policy_sha256:
            changes.append(
                "The policy changed since the previous determination "
                f"({data.previous.policy_version} -> {det.policy_version})."
            )
        if len(changes) == 0:
            changes.append(
                f"No change since determination {data.previous.id} "
                f"({data.previous.as_of:%Y-%m-%d})."
            )
    return Section("What changed since the last assessment", bullets=tuple(changes))


@SECTIONS.register("050-safeguards")
def safeguards_section(data: ReportInput) -> Section:
    """Required versus met safeguards, and the unmet-safeguards ladder."""
    p, det = data.policy, data.determination
    sg_rows = []
    for s in det.safeguards:
        names = []
        for sid in s.id.split(" | "):
            try:
                names.append(p.safeguard(sid).name)
            except KeyError:
                names.append(sid)
        sg_rows.append(
            Row(
                (
                    s.id,
                    " or ".join(names),
                    ", ".join(s.required_by),
                    "met" if s.met else "NOT MET",
                    "; ".join(s.reasons),
                ),
                "ok" if s.met else "bad",
            )
        )
    ladder = [
        f"{step.step.replace('_', ' ')}"
        + (f" (approved by {', '.join(step.approvers)})" if step.approvers else "")
        + (f": e.g. {'; '.join(step.examples)}" if step.examples else "")
        for step in p.unmet_safeguards.ladder
    ]
    unmet = [s.id for s in det.safeguards if not s.met]
    sg_cited = {i for s in det.safeguards for i in s.evidence_ids}
    sg_evidence = tuple(
        _safeguard_evidence_row(e)
        for e in sorted(data.evidence, key=lambda e: (e.subject, e.created, e.id))
        if e.id in sg_cited and e.kind in ("attestation", "safeguard_test")
    )
    return Section(
        "Safeguards Report",
        paragraphs=(
            (
                "Every required safeguard is met."
                if not unmet
                else f"Required safeguards not met: {', '.join(unmet)}. While they are unmet "
                "the policy calls for these steps, in order:"
            ),
        ),
        bullets=tuple(ladder if unmet else ()),
        tables=(
            Table(
                "Required versus met safeguards",
                ("safeguard", "standard", "required by", "status", "evidence"),
                tuple(sg_rows),
            ),
            *(
                (
                    Table(
                        "Attestations and safeguard tests",
                        ("evidence", "safeguard / criterion", "by", "what", "result", "artifacts"),
                        sg_evidence,
                    ),
                )
                if sg_evidence
                else ()
            ),
        ),
    )


@SECTIONS.register("015-certificates")
def certificates_section(data: ReportInput) -> Section | None:
    """The lab organism's certificate: the planted truth the model was shown to have."""
    prefix = "lab-certificate/"
    certs = [
        e
        for e in data.evidence
        if e.model == data.determination.model and e.subject.startswith(prefix)
    ]
    if not certs:
        return None
    rows = tuple(
        Row(
            (
                e.subject.removeprefix(prefix),
                str(e.details.get("claim", e.metric)),
                _num(e.value),
                _interval(e),
                str(e.n),
                "holds" if e.details.get("passed") else "FAILS",
            ),
            "ok" if e.details.get("passed") else "bad",
        )
        for e in sorted(certs, key=lambda e: (e.subject, e.metric))
    )
    ok = all(e.details.get("certificate_passed") for e in certs)
    return Section(
        "Model organism certificate",
        paragraphs=(
            "This is a lab model organism whose planted behaviour was measured against its "
            "written specification on held-out requests after training "
            + ("and holds" if ok else "and DOES NOT hold: nothing should rely on it")
            + ". The evaluations below are scored against that known truth.",
        ),
        tables=(
            Table(
                "Certified claims",
                ("organism", "claim", "value", "95% interval", "n", "status"),
                rows,
            ),
        ),
    )


@SECTIONS.register("060-criteria")
def criteria_section(data: ReportInput) -> Section:
    """Each required safeguard's criteria and the evidence they need."""
    p, det = data.policy, data.determination
    sg_bullets = []
    for s in det.safeguards:
        for sid in s.id.split(" | "):
            try:
                std = p.safeguard(sid)
            except KeyError:
                continue
            for c in std.criteria:
                sg_bullets.append(
                    f"{sid} / {c.id}: {c.text} (evidence: {', '.join(c.evidence) or 'unspecified'})"
                )
    return Section("Safeguard criteria and the evidence each needs", bullets=tuple(sg_bullets))


@SECTIONS.register("080-governance")
def governance_section(data: ReportInput) -> Section:
    """Who decides, and the sign-offs recorded."""
    p, det = data.policy, data.determination
    signoffs = [
        f"{s.role} ({s.identity}): {s.decision}" + (f": {s.text}" if s.text else "")
        for s in det.sign_offs
    ]
    decisions = [
        f"{d.id}: decided by {', '.join(d.decided_by)}"
        + (f"; notify {', '.join(d.notify)}" if d.notify else "")
        + (" before proceeding" if d.notify_before_proceeding else "")
        for d in p.decisions
        if d.about in ("capability", "safeguards")
    ]
    return Section(
        "Decision and sign-off",
        bullets=tuple(decisions)
        + (tuple(signoffs) if signoffs else ("No sign-off recorded yet (safescale assess sign).",)),
    )


@SECTIONS.register("090-evidence")
def evidence_section(data: ReportInput) -> Section:
    """The evidence the determination cites, with hashes."""
    det = data.determination
    cited = {i for st in det.thresholds for i in st.evidence_ids}
    cited |= {i for s in det.safeguards for i in s.evidence_ids}
    ev_rows = []
    for e in sorted(data.evidence, key=lambda e: (e.kind, e.subject, e.id)):
        if e.id not in cited:
            continue
        arts = ", ".join(f"{k}:{v[:12]}" for k, v in sorted(e.artifacts.items())) or "-"
        ev_rows.append(
            Row(
                (
                    e.id,
                    e.kind,
                    e.subject,
                    e.metric,
                    _num(e.value),
                    _interval(e),
                    str(e.n) if e.n is not None else "-",
                    f"{e.producer} {e.producer_version}".strip(),
                    arts,
                    f"{e.created:%Y-%m-%d %H:%M}",
                )
            )
        )
    return Section(
        "Evidence cited",
        tables=(
            Table(
                "Evidence",
                (
                    "id",
                    "kind",
                    "subject",
                    "metric",
                    "value",
                    "95% interval",
                    "n",
                    "producer",
                    "artifacts (sha256)",
                    "recorded",
                ),
                tuple(ev_rows),
            ),
        ),
        paragraphs=(
            f"Ledger head at rendering: {data.ledger_head}. Verify with `safescale ledger verify`."
            if data.ledger_head
            else "",
        ),
    )


@SECTIONS.register("100-limitations")
def limitations_section(data: ReportInput) -> Section:
    """What the numbers do not show."""
    limitations = (
        "Each interval is a 95% interval for the metric on the evaluation set used; it does not "
        "cover differences between the evaluation set and the capability it stands for.",
        "An evaluation measures the capability under the elicitation recorded with the evidence; "
        "stronger elicitation (fine-tuning, scaffolding, expert prompting) can only raise it, so "
        "a measured score is a lower bound on what a determined actor could draw out.",
        "Forecasts extrapolate a fitted trend to the next planned scale-up; their prediction "
        "intervals assume the trend holds and do not cover a change of regime (emergence, a "
        "new training method).",
        "Safeguards count as met only through attested evidence; an attestation records who "
        "vouched, not an independent audit.",
        *data.notes,
    )
    return Section("What these numbers do not show", bullets=limitations)
