"""Building blocks for tests: users, facilities and trips made through the services."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from billing_desk.domain.states import TripStatus
from billing_desk.domain.trips import TripRecord
from billing_desk.services.facilities import NewFacility, add_facility
from billing_desk.services.trips import TripImportResult, import_trips
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.users import add_user

ROLES = ("admin", "clerk", "manager", "auditor")


def seed_users(workspace: Workspace) -> None:
    """admin first (bootstrap), then one user per role, each named after the role."""
    for role in ROLES:
        add_user(workspace, role, role)


def seed_facility(
    workspace: Workspace, code: str = "STMARY", currency: str = "USD", terms: int = 30
) -> None:
    add_facility(
        workspace,
        NewFacility(
            code,
            f"{code.title()} Care Home",
            currency,
            terms,
            "Ann Payer",
            "billing@example.org",
            "1 Main St",
        ),
    )


def trip(
    external_id: str,
    *,
    facility: str = "STMARY",
    day: date = date(2026, 5, 4),
    fare: str = "42.50",
    status: TripStatus = TripStatus.COMPLETED,
    billable: bool = True,
    client: str = "Rider One",
    line: int = 2,
) -> TripRecord:
    return TripRecord(
        line=line,
        external_trip_id=external_id,
        facility_code=facility,
        client_name=client,
        client_ref=None,
        service_date=day,
        pickup="12 Oak Rd",
        dropoff="General Hospital",
        status=status,
        fare=fare,
        billable=billable,
    )


def load_trips(workspace: Workspace, records: Iterable[TripRecord]) -> TripImportResult:
    return import_trips(workspace, list(records))
