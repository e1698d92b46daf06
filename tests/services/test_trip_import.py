"""Importing a dispatch export through the service, on both backends: all or nothing unless
--skip-bad, the same file twice changes nothing, invoiced trips stay as billed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from billing_desk.domain.errors import PermissionDenied
from billing_desk.domain.money import Money
from billing_desk.domain.trips import RowProblem, TripFileRejected
from billing_desk.importers.trips_csv import read_trip_file
from billing_desk.services.invoices import run_invoice
from billing_desk.services.trips import TripImportResult, import_trips, list_trips
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database
from tests.support import seed_facility, seed_users

DATA = Path(__file__).resolve().parents[1] / "data" / "trips"
GOOD = DATA / "good.csv"
JUNE_1 = date(2026, 6, 1)


@pytest.fixture
def clerk(database: Database) -> Workspace:
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin)
    return database.workspace("clerk")


def load(workspace: Workspace, path: Path, *, skip_bad: bool = False) -> TripImportResult:
    parsed = read_trip_file(path)
    return import_trips(workspace, parsed.records, skip_bad=skip_bad, problems=parsed.problems)


def rejected(workspace: Workspace, path: Path) -> tuple[RowProblem, ...]:
    with pytest.raises(TripFileRejected) as refused:
        load(workspace, path)
    assert refused.value.exit_code == 2
    return refused.value.problems


def good_with(tmp_path: Path, *rows: str, changes: dict[str, str] | None = None) -> Path:
    """good.csv with some of its text replaced and rows added at the end."""
    text = GOOD.read_text(encoding="utf-8")
    for old, new in (changes or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "trips.csv"
    path.write_text(text + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def fares(workspace: Workspace) -> dict[str, Money]:
    return {t.external_trip_id: t.fare for t in list_trips(workspace)}


def test_a_good_file_is_loaded(clerk: Workspace) -> None:
    assert load(clerk, GOOD) == TripImportResult(added=4, updated=0, unchanged=0, skipped=())
    trips = {t.external_trip_id: t for t in list_trips(clerk)}
    assert sorted(trips) == ["T-1001", "T-1002", "T-1003", "T-1004"]
    assert trips["T-1001"].fare == Money("42.50", "USD")
    assert trips["T-1001"].pickup == "12 Oak Rd, Apt 4"
    assert trips["T-1002"].status == "cancelled"
    assert trips["T-1002"].billable is False
    assert trips["T-1003"].client == "Ann Lee"
    assert trips["T-1004"].client == "Chloé Durand"
    assert trips["T-1004"].fare == Money("7.00", "USD")


def test_the_same_file_again_changes_nothing(clerk: Workspace) -> None:
    load(clerk, GOOD)
    before = list_trips(clerk)
    assert load(clerk, GOOD) == TripImportResult(added=0, updated=0, unchanged=4, skipped=())
    assert list_trips(clerk) == before


def test_one_bad_row_refuses_the_whole_file(clerk: Workspace) -> None:
    assert rejected(clerk, DATA / "one_bad_row.csv") == (
        RowProblem(4, "status 'done' is not one of completed, cancelled, no-show."),
    )
    assert list_trips(clerk) == []


def test_a_refused_file_changes_no_trip_already_there(clerk: Workspace, tmp_path: Path) -> None:
    load(clerk, GOOD)
    before = list_trips(clerk)
    path = good_with(
        tmp_path,
        "T-1005,STMARY,Bo Park,,2026-05-30,3 Elm St,Eye Clinic,completed,18.00,yes",
        "T-1006,STMARY,Bo Park,,2026-05-31,3 Elm St,Eye Clinic,completed,eighteen,yes",
        changes={"42.50": "45.00"},
    )
    assert [p.line for p in rejected(clerk, path)] == [7]
    assert list_trips(clerk) == before


def test_skip_bad_loads_the_good_rows_and_reports_the_bad_one(clerk: Workspace) -> None:
    result = load(clerk, DATA / "one_bad_row.csv", skip_bad=True)
    assert result == TripImportResult(
        added=3,
        updated=0,
        unchanged=0,
        skipped=(RowProblem(4, "status 'done' is not one of completed, cancelled, no-show."),),
    )
    assert sorted(fares(clerk)) == ["T-2001", "T-2002", "T-2004"]


def test_reader_and_service_problems_are_reported_together_in_line_order(
    clerk: Workspace, tmp_path: Path
) -> None:
    path = good_with(
        tmp_path,
        "T-1005,NOWHERE,Bo Park,,2026-05-30,3 Elm St,Eye Clinic,completed,18.00,yes",
        "T-1006,STMARY,Bo Park,,2026-05-31,3 Elm St,Eye Clinic,completed,18.00,maybe",
        changes={"T-1002,STMARY": "T-1002,ELSEWHERE"},
    )
    result = load(clerk, path, skip_bad=True)
    assert [p.line for p in result.skipped] == [3, 6, 7]
    assert result.added == 3


def test_an_unknown_facility_is_a_bad_row(clerk: Workspace, tmp_path: Path) -> None:
    path = good_with(
        tmp_path, "T-1005,nowhere,Bo Park,,2026-05-30,3 Elm St,Eye Clinic,completed,18.00,yes"
    )
    assert rejected(clerk, path) == (RowProblem(6, "unknown facility 'NOWHERE'."),)
    assert list_trips(clerk) == []


def test_a_fare_with_more_decimals_than_the_currency_is_a_bad_row(
    clerk: Workspace, tmp_path: Path
) -> None:
    path = good_with(tmp_path, changes={"42.50": "12.345"})
    (problem,) = rejected(clerk, path)
    assert problem.line == 2
    assert problem.reason == (
        "fare '12.345' has more decimal places than USD allows (2); enter an amount such as 12.34."
    )


def test_a_changed_fare_updates_a_trip_not_yet_invoiced(clerk: Workspace, tmp_path: Path) -> None:
    load(clerk, GOOD)
    result = load(clerk, good_with(tmp_path, changes={"42.50": "45.00"}))
    assert result == TripImportResult(added=0, updated=1, unchanged=3, skipped=())
    assert fares(clerk)["T-1001"] == Money("45.00", "USD")


def test_a_changed_fare_of_an_invoiced_trip_is_a_bad_row(clerk: Workspace, tmp_path: Path) -> None:
    load(clerk, GOOD)
    invoice = run_invoice(clerk, "STMARY", "2026-05", issue_date=JUNE_1)
    assert invoice.invoice_number == "STMARY-000001"
    before = list_trips(clerk)
    path = good_with(tmp_path, changes={"42.50": "45.00", "2026-05-05": "2026-05-07"})
    assert rejected(clerk, path) == (
        RowProblem(
            2,
            "trip T-1001 is on invoice STMARY-000001; its date, status, fare and billable flag "
            "cannot change (void the invoice first).",
        ),
    )
    assert list_trips(clerk) == before


def test_an_invoiced_trip_reimported_as_it_was_is_unchanged(clerk: Workspace) -> None:
    load(clerk, GOOD)
    run_invoice(clerk, "STMARY", "2026-05", issue_date=JUNE_1)
    assert load(clerk, GOOD) == TripImportResult(added=0, updated=0, unchanged=4, skipped=())


def test_an_invoiced_trip_may_get_a_corrected_address(clerk: Workspace, tmp_path: Path) -> None:
    load(clerk, GOOD)
    run_invoice(clerk, "STMARY", "2026-05", issue_date=JUNE_1)
    result = load(clerk, good_with(tmp_path, changes={"9 Pine Ave": "9 Pine Avenue"}))
    assert (result.updated, result.unchanged) == (1, 3)
    (trip,) = [t for t in list_trips(clerk) if t.external_trip_id == "T-1004"]
    assert (trip.pickup, trip.invoice_number) == ("9 Pine Avenue", "STMARY-000001")


def test_an_auditor_may_not_import(database: Database, clerk: Workspace) -> None:
    with pytest.raises(PermissionDenied) as refused:
        load(database.workspace("auditor"), GOOD)
    assert str(refused.value) == "auditor is an auditor, and an auditor may not import trips."
    assert list_trips(clerk) == []
