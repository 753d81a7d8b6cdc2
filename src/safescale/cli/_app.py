"""The root of the ``safescale`` command: global options, sub-command groups, error handling."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from safescale import __version__
from safescale._errors import UserError
from safescale.cli import (
    _assess,
    _compute,
    _demo,
    _eval,
    _interp,
    _lab,
    _ledger,
    _policy,
    _report,
    _scaling,
)
from safescale.cli._common import OPTIONS, err_console

app = typer.Typer(
    name="safescale",
    help="Responsible scaling as software: policies, compute, forecasts, evaluations, ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(_policy.app, name="policy")
app.command("init")(_ledger.init)
app.add_typer(_compute.app, name="compute")
app.add_typer(_ledger.app, name="ledger")
app.add_typer(_scaling.app, name="scaling")
app.add_typer(_lab.app, name="lab")
app.add_typer(_eval.app, name="eval")
app.command("serve-model")(_eval.serve_model)
app.add_typer(_interp.app, name="interp")
app.command("audit")(_interp.audit)
app.add_typer(_assess.app, name="assess")
app.command("report")(_report.report)
app.command("demo")(_demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"safescale {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", help="Workspace folder (default: $SAFESCALE_HOME or ./.safescale)."
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for every error.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    OPTIONS.workspace = workspace
    OPTIONS.debug = debug


def main(argv: list[str] | None = None) -> int:
    """Run the command; user errors print one line per problem and exit with status 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except UserError as exc:
        if OPTIONS.debug:
            raise
        for problem in exc.problems:
            err_console.print(f"error: {problem}", markup=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except SystemExit as exc:  # click's usage errors arrive here in standalone_mode=False
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if OPTIONS.debug:
            raise
        raise
    # click returns the exit code of a ``typer.Exit`` raised inside a command.
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
