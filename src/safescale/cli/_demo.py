"""``safescale demo``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safescale.cli._assess import show_assessment
from safescale.cli._common import console, print_prose


def demo(
    preset: Annotated[str, typer.Option(help="Ladder preset: smoke, demo or full (GPU).")] = "demo",
    out: Annotated[Path, typer.Option(help="Folder for the workspace, models and reports.")] = Path(
        "safescale-demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the world, training and forecasts.")] = 0,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate only the first N samples of each suite.")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 only where it measures faster here), bf16 or fp32.")
    ] = "auto",
) -> None:
    """Run the whole loop on the lab: train, record, evaluate, forecast, assess, report, verify."""
    from safescale._input import check_seed
    from safescale.cli._common import check_output_folder
    from safescale.cli._lab import _precision
    from safescale.demo import DEMO_POLICY, run_demo
    from safescale.policy import load_builtin

    check_seed(seed)
    check_output_folder(out, "--out")
    result = run_demo(
        preset,
        out,
        seed=seed,
        limit=limit,
        precision=_precision(precision),
        say=print_prose,
    )
    console.print()
    show_assessment(load_builtin(DEMO_POLICY), result.assessment)
    console.print()
    show_assessment(load_builtin(DEMO_POLICY), result.organism)
    console.print()
    console.print("What this run shows (from its certificates and evidence):")
    for line in result.story:
        print_prose(line, bullet="- ")
    console.print()
    console.print(f"ledger verified: {'ok' if result.verified else 'FAILED'}")
    console.print(f"report: {result.report_html.resolve()}", markup=False, soft_wrap=True)
    console.print(f"        {result.report_md.resolve()}", markup=False, soft_wrap=True)
    console.print(
        f"model organism: {result.organism_report.resolve()}", markup=False, soft_wrap=True
    )
    console.print(f"done in {result.seconds:.0f} s")
    if not result.verified:
        raise typer.Exit(1)
