"""What the printed reports say, read from the database as plain dataclasses with Money: facility
statements (with their content hash), deposit slips, aging, the audit log, integrity and
reconciliation runs. Rendering is `billing_desk.reports`; printing is audited here.

A statement is a timeline of dated events, each with its effect on what the facility owes:
an issued invoice adds its total, a void takes it back, a payment that becomes live (recorded,
authorized, presented again) takes its amount off, and one that stops being live (returned,
voided, refunded, charged back) puts it back. Credit applied to an invoice moves money the
facility already paid and changes no balance. Everything is dated by business day (UTC), so a
statement as of a past day reads the same later, and its hash proves it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Final

from sqlalchemy import func, select

from billing_desk.db.models import (
    Allocation,
    AuditEntry,
    AuditLink,
    BankLine,
    BankMatch,
    Checkpoint,
    Deposit,
    DepositItem,
    Facility,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentStatusChange,
    ReconciliationRun,
)
from billing_desk.domain.errors import BadInput
from billing_desk.domain.hashing import canonical_bytes, sha256_hex
from billing_desk.domain.money import Money
from billing_desk.domain.payments import LIVE_STATUSES, PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.domain.states import InvoiceStatus
from billing_desk.services.facilities import FacilityInfo, facility_info, get_facility
from billing_desk.services.reconciliation import RunReport, show_run
from billing_desk.services.unit_of_work import UnitOfWork, Workspace
from billing_desk.services.verification import CheckpointClaim, VerificationReport, verify

# Version of the statement record hashed into a statement's content hash (2: with its open
# invoices). A statement printed under version 1 still checks against its version-1 hash.
STATEMENT_HASH_VERSION: Final = 2
# The statement id printed on a statement carries this many hex digits of its content hash.
STATEMENT_ID_DIGITS: Final = 16
# The layouts a statement prints in: every open invoice then recent activity (the default), or
# the period's activity between an opening and a closing balance.
OPEN_ITEM: Final = "open-item"
BALANCE_FORWARD: Final = "balance-forward"
LAYOUTS: Final = (OPEN_ITEM, BALANCE_FORWARD)
# Without a statement printed before, the open-item statement's activity covers this many days.
DEFAULT_ACTIVITY_DAYS: Final = 30
AGING_BUCKETS: Final = ("current", "1-30", "31-60", "61-90", "over 90")
_LIVE: Final = frozenset(s.value for s in LIVE_STATUSES)

Progress = Callable[[int, int, str], None]  # (done, total, what) after each item


# -- statements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementLine:
    """One event on a statement. `amount` is its effect on the balance (positive: the facility
    owes more); None for a line that moves no balance (credit applied)."""

    day: date
    kind: str  # invoice, invoice void, payment, payment returned ..., credit applied
    reference: str
    description: str
    amount: Money | None
    balance: Money
    note_amount: Money | None = None  # the amount a balance-neutral line is about

    def record(self) -> list[object]:
        return [
            self.day,
            self.kind,
            self.reference,
            self.description,
            None if self.amount is None else self.amount.minor,
            None if self.note_amount is None else self.note_amount.minor,
        ]


@dataclass(frozen=True)
class AgingBucket:
    name: str
    amount: Money
    invoices: int


@dataclass(frozen=True)
class OpenItem:
    """An invoice still (partly) owed on the statement's date: total = paid + credited + open."""

    number: str
    issue_date: date
    due_date: date
    total: Money
    paid: Money
    credited: Money
    open: Money
    days_past_due: int

    @property
    def overdue(self) -> bool:
        return self.days_past_due > 0

    def record(self) -> list[object]:
        return [
            self.number,
            self.issue_date,
            self.due_date,
            self.total.minor,
            self.paid.minor,
            self.credited.minor,
            self.open.minor,
            self.days_past_due,
        ]


