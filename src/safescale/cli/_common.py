"""Pieces every command group shares: the console, the global state, JSON output."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

# No emoji codes: a message such as "file.csv:100: ..." must print as written, not as an emoji.
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


@dataclass
class GlobalOptions:
    """Options given before the sub-command (``safescale --workspace W ledger verify``)."""

    workspace: Path | None = None
    """Folder from ``--workspace`` (else ``$SAFESCALE_HOME``, else ./.safescale)."""
    debug: bool = False
    """Show tracebacks for user errors too."""


OPTIONS = GlobalOptions()


def workspace_path() -> Path | None:
    """The workspace folder the user chose, if any (flag first, then ``$SAFESCALE_HOME``)."""
    if OPTIONS.workspace is not None:
        return OPTIONS.workspace
    env = os.environ.get("SAFESCALE_HOME")
    return Path(env) if env else None


def check_output(path: Path, field: str) -> Path:
    """``path`` as a file an output flag may write, checked before any work is done: not a
    folder, device or over-long name (see ``check_output_path``), and not one of the
    workspace's own files (database, keys, configuration, checkpoint, artifacts)."""
    from safescale._io import check_output_path
    from safescale.ledger import refuse_workspace_file

    target = check_output_path(path, field)
    refuse_workspace_file(target, workspace_path(), field)
    return target


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout, unstyled, so that it pipes into other tools; a failed
    write (a full disk, a closed pipe) is one line and exit status 2, not a traceback."""
    from safescale._errors import Problem, UserError

    try:
        sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
        sys.stdout.flush()
    except OSError as exc:
        _silence_stdout()
        raise UserError(
            Problem(f"cannot write the output ({exc.strerror or exc}); check where stdout goes")
        ) from None


def _silence_stdout() -> None:
    # What stdout still buffers would fail again when Python flushes it at exit: point the
    # descriptor at /dev/null (the standard library's advice for a broken pipe).
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` options (``-M``, ``-T``) as a dict; a malformed one is a usage error."""
    from safescale._errors import Problem, UserError

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(Problem(f"{item!r} is not KEY=VALUE", field=flag))
        out[key] = value
    return out


def print_table(table: Any, out: Console | None = None) -> None:
    """Print a rich table; one wider than the terminal is printed a row at a time.

    Squeezed into 80 columns, a table with long cells cuts every value to a few letters. A row
    printed as a titled list of ``column  value`` lines instead wraps whole values and stays
    readable at any width.
    """
    from rich.measure import Measurement
    from rich.table import Table

    out = out or console
    # Measured without the terminal's limit: its natural width, every cell on one line.
    natural = Measurement.get(out, out.options.update(max_width=10_000), table).maximum
    if natural <= out.width:
        out.print(table)
        return
    if table.title:
        out.print(table.title, style="bold", markup=False)
    headers = [str(c.header) for c in table.columns]
    cells = [list(c.cells) for c in table.columns]
    for row in range(table.row_count):
        title = cells[0][row]
        if len(str(title)) + 4 > out.width:  # a rule would cut it: the whole value instead
            out.print(title, markup=False, overflow="fold", style="bold")
        else:
            out.rule(title, align="left", style="dim")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(overflow="fold")
        for header, column in zip(headers[1:], cells[1:], strict=True):
            grid.add_row(header, column[row])
        out.print(grid)


def check_output_folder(path: Path, field: str) -> Path:
    """``path`` as a folder an output flag may write files into (an activation cache, an SAE,
    a corpus, a model), checked before any work is done (see ``check_output_path``), and
    neither the workspace's own folder nor anything inside it (its database, keys and
    artifacts live there, and only safescale writes them)."""
    from safescale._io import check_output_path
    from safescale.ledger import refuse_workspace_folder

    target = check_output_path(path, field, folder=True)
    refuse_workspace_folder(target, workspace_path(), field)
    return target


_GROUP = re.compile(r"(?:[-+]?\d[\d.e+-]* )?\[[^\[\]()]{0,40}\]|\([^\[\]()]{0,40}\)")
"""A value with its interval (``0.90 [0.78, 0.95]``), or a short parenthesis (``(n = 48)``):
text a line must not break inside."""


def print_prose(text: str, *, bullet: str = "", out: Console | None = None) -> None:
    """``text`` wrapped to the terminal at spaces, never inside a value's interval or a short
    parenthesis (so no ``[0.96,`` ends a line and ``1.00]`` starts the next), continuation
    lines indented under a ``bullet`` such as ``"- "``; no markup."""
    con = out or console
    glue = "\x00"
    kept = _GROUP.sub(lambda m: m.group(0).replace(" ", glue), text)
    width = max(con.width, 40)
    lines = textwrap.wrap(
        kept, width=width, initial_indent=bullet, subsequent_indent=" " * len(bullet),
        break_long_words=False, break_on_hyphens=False,
    ) or [bullet]  # fmt: skip
    for line in lines:
        con.print(line.replace(glue, " "), markup=False, soft_wrap=True)
