"""Billing periods: a calendar month written YYYY-MM."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from billing_desk.domain.errors import BadInput

_PERIOD = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, order=True)
class Period:
    year: int
    month: int

    @property
    def start(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def end(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.year, day.month)

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)


def parse_period(text: str) -> Period:
    match = _PERIOD.fullmatch(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1900:
        raise BadInput(
            f"'{text}' is not a billing period; write the month as YYYY-MM, e.g. 2026-05."
        )
    return Period(int(match.group(1)), int(match.group(2)))


def parse_date(text: str, what: str = "date") -> date:
    """An ISO date (YYYY-MM-DD) typed by a user or read from a file."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise ValueError
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"'{text}' is not a valid {what}; write it as YYYY-MM-DD.") from None