@dataclass(frozen=True)
class StatementData:
    facility: FacilityInfo
    period_start: date
    as_of: date
    opening: Money
    lines: tuple[StatementLine, ...]
    closing: Money
    invoiced: Money  # invoices issued in the period
    received: Money  # payments that became live in the period (positive)
    reversed: Money  # voids, returns and refunds in the period (signed effect)
    aging: tuple[AgingBucket, ...]
    unapplied_credit: Money
    content_hash: str
    open_items: tuple[OpenItem, ...] = ()
    layout: str = OPEN_ITEM  # how it prints; not part of what its hash covers

    @property
    def statement_id(self) -> str:
        """What the statement prints to be checked by: facility, period, and the first
        STATEMENT_ID_DIGITS hex digits of its content hash."""
        digest = self.content_hash[:STATEMENT_ID_DIGITS]
        return f"{self.facility.code} {self.period_start} {self.as_of} {digest}"

    @property
    def overdue(self) -> Money:
        """What is open past its due date."""
        currency = self.closing.currency
        return Money.total((i.open for i in self.open_items if i.overdue), currency)

    @property
    def pay_by(self) -> date | None:
        """The day the amount due should be paid by: the earliest due date of an open invoice
        not yet passed; None when something is already overdue (pay now) or nothing is due."""
        if not self.amount_due.is_positive() or any(i.overdue for i in self.open_items):
            return None
        return min((i.due_date for i in self.open_items), default=None)

    @property
    def pay_now(self) -> bool:
        """Something is due and past its due date."""
        return self.amount_due.is_positive() and any(i.overdue for i in self.open_items)

    @property
    def amount_due(self) -> Money:
        zero = Money.zero(self.closing.currency)
        return self.closing if self.closing.is_positive() else zero

    @property
    def aging_total(self) -> Money:
        return Money.total((b.amount for b in self.aging), self.closing.currency)


def statement_record(
    data: StatementData, version: int = STATEMENT_HASH_VERSION
) -> dict[str, object]:
    """The canonical content a statement's hash covers: what it bills and when, never how it
    is laid out or who printed it (version 1 had no open invoices)."""
    record: dict[str, object] = {
        "statement_hash_version": version,
        "facility": data.facility.code,
        "facility_name": data.facility.name,
        "currency": data.closing.currency,
        "period_start": data.period_start,
        "as_of": data.as_of,
        "opening_minor": data.opening.minor,
        "lines": [line.record() for line in data.lines],
        "closing_minor": data.closing.minor,
        "aging": [[b.name, b.amount.minor, b.invoices] for b in data.aging],
        "unapplied_credit_minor": data.unapplied_credit.minor,
    }
    if version >= 2:
        record["open_items"] = [item.record() for item in data.open_items]
    return record


def statement_digest(data: StatementData, version: int = STATEMENT_HASH_VERSION) -> str:
    return sha256_hex(canonical_bytes(statement_record(data, version)))


def default_period_start(as_of: date) -> date:
    """A balance-forward statement covers the month of its date unless told otherwise."""
    return as_of.replace(day=1)


def _parse_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise BadInput(
            f"'{layout}' is not a statement layout; give --layout {' or '.join(LAYOUTS)}."
        )
    return layout


def _since_last_statement(unit: UnitOfWork, facility: Facility, as_of: date) -> date:
    """Where an open-item statement's activity starts: the day after the facility's last
    statement printed as of an earlier day, else DEFAULT_ACTIVITY_DAYS before `as_of`."""
    printed = unit.session.scalars(
        select(AuditEntry.entity_id).where(
            AuditEntry.entity_type == "statement",
            AuditEntry.action == "report.print",
            AuditEntry.facility_id == facility.id,
        )
    )
    days = []
    for entity_id in printed:
        code, _, when = entity_id.rpartition(":")
        try:
            day = date.fromisoformat(when)
        except ValueError:
            continue
        if code == facility.code and day < as_of:
            days.append(day)
    if days:
        return max(days) + timedelta(days=1)
    return as_of - timedelta(days=DEFAULT_ACTIVITY_DAYS - 1)


def statement_data(
    workspace: Workspace,
    facility_code: str,
    *,
    as_of: date | None = None,
    period_start: date | None = None,
    layout: str = OPEN_ITEM,
) -> StatementData:
    """The facility's statement as of `as_of` (default today, UTC) with its activity from
    `period_start` (default: an open-item statement's from the day after the last statement
    printed, a balance-forward one's from the first of the month). Read-only; `record_printed`
    audits the print."""
    _parse_layout(layout)

    def operation(unit: UnitOfWork) -> StatementData:
        unit.require(Permission.READ)
        facility = get_facility(unit, facility_code)
        day = as_of or unit.today
        start = _start(unit, facility, period_start, day, layout)
        return build_statement(unit, facility, day, start, layout=layout)

    return workspace.reports.read(operation)


