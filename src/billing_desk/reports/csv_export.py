"""CSV exports of the reports: user text neutralised against spreadsheet formulas, amounts as
plain numbers in their own column beside the currency."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

from billing_desk.domain.money import Money

# A spreadsheet reads a cell starting with one of these as a formula (or a DDE command).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | Money | date | datetime | None


def neutralise(text: str) -> str:
    """Text a spreadsheet shows as text: a leading formula character gets a quote before it."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def cell(value: Cell) -> str | int:
    """Money as its plain number ("-1234.50"), never neutralised; ints as ints; text safe."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return value.plain()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return neutralise(str(value))


def write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> int:
    """Write the rows (UTF-8 with a byte-order mark, which spreadsheets need to read accents);
    returns how many."""
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        for row in rows:
            writer.writerow([cell(v) for v in row])
            count += 1
    return count
