"""Trips as a dispatch system exports them, before they reach the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from billing_desk.domain.errors import BadInput
from billing_desk.domain.states import TripStatus


@dataclass(frozen=True)
class TripRecord:
    """One trip row. `fare` is the amount as written, in the facility's currency; it is parsed
    once the facility (and so the currency) is known."""

    line: int
    external_trip_id: str
    facility_code: str
    client_name: str
    client_ref: str | None
    service_date: date
    pickup: str
    dropoff: str
    status: TripStatus
    fare: str
    billable: bool


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class TripFileRejected(BadInput):
    """A trip file with bad rows, refused whole: nothing was written."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        rows, them = ("row is", "it") if count == 1 else ("rows are", "them")
        super().__init__(
            f"Nothing was imported: {count} {rows} bad; fix {them}, or import the good rows "
            "alone with --skip-bad."
        )
