"""Invoices: billing a facility's completed trips so that no trip is ever billed twice.

The database holds the promise: a unique partial index lets a trip sit on one live invoice line
at most. Two invoice runs racing over the same trips both reach that index; the loser's
transaction rolls back whole (invoice number included, so numbers stay gap-free) and it is told
which trips were taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing_desk.db.models import (
    Allocation,
    Client,
    Facility,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoiceStatusChange,
    Trip,
)
from billing_desk.domain.errors import BadInput, DoubleBilling, Refused
from billing_desk.domain.money import Money
from billing_desk.domain.periods import Period, parse_period
from billing_desk.domain.roles import Permission
from billing_desk.domain.states import INVOICE_STATES, InvoiceStatus, TripStatus
from billing_desk.services.facilities import get_facility
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

# How many taken trips a refusal names before it says "and N more".
NAMED_TRIPS_IN_MESSAGE = 10


@dataclass(frozen=True)
class InvoiceRunResult:
    invoice_number: str
    facility: str
    period: str
    issue_date: date
    due_date: date
    total: Money
    trip_count: int


@dataclass(frozen=True)
class InvoiceSummary:
    """An invoice with what is owed on it: total = paid + credited + open (a void invoice owes
    nothing); `days_past_due` counts from the due date while something is open."""

    number: str
    facility: str
    period_start: date
    period_end: date
    issue_date: date
    due_date: date
    status: str
    total: Money
    trip_count: int
    paid: Money
    credited: Money
    open: Money
    days_past_due: int

    @property
    def overdue(self) -> bool:
        return self.days_past_due > 0


@dataclass(frozen=True)
class InvoiceLineInfo:
    line_no: int
    trip_id: str
    service_date: date
    description: str
    amount: Money


@dataclass(frozen=True)
class StatusChangeInfo:
    """One move of an invoice's or a payment's status: from, to, when, who and why."""

    from_status: str | None
    to_status: str
    changed_at: datetime
    changed_by: str
    reason: str | None


@dataclass(frozen=True)
class InvoiceMoney:
    """Money applied to an invoice: from which payment, directly or as the facility's credit
    applied later, and whether it was released again (the payment voided or returned)."""

    payment_id: int
    amount: Money
    via_credit: bool
    applied_at: datetime
    applied_by: str
    released: bool

    def describe(self) -> str:
        source = (
            f"credit from payment {self.payment_id}"
            if self.via_credit
            else f"payment {self.payment_id}"
        )
        return f"{source}, released" if self.released else source


@dataclass(frozen=True)
class InvoiceDetail:
    summary: InvoiceSummary
    lines: tuple[InvoiceLineInfo, ...]
    history: tuple[StatusChangeInfo, ...]
    void_reason: str | None
    money: tuple[InvoiceMoney, ...] = ()


@dataclass(frozen=True)
class BillableTrip:
    """A trip an invoice run would bill: what its line will say."""

    trip_id: str
    service_date: date
    client: str
    description: str
    fare: Money


@dataclass(frozen=True)
class InvoiceRunPreview:
    """What `run_invoice` would bill for a facility and period, before anything is written."""

    facility: str
    period: str
    issue_date: date
    due_date: date
    trips: tuple[BillableTrip, ...]
    total: Money


def preview_invoice_run(
    workspace: Workspace,
    facility_code: str,
    period: str,
    *,
    issue_date: date | None = None,
) -> InvoiceRunPreview:
    """The completed, billable, not-yet-invoiced trips of `period` that an invoice run would
    bill now, with the total and dates it would carry. Writes nothing; refuses as the run would
    (an unknown facility, a period not started, nothing to bill, trips already billed)."""
    billing_period = parse_period(period)

    def operation(unit: UnitOfWork) -> InvoiceRunPreview:
        unit.require(Permission.RUN_INVOICES)
        session = unit.session
        facility = get_facility(unit, facility_code)
        day = issue_date or unit.today
        if billing_period.start > day:
            raise BadInput(
                f"Period {billing_period} has not started yet; bill it once it has trips."
            )
        trips = _unbilled_trips_of_period(session, facility, billing_period, lock=False)
        if not trips:
            _refuse_empty_period(session, facility, billing_period)
        return InvoiceRunPreview(
            facility.code,
            str(billing_period),
            day,
            day + timedelta(days=facility.payment_terms_days),
            tuple(
                BillableTrip(
                    trip.external_trip_id,
                    trip.service_date,
                    client_name,
                    f"{client_name}: {trip.pickup} to {trip.dropoff}",
                    Money.from_minor(trip.fare_minor, facility.currency),
                )
                for trip, client_name in trips
            ),
            Money.from_minor(sum(t.fare_minor for t, _ in trips), facility.currency),
        )

    return workspace.read(operation)


@dataclass(frozen=True)
class OpenInvoice:
    """An invoice that still takes payments, with what is open on it."""

    number: str
    issue_date: date
    due_date: date
    total: Money
    open: Money
    days_past_due: int


def open_invoices(workspace: Workspace, facility_code: str) -> list[OpenInvoice]:
    """The facility's issued and partly paid invoices, the oldest due first (the order in which
    a payment is applied), each with its open amount as an allocation sees it."""
    # Allocations bill against invoices (record_invoice_status): imported here, not at the top.
    from billing_desk.services.allocations import OPEN_INVOICE_STATUSES, open_amounts

    def operation(unit: UnitOfWork) -> list[OpenInvoice]:
        unit.require(Permission.READ)
        facility = get_facility(unit, facility_code)
        invoices = list(
            unit.session.scalars(
                select(Invoice)
                .where(
                    Invoice.facility_id == facility.id,
                    Invoice.status.in_(OPEN_INVOICE_STATUSES),
                )
                .order_by(Invoice.due_date, Invoice.sequence)
            )
        )
        left = open_amounts(unit.session, invoices)
        return [
            OpenInvoice(
                i.number,
                i.issue_date,
                i.due_date,
                Money.from_minor(i.total_minor, i.currency),
                Money.from_minor(left[i.id], i.currency),
                max(0, (unit.today - i.due_date).days),
            )
            for i in invoices
            if left[i.id] > 0
        ]

    return workspace.read(operation)


def run_invoice(
    workspace: Workspace,
    facility_code: str,
    period: str,
    *,
    trip_ids: Sequence[str] | None = None,
    issue_date: date | None = None,
) -> InvoiceRunResult:
    """Bill the facility's completed, billable, not-yet-invoiced trips of `period` (or only
    `trip_ids`) into one issued invoice. Refuses, writing nothing, when a wanted trip is already
    billed, naming the trips taken."""
    billing_period = parse_period(period)

    def operation(unit: UnitOfWork) -> InvoiceRunResult:
        unit.require(Permission.RUN_INVOICES)
        return bill_trips(unit, facility_code, billing_period, trip_ids, issue_date or unit.today)

    return workspace.write(operation, action="invoice.run")


def bill_trips(
    unit: UnitOfWork,
    facility_code: str,
    period: Period,
    trip_ids: Sequence[str] | None,
    issue_date: date,
) -> InvoiceRunResult:
    session = unit.session
    facility = get_facility(unit, facility_code)
    if period.start > issue_date:
        raise BadInput(f"Period {period} has not started yet; bill it once it has trips.")
    if trip_ids is None:
        trips = _unbilled_trips_of_period(session, facility, period)
        if not trips:
            _refuse_empty_period(session, facility, period)
    else:
        trips = _chosen_trips(session, facility, period, trip_ids)

    number, sequence = _next_invoice_number(session, facility)
    total = sum(trip.fare_minor for trip, _ in trips)
    invoice = Invoice(
        facility_id=facility.id,
        number=number,
        sequence=sequence,
        period_start=period.start,
        period_end=period.end,
        issue_date=issue_date,
        due_date=issue_date + timedelta(days=facility.payment_terms_days),
        status=InvoiceStatus.ISSUED.value,
        currency=facility.currency,
        total_minor=total,
        created_at=unit.now,
        created_by=unit.actor.name,
    )
    session.add(invoice)
    session.flush()
    lines = [
        InvoiceLine(
            invoice_id=invoice.id,
            facility_id=facility.id,
            trip_id=trip.id,
            line_no=index,
            service_date=trip.service_date,
            description=f"{client_name}: {trip.pickup} to {trip.dropoff}",
            amount_minor=trip.fare_minor,
            released=False,
        )
        for index, (trip, client_name) in enumerate(trips, start=1)
    ]
    try:
        with session.begin_nested():
            session.add_all(lines)
            session.flush()
    except IntegrityError:
        # A concurrent run billed some of these trips after we chose them.
        taken = _billed_among(session, [trip.id for trip, _ in trips])
        raise _double_billing(facility, taken) from None
    record_invoice_status(unit, invoice, None, InvoiceStatus.ISSUED, "invoice run")
    return InvoiceRunResult(
        number,
        facility.code,
        str(period),
        invoice.issue_date,
        invoice.due_date,
        Money.from_minor(total, facility.currency),
        len(lines),
    )


def _unbilled_trips_of_period(
    session: Session, facility: Facility, period: Period, *, lock: bool = True
) -> list[tuple[Trip, str]]:
    query = (
        select(Trip, Client.name)
        .join(Client, Client.id == Trip.client_id)
        .where(
            Trip.facility_id == facility.id,
            Trip.status == TripStatus.COMPLETED.value,
            Trip.billable.is_(True),
            Trip.service_date >= period.start,
            Trip.service_date <= period.end,
            ~exists().where(InvoiceLine.trip_id == Trip.id, InvoiceLine.released.is_(False)),
        )
        .order_by(Trip.service_date, Trip.external_trip_id)
    )
    if lock:
        # Holds the trips' billed fields still until this run commits (PostgreSQL).
        query = query.with_for_update(read=True, of=Trip)
    return [(trip, name) for trip, name in session.execute(query)]


def _chosen_trips(
    session: Session, facility: Facility, period: Period, trip_ids: Sequence[str]
) -> list[tuple[Trip, str]]:
    wanted = list(dict.fromkeys(t.strip() for t in trip_ids if t.strip()))
    if not wanted:
        raise BadInput("No trips were named; give trip ids with --trips, separated by commas.")
    rows = {
        trip.external_trip_id: (trip, name)
        for trip, name in session.execute(
            select(Trip, Client.name)
            .join(Client, Client.id == Trip.client_id)
            .where(Trip.facility_id == facility.id, Trip.external_trip_id.in_(wanted))
            .with_for_update(read=True, of=Trip)
        )
    }
    missing = [t for t in wanted if t not in rows]
    if missing:
        raise BadInput(
            f"{facility.code} has no trip {_named(missing)}; check the trip ids "
            "(`billing-desk trip list` shows them)."
        )
    for external_id in wanted:
        trip = rows[external_id][0]
        if trip.status != TripStatus.COMPLETED.value or not trip.billable:
            state = trip.status if trip.status != TripStatus.COMPLETED.value else "not billable"
            raise Refused(
                f"Trip {external_id} is {state}; only completed billable trips are billed."
            )
        if not period.contains(trip.service_date):
            raise BadInput(
                f"Trip {external_id} was on {trip.service_date}, outside period {period}; "
                "bill it in its own period."
            )
    chosen = [rows[t] for t in wanted]
    taken = _billed_among(session, [trip.id for trip, _ in chosen])
    if taken:
        raise _double_billing(facility, taken)
    return sorted(chosen, key=lambda pair: (pair[0].service_date, pair[0].external_trip_id))


def _refuse_empty_period(session: Session, facility: Facility, period: Period) -> None:
    billed = session.execute(
        select(Trip.external_trip_id, Invoice.number)
        .join(InvoiceLine, InvoiceLine.trip_id == Trip.id)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            Trip.facility_id == facility.id,
            Trip.service_date >= period.start,
            Trip.service_date <= period.end,
            InvoiceLine.released.is_(False),
        )
        .order_by(Trip.external_trip_id)
    ).all()
    if billed:
        raise _double_billing(facility, [(r.external_trip_id, r.number) for r in billed], period)
    raise Refused(f"{facility.code} has no completed billable trips in {period} to bill.")


def _billed_among(session: Session, trip_ids: Sequence[int]) -> list[tuple[str, str]]:
    """(external trip id, invoice number) of those trips already on a live invoice."""
    if not trip_ids:
        return []
    rows = session.execute(
        select(Trip.external_trip_id, Invoice.number)
        .join(InvoiceLine, InvoiceLine.trip_id == Trip.id)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Trip.id.in_(trip_ids), InvoiceLine.released.is_(False))
        .order_by(Trip.external_trip_id)
    )
    return [(r.external_trip_id, r.number) for r in rows]


def _double_billing(
    facility: Facility, taken: Sequence[tuple[str, str]], period: Period | None = None
) -> DoubleBilling:
    invoices = sorted({number for _, number in taken})
    trips = [trip for trip, _ in taken]
    where = f" in {period}" if period is not None else ""
    noun, verb = ("trip", "is") if len(trips) == 1 else ("trips", "are")
    return DoubleBilling(
        f"Nothing was billed: {len(trips)} {noun} of {facility.code}{where} {verb} already on "
        f"invoice {', '.join(invoices)} ({_named(trips)}).",
        taken_trips=trips,
    )


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:NAMED_TRIPS_IN_MESSAGE])
    more = len(items) - NAMED_TRIPS_IN_MESSAGE
    return f"{shown} and {more} more" if more > 0 else shown


def _next_invoice_number(session: Session, facility: Facility) -> tuple[str, int]:
    """Take the facility's next number inside this transaction: a rollback gives it back."""
    counter = session.get(InvoiceCounter, facility.id, with_for_update=True)
    if counter is None:
        counter = InvoiceCounter(facility_id=facility.id, last_number=0)
        session.add(counter)
    counter.last_number += 1
    session.flush()
    return f"{facility.code}-{counter.last_number:06d}", counter.last_number


