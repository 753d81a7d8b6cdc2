"""Reading numeric columns from a CSV file with errors that name the column and the row."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from safescale._errors import Problem, UserError
from safescale._input import quote, read_text_limited
from safescale.scaling._laws import FloatArray

MAX_CSV_BYTES = 64 << 20
"""Largest CSV file read (a ladder of runs is a few kB)."""
MAX_CSV_ROWS = 10_000
"""Most data rows a fit takes: one row is one training run, and the fits are dense in n."""


def read_columns(
    path: str | Path, columns: dict[str, str], *, positive: tuple[str, ...] = ()
) -> dict[str, FloatArray]:
    """Read numeric columns from ``path``.

    Args:
        path: a CSV file with a header row.
        columns: result key -> column name in the header.
        positive: keys whose values must be positive (parameters, tokens, FLOP, loss).

    Returns:
        One float array per key, in file order.

    Raises:
        UserError: the file is missing, a column is absent, or a value is empty, not a number,
            not finite or (for ``positive`` keys) not positive; the message names the column
            and the 1-based data row.
    """
    src = str(path)
    text = read_text_limited(path, MAX_CSV_BYTES, what="CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        rows: list[list[str]] = []
        for row in reader:
            if len(rows) == MAX_CSV_ROWS:
                raise UserError(
                    Problem(
                        f"more than {MAX_CSV_ROWS:,} data rows; a scaling fit needs one row per "
                        "training run (aggregate or sample the rows)",
                        source=src,
                        line=reader.line_num,
                    )
                )
            rows.append(row)
    except csv.Error as exc:
        raise UserError(
            Problem(
                f"not valid CSV ({exc}); check the quoting, or save it as plain "
                "comma-separated text",
                source=src,
                line=reader.line_num,
            )
        ) from None
    if not header:
        raise UserError(Problem("the file is empty; it needs a header row", source=src))
    header = [h.strip() for h in header]
    out: dict[str, FloatArray] = {}
    for key, name in columns.items():
        if name not in header:
            have = ", ".join(header)
            raise UserError(
                Problem(
                    f"no column {quote(name)}; the header has: {quote(have, 200)}",
                    source=src,
                    line=1,
                )
            )
        j = header.index(name)
        values = np.empty(len(rows))
        for i, row in enumerate(rows):
            values[i] = _number(row, j, key in positive, src, name, i)
        out[key] = values
    return out


def _number(row: list[str], j: int, positive: bool, src: str, name: str, i: int) -> float:
    # i is the 0-based data row; the file line is i + 2 (after the header).
    text = row[j].strip() if j < len(row) else ""
    try:
        value = float(text)
    except ValueError:
        shown = quote(text) if text else "an empty cell"
        raise UserError(
            Problem(
                f"data row {i + 1}: {shown} is not a number; fix or drop the row",
                source=src,
                line=i + 2,
                field=name,
            )
        ) from None
    if not np.isfinite(value) or (positive and value <= 0):
        need = "a positive number" if positive else "a finite number"
        raise UserError(
            Problem(
                f"data row {i + 1}: {text if len(text) <= 60 else quote(text)} is not {need}; "
                "fix or drop the row",
                source=src,
                line=i + 2,
                field=name,
            )
        )
    return value