def statements_data(
    workspace: Workspace,
    facility_codes: Sequence[str] | None,
    *,
    as_of: date | None = None,
    period_start: date | None = None,
    only_with_activity: bool = True,
    progress: Progress | None = None,
    layout: str = OPEN_ITEM,
) -> list[StatementData]:
    """Statements of the named facilities, or of every facility with a balance or activity in
    the period (`facility_codes` None), in code order, in one read transaction."""
    _parse_layout(layout)

    def operation(unit: UnitOfWork) -> list[StatementData]:
        unit.require(Permission.READ)
        if facility_codes is None:
            facilities = list(unit.session.scalars(select(Facility).order_by(Facility.code)))
        else:
            facilities = [get_facility(unit, code) for code in facility_codes]
        day = as_of or unit.today
        out: list[StatementData] = []
        for index, facility in enumerate(facilities, 1):
            start = _start(unit, facility, period_start, day, layout)
            data = build_statement(unit, facility, day, start, layout=layout)
            keep = facility_codes is not None or not only_with_activity
            if keep or data.lines or not data.closing.is_zero() or not data.opening.is_zero():
                out.append(data)
            if progress is not None:
                progress(index, len(facilities), facility.code)
        return out

    return workspace.reports.read(operation)


def _start(
    unit: UnitOfWork, facility: Facility, period_start: date | None, as_of: date, layout: str
) -> date:
    if period_start is not None:
        start = period_start
    elif layout == OPEN_ITEM:
        start = _since_last_statement(unit, facility, as_of)
    else:
        start = default_period_start(as_of)
    if start > as_of:
        raise BadInput(
            f"The statement period starts {start}, after its date {as_of}; give --from on or "
            "before --as-of."
        )
    return start


@dataclass
class _Event:
    day: date
    order: tuple[int, int]
    kind: str
    reference: str
    description: str
    effect: int | None
    note: int | None = None


