"""Checks of the scaling commands' inputs that need the data: the CSV's columns with their
ranges and roles, the ``--with`` benchmarks, the bootstrap's work, and file names on the
problems the fits find in the data.

Kept apart from the command-line module so that each stays short; every refusal is a one-line
:class:`~safescale._errors.UserError` raised before any fit runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from safescale._errors import Problem, UserError
from safescale._input import check_number, check_text, quote
from safescale.scaling._csv import read_table
from safescale.scaling._laws import FloatArray


def check_work(bootstrap: int, rows: int, limit: int, csv: Path) -> None:
    """Bound the bootstrap's work (and memory) by replicates x rows."""
    if bootstrap * rows > limit:
        most = max(limit // rows, 0)
        raise UserError(
            Problem(
                f"{bootstrap:,} bootstrap replicates x {rows:,} rows is more than {limit:,}; "
                f"give --bootstrap {most:,} or fewer for this file",
                source=str(csv),
                field="--bootstrap",
            )
        )


def read_runs(
    csv: Path,
    cols: dict[str, str],
    *,
    positive: tuple[str, ...] = (),
    ranges: dict[str, tuple[float, float]] | None = None,
    flags: dict[str, str],
    warn: Callable[[str], None],
) -> dict[str, FloatArray]:
    """The columns of ``csv``; rows that repeat an earlier row's values are passed to ``warn``
    (one line)."""
    table = read_table(csv, cols, positive=positive, ranges=ranges, flags=flags)
    repeat = table.repeat_warning(str(csv))
    if repeat:
        warn(repeat)
    return table.values


@contextmanager
def in_file(csv: Path) -> Iterator[None]:
    """A problem the library finds in the data (too few rows, a constant column) is in ``csv``:
    its message names the file."""
    try:
        yield
    except UserError as exc:
        if all(p.source for p in exc.problems):
            raise
        raise type(exc)(
            *(p if p.source else replace(p, source=str(csv)) for p in exc.problems)
        ) from None


def read_score_data(
    csv: Path,
    compute: str,
    score: str,
    loss: str | None,
    specs: list[str] | None,
    chance: float,
    ceiling: float,
    warn: Callable[[str], None],
) -> tuple[dict[str, FloatArray], FloatArray | None, FloatArray | None]:
    """The compute, score (within [min(0, chance), ceiling]) and loss columns, and the --with
    benchmarks' scores (within [0, 1], their ceiling) and chance levels."""
    cols = {"C": compute, "s": score} | ({"L": loss} if loss else {})
    flags = {"C": "--compute", "s": "--score", "L": "--loss"}
    ranges = {"s": (min(0.0, chance), ceiling)}
    others_chance: list[float] = []
    for i, spec in enumerate(specs or []):
        check_text(spec, "--with", max_len=1000)
        name, sep, level = spec.partition(":")
        if not name.strip():
            raise UserError(Problem(f"{quote(spec)} names no column (COLUMN or COLUMN:0.25)",
                                    field="--with"))  # fmt: skip
        value = other_chance(spec, level) if sep else 0.0
        cols[f"o{i}"], flags[f"o{i}"], ranges[f"o{i}"] = name, f"--with {name}", (0.0, 1.0)
        others_chance.append(value)
    data = read_runs(csv, cols, positive=("C", "L"), ranges=ranges, flags=flags, warn=warn)
    if not specs:
        return data, None, None
    others = np.column_stack([data[f"o{i}"] for i in range(len(specs))])
    return data, others, np.asarray(others_chance)


def other_chance(spec: str, level: str) -> float:
    """The chance level after ':' in ``--with COLUMN:CHANCE``: finite, in [0, 1) (another
    benchmark's scores are read on a 0-1 scale, its ceiling 1)."""
    field = f"--with {spec}"
    try:
        value = float(level)
    except ValueError:
        raise UserError(
            Problem(f"{quote(level)} is not a number; give the chance level after ':' "
                    "(COLUMN:0.25)", field=field)
        ) from None  # fmt: skip
    return check_number(value, field, lo=0.0, hi=1.0, hi_open=True)


def finite_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


MAX_QUESTIONS = 10**9
"""Largest benchmark size ``questions`` may give."""


def check_questions(questions: int | None, score: FloatArray, column: str) -> None:
    """A benchmark size ``questions`` (None: not given) is a whole number in range, and the
    scores it counts are proportions."""
    if questions is None:
        return
    if isinstance(questions, bool) or not isinstance(questions, int | np.integer):
        raise UserError(Problem("must be a whole number of questions", field="questions"))
    if not 1 <= questions <= MAX_QUESTIONS:
        raise UserError(
            Problem(f"{questions} is not from 1 to {MAX_QUESTIONS:,}", field="questions")
        )
    if np.any((score < 0) | (score > 1)):
        raise UserError(
            Problem(
                f"{column}: with a number of questions the scores must be proportions in [0, 1] "
                "(divide percentages by 100)"
            )
        )