def record_invoice_status(
    unit: UnitOfWork,
    invoice: Invoice,
    current: InvoiceStatus | None,
    target: InvoiceStatus,
    reason: str | None,
) -> None:
    if current is not None:
        INVOICE_STATES.check(current, target)
    invoice.status = target.value
    unit.session.add(
        InvoiceStatusChange(
            invoice_id=invoice.id,
            facility_id=invoice.facility_id,
            from_status=current.value if current is not None else None,
            to_status=target.value,
            changed_at=unit.now,
            changed_by=unit.actor.name,
            reason=reason,
        )
    )


def void_invoice(workspace: Workspace, number: str, reason: str) -> InvoiceSummary:
    """Void an issued invoice (manager only, with a reason); its trips may be billed again."""
    why = reason.strip()
    if not why:
        raise BadInput("Voiding an invoice needs a reason; give it with --reason.")

    def operation(unit: UnitOfWork) -> InvoiceSummary:
        unit.require(Permission.VOID_INVOICES)
        invoice = _invoice_by_number(unit.session, number, lock=True)
        record_invoice_status(unit, invoice, InvoiceStatus(invoice.status), InvoiceStatus.VOID, why)
        invoice.void_reason = why
        invoice.voided_by = unit.actor.name
        invoice.voided_at = unit.now
        for line in unit.session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)
        ):
            line.released = True
        unit.session.flush()
        return _summaries(unit.session, [invoice], unit.today)[0]

    return workspace.write(operation, action="invoice.void")