def build_statement(
    unit: UnitOfWork,
    facility: Facility,
    as_of: date,
    period_start: date,
    *,
    layout: str = OPEN_ITEM,
) -> StatementData:
    """The statement of `facility`, inside the caller's unit of work."""
    session = unit.session
    currency = facility.currency
    events: list[_Event] = []
    cutoff = _day_end(as_of)

    invoices = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.facility_id == facility.id,
                Invoice.status != InvoiceStatus.DRAFT.value,
                Invoice.issue_date <= as_of,
            )
            .order_by(Invoice.issue_date, Invoice.sequence)
        )
    )
    trips = _trip_summaries(unit, [i.id for i in invoices])
    for invoice in invoices:
        count, first, last = trips.get(invoice.id, (0, None, None))
        span = f"{first:%d %b} – {last:%d %b %Y}" if first and last else ""
        what = f"{count} trip{'s' if count != 1 else ''}" + (f", {span}" if span else "")
        events.append(
            _Event(
                invoice.issue_date,
                (0, invoice.sequence),
                "invoice",
                invoice.number,
                f"Invoice for {invoice.period_start:%B %Y}: {what}; due {invoice.due_date}",
                invoice.total_minor,
            )
        )
        voided = invoice.voided_at
        if invoice.status == InvoiceStatus.VOID.value and voided is not None:
            void_day = voided.astimezone(UTC).date()
            if void_day <= as_of:
                events.append(
                    _Event(
                        max(void_day, invoice.issue_date),
                        (1, invoice.sequence),
                        "invoice void",
                        invoice.number,
                        # The reason is the office's own note, never the customer's reading.
                        "Invoice voided: not owed",
                        -invoice.total_minor,
                    )
                )

    payments = {
        p.id: p
        for p in session.scalars(
            select(Payment).where(Payment.facility_id == facility.id).order_by(Payment.id)
        )
    }
    changes = session.execute(
        select(
            PaymentStatusChange.payment_id,
            PaymentStatusChange.from_status,
            PaymentStatusChange.to_status,
            PaymentStatusChange.changed_at,
            PaymentStatusChange.reason,
        )
        .where(
            PaymentStatusChange.facility_id == facility.id,
            PaymentStatusChange.changed_at < cutoff,
        )
        .order_by(PaymentStatusChange.id)
    ).all()
    live_at_as_of: dict[int, bool] = {}
    for payment_id, before, after, changed_at, _why_changed in changes:
        payment = payments.get(payment_id)
        if payment is None:
            continue
        was_live = before in _LIVE
        now_live = after in _LIVE
        changed_day = changed_at.astimezone(UTC).date()
        if now_live and not was_live:
            first_time = before is None or before == PaymentStatus.AWAITING_APPROVAL.value
            live_day = max(payment.received_date, changed_day) if before else payment.received_date
            if live_day > as_of:
                continue
            live_at_as_of[payment_id] = True
            events.append(
                _Event(
                    live_day,
                    (2, payment_id),
                    "payment" if first_time else "payment presented again",
                    _payment_reference(payment),
                    _payment_description(payment),
                    -payment.amount_minor,
                )
            )
        elif was_live and not now_live:
            if not live_at_as_of.get(payment_id):
                continue
            live_at_as_of[payment_id] = False
            # The reason is the office's note (who erred, where it was re-entered): not printed.
            events.append(
                _Event(
                    changed_day,
                    (3, payment_id),
                    f"payment {after}",
                    _payment_reference(payment),
                    f"{_payment_description(payment)} — {after}",
                    payment.amount_minor,
                )
            )

    numbers = {i.id: i.number for i in invoices}
    allocations = list(
        session.scalars(
            select(Allocation)
            .where(Allocation.facility_id == facility.id, Allocation.created_at < cutoff)
            .order_by(Allocation.id)
        )
    )
    for allocation in allocations:
        if allocation.via_credit:
            events.append(
                _Event(
                    allocation.created_at.astimezone(UTC).date(),
                    (4, allocation.id),
                    "credit applied",
                    numbers.get(allocation.invoice_id, str(allocation.invoice_id)),
                    f"Credit from payment {allocation.payment_id} applied to invoice "
                    f"{numbers.get(allocation.invoice_id, allocation.invoice_id)}",
                    None,
                    allocation.amount_minor,
                )
            )

    events.sort(key=lambda e: (e.day, e.order))
    opening = sum(e.effect or 0 for e in events if e.day < period_start)
    balance = opening
    lines: list[StatementLine] = []
    invoiced = received = reversed_ = 0
    for event in events:
        if event.day < period_start:
            continue
        effect = event.effect
        if effect is not None:
            balance += effect
            if event.kind == "invoice":
                invoiced += effect
            elif event.kind.startswith("payment") and effect < 0:
                received -= effect
            else:
                reversed_ += effect
        lines.append(
            StatementLine(
                event.day,
                event.kind,
                event.reference,
                event.description,
                None if effect is None else Money.from_minor(effect, currency),
                Money.from_minor(balance, currency),
                None if event.note is None else Money.from_minor(event.note, currency),
            )
        )

    aging, credit, open_items = _aging(
        invoices, allocations, payments, live_at_as_of, as_of, currency
    )
    unhashed = StatementData(
        facility_info(facility),
        period_start,
        as_of,
        Money.from_minor(opening, currency),
        tuple(lines),
        Money.from_minor(balance, currency),
        Money.from_minor(invoiced, currency),
        Money.from_minor(received, currency),
        Money.from_minor(reversed_, currency),
        aging,
        Money.from_minor(credit, currency),
        "",
        open_items,
        layout,
    )
    return _with_hash(unhashed, statement_digest(unhashed))


def _with_hash(data: StatementData, digest: str) -> StatementData:
    return replace(data, content_hash=digest)


def _day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _trip_summaries(
    unit: UnitOfWork, invoice_ids: Sequence[int]
) -> dict[int, tuple[int, date | None, date | None]]:
    out: dict[int, tuple[int, date | None, date | None]] = {}
    for start in range(0, len(invoice_ids), 500):
        chunk = invoice_ids[start : start + 500]
        rows = unit.session.execute(
            select(
                InvoiceLine.invoice_id,
                func.count(),
                func.min(InvoiceLine.service_date),
                func.max(InvoiceLine.service_date),
            )
            .where(InvoiceLine.invoice_id.in_(chunk))
            .group_by(InvoiceLine.invoice_id)
        )
        for invoice_id, count, first, last in rows:
            out[invoice_id] = (int(count), first, last)
    return out


