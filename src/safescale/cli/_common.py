"""Pieces every command group shares: the console, the global state, JSON output."""

from __future__ import annotations

import json
import os
import sys
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


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout, unstyled, so that it pipes into other tools."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
