"""Error types shared by every room.

A :class:`UserError` is a problem with what the user gave us (a file, a flag, a value). The
command prints its message as one line and exits with status 2, with no traceback unless
``--debug`` is given. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class SafescaleError(Exception):
    """Base class for errors raised on purpose by safescale."""


@dataclass(frozen=True)
class Problem:
    """One problem found in user input, located as precisely as we can."""

    message: str
    """What is wrong and what would fix it."""
    source: str | None = None
    """The file (or other input) the problem is in."""
    line: int | None = None
    """1-based line number in ``source``, when known."""
    field: str | None = None
    """Dotted path of the offending field, when known (``capability_thresholds[2].id``)."""

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        if self.field:
            where += f"{self.field}: "
        return where + self.message


class UserError(SafescaleError):
    """A problem with user input; reported as one line per problem, exit status 2."""

    exit_code = 2

    def __init__(self, *problems: Problem | str) -> None:
        self.problems: tuple[Problem, ...] = tuple(
            p if isinstance(p, Problem) else Problem(p) for p in problems
        )
        super().__init__("\n".join(str(p) for p in self.problems))


class IntegrityError(UserError):
    """Stored records failed an integrity check (a damaged, emptied or rewritten ledger).

    Reported like a :class:`UserError`, one line per problem with no traceback, but with exit
    status 1: the input was well-formed, what it holds does not check out.
    """

    exit_code = 1


class RunFailed(UserError):
    """A run handed to another tool (an Inspect evaluation) ended in an error: a model that
    could not be reached, a task that raised.

    Reported like a :class:`UserError`, one line with no traceback (the tool's log holds it),
    but with exit status 1: what was asked was well-formed, the run did not succeed.
    """

    exit_code = 1