def _aging(
    invoices: Sequence[Invoice],
    allocations: Sequence[Allocation],
    payments: Mapping[int, Payment],
    live_at_as_of: Mapping[int, bool],
    as_of: date,
    currency: str,
) -> tuple[tuple[AgingBucket, ...], int, tuple[OpenItem, ...]]:
    """Open amounts of the invoices still owed on `as_of`, by days past due, the credit (live
    money not allocated) on that day, and each open invoice, oldest due first."""
    cutoff = _day_end(as_of)

    def alive(allocation: Allocation) -> bool:
        released = allocation.released_at
        return not allocation.released or (released is not None and released >= cutoff)

    allocated_to: dict[int, int] = defaultdict(int)
    credited_to: dict[int, int] = defaultdict(int)
    allocated_from: dict[int, int] = defaultdict(int)
    for allocation in allocations:
        if alive(allocation):
            allocated_to[allocation.invoice_id] += allocation.amount_minor
            if allocation.via_credit:
                credited_to[allocation.invoice_id] += allocation.amount_minor
            allocated_from[allocation.payment_id] += allocation.amount_minor
    amounts = [0] * len(AGING_BUCKETS)
    counts = [0] * len(AGING_BUCKETS)
    items: list[OpenItem] = []
    money = partial(Money.from_minor, currency=currency)
    for invoice in invoices:
        voided = invoice.voided_at
        if invoice.status == InvoiceStatus.VOID.value and voided is not None and voided < cutoff:
            continue
        applied = allocated_to.get(invoice.id, 0)
        credited = credited_to.get(invoice.id, 0)
        left = invoice.total_minor - applied
        if left <= 0:
            continue
        late = (as_of - invoice.due_date).days
        index = aging_bucket(late)
        amounts[index] += left
        counts[index] += 1
        items.append(
            OpenItem(
                invoice.number,
                invoice.issue_date,
                invoice.due_date,
                money(invoice.total_minor),
                money(applied - credited),
                money(credited),
                money(left),
                max(late, 0),
            )
        )
    items.sort(key=lambda i: (i.due_date, i.issue_date, i.number))
    credit = sum(
        payments[p].amount_minor - allocated_from.get(p, 0)
        for p, live in live_at_as_of.items()
        if live
    )
    buckets = tuple(
        AgingBucket(name, Money.from_minor(amount, currency), count)
        for name, amount, count in zip(AGING_BUCKETS, amounts, counts, strict=True)
    )
    return buckets, credit, tuple(items)


def aging_bucket(days_past_due: int) -> int:
    """Index into AGING_BUCKETS: not yet due is current; then 1-30, 31-60, 61-90, over 90."""
    if days_past_due <= 0:
        return 0
    if days_past_due <= 30:
        return 1
    if days_past_due <= 60:
        return 2
    if days_past_due <= 90:
        return 3
    return 4


def _payment_reference(payment: Payment) -> str:
    if payment.method == "check" and payment.check_number:
        return f"check {payment.check_number}"
    if payment.method == "transfer" and payment.transfer_reference:
        return payment.transfer_reference
    if payment.method == "card":
        last4 = f" ···{payment.card_last4}" if payment.card_last4 else ""
        return f"{payment.card_brand or 'card'}{last4}"
    return f"payment {payment.id}"


def _payment_description(payment: Payment) -> str:
    parts = [f"Payment {payment.id} by {payment.method}"]
    if payment.payer:
        parts.append(f"from {payment.payer}")
    if payment.processor_ref:
        parts.append(f"ref {payment.processor_ref}")
    # The memo is the office's own note (anomaly notes, who to call): never on a statement.
    return " ".join(parts)


# -- checking a printed statement ------------------------------------------------------------


@dataclass(frozen=True)
class PrintedStatement:
    """What a printed statement names to check it by: the facility, its period and its hash."""

    facility: str
    period_start: date
    as_of: date
    content_hash: str


@dataclass(frozen=True)
class StatementCheck:
    printed: PrintedStatement
    current_hash: str
    matches: bool
    printed_closing: Money | None = None
    current: StatementData | None = None


def printed_matches(printed: PrintedStatement, current: StatementData) -> bool:
    """The printed statement id (a prefix of the content hash) or full hash, of this version or
    of version 1, is the current statement's."""
    digest = printed.content_hash.lower()
    if len(digest) < STATEMENT_ID_DIGITS:
        return False
    if current.content_hash.startswith(digest):
        return True
    return len(digest) == 64 and statement_digest(current, 1) == digest


