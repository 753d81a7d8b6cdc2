"""Renderers for a :class:`ReportDocument`: Markdown, and one self-contained HTML file.

The HTML embeds its figures as base64 PNG and its style inline, so the single file can be
mailed, archived as a ledger artifact and printed; it loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable

from safescale._registry import Registry
from safescale.report._content import ReportDocument, Section, Table

RENDERERS: Registry[Callable[[ReportDocument], str]] = Registry("renderer")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> list[str]:
    out = [
        f"**{t.title}**",
        "",
        "| " + " | ".join(t.header) + " |",
        "|" + "|".join("---" for _ in t.header) + "|",
    ]
    out += ["| " + " | ".join(_md_cell(c) for c in r.cells) + " |" for r in t.rows]
    return [*out, ""]


@RENDERERS.register("md")
def render_markdown(doc: ReportDocument) -> str:
    """The report as GitHub-flavoured Markdown (figures are referenced by title only)."""
    out = [
        f"# {doc.title}",
        "",
        f"_{doc.subtitle}_",
        "",
        f"**Outcome: {doc.outcome.replace('_', ' ').upper()}**",
        "",
    ]
    out += [f"- {line}" for line in doc.headline] + [""]
    for s in doc.sections:
        out += [f"## {s.title}", ""]
        out += [p for para in s.paragraphs if para for p in (para, "")]
        out += [f"- {b}" for b in s.bullets] + ([""] if s.bullets else [])
        for t in s.tables:
            out += _md_table(t)
        for f in s.figures:
            out += [f"_Figure: {f.title}._ {f.caption}", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
:root { --ok:#1b7f3b; --warn:#b26a00; --bad:#b3261e; --ink:#1d1d1f; --mute:#5f6368; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; border-bottom: 2px solid #e3e3e3; padding-bottom: 4px; margin-top: 36px; }
.subtitle { color: var(--mute); margin: 0 0 16px; }
.outcome { display: inline-block; padding: 6px 14px; border-radius: 6px; color: #fff;
           font-weight: 700; letter-spacing: .03em; text-transform: uppercase; }
.outcome.ok { background: var(--ok); } .outcome.warn { background: var(--warn); }
.outcome.bad { background: var(--bad); }
table { border-collapse: collapse; width: 100%; margin: 8px 0 18px; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #d9d9d9; padding: 5px 7px; vertical-align: top; text-align: left; }
th { background: #f4f5f7; }
tr.ok td:first-child { border-left: 4px solid var(--ok); }
tr.warn td:first-child { border-left: 4px solid var(--warn); }
tr.bad td:first-child { border-left: 4px solid var(--bad); }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; border: 1px solid #e3e3e3; }
figcaption { color: var(--mute); font-size: 13px; }
ul { padding-left: 22px; } li { margin: 3px 0; }
code { background: #f4f5f7; padding: 1px 4px; border-radius: 3px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  h2 { break-after: avoid; } table, figure { break-inside: avoid; }
  .outcome { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t.header)
    body = "".join(
        f'<tr class="{r.tone}">' + "".join(f"<td>{_e(c)}</td>" for c in r.cells) + "</tr>"
        for r in t.rows
    )
    return (
        f"<table><caption>{_e(t.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _html_section(s: Section) -> str:
    parts = [f"<section><h2>{_e(s.title)}</h2>"]
    parts += [f"<p>{_e(p)}</p>" for p in s.paragraphs if p]
    if s.bullets:
        parts.append("<ul>" + "".join(f"<li>{_e(b)}</li>" for b in s.bullets) + "</ul>")
    parts += [_html_table(t) for t in s.tables]
    for f in s.figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(
            f'<figure><img alt="{_e(f.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{_e(f.title)}.</b> {_e(f.caption)}</figcaption></figure>"
        )
    parts.append("</section>")
    return "".join(parts)


@RENDERERS.register("html")
def render_html(doc: ReportDocument) -> str:
    """The report as one self-contained, printable HTML page."""
    headline = "".join(f"<li>{_e(line)}</li>" for line in doc.headline)
    sections = "".join(_html_section(s) for s in doc.sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(doc.title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{_e(doc.title)}</h1><p class="subtitle">{_e(doc.subtitle)}</p>'
        f'<div class="outcome {doc.outcome_tone}" id="outcome">'
        f"{_e(doc.outcome.replace('_', ' '))}</div><ul>{headline}</ul></header>"
        f"{sections}</body></html>\n"
    )


def render(doc: ReportDocument, fmt: str) -> str:
    """Render with the renderer registered as ``fmt`` (``md`` or ``html``, or a plugin's)."""
    return RENDERERS.get(fmt)(doc)
