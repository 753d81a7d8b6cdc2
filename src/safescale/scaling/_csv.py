"""Reading numeric columns from a CSV file with errors that name the file, the line and the column.

Only plain ASCII decimal numerals parse (``0.25``, ``-3``, ``1.2e+21``): no ``nan``, ``inf``,
hexadecimal, digit separators (``0.9_0``) or non-ASCII digits (fullwidth, Arabic-Indic), which
Python's ``float`` would accept. A cell holding a control, format or line-separator character
(``\\x0b``, NEL, U+2028, a bidi override) is refused rather than stripped; spaces and tabs
around a number are allowed. Every value is bounded (:data:`POSITIVE_RANGE` for counts,
FLOP and losses), so nothing downstream can overflow to infinity. Errors give the physical
line a record starts on (a quoted cell may span lines); blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from safescale._errors import Problem, UserError
from safescale._input import holds, quote, read_text_limited, unsafe_char
from safescale.scaling._laws import FloatArray

MAX_CSV_BYTES = 64 << 20
"""Largest CSV file read (a ladder of runs is a few kB)."""
MAX_CSV_ROWS = 10_000
"""Most data rows a fit takes: one row is one training run, and the fits are dense in n."""
POSITIVE_RANGE = (1e-30, 1e35)
"""Bounds of a positive column (parameters, tokens, FLOP, loss): wide enough for FLOP in
PF-days (1e-8 and up) and for the largest planned runs, narrow enough that ``6 N D`` and
``C / 6N`` stay finite."""
MAX_VALUE = 1e12
"""Bound on the magnitude of any other numeric column (scores)."""

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BLANK = " \t"


@dataclass(frozen=True)
class CsvColumns:
    """What :func:`read_table` read: the columns, and the file line of each data row."""

    values: dict[str, FloatArray]
    """One float array per key, in file order."""
    lines: list[int] = field(default_factory=list)
    """The physical line each data row starts on."""
    repeats: list[tuple[int, int]] = field(default_factory=list)
    """(line, earlier line) for each row whose used values repeat an earlier row's."""

    def repeat_warning(self, source: str) -> str | None:
        """One line naming the repeated rows, or None when there are none."""
        if not self.repeats:
            return None
        shown = ", ".join(f"{a} (= {b})" for a, b in self.repeats[:10])
        more = f" and {len(self.repeats) - 10} more" if len(self.repeats) > 10 else ""
        return (
            f"{source}: lines {shown}{more} repeat an earlier row's values in the columns used; "
            "each counts as a separate run (drop the copies if they are not)"
        )


def read_columns(
    path: str | Path,
    columns: dict[str, str],
    *,
    positive: tuple[str, ...] = (),
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, FloatArray]:
    """Read numeric columns from ``path`` (see :func:`read_table`); the values only."""
    return read_table(path, columns, positive=positive, ranges=ranges).values


def read_table(
    path: str | Path,
    columns: dict[str, str],
    *,
    positive: tuple[str, ...] = (),
    ranges: Mapping[str, tuple[float, float]] | None = None,
    flags: Mapping[str, str] | None = None,
) -> CsvColumns:
    """Read numeric columns from ``path``.

    Args:
        path: a CSV file with a header row.
        columns: result key -> column name in the header.
        positive: keys whose values must be positive, within :data:`POSITIVE_RANGE`
            (parameters, tokens, FLOP, loss).
        ranges: key -> closed ``(lo, hi)`` range, for the other keys (default:
            magnitude at most :data:`MAX_VALUE`).
        flags: key -> the flag that named the column, for messages.

    Raises:
        UserError: the file is missing or not CSV; a column is absent, named twice in the
            header, or named for two keys; a cell holds a control character, or a value is
            empty, not a plain decimal number, or out of its range. The message names the file,
            the line and the column.
    """
    src = str(path)
    shown_flag = dict(flags or {})
    seen: dict[str, str] = {}
    for key, name in columns.items():
        if name in seen:
            first, second = shown_flag.get(seen[name], seen[name]), shown_flag.get(key, key)
            raise UserError(
                Problem(
                    f"{first} and {second} both name the column {quote(name)}; "
                    "give each its own column",
                    field=second,
                )
            )
        seen[name] = key
    header, records = _records(path, src)
    for j, cell in enumerate(header):
        _check_cell(cell, src, 1, f"header cell {j + 1}", "")
    names = [h.strip(_BLANK) for h in header]
    index: dict[str, int] = {}
    for key, name in columns.items():
        if name not in names:
            have = ", ".join(names)
            raise UserError(
                Problem(
                    f"no column {quote(name)}; the header has: {quote(have, 200)}",
                    source=src,
                    line=1,
                )
            )
        where = [j + 1 for j, h in enumerate(names) if h == name]
        if len(where) > 1:
            raise UserError(
                Problem(
                    f"the header names column {quote(name)} {len(where)} times (columns "
                    f"{', '.join(map(str, where))}); which one is meant is ambiguous: rename "
                    "the others",
                    source=src,
                    line=1,
                )
            )
        index[key] = where[0] - 1
    limits = {
        key: POSITIVE_RANGE if key in positive else (ranges or {}).get(key, (-MAX_VALUE, MAX_VALUE))
        for key in columns
    }
    out = {key: np.empty(len(records)) for key in columns}
    lines = []
    firsts: dict[tuple[float, ...], int] = {}
    repeats = []
    for i, (line, row) in enumerate(records):
        for j, cell in enumerate(row):
            _check_cell(cell, src, line, names[j] if j < len(names) else f"column {j + 1}")

        for key, name in columns.items():
            out[key][i] = _number(row, index[key], src, line, name, key in positive, limits[key])
        lines.append(line)
        used = tuple(float(out[key][i]) for key in columns)
        if used in firsts:
            repeats.append((line, firsts[used]))
        else:
            firsts[used] = line
    return CsvColumns(out, lines, repeats)