def check_statements(
    workspace: Workspace, printed: Sequence[PrintedStatement]
) -> list[StatementCheck]:
    """Recompute each printed statement from the database and compare hashes; audited."""
    if not printed:
        raise BadInput(
            "This file names no billing-desk statement (no 'Statement ID' line); check the "
            "file is a statement printed by billing-desk."
        )

    def operation(unit: UnitOfWork) -> list[StatementCheck]:
        unit.require(Permission.READ)
        out = []
        for item in printed:
            facility = get_facility(unit, item.facility)
            data = build_statement(unit, facility, item.as_of, item.period_start)
            out.append(
                StatementCheck(item, data.content_hash, printed_matches(item, data), current=data)
            )
        return out

    checks = workspace.reports.read(operation)
    record_printed(
        workspace,
        "statement.check",
        "statement",
        ",".join(f"{c.printed.facility}:{c.printed.as_of}" for c in checks)[:64],
        detail={
            "statements": [
                {
                    "facility": c.printed.facility,
                    "period_start": c.printed.period_start.isoformat(),
                    "as_of": c.printed.as_of.isoformat(),
                    "printed_hash": c.printed.content_hash,
                    "matches": c.matches,
                }
                for c in checks
            ]
        },
    )
    return checks


# -- auditing prints ------------------------------------------------------------------------


@dataclass(frozen=True)
class Printed:
    """One printed report or export, for the audit trail."""

    entity_type: str  # statement, deposit_slip, aging_report ...
    entity_id: str
    facility_code: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict)


def record_printed(
    workspace: Workspace,
    action: str,
    entity_type: str,
    entity_id: str,
    *,
    facility_code: str | None = None,
    detail: Mapping[str, object] | None = None,
) -> None:
    """Audit a printed report or export (a sensitive read)."""
    record_prints(workspace, action, [Printed(entity_type, entity_id, facility_code, detail or {})])


def record_prints(workspace: Workspace, action: str, printed: Sequence[Printed]) -> None:
    """Audit several prints in one transaction (a batch of statements: one entry each, under
    its facility). An archive opened read-only records nothing: it cannot be written."""
    if workspace.read_only or not printed:
        return

    def operation(unit: UnitOfWork) -> None:
        unit.require(Permission.READ)
        ids = {f.code: f.id for f in unit.session.scalars(select(Facility))}
        for item in printed:
            unit.record_event(
                action,
                item.entity_type,
                item.entity_id[:64],
                facility_id=ids.get(item.facility_code) if item.facility_code else None,
                detail=dict(item.detail),
            )

    workspace.write(operation, action=action)


# -- deposit slips ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DepositSlipItem:
    payment_id: int
    facility_code: str
    facility_name: str
    method: str
    check_number: str | None
    payer: str | None
    received_date: date
    amount: Money


@dataclass(frozen=True)
class DepositSlipData:
    deposit_id: int
    deposit_date: date
    bank_account: str
    total: Money
    items: tuple[DepositSlipItem, ...]
    created_by: str
    created_at: datetime

    @property
    def checks_total(self) -> Money:
        return Money.total((i.amount for i in self.items if i.method == "check"), self.currency)

    @property
    def cash_total(self) -> Money:
        return Money.total((i.amount for i in self.items if i.method == "cash"), self.currency)

    @property
    def currency(self) -> str:
        return self.total.currency


def deposit_slip_data(workspace: Workspace, deposit_id: int) -> DepositSlipData:
    def operation(unit: UnitOfWork) -> DepositSlipData:
        unit.require(Permission.READ)
        deposit = unit.session.get(Deposit, deposit_id)
        if deposit is None:
            raise BadInput(f"There is no deposit {deposit_id}; check the id.")
        rows = unit.session.execute(
            select(DepositItem, Payment, Facility)
            .join(Payment, Payment.id == DepositItem.payment_id)
            .join(Facility, Facility.id == DepositItem.facility_id)
            .where(DepositItem.deposit_id == deposit.id)
            .order_by(DepositItem.id)
        ).all()
        items = tuple(
            DepositSlipItem(
                payment.id,
                facility.code,
                facility.name,
                payment.method,
                payment.check_number,
                payment.payer,
                payment.received_date,
                Money.from_minor(item.amount_minor, deposit.currency),
            )
            for item, payment, facility in rows
        )
        return DepositSlipData(
            deposit.id,
            deposit.deposit_date,
            deposit.bank_account,
            Money.from_minor(deposit.total_minor, deposit.currency),
            items,
            deposit.created_by,
            deposit.created_at,
        )

    return workspace.reports.read(operation)


