"""Invoice runs, voids and listings through the service layer, on both backends."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from billing_desk.domain.errors import (
    BadInput,
    DoubleBilling,
    IllegalTransition,
    PermissionDenied,
    Refused,
)
from billing_desk.domain.money import Money
from billing_desk.domain.states import TripStatus
from billing_desk.services.invoices import list_invoices, run_invoice, show_invoice, void_invoice
from billing_desk.services.trips import list_trips
from tests.conftest import Database
from tests.support import load_trips, seed_facility, seed_users, trip

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

MAY = "2026-05"


@pytest.fixture
def billing(database: Database) -> Database:
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")
    seed_facility(admin, "OAKVIEW")
    manager = database.workspace("manager")
    load_trips(
        manager,
        [
            trip("T1", day=date(2026, 5, 1), fare="40.00"),
            trip("T2", day=date(2026, 5, 2), fare="12.34"),
            trip("T3", day=date(2026, 5, 31), fare="0.66"),
            trip("T4", day=date(2026, 5, 3), status=TripStatus.CANCELLED),
            trip("T5", day=date(2026, 5, 3), status=TripStatus.NO_SHOW),
            trip("T6", day=date(2026, 5, 3), billable=False),
            trip("T7", day=date(2026, 6, 1)),
            trip("T8", day=date(2026, 4, 30)),
            trip("O1", facility="OAKVIEW", day=date(2026, 5, 9), fare="99.99"),
        ],
    )
    return database


def test_invoice_run_bills_completed_billable_trips_of_the_period(billing: Database) -> None:
    clerk = billing.workspace("clerk")
    result = run_invoice(clerk, "STMARY", MAY, issue_date=date(2026, 6, 1))
    assert result.invoice_number == "STMARY-000001"
    assert result.trip_count == 3
    assert result.total == Money("53.00", "USD")
    assert result.due_date == date(2026, 7, 1)
    detail = show_invoice(clerk, result.invoice_number)
    assert [line.trip_id for line in detail.lines] == ["T1", "T2", "T3"]
    assert sum(line.amount.minor for line in detail.lines) == detail.summary.total.minor
    assert [(h.from_status, h.to_status, h.changed_by) for h in detail.history] == [
        (None, "issued", "clerk")
    ]


def test_a_second_run_of_the_same_period_is_told_which_trips_are_taken(billing: Database) -> None:
    clerk = billing.workspace("clerk")
    run_invoice(clerk, "STMARY", MAY, issue_date=date(2026, 6, 1))
    with pytest.raises(DoubleBilling) as refused:
        run_invoice(clerk, "STMARY", MAY, issue_date=date(2026, 6, 1))
    assert refused.value.taken_trips == ("T1", "T2", "T3")
    assert refused.value.exit_code == 3
    assert str(refused.value) == (
        "Nothing was billed: 3 trips of STMARY in 2026-05 are already on invoice STMARY-000001 "
        "(T1, T2, T3)."
    )
    assert len(list_invoices(clerk)) == 1


def test_naming_an_already_billed_trip_refuses_the_whole_run(billing: Database) -> None:
    clerk = billing.workspace("clerk")
    run_invoice(clerk, "STMARY", MAY, trip_ids=["T2"], issue_date=date(2026, 6, 1))
    with pytest.raises(DoubleBilling) as refused:
        run_invoice(clerk, "STMARY", MAY, trip_ids=["T1", "T2"], issue_date=date(2026, 6, 1))
    assert refused.value.taken_trips == ("T2",)
    # T1 was not billed by the refused run, and the number sequence has no gap.
    second = run_invoice(clerk, "STMARY", MAY, issue_date=date(2026, 6, 1))
    assert second.invoice_number == "STMARY-000002"
    assert second.trip_count == 2


@pytest.mark.parametrize(
    ("trip_ids", "error", "message"),
    [
        (["T4"], Refused, "Trip T4 is cancelled; only completed billable trips are billed."),
        (["T5"], Refused, "Trip T5 is no-show; only completed billable trips are billed."),
        (["T6"], Refused, "Trip T6 is not billable; only completed billable trips are billed."),
        (
            ["T7"],
            BadInput,
            "Trip T7 was on 2026-06-01, outside period 2026-05; bill it in its own period.",
        ),
        (
            ["NOPE"],
            BadInput,
            "STMARY has no trip NOPE; check the trip ids (`billing-desk trip list` shows them).",
        ),
        (
            ["O1"],
            BadInput,
            "STMARY has no trip O1; check the trip ids (`billing-desk trip list` shows them).",
        ),
    ],
)
def test_chosen_trips_that_cannot_be_billed_are_refused(
    billing: Database, trip_ids: list[str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as refused:
        run_invoice(
            billing.workspace("clerk"),
            "STMARY",
            MAY,
            trip_ids=trip_ids,
            issue_date=date(2026, 6, 1),
        )
    assert str(refused.value) == message
    assert list_invoices(billing.workspace("clerk")) == []


def test_voiding_releases_the_trips_for_a_new_invoice(billing: Database) -> None:
    clerk, manager = billing.workspace("clerk"), billing.workspace("manager")
    first = run_invoice(clerk, "STMARY", MAY, issue_date=date(2026, 6, 1))
    voided = void_invoice(manager, first.invoice_number, "wrong rates")
    assert voided.status == "void"
    again = run_invoice(clerk, "STMARY", MAY, issue_date=date(2026, 6, 2))
    assert again.invoice_number == "STMARY-000002"
    assert again.trip_count == 3
    billed = {t.external_trip_id: t.invoice_number for t in list_trips(clerk, facility="STMARY")}
    assert billed["T1"] == "STMARY-000002"
    history = show_invoice(clerk, first.invoice_number).history
    assert [(h.to_status, h.changed_by, h.reason) for h in history][-1] == (
        "void",
        "manager",
        "wrong rates",
    )
    with pytest.raises(IllegalTransition, match="Cannot move invoice from void to void"):
        void_invoice(manager, first.invoice_number, "again")


@pytest.mark.parametrize("role", ["clerk", "auditor", "admin"])
def test_only_a_manager_voids(billing: Database, role: str) -> None:
    number = run_invoice(
        billing.workspace("clerk"), "STMARY", MAY, issue_date=date(2026, 6, 1)
    ).invoice_number
    with pytest.raises(PermissionDenied, match="may not void invoices"):
        void_invoice(billing.workspace(role), number, "reason")


def test_void_needs_a_reason(billing: Database) -> None:
    with pytest.raises(BadInput, match="needs a reason"):
        void_invoice(billing.workspace("manager"), "STMARY-000001", "  ")


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_admins_do_not_bill(billing: Database, role: str) -> None:
    with pytest.raises(PermissionDenied, match="may not run invoices"):
        run_invoice(billing.workspace(role), "STMARY", MAY)


def test_an_unknown_user_is_refused_with_the_way_in(billing: Database) -> None:
    with pytest.raises(PermissionDenied) as refused:
        run_invoice(billing.workspace("mallory"), "STMARY", MAY)
    assert str(refused.value) == (
        "'mallory' is not a user of this database; an administrator adds them with "
        "`billing-desk user add mallory --role clerk`."
    )


def test_an_empty_period_is_refused(billing: Database) -> None:
    with pytest.raises(Refused) as refused:
        run_invoice(billing.workspace("clerk"), "STMARY", "2026-03", issue_date=date(2026, 6, 1))
    assert str(refused.value) == "STMARY has no completed billable trips in 2026-03 to bill."


def test_a_future_period_is_refused(billing: Database) -> None:
    with pytest.raises(BadInput, match="has not started yet"):
        run_invoice(billing.workspace("clerk"), "STMARY", "2026-07", issue_date=date(2026, 6, 1))


@pytest.mark.parametrize("period", ["2026-13", "2026-5", "May", ""])
def test_a_malformed_period_is_bad_input(billing: Database, period: str) -> None:
    with pytest.raises(BadInput, match="is not a billing period"):
        run_invoice(billing.workspace("clerk"), "STMARY", period)


def test_facilities_number_their_invoices_independently(billing: Database) -> None:
    clerk = billing.workspace("clerk")
    a = run_invoice(clerk, "STMARY", MAY, issue_date=date(2026, 6, 1))
    b = run_invoice(clerk, "OAKVIEW", MAY, issue_date=date(2026, 6, 1))
    assert (a.invoice_number, b.invoice_number) == ("STMARY-000001", "OAKVIEW-000001")
    assert [i.number for i in list_invoices(clerk, facility="OAKVIEW")] == ["OAKVIEW-000001"]
    assert [i.number for i in list_invoices(clerk, status="issued")] == [
        "OAKVIEW-000001",
        "STMARY-000001",
    ]


def test_the_database_refuses_a_second_live_line_for_a_trip(billing: Database) -> None:
    """The partial unique index itself, reached behind the service's back."""
    clerk = billing.workspace("clerk")
    run_invoice(clerk, "STMARY", MAY, trip_ids=["T1"], issue_date=date(2026, 6, 1))
    engine = clerk.engine
    with pytest.raises(Exception, match=r"(?i)unique"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO invoice_line (invoice_id, facility_id, trip_id, line_no, "
                "service_date, description, amount_minor, released) "
                "SELECT invoice_id, facility_id, trip_id, line_no + 1, service_date, "
                "description, amount_minor, false FROM invoice_line"
            )
        )


def test_the_database_freezes_an_invoiced_trips_billed_fields(billing: Database) -> None:
    clerk = billing.workspace("clerk")
    run_invoice(clerk, "STMARY", MAY, trip_ids=["T1"], issue_date=date(2026, 6, 1))
    with (
        pytest.raises(Exception, match="billed fields cannot change"),
        clerk.engine.begin() as conn,
    ):
        conn.execute(text("UPDATE trip SET fare_minor = 1 WHERE external_trip_id = 'T1'"))
    # Fields that are not billed may still change, and so may trips not on an invoice.
    with clerk.engine.begin() as conn:
        conn.execute(text("UPDATE trip SET pickup = 'Gate 2' WHERE external_trip_id = 'T1'"))
        conn.execute(text("UPDATE trip SET fare_minor = 1 WHERE external_trip_id = 'T2'"))
