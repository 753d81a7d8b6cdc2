"""The root of the ``safescale`` command: global options, sub-command groups, error handling."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from safescale import __version__
from safescale._errors import Problem, UserError
from safescale._input import QUOTE_LEN, not_utf8, one_line
from safescale.cli import (
    _assess,
    _classifier,
    _compute,
    _constitution,
    _demo,
    _eval,
    _interp,
    _lab,
    _ledger,
    _policy,
    _redteam,
    _report,
    _safeguard,
    _scaling,
)
from safescale.cli._common import OPTIONS, err_console


def _usage_errors() -> tuple[type[Exception], ...]:
    """Usage errors (unknown command or option, bad or missing value) as typer raises them.

    typer 0.24+ raises its own vendored click classes, all ``typer.TyperException``; older
    typer raises plain click's ``ClickException``. Both are caught, whichever is installed.
    """
    found: list[type[Exception]] = [typer.TyperException]
    try:
        import click
    except ImportError:  # typer no longer depends on click
        pass
    else:
        found.append(click.ClickException)
    return tuple(found)


_CLICK_ERRORS = _usage_errors()

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
app.add_typer(_redteam.app, name="redteam")
app.add_typer(_constitution.app, name="constitution")
_constitution.app.command("train")(_classifier.train)
_constitution.app.command("measure")(_classifier.measure)
app.command("serve-model")(_eval.serve_model)
app.add_typer(_interp.app, name="interp")
app.command("audit")(_interp.audit)
app.add_typer(_assess.app, name="assess")
app.command("attest")(_safeguard.attest)
app.add_typer(_safeguard.app, name="safeguard")
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


GLOBAL_OPTIONS = ("--workspace", "-w", "--debug", "--version")
"""Options of ``safescale`` itself, which go before the sub-command."""


def _usage_line(exc: Exception) -> str:
    """One line for a usage error: what is wrong, and where to look for the right usage."""
    format_message = getattr(exc, "format_message", None)
    message = str(format_message() if callable(format_message) else exc).strip()
    message = (message.splitlines() or ["invalid usage"])[0].rstrip(".")
    message = message[:1].lower() + message[1:]
    # typer quotes the user's word whole; a 100 kB word is cut to QUOTE_LEN characters.
    message = re.sub(rf"\S{{{QUOTE_LEN + 1},}}", lambda m: m.group(0)[:QUOTE_LEN] + "...", message)
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "safescale"
    option = getattr(exc, "option_name", None)
    if option in GLOBAL_OPTIONS:
        value = " DIR" if option in ("--workspace", "-w") else ""
        return (
            f"{message} for '{command}'; {option} is an option of safescale itself: put it "
            f"before the sub-command (safescale {option}{value} {command.partition(' ')[2]})"
        )
    return f"{message}; see '{command} --help'"


def _print_error(text: str) -> None:
    # Plain text: no markup, no emoji codes (":100:" in "file:100:" stays as written), control
    # characters escaped, one bounded line.
    err_console.print(one_line(f"error: {text}"), markup=False, emoji=False, soft_wrap=True)


def _one_line_warnings(python: Any) -> Any:
    """A ``warnings.showwarning`` that shows safescale's own warnings (a prompt cut to the
    context, ...) as one line, ``warning:`` and the message, and hands other packages' to
    ``python`` (the way they were shown before)."""

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if category.__module__.partition(".")[0] == "safescale":
            err_console.print(one_line(f"warning: {message}"), markup=False, emoji=False,
                              soft_wrap=True)  # fmt: skip
        else:
            python(message, category, *rest, **kw)

    return show


def main(argv: list[str] | None = None) -> int:
    """Run the command; user errors print one line per problem and exit with status 2."""
    with warnings.catch_warnings():  # the caller's way of showing warnings comes back after
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    # In-process callers (the tests) run many commands: no option outlives its command.
    OPTIONS.workspace, OPTIONS.debug = None, False
    try:
        _refuse_non_utf8(sys.argv[1:] if argv is None else argv)
        _refuse_repeated_options(sys.argv[1:] if argv is None else argv)
        result = app(args=argv, prog_name="safescale", standalone_mode=False)
    except UserError as exc:
        if OPTIONS.debug:
            raise
        for problem in exc.problems:
            _print_error(str(problem))
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except SystemExit as exc:  # a click-style exit raised inside a command
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    except OSError as exc:
        # The machine, not the input: a full disk, a lost connection to a model provider, a
        # permission taken away mid-run. One line and status 1; --debug shows the traceback.
        if OPTIONS.debug:
            raise
        why = exc.strerror if isinstance(exc.strerror, str) and exc.strerror else str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        _print_error(
            f"{type(exc).__name__}: {why or 'failed'}{where}; the command stopped "
            "(rerun with --debug for the traceback)"
        )
        return 1
    except _CLICK_ERRORS as exc:
        if getattr(exc, "ctx", None) is not None and type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]  # a group called bare: its help, as asked
            return 2
        if OPTIONS.debug:
            raise
        _print_error(_usage_line(exc))
        return 2
    # click returns the exit code of a ``typer.Exit`` raised inside a command.
    return result if isinstance(result, int) else 0


def _refuse_non_utf8(argv: list[str]) -> None:
    """A usage error for an argument that is not UTF-8 (Python holds its bytes as lone
    surrogates, which no record, file or terminal can take), named by its option."""
    for i, token in enumerate(argv):
        byte = not_utf8(token)
        if byte is None:
            continue
        if token.startswith("-") and "=" in token:
            field = token.split("=", 1)[0]
        elif i > 0 and argv[i - 1].startswith("-") and argv[i - 1] != "--":
            field = argv[i - 1]
        else:
            field = f"argument {i + 1}"
        if not_utf8(field) is not None:
            field = f"argument {i + 1}"
        raise UserError(Problem(f"is not valid UTF-8 (byte {byte}); give it in UTF-8", field=field))


def _refuse_repeated_options(argv: list[str]) -> None:
    """A usage error for an option given twice that takes one value (``--flops 1e20 --flops
    1e22``): the parser would keep the last one without a word. Options that may repeat
    (``--with``, ``-T``) and flags (``--json``) are left alone."""
    names = [t.split("=", 1)[0] for t in argv if t.startswith("-")]
    if len(set(names)) == len(names):
        return  # nothing given twice (the common case: no need to build the command tree)
    command: Any = typer.main.get_command(app)
    seen: set[int] = set()
    args = iter(argv)
    for token in args:
        if token == "--":
            return
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            param = next(
                (p for p in command.params
                 if name in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))),
                None,
            )  # fmt: skip
            if param is None or getattr(param, "is_flag", False):
                continue  # a flag twice says the same thing
            if "=" not in token:
                next(args, None)  # its value
            if getattr(param, "multiple", False):
                continue  # a list option may repeat
            if id(param) in seen:
                raise UserError(Problem("is given twice; give it once", field=name))
            seen.add(id(param))
        elif token in getattr(command, "commands", {}):
            command = command.commands[token]
            seen = set()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