def _records(path: str | Path, src: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (start line, cells) of each non-blank data record."""
    text = read_text_limited(path, MAX_CSV_BYTES, what="CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip(_BLANK) for cell in row):
                if any(row):
                    _check_cells(row, src, line)
                continue  # a blank line (a trailing newline, a spacer)
            if header is None:
                header = row
                if line != 1:
                    raise UserError(
                        Problem("the header row must be the first line", source=src, line=line)
                    )
                continue
            if len(rows) == MAX_CSV_ROWS:
                raise UserError(
                    Problem(
                        f"more than {MAX_CSV_ROWS:,} data rows; a scaling fit needs one row per "
                        "training run (aggregate or sample the rows)",
                        source=src,
                        line=line,
                    )
                )
            extra = any(cell.strip(_BLANK) for cell in row[len(header) :])  # (trailing ","s pass)
            if len(row) < len(header) or extra:  # a cell too many or too few: misaligned
                raise UserError(
                    Problem(
                        f"the row has {len(row)} cells where the header has {len(header)}; give "
                        "every row one cell per column (an empty cell for a missing value)",
                        source=src,
                        line=line,
                    )
                )
            rows.append((line, row))
    except csv.Error as exc:
        raise UserError(
            Problem(
                f"not valid CSV ({exc}); check the quoting, or save it as plain "
                "comma-separated text",
                source=src,
                line=start,
            )
        ) from None
    if not header:
        raise UserError(Problem("the file is empty; it needs a header row", source=src))
    return header, rows


def _check_cells(row: list[str], src: str, line: int) -> None:
    for j, cell in enumerate(row):
        _check_cell(cell, src, line, f"column {j + 1}")


def _check_cell(
    cell: str, src: str, line: int, where: str, fix: str = " (fix or drop the row)"
) -> None:
    bad = next((ch for ch in cell if ch != "\t" and unsafe_char(ch)), None)
    if bad is not None:
        raise UserError(
            Problem(
                f"{quote(cell)} {holds(bad)}; remove it{fix}",
                source=src,
                line=line,
                field=where,
            )
        )


def _number(
    row: list[str],
    j: int,
    src: str,
    line: int,
    name: str,
    positive: bool,
    limits: tuple[float, float],
) -> float:
    text = row[j].strip(_BLANK) if j < len(row) else ""

    def fail(message: str) -> UserError:
        return UserError(
            Problem(f"{message}; fix or drop the row", source=src, line=line, field=name)
        )

    if not _NUMBER.fullmatch(text):
        if not text:
            raise fail("an empty cell is not a number")
        try:
            odd = float(text)
        except ValueError:
            raise fail(f"{quote(text)} is not a number") from None
        if not np.isfinite(odd):
            raise fail(f"{quote(text)} is not a finite number")
        raise fail(f"{quote(text)} is not a plain decimal number (ASCII digits, '.', exponent)")
    value = float(text)
    shown = text if len(text) <= 60 else quote(text)
    if not np.isfinite(value):
        raise fail(f"{shown} is not a finite number")
    if positive and value <= 0:
        raise fail(f"{shown} is not a positive number")
    lo, hi = limits
    if not lo <= value <= hi:
        raise fail(f"{shown} is out of range; give a number in [{lo:g}, {hi:g}]")
    return value
