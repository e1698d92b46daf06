"""`load_demo_data`: realistic, deterministic, all-or-nothing demo data, on both backends."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from billing_desk.db.models import Base, Invoice, InvoiceLine, Trip
from billing_desk.domain.errors import BadInput, PermissionDenied, Refused
from billing_desk.domain.periods import Period
from billing_desk.domain.states import TripStatus
from billing_desk.services.demo import DemoSummary, Progress, load_demo_data
from billing_desk.services.facilities import list_facilities
from billing_desk.services.invoices import list_invoices
from billing_desk.services.overview import overview
from billing_desk.services.trips import list_trips
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.users import list_users
from tests.conftest import Database
from tests.support import seed_facility, seed_users

AS_OF = date(2026, 5, 20)
ROLES = ("clerk", "manager", "auditor", "admin")


def load_small(
    workspace: Workspace, *, seed: int = 7, progress: Progress | None = None
) -> DemoSummary:
    """A small demo (3 facilities, 2 months) that keeps most tests fast."""
    return load_demo_data(
        workspace, seed=seed, facilities=3, months=2, as_of=AS_OF, progress=progress
    )


def _months_before(as_of: date, count: int) -> list[Period]:
    periods = [Period.of(as_of.replace(day=1) - timedelta(days=1))]
    while len(periods) < count:
        periods.insert(0, Period.of(periods[0].start - timedelta(days=1)))
    return periods


def test_default_demo_fills_an_empty_database(database: Database) -> None:
    summary = load_demo_data(database.workspace("newcomer"), as_of=AS_OF)

    assert summary.facilities == 12
    assert 3_500 <= summary.trips <= 4_500
    assert 12 * 15 <= summary.clients <= 12 * 40
    assert summary.users == ROLES
    admin = database.workspace("admin")
    assert [(u.name, u.role, u.active) for u in list_users(admin)] == sorted(
        (role, role, True) for role in ROLES
    )

    facilities = list_facilities(admin)
    assert len(facilities) == 12
    assert any(not f.name.isascii() for f in facilities)
    assert {f.currency for f in facilities} == {"USD", "CAD", "EUR"}
    assert {f.payment_terms_days for f in facilities} == {15, 30, 45}
    assert all(f.billing_contact_email and f.billing_address for f in facilities)

    trips = list_trips(admin)
    assert len(trips) == summary.trips
    statuses = Counter(t.status for t in trips)
    assert 0.03 <= statuses[TripStatus.CANCELLED.value] / len(trips) <= 0.08
    assert 0.01 <= statuses[TripStatus.NO_SHOW.value] / len(trips) <= 0.06
    completed = [t for t in trips if t.status == TripStatus.COMPLETED.value]
    assert 0.01 <= sum(not t.billable for t in completed) / len(completed) <= 0.06
    assert all(2_500 <= t.fare.minor <= 18_500 for t in trips)
    assert all(re.fullmatch(r"T\d{4}-\d{6}", t.external_trip_id) for t in trips)
    assert all(t.external_trip_id[1:5] == t.service_date.strftime("%y%m") for t in trips)
    assert max(t.service_date for t in trips) < AS_OF
    this_month = [t for t in trips if t.service_date >= AS_OF.replace(day=1)]
    assert this_month and all(t.invoice_number is None for t in this_month)
    assert any(not t.client.isascii() for t in trips)

    invoices = list_invoices(admin)
    assert len(invoices) == summary.invoices == 12 * 6
    months = _months_before(AS_OF, 6)
    assert {(i.facility, Period.of(i.period_start)) for i in invoices} == {
        (f.code, month) for f in facilities for month in months
    }
    assert all(i.issue_date == i.period_end + timedelta(days=1) for i in invoices)
    assert all(i.status == "issued" and i.trip_count > 0 for i in invoices)


def test_invoices_bill_each_completed_billable_trip_once_and_add_up(database: Database) -> None:
    load_small(database.workspace("newcomer"))
    workspace = database.workspace("clerk")
    with workspace.engine.connect() as conn:
        mismatched_totals = conn.execute(
            select(Invoice.number, Invoice.total_minor, func.sum(InvoiceLine.amount_minor))
            .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
            .group_by(Invoice.id, Invoice.number, Invoice.total_minor)
            .having(Invoice.total_minor != func.sum(InvoiceLine.amount_minor))
        ).all()
        twice_billed = conn.execute(
            select(InvoiceLine.trip_id)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(InvoiceLine.released.is_(False), Invoice.status != "void")
            .group_by(InvoiceLine.trip_id)
            .having(func.count() > 1)
        ).all()
        wrongly_billed = conn.execute(
            select(Trip.external_trip_id)
            .join(InvoiceLine, InvoiceLine.trip_id == Trip.id)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(
                (Trip.status != TripStatus.COMPLETED.value)
                | Trip.billable.is_(False)
                | (Trip.service_date < Invoice.period_start)
                | (Trip.service_date > Invoice.period_end)
                | (InvoiceLine.amount_minor != Trip.fare_minor)
                | (Invoice.facility_id != Trip.facility_id)
            )
        ).all()
    assert mismatched_totals == []
    assert twice_billed == []
    assert wrongly_billed == []
    past = [t for t in list_trips(workspace) if t.service_date < AS_OF.replace(day=1)]
    billable = [t for t in past if t.status == TripStatus.COMPLETED.value and t.billable]
    assert billable and all(t.invoice_number is not None for t in billable)
    assert all(t.invoice_number is None for t in past if t not in billable)


def test_same_seed_and_date_give_identical_data(
    database: Database, fresh_database: Callable[[str], Database]
) -> None:
    twin = fresh_database(database.backend)
    first = load_small(database.workspace("someone"), seed=11)
    second = load_small(twin.workspace("someone-else"), seed=11)

    assert first == second
    left, right = database.workspace("auditor"), twin.workspace("auditor")
    assert list_trips(left) == list_trips(right)
    assert list_invoices(left) == list_invoices(right)
    assert list_facilities(left) == list_facilities(right)
    # Every column of every row, ids and timestamps included.
    assert _dump(left) == _dump(right)


def test_another_seed_gives_other_data(
    database: Database, fresh_database: Callable[[str], Database]
) -> None:
    twin = fresh_database(database.backend)
    load_small(database.workspace(), seed=1)
    load_small(twin.workspace(), seed=2)
    assert list_trips(database.workspace("clerk")) != list_trips(twin.workspace("clerk"))


def test_a_database_with_facilities_is_refused_and_left_alone(database: Database) -> None:
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")
    seed_facility(admin, "OAKVIEW")

    with pytest.raises(Refused) as refused:
        load_small(admin)

    assert str(refused.value) == (
        "Demo data goes into an empty database; this one already has 2 facilities. "
        "Use --db with a new file."
    )
    assert refused.value.exit_code == 3
    after = overview(admin)
    assert (after.facilities, after.trips, after.invoices, after.users) == (2, 0, 0, 4)


def test_once_users_exist_only_an_administrator_may_load_it(database: Database) -> None:
    seed_users(database.workspace("admin"))
    with pytest.raises(PermissionDenied):
        load_small(database.workspace("clerk"))
    with pytest.raises(PermissionDenied):
        load_small(database.workspace("stranger"))
    assert load_small(database.workspace("admin")).facilities == 3


class Cancelled(Exception):
    pass


def test_progress_is_reported_and_cancelling_writes_nothing(database: Database) -> None:
    calls: list[tuple[str, int, int]] = []

    def cancel_midway(stage: str, done: int, total: int) -> None:
        calls.append((stage, done, total))
        if stage == "invoices" and done == 2:
            raise Cancelled

    workspace = database.workspace("newcomer")
    with pytest.raises(Cancelled):
        load_small(workspace, progress=cancel_midway)

    assert list(dict.fromkeys(stage for stage, _, _ in calls)) == [
        "users",
        "facilities",
        "clients",
        "trips",
        "invoices",
    ]
    assert all(0 < done <= total for _, done, total in calls)
    empty = overview(workspace)
    assert (empty.users, empty.facilities, empty.trips, empty.invoices) == (0, 0, 0, 0)

    finished: dict[str, tuple[int, int]] = {}

    def remember_last(stage: str, done: int, total: int) -> None:
        finished[stage] = (done, total)

    summary = load_small(workspace, progress=remember_last)
    assert all(done == total for done, total in finished.values())
    assert finished["trips"][1] == summary.trips
    assert finished["invoices"][1] == summary.invoices


def test_on_the_first_of_a_month_the_past_months_are_billed(database: Database) -> None:
    summary = load_demo_data(database.workspace(), facilities=2, months=2, as_of=date(2026, 3, 1))
    clerk = database.workspace("clerk")
    invoices = list_invoices(clerk)
    assert summary.invoices == len(invoices) == 4
    assert sorted({(i.period_start, i.issue_date) for i in invoices}) == [
        (date(2026, 1, 1), date(2026, 2, 1)),
        (date(2026, 2, 1), date(2026, 3, 1)),
    ]
    days = [t.service_date for t in list_trips(clerk)]
    assert min(days) >= date(2026, 1, 1) and max(days) <= date(2026, 2, 28)


def test_more_facilities_than_the_catalogue_get_second_sites(database: Database) -> None:
    summary = load_demo_data(database.workspace(), facilities=21, months=1, as_of=date(2026, 3, 2))
    facilities = list_facilities(database.workspace("clerk"))
    assert summary.facilities == len({f.code for f in facilities}) == 21
    assert "STMARY2" in {f.code for f in facilities}


@pytest.mark.parametrize(
    ("facilities", "months", "wrong"), [(0, 1, "0 facilities"), (1, 0, "0 months")]
)
def test_sizes_out_of_range_are_bad_input(
    database: Database, facilities: int, months: int, wrong: str
) -> None:
    with pytest.raises(BadInput, match=wrong):
        load_demo_data(database.workspace(), facilities=facilities, months=months)
    assert overview(database.workspace()).users == 0


def _dump(workspace: Workspace) -> dict[str, list[tuple[object, ...]]]:
    with workspace.engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in Base.metadata.sorted_tables
        }
