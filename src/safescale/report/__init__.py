"""Capability and Safeguards Reports rendered from ledger records (Markdown, HTML)."""

from safescale.report import _audit, _redteam  # noqa: F401  (register their sections)
from safescale.report._content import (
    SECTIONS,
    Figure,
    ReportDocument,
    ReportInput,
    TriggerLine,
    build_report,
)
from safescale.report._ledger import (
    latest_determination,
    policy_for,
    report_input,
)
from safescale.report._render import RENDERERS, render, render_html, render_markdown

__all__ = [
    "RENDERERS",
    "SECTIONS",
    "Figure",
    "ReportDocument",
    "ReportInput",
    "TriggerLine",
    "build_report",
    "latest_determination",
    "policy_for",
    "render",
    "render_html",
    "render_markdown",
    "report_input",
]
