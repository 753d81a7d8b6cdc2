"""``safescale report``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safescale._errors import UserError
from safescale._input import check_optional_id, quote
from safescale._io import atomic_write_text
from safescale.cli._common import check_output, console, workspace_path
from safescale.ledger import Workspace
from safescale.report import RENDERERS, build_report, render, report_input


def report(
    model: Annotated[
        str | None, typer.Option(help="Model to report on (default: the latest determination).")
    ] = None,
    determination: Annotated[
        str | None, typer.Option(help="A determination id (default: the latest).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md or html.")] = "html",
    out: Annotated[
        Path | None, typer.Option(help="Write the report here (default: print it).")
    ] = None,
) -> None:
    """Render the Capability and Safeguards Report of a determination from the ledger."""
    if fmt not in RENDERERS:
        raise UserError(
            f"--format: {quote(fmt)} is not a format; choose one of {', '.join(RENDERERS.names())}"
        )
    if out is not None:
        check_output(out, "--out")
    check_optional_id(model, "--model", what="model id")
    check_optional_id(determination, "--determination", what="determination id")
    with Workspace.open(workspace_path()) as ws:
        text = render(
            build_report(report_input(ws, model=model, determination_id=determination)), fmt
        )
        if out is None:
            typer.echo(text, nl=False)
            return
        atomic_write_text(out, text)
        sha = ws.add_artifact(out)
    console.print(f"wrote {out} (artifact {sha[:16]}...)", markup=False)
