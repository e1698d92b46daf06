"""`load_demo_data`: realistic, deterministic, all-or-nothing demo data, on both backends."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import Connection, func, select

from billing_desk.db.models import (
    Allocation,
    Base,
    Deposit,
    DepositItem,
    Facility,
    IdempotencyRecord,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentStatusChange,
    Trip,
)
from billing_desk.domain.errors import BadInput, PermissionDenied, Refused
from billing_desk.domain.payments import LIVE_STATUSES, PaymentStatus
from billing_desk.domain.periods import Period
from billing_desk.domain.states import TripStatus, invoice_status_for
from billing_desk.services.demo import DemoSummary, Progress, load_demo_data
from billing_desk.services.facilities import list_facilities
from billing_desk.services.invoices import list_invoices
from billing_desk.services.overview import overview
from billing_desk.services.trips import list_trips
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.users import list_users
from tests.clocks import today_of
from tests.conftest import Database
from tests.support import seed_facility, seed_users

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

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
    assert all(i.trip_count > 0 for i in invoices)
    assert {i.status for i in invoices} == {"issued", "partially paid", "paid"}


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
        _assert_money_conserved(conn)
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
    assert first.payments > 0 and first.deposits > 0
    left, right = database.workspace("auditor"), twin.workspace("auditor")
    assert list_trips(left) == list_trips(right)
    assert list_invoices(left) == list_invoices(right)
    assert list_facilities(left) == list_facilities(right)
    # Every column of every row, ids and timestamps included, payments and their history too;
    # only the audit trail says who really loaded the demo, and when.
    dumped = _dump(left)
    assert dumped == _dump(right)
    for table in ("payment", "payment_status_change", "allocation", "deposit_item"):
        assert dumped[table], f"the small demo has no {table} rows to compare"
    assert len(dumped["idempotency_record"]) == first.payments


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


# Columns of the audit trail that record the real load (who ran the demo, when, in which
# request) and the chain hashes that cover them; what was audited must still be identical.
_REAL_LOAD = {
    "audit_entry": {"recorded_at", "user_name", "user_role", "request_id", "entry_digest"},
    "audit_link": {"prev_hash", "entry_hash", "sealed_at"},
    "audit_chain_head": {"last_hash"},
}


def _dump(workspace: Workspace) -> dict[str, list[tuple[object, ...]]]:
    with workspace.engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(
                    select(
                        *(c for c in table.columns if c.name not in _REAL_LOAD.get(table.name, ()))
                    ).order_by(*table.primary_key.columns)
                )
            ]
            for table in Base.metadata.sorted_tables
        }


# -- payments ---------------------------------------------------------------------------------


def test_default_demo_has_a_realistic_payment_history(database: Database) -> None:
    summary = load_demo_data(database.workspace("newcomer"), as_of=AS_OF)
    with database.workspace("auditor").engine.connect() as conn:
        _assert_money_conserved(conn)
        payments = {p.id: p for p in conn.execute(select(Payment).order_by(Payment.id))}
        history = defaultdict(list)
        for change in conn.execute(select(PaymentStatusChange).order_by(PaymentStatusChange.id)):
            history[change.payment_id].append(change)
        allocations = conn.execute(select(Allocation).order_by(Allocation.id)).all()
        invoices = {i.id: i for i in conn.execute(select(Invoice))}
        currencies = {fid: cur for fid, cur in conn.execute(select(Facility.id, Facility.currency))}
        deposits = conn.execute(select(Deposit).order_by(Deposit.id)).all()
        items = conn.execute(select(DepositItem).order_by(DepositItem.id)).all()
        keys = [
            (key, operation)
            for key, operation in conn.execute(
                select(IdempotencyRecord.key, IdempotencyRecord.operation)
            )
        ]

    assert summary.payments == len(payments)
    assert 45 <= len(payments) <= 75
    assert summary.deposits == len(deposits) >= 8

    # When: received on business days before as_of, recorded on the story's clock.
    midnight = datetime.combine(AS_OF, time(0), tzinfo=UTC)
    assert all(p.received_date < AS_OF and p.received_date.weekday() < 5 for p in payments.values())
    assert all(p.recorded_at.date() == p.received_date for p in payments.values())
    for changes in history.values():
        assert all(c.changed_at < midnight for c in changes)
        assert [c.changed_at for c in changes] == sorted(c.changed_at for c in changes)

    # How: each method about as often as in life, with realistic instruments.
    methods = Counter(p.method for p in payments.values())
    assert set(methods) == {"check", "transfer", "card"}
    assert 0.35 <= methods["check"] / len(payments) <= 0.65
    assert 0.20 <= methods["transfer"] / len(payments) <= 0.50
    assert 0.05 <= methods["card"] / len(payments) <= 0.30
    for p in payments.values():
        if p.method == "check":
            assert re.fullmatch(r"\d{9}", p.routing_number) and _aba_valid(p.routing_number)
            assert re.fullmatch(r"\d{4,6}", p.check_number)
            assert re.fullmatch(r"\d{4}", p.account_last4)
            assert re.fullmatch(r"[0-9a-f]{64}", p.account_hash)
        elif p.method == "transfer":
            rail = {"USD": "ACH", "CAD": "EFT", "EUR": "SEPA"}[p.currency]
            assert re.fullmatch(rf"{rail} \d{{4}}-[A-Z]+-\d{{6}}", p.transfer_reference)
            assert p.transfer_reference[len(rail) + 1 :][:4] == p.received_date.strftime("%y%m")
        else:
            assert p.card_brand in {"Visa", "Mastercard", "Amex"}
            assert re.fullmatch(r"\d{4}", p.card_last4)
            assert re.fullmatch(r"ch_[A-Za-z0-9]{24}", p.processor_ref)
    assert {p.currency for p in payments.values() if p.method != "transfer"} == {"USD"}
    assert {currencies[p.facility_id] for p in payments.values()} == {"USD", "CAD", "EUR"}
    # The keys a clerk's requests would carry, one per recorded payment.
    assert sorted(operation for _, operation in keys) == ["payment.record"] * len(payments)
    assert all(re.fullmatch(r"demo-[A-Z0-9]+-\d{4}", key) for key, _ in keys)

    # Each payment's history is one unbroken walk ending in its status.
    for payment_id, changes in history.items():
        assert changes[0].from_status is None
        assert all(a.to_status == b.from_status for a, b in itertools.pairwise(changes))
        assert changes[-1].to_status == payments[payment_id].status
    walks = {pid: [c.to_status for c in changes] for pid, changes in history.items()}

    # Paid in full, in part, and more than owed.
    live = [a for a in allocations if not a.released]
    paid_by = Counter()
    for a in live:
        paid_by[a.payment_id] += a.amount_minor
    statuses = Counter(i.status for i in invoices.values())
    assert 0.55 <= statuses["paid"] / len(invoices) <= 0.85
    assert statuses["partially paid"] >= 2 and statuses["issued"] >= 6
    # Overpaid: the invoice is paid and the rest stays as the facility's credit.
    overpaid = [
        p
        for p in payments.values()
        if PaymentStatus(p.status) in LIVE_STATUSES and 0 < paid_by[p.id] < p.amount_minor
    ]
    assert overpaid
    assert all(
        paid_by[p.id] == invoices[a.invoice_id].total_minor
        for p in overpaid
        for a in live
        if a.payment_id == p.id
    )

    # Checks go to the bank on Fridays, grouped in deposits that add up; older ones cleared.
    items_of = defaultdict(list)
    for item in items:
        items_of[item.deposit_id].append(item)
    for deposit in deposits:
        its = items_of[deposit.id]
        assert deposit.deposit_date.weekday() == 4 and deposit.deposit_date < AS_OF
        assert deposit.item_count == len(its) > 0
        assert deposit.total_minor == sum(i.amount_minor for i in its)
        assert all(payments[i.payment_id].method == "check" for i in its)
        assert all(i.amount_minor == payments[i.payment_id].amount_minor for i in its)
    deposited = Counter(item.payment_id for item in items)
    checks = [p for p in payments.values() if p.method == "check"]
    assert sum(p.status == "cleared" for p in checks) >= 10
    assert all(deposited[p.id] == walks[p.id].count("deposited") for p in checks)

    # A few checks came back (after the bank first credited their slip); one was presented
    # again and cleared the second time.
    returned = [pid for pid, walk in walks.items() if "returned" in walk]
    assert 1 <= len(returned) <= 3
    again = [pid for pid, walk in walks.items() if walk.count("recorded") == 2]
    assert len(again) == 1 and again[0] in returned
    assert walks[again[0]] == [
        "recorded",
        "deposited",
        "cleared",
        "returned",
        "recorded",
        "deposited",
        "cleared",
    ]
    assert paid_by[again[0]] == payments[again[0]].amount_minor
    for pid in returned:
        if pid not in again:
            assert payments[pid].status == "returned" and paid_by[pid] == 0
            released = [a for a in allocations if a.payment_id == pid]
            assert released and all(a.released for a in released)
            assert all(invoices[a.invoice_id].status != "paid" for a in released)

    # Two entries in error, voided by the manager, never by whoever recorded them.
    voided = [p for p in payments.values() if p.status == "voided"]
    assert sorted(p.method for p in voided) == ["card", "check"]
    for p in voided:
        void = history[p.id][-1]
        assert void.changed_by == "manager" != p.recorded_by == "clerk"
        assert void.reason.startswith("entered in error")
        assert paid_by[p.id] == 0
    wrong = next(p for p in voided if p.method == "check")
    # Voiding freed the check's natural key, so it could be entered again for the right facility.
    assert wrong.natural_key is None
    same_check = (wrong.routing_number, wrong.account_hash, wrong.check_number)
    twin = [
        p
        for p in payments.values()
        if p.id != wrong.id and (p.routing_number, p.account_hash, p.check_number) == same_check
    ]
    assert len(twin) == 1 and twin[0].facility_id != wrong.facility_id
    assert twin[0].status in {"deposited", "cleared"}


def test_payments_wait_for_the_real_today_when_as_of_is_in_the_future(
    database: Database,
) -> None:
    workspace = database.workspace()
    today = today_of(workspace)
    summary = load_demo_data(workspace, facilities=2, months=3, as_of=today + timedelta(days=75))
    with database.workspace("auditor").engine.connect() as conn:
        received = conn.execute(select(Payment.received_date)).scalars().all()
        _assert_money_conserved(conn)
    assert len(received) == summary.payments
    assert all(day < today for day in received)


def _assert_money_conserved(conn: Connection) -> None:
    """No invoice holds more than its total and each shows what it holds; no payment gives more
    than its amount, and only live payments give anything."""
    live = conn.execute(
        select(Allocation.payment_id, Allocation.invoice_id, Allocation.amount_minor).where(
            Allocation.released.is_(False)
        )
    ).all()
    by_invoice: Counter[int] = Counter()
    by_payment: Counter[int] = Counter()
    for payment_id, invoice_id, amount in live:
        by_invoice[invoice_id] += amount
        by_payment[payment_id] += amount
    for invoice in conn.execute(select(Invoice)):
        assert by_invoice[invoice.id] <= invoice.total_minor, invoice.number
        expected = invoice_status_for(invoice.total_minor, by_invoice[invoice.id])
        assert invoice.status == expected.value, invoice.number
    for payment in conn.execute(select(Payment)):
        assert by_payment[payment.id] <= payment.amount_minor, payment.id
        if PaymentStatus(payment.status) not in LIVE_STATUSES:
            assert by_payment[payment.id] == 0, payment.id
    mixed = conn.execute(
        select(Allocation.id)
        .join(Payment, Payment.id == Allocation.payment_id)
        .join(Invoice, Invoice.id == Allocation.invoice_id)
        .where(
            (Payment.facility_id != Invoice.facility_id)
            | (Allocation.facility_id != Payment.facility_id)
            | (Payment.currency != Invoice.currency)
        )
    ).all()
    assert mixed == []


def _aba_valid(routing: str) -> bool:
    return sum(int(d) * w for d, w in zip(routing, (3, 7, 1) * 3, strict=True)) % 10 == 0