# -- aging across facilities ------------------------------------------------------------------


@dataclass(frozen=True)
class AgingRow:
    facility: FacilityInfo
    buckets: tuple[Money, ...]  # in AGING_BUCKETS order
    total: Money
    unapplied_credit: Money
    balance: Money


@dataclass(frozen=True)
class AgingReport:
    as_of: date
    rows: tuple[AgingRow, ...]
    totals: Mapping[str, tuple[tuple[Money, ...], Money, Money, Money]] = field(
        default_factory=dict
    )  # currency -> (buckets, total, credit, balance)


def aging_report_data(
    workspace: Workspace,
    *,
    as_of: date | None = None,
    facility_codes: Sequence[str] | None = None,
    include_zero: bool = False,
) -> AgingReport:
    """Open invoice amounts by days past due for every facility (or the named ones)."""

    def operation(unit: UnitOfWork) -> AgingReport:
        unit.require(Permission.READ)
        day = as_of or unit.today
        if facility_codes is None:
            facilities = list(unit.session.scalars(select(Facility).order_by(Facility.code)))
        else:
            facilities = [get_facility(unit, c) for c in facility_codes]
        rows = []
        for facility in facilities:
            data = build_statement(unit, facility, day, day)
            nothing = data.aging_total.is_zero() and data.closing.is_zero()
            if nothing and not include_zero and data.unapplied_credit.is_zero():
                continue
            rows.append(
                AgingRow(
                    data.facility,
                    tuple(b.amount for b in data.aging),
                    data.aging_total,
                    data.unapplied_credit,
                    data.closing,
                )
            )
        return AgingReport(day, tuple(rows), aging_totals(rows))

    return workspace.reports.read(operation)


def aging_totals(
    rows: Iterable[AgingRow],
) -> dict[str, tuple[tuple[Money, ...], Money, Money, Money]]:
    by_currency: dict[str, list[AgingRow]] = defaultdict(list)
    for row in rows:
        by_currency[row.total.currency].append(row)
    out = {}
    for currency, group in sorted(by_currency.items()):
        buckets = tuple(
            Money.total((r.buckets[i] for r in group), currency) for i in range(len(AGING_BUCKETS))
        )
        out[currency] = (
            buckets,
            Money.total((r.total for r in group), currency),
            Money.total((r.unapplied_credit for r in group), currency),
            Money.total((r.balance for r in group), currency),
        )
    return out


# -- the audit log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditReportEntry:
    entry_id: int
    sequence: int | None
    recorded_at: datetime
    user: str
    role: str | None
    facility: str | None
    action: str
    entity_type: str
    entity_id: str
    request_id: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class AuditReport:
    entries: tuple[AuditReportEntry, ...]
    filters: Mapping[str, str]
    truncated: bool


def audit_report_data(
    workspace: Workspace,
    *,
    facility: str | None = None,
    user: str | None = None,
    action: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int = 50_000,
) -> AuditReport:
    """Audit entries, oldest first, filtered by facility, user, action and day range."""
    if date_from is not None and date_to is not None and date_to < date_from:
        raise BadInput("--to is before --from; give the first day, then the last.")

    def operation(unit: UnitOfWork) -> AuditReport:
        unit.require(Permission.READ)
        codes = {f.id: f.code for f in unit.session.scalars(select(Facility))}
        query = (
            select(AuditEntry, AuditLink.sequence)
            .outerjoin(AuditLink, AuditLink.entry_id == AuditEntry.id)
            .order_by(AuditEntry.id)
            .limit(limit + 1)
        )
        if facility is not None:
            query = query.where(AuditEntry.facility_id == get_facility(unit, facility).id)
        if user is not None:
            query = query.where(AuditEntry.user_name == user)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        if date_from is not None:
            start = datetime(date_from.year, date_from.month, date_from.day, tzinfo=UTC)
            query = query.where(AuditEntry.recorded_at >= start)
        if date_to is not None:
            query = query.where(AuditEntry.recorded_at < _day_end(date_to))
        rows = unit.session.execute(query).all()
        entries = tuple(
            AuditReportEntry(
                e.id,
                sequence,
                e.recorded_at,
                e.user_name,
                e.user_role,
                codes.get(e.facility_id) if e.facility_id is not None else None,
                e.action,
                e.entity_type,
                e.entity_id,
                e.request_id,
                e.before,
                e.after,
            )
            for e, sequence in rows[:limit]
        )
        filters = {
            k: v
            for k, v in {
                "facility": facility,
                "user": user,
                "action": action,
                "from": date_from.isoformat() if date_from else None,
                "to": date_to.isoformat() if date_to else None,
            }.items()
            if v is not None
        }
        return AuditReport(entries, filters, len(rows) > limit)

    return workspace.reports.read(operation)


