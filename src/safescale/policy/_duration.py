"""ISO 8601 durations as policies write them: ``P6M``, ``P1Y``, ``P14D``, ``P2W``, ``PT12H``."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from safescale._input import quote

_PATTERN = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<m>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<min>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)


MAX_YEARS = 100
"""Longest duration a policy may give (a stale-evidence age, a review interval)."""


class Duration:
    """A calendar-aware duration: years and months add on the calendar, the rest is exact.

    Policies speak in calendar terms ("six months of post-training", "re-approve annually"),
    so ``P6M`` added to 31 August lands on the last day of February, as a person would read it.
    """

    __slots__ = ("delta", "months", "text")

    def __init__(self, text: str) -> None:
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"{quote(text)} is not an ISO 8601 duration; write e.g. P6M, P1Y, P14D or PT12H"
            )
        # Digits are bounded before int(): 5,000 of them would hit Python's str-to-int limit.
        if any(v and len(v) > 12 for v in match.groupdict().values()):
            raise ValueError(f"{quote(text)} is longer than {MAX_YEARS} years; give a shorter one")
        g = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        self.text = text.strip()
        self.months = g["y"] * 12 + g["m"]
        seconds = (
            ((g["w"] * 7 + g["d"]) * 24 + g["h"]) * 3600 + g["min"] * 60 + g["s"]
        )  # exact integers: no OverflowError whatever the size
        if self.months * 31 * 86400 + seconds > MAX_YEARS * 366 * 86400:
            raise ValueError(f"{quote(text)} is longer than {MAX_YEARS} years; give a shorter one")
        if self.months == 0 and seconds == 0:
            raise ValueError(f"{quote(text)} is zero; give a positive duration such as P6M")
        self.delta = timedelta(seconds=seconds)

    def add_to(self, when: datetime) -> datetime:
        """``when`` plus this duration (months on the calendar, clamped to the month's end)."""
        moved: datetime = _add_months(when, self.months)
        return moved + self.delta

    def days(self) -> float:
        """Approximate length in days (a month counts 30.436875 days, the Gregorian mean)."""
        return self.months * 30.436875 + self.delta.total_seconds() / 86400.0

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Duration({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and (self.months, self.delta) == (
            other.months,
            other.delta,
        )

    def __hash__(self) -> int:
        return hash((self.months, self.delta))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def parse(value: Any) -> Duration:
            if isinstance(value, Duration):
                return value
            if not isinstance(value, str):
                raise ValueError("expected an ISO 8601 duration string such as P6M")
            return cls(value)

        return core_schema.no_info_plain_validator_function(
            parse,
            json_schema_input_schema=core_schema.str_schema(pattern=_PATTERN.pattern),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


def _add_months(when: datetime | date, months: int) -> Any:
    if months == 0:
        return when
    total = when.month - 1 + months
    year, month = when.year + total // 12, total % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)