def _invoice_by_number(session: Session, number: str, *, lock: bool = False) -> Invoice:
    query = select(Invoice).where(Invoice.number == number.strip().upper())
    if lock:
        query = query.with_for_update()
    invoice = session.scalar(query)
    if invoice is None:
        raise BadInput(f"There is no invoice {number}; `billing-desk invoice list` shows them.")
    return invoice


def invoice_summaries(
    session: Session, invoices: Sequence[Invoice], today: date
) -> list[InvoiceSummary]:
    """Each invoice with what is paid, credited and open on it (see `_summary`)."""
    return _summaries(session, invoices, today)


def _summaries(session: Session, invoices: Sequence[Invoice], today: date) -> list[InvoiceSummary]:
    if not invoices:
        return []
    ids = [i.id for i in invoices]
    counts: dict[int, int] = {}
    applied: dict[tuple[int, bool], int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for invoice_id, count in session.execute(
            select(InvoiceLine.invoice_id, func.count())
            .where(InvoiceLine.invoice_id.in_(chunk))
            .group_by(InvoiceLine.invoice_id)
        ):
            counts[invoice_id] = int(count)
        for invoice_id, via_credit, amount in session.execute(
            select(Allocation.invoice_id, Allocation.via_credit, func.sum(Allocation.amount_minor))
            .where(Allocation.invoice_id.in_(chunk), Allocation.released.is_(False))
            .group_by(Allocation.invoice_id, Allocation.via_credit)
        ):
            applied[(invoice_id, bool(via_credit))] = int(amount)
    codes: dict[int, str] = {
        facility_id: code
        for facility_id, code in session.execute(
            select(Facility.id, Facility.code).where(
                Facility.id.in_({i.facility_id for i in invoices})
            )
        )
    }
    return [
        _summary(i, codes[i.facility_id], counts.get(i.id, 0), applied, today) for i in invoices
    ]


def _summary(
    invoice: Invoice,
    code: str,
    trips: int,
    applied: dict[tuple[int, bool], int],
    today: date,
) -> InvoiceSummary:
    """The one definition of what is open on an invoice: its total less the live money
    applied to it (paid directly or as credit); nothing is open on a void or draft invoice."""
    paid = applied.get((invoice.id, False), 0)
    credited = applied.get((invoice.id, True), 0)
    owing = invoice.status in (InvoiceStatus.ISSUED.value, InvoiceStatus.PARTIALLY_PAID.value)
    left = invoice.total_minor - paid - credited if owing else 0
    late = max(0, (today - invoice.due_date).days) if left > 0 else 0
    money = partial(Money.from_minor, currency=invoice.currency)
    return InvoiceSummary(
        invoice.number,
        code,
        invoice.period_start,
        invoice.period_end,
        invoice.issue_date,
        invoice.due_date,
        invoice.status,
        money(invoice.total_minor),
        trips,
        money(paid),
        money(credited),
        money(left),
        late,
    )


def list_invoices(
    workspace: Workspace,
    *,
    facility: str | None = None,
    status: str | None = None,
    open_only: bool = False,
    overdue_only: bool = False,
    period_from: date | None = None,
    period_to: date | None = None,
    limit: int | None = None,
) -> list[InvoiceSummary]:
    """Invoices by number, each with what is paid, credited and open on it; `open_only` keeps
    those with something open, `overdue_only` those open past their due date; `period_from` and
    `period_to` bound the billing period; `limit` keeps the newest."""
    wanted_status = _parse_status(status) if status else None

    def operation(unit: UnitOfWork) -> list[InvoiceSummary]:
        unit.require(Permission.READ)
        query = select(Invoice)
        if facility is not None:
            query = query.where(Invoice.facility_id == get_facility(unit, facility).id)
        if wanted_status is not None:
            query = query.where(Invoice.status == wanted_status.value)
        if open_only or overdue_only:
            query = query.where(
                Invoice.status.in_((InvoiceStatus.ISSUED.value, InvoiceStatus.PARTIALLY_PAID.value))
            )
        if overdue_only:
            query = query.where(Invoice.due_date < unit.today)
        if period_from is not None:
            query = query.where(Invoice.period_end >= period_from)
        if period_to is not None:
            query = query.where(Invoice.period_start <= period_to)
        query = query.order_by(Invoice.issue_date.desc(), Invoice.id.desc())
        if limit is not None:
            query = query.limit(limit)
        summaries = _summaries(unit.session, list(unit.session.scalars(query)), unit.today)
        if open_only or overdue_only:
            summaries = [s for s in summaries if s.open.is_positive()]
        if overdue_only:
            summaries = [s for s in summaries if s.overdue]
        return sorted(summaries, key=lambda s: s.number)

    return workspace.read(operation)


def _parse_status(text: str) -> InvoiceStatus:
    cleaned = text.strip().lower().replace("_", " ").replace("-", " ")
    try:
        return InvoiceStatus(cleaned)
    except ValueError:
        names = ", ".join(s.value for s in InvoiceStatus)
        raise BadInput(f"'{text}' is not an invoice status; choose one of {names}.") from None


def show_invoice(workspace: Workspace, number: str) -> InvoiceDetail:
    def operation(unit: UnitOfWork) -> InvoiceDetail:
        unit.require(Permission.READ)
        invoice = _invoice_by_number(unit.session, number)
        lines = unit.session.execute(
            select(InvoiceLine, Trip.external_trip_id)
            .join(Trip, Trip.id == InvoiceLine.trip_id)
            .where(InvoiceLine.invoice_id == invoice.id)
            .order_by(InvoiceLine.line_no)
        )
        history = unit.session.scalars(
            select(InvoiceStatusChange)
            .where(InvoiceStatusChange.invoice_id == invoice.id)
            .order_by(InvoiceStatusChange.id)
        )
        applied = unit.session.scalars(
            select(Allocation).where(Allocation.invoice_id == invoice.id).order_by(Allocation.id)
        )
        money = tuple(
            InvoiceMoney(
                a.payment_id,
                Money.from_minor(a.amount_minor, invoice.currency),
                a.via_credit,
                a.created_at,
                a.created_by,
                a.released,
            )
            for a in applied
        )
        return InvoiceDetail(
            _summaries(unit.session, [invoice], unit.today)[0],
            tuple(
                InvoiceLineInfo(
                    line.line_no,
                    trip_id,
                    line.service_date,
                    line.description,
                    Money.from_minor(line.amount_minor, invoice.currency),
                )
                for line, trip_id in lines
            ),
            tuple(
                StatusChangeInfo(h.from_status, h.to_status, h.changed_at, h.changed_by, h.reason)
                for h in history
            ),
            invoice.void_reason,
            money,
        )

    return workspace.read(operation)
