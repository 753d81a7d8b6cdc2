"""The Capability Report's interpretability-audit section (``safescale audit`` evidence).

The rows come from :func:`safescale.interp.audit_section`, imported only when the model has
``interpretability`` evidence: the report room itself needs no machine-learning packages, and a
core-only install that reads such a ledger says what to install instead of failing.
"""

from __future__ import annotations

from safescale.report._content import SECTIONS, ReportInput, Row, Section, Table


@SECTIONS.register("075-audit")
def audit_report_section(data: ReportInput) -> Section | None:
    """White-box audit checks of the determination's model, with their intervals."""
    model = data.determination.model
    evidence = [e for e in data.evidence if e.kind == "interpretability" and e.model == model]
    if not evidence:
        return None
    try:
        from safescale.interp import audit_section
    except ImportError:
        return Section(
            "Interpretability audit",
            paragraphs=(
                f"{len(evidence)} interpretability evidence records are listed in the evidence "
                "appendix; install safescale[interp] to render them as an audit table.",
            ),
        )
    section = audit_section(evidence)
    if section is None:
        return None
    return Section(
        section.title,
        paragraphs=section.paragraphs,
        tables=(Table("Audit checks", section.header, tuple(Row(r) for r in section.rows)),),
    )