# -- integrity --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointStatus:
    sequence: int
    key_name: str
    signed_by: str
    created_at: datetime
    status: str  # "in the chain", "contradicted", "beyond the chain"


@dataclass(frozen=True)
class IntegrityReport:
    verification: VerificationReport
    checkpoints: tuple[CheckpointStatus, ...]


def integrity_report_data(
    workspace: Workspace, claims: Sequence[CheckpointClaim] = ()
) -> IntegrityReport:
    """The verifier's findings (the run is audited by `verify`) and each stored checkpoint's
    standing against the chain as it is now."""
    report = verify(workspace, claims)

    def operation(unit: UnitOfWork) -> tuple[CheckpointStatus, ...]:
        unit.require(Permission.READ)
        rows = list(unit.session.scalars(select(Checkpoint).order_by(Checkpoint.sequence)))
        sequences = [r.sequence for r in rows]
        hashes = (
            dict(
                unit.session.execute(
                    select(AuditLink.sequence, AuditLink.entry_hash).where(
                        AuditLink.sequence.in_(sequences)
                    )
                ).all()
            )
            if sequences
            else {}
        )
        out = []
        for row in rows:
            found = hashes.get(row.sequence)
            if found is None:
                status = "beyond the chain"
            elif found == row.head_hash:
                status = "in the chain"
            else:
                status = "contradicted"
            out.append(
                CheckpointStatus(row.sequence, row.key_name, row.signed_by, row.created_at, status)
            )
        return tuple(out)

    return IntegrityReport(report, workspace.reports.read(operation))


# -- reconciliation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchRow:
    line_id: int
    booked: date
    amount: Money
    reference: str | None
    counterparty: str | None
    target: str  # "payment 12" or "deposit 3"
    rule: str
    matched_by: str


@dataclass(frozen=True)
class ReconciliationReportData:
    run: RunReport
    matches: tuple[MatchRow, ...]
    started_by: str
    closed_by: str | None


def reconciliation_report_data(workspace: Workspace, run_id: int) -> ReconciliationReportData:
    """A run's discrepancies and the bank matches active for its period."""
    run = show_run(workspace, run_id)

    def operation(unit: UnitOfWork) -> ReconciliationReportData:
        unit.require(Permission.READ)
        row = unit.session.get(ReconciliationRun, run_id)
        if row is None:
            raise BadInput(f"There is no reconciliation run {run_id}.")
        matches = unit.session.execute(
            select(BankMatch, BankLine)
            .join(BankLine, BankLine.id == BankMatch.line_id)
            .where(
                BankMatch.active.is_(True),
                BankLine.booked >= run.date_from,
                BankLine.booked <= run.date_to,
            )
            .order_by(BankLine.booked, BankLine.id)
        ).all()
        out = tuple(
            MatchRow(
                line.id,
                line.booked,
                Money.from_minor(line.amount_minor, line.currency),
                line.reference,
                line.counterparty,
                f"payment {m.payment_id}"
                if m.payment_id is not None
                else f"deposit {m.deposit_id}",
                m.rule,
                m.matched_by,
            )
            for m, line in matches
        )
        return ReconciliationReportData(run, out, row.started_by, row.closed_by)

    return workspace.reports.read(operation)


def _match_target(payment_id: int | None, deposit_id: int | None) -> str:
    return f"payment {payment_id}" if payment_id is not None else f"deposit {deposit_id}"
