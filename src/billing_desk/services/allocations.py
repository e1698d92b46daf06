"""Where payments go: allocations to invoices, facility credit, and invoice status that follows.

An allocation never exceeds an invoice's open amount; the part of a live payment not allocated
is the facility's credit, applied later with `apply_credit`. Releasing (voided, returned,
refunded payments) marks allocations released and reopens their invoices; nothing is deleted.
Invoices are locked (FOR UPDATE on PostgreSQL; SQLite writers are serialised) before their open
amount is read, so two payments cannot both fill the same open amount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_desk.db.models import Allocation, Facility, Invoice, Payment
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.money import Money
from billing_desk.domain.payments import LIVE_STATUSES, PaymentStatus
from billing_desk.domain.states import InvoiceStatus, invoice_status_for
from billing_desk.services.integrity import stamp_invoice
from billing_desk.services.invoices import record_invoice_status
from billing_desk.services.unit_of_work import UnitOfWork

OPEN_INVOICE_STATUSES = (InvoiceStatus.ISSUED.value, InvoiceStatus.PARTIALLY_PAID.value)


@dataclass(frozen=True)
class AllocationInfo:
    invoice_number: str
    amount: Money


def live_allocated(session: Session, invoice_ids: Sequence[int]) -> dict[int, int]:
    """Invoice id -> minor units allocated to it and not released."""
    if not invoice_ids:
        return {}
    rows = session.execute(
        select(Allocation.invoice_id, func.sum(Allocation.amount_minor))
        .where(Allocation.invoice_id.in_(invoice_ids), Allocation.released.is_(False))
        .group_by(Allocation.invoice_id)
    )
    return {invoice_id: int(total) for invoice_id, total in rows}


def payment_allocated(session: Session, payment_ids: Sequence[int]) -> dict[int, int]:
    if not payment_ids:
        return {}
    rows = session.execute(
        select(Allocation.payment_id, func.sum(Allocation.amount_minor))
        .where(Allocation.payment_id.in_(payment_ids), Allocation.released.is_(False))
        .group_by(Allocation.payment_id)
    )
    return {payment_id: int(total) for payment_id, total in rows}


def credit_of(session: Session, payment: Payment) -> int:
    """The unallocated rest of a live payment (0 for any other)."""
    if PaymentStatus(payment.status) not in LIVE_STATUSES:
        return 0
    return unallocated(payment, payment_allocated(session, [payment.id]).get(payment.id, 0))


def unallocated(payment: Payment, allocated: int) -> int:
    """The rest of `payment` once `allocated` of it is applied: its credit while it is live, 0
    otherwise."""
    if PaymentStatus(payment.status) not in LIVE_STATUSES:
        return 0
    return payment.amount_minor - allocated


def _locked_invoices(session: Session, query: object) -> list[Invoice]:
    return list(session.scalars(query.with_for_update(of=Invoice)))  # type: ignore[attr-defined]


def allocate_explicit(
    unit: UnitOfWork,
    payment: Payment,
    wanted: Sequence[tuple[str, int]],
    *,
    via_credit: bool = False,
    available: int | None = None,
) -> list[AllocationInfo]:
    """Apply `wanted` (invoice number, minor units) from `payment`; refuses, writing nothing, any
    amount above an invoice's open amount or above what the payment has left."""
    session = unit.session
    numbers = [number.strip().upper() for number, _ in wanted]
    if len(set(numbers)) != len(numbers):
        raise BadInput("An invoice is named twice in the allocations; give each invoice once.")
    total_wanted = sum(amount for _, amount in wanted)
    left = payment.amount_minor if available is None else available
    if total_wanted > left:
        raise BadInput(
            f"The allocations add up to {_money(total_wanted, payment)}, more than the "
            f"{_money(left, payment)} available; lower them."
        )
    invoices = {
        i.number: i
        for i in _locked_invoices(
            session,
            select(Invoice)
            .where(Invoice.facility_id == payment.facility_id, Invoice.number.in_(numbers))
            .order_by(Invoice.id),
        )
    }
    open_amounts = _open_amounts(session, list(invoices.values()))
    plan: list[tuple[Invoice, int]] = []
    for number, (_, amount) in zip(numbers, wanted, strict=True):
        invoice = invoices.get(number)
        if invoice is None:
            raise BadInput(
                f"There is no invoice {number} for this facility; "
                "`billing-desk invoice list --facility CODE` shows them."
            )
        if invoice.status not in OPEN_INVOICE_STATUSES:
            raise Refused(
                f"Invoice {number} is {invoice.status}; only open invoices take payments."
            )
        if amount > open_amounts[invoice.id]:
            raise Refused(
                f"Invoice {number} has only {_money(open_amounts[invoice.id], payment)} open; "
                f"allocate at most that (the rest stays as credit)."
            )
        plan.append((invoice, amount))
    return _apply(unit, payment, plan, open_amounts, via_credit=via_credit)


def allocate_oldest_first(
    unit: UnitOfWork, payment: Payment, amount: int, *, via_credit: bool = False
) -> list[AllocationInfo]:
    """Apply up to `amount` to the facility's open invoices, oldest due date first."""
    session = unit.session
    invoices = _locked_invoices(
        session,
        select(Invoice)
        .where(
            Invoice.facility_id == payment.facility_id,
            Invoice.status.in_(OPEN_INVOICE_STATUSES),
        )
        .order_by(Invoice.due_date, Invoice.sequence),
    )
    open_amounts = _open_amounts(session, invoices)
    plan: list[tuple[Invoice, int]] = []
    left = amount
    for invoice in invoices:
        if left <= 0:
            break
        take = min(left, open_amounts[invoice.id])
        if take > 0:
            plan.append((invoice, take))
            left -= take
    return _apply(unit, payment, plan, open_amounts, via_credit=via_credit)


def open_amount(session: Session, facility_id: int, number: str) -> int:
    """The open amount of the facility's invoice `number`, locked until the transaction ends;
    refuses an unknown or closed invoice."""
    invoice = next(
        iter(
            _locked_invoices(
                session,
                select(Invoice).where(
                    Invoice.facility_id == facility_id, Invoice.number == number.strip().upper()
                ),
            )
        ),
        None,
    )
    if invoice is None:
        raise BadInput(
            f"There is no invoice {number.strip().upper()} for this facility; "
            "`billing-desk invoice list --facility CODE` shows them."
        )
    if invoice.status not in OPEN_INVOICE_STATUSES:
        raise Refused(
            f"Invoice {invoice.number} is {invoice.status}; only open invoices take payments."
        )
    return _open_amounts(session, [invoice])[invoice.id]


def open_amounts(session: Session, invoices: Sequence[Invoice]) -> dict[int, int]:
    """Invoice id -> what is still open on it: its total less what live allocations hold."""
    return _open_amounts(session, invoices)


def _open_amounts(session: Session, invoices: Sequence[Invoice]) -> dict[int, int]:
    paid = live_allocated(session, [i.id for i in invoices])
    return {i.id: i.total_minor - paid.get(i.id, 0) for i in invoices}


def _apply(
    unit: UnitOfWork,
    payment: Payment,
    plan: Sequence[tuple[Invoice, int]],
    open_amounts: Mapping[int, int],
    *,
    via_credit: bool,
) -> list[AllocationInfo]:
    """Add the planned allocations and the invoice moves they cause, unflushed. `open_amounts`
    were read under the invoices' locks, so what each invoice has paid after the plan follows
    from them without reading the allocations again."""
    for invoice, amount in plan:
        unit.session.add(
            Allocation(
                facility_id=payment.facility_id,
                payment_id=payment.id,
                invoice_id=invoice.id,
                amount_minor=amount,
                via_credit=via_credit,
                created_at=unit.now,
                created_by=unit.actor.name,
                released=False,
            )
        )
    settle_invoice_statuses(
        unit,
        [invoice for invoice, _ in plan],
        # History names where the money came from: a credit applied later is not the payment.
        reason=f"credit from payment {payment.id}" if via_credit else f"payment {payment.id}",
        paid={
            invoice.id: invoice.total_minor - open_amounts[invoice.id] + amount
            for invoice, amount in plan
        },
    )
    return [
        AllocationInfo(invoice.number, Money.from_minor(amount, payment.currency))
        for invoice, amount in plan
    ]


def settle_invoice_statuses(
    unit: UnitOfWork,
    invoices: Sequence[Invoice],
    *,
    reason: str,
    paid: Mapping[int, int] | None = None,
) -> None:
    """Move each invoice to the status its live allocations call for (issued, partially paid,
    paid), recording each move with the invoice's new stamp (unflushed). `paid`: what the live
    allocations of each invoice add up to, when the caller knows it; otherwise it is read."""
    if paid is None:
        paid = live_allocated(unit.session, [i.id for i in invoices])
    for invoice in invoices:
        current = InvoiceStatus(invoice.status)
        if current not in (InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.PAID):
            continue
        target = invoice_status_for(invoice.total_minor, paid.get(invoice.id, 0))
        if target != current:
            record_invoice_status(unit, invoice, current, target, reason)
            stamp_invoice(unit.session, invoice)


def release_allocations(unit: UnitOfWork, payment: Payment, *, reason: str) -> list[AllocationInfo]:
    """Release every live allocation of `payment` and reopen the invoices they paid."""
    session = unit.session
    rows = session.execute(
        select(Allocation, Invoice)
        .join(Invoice, Invoice.id == Allocation.invoice_id)
        .where(Allocation.payment_id == payment.id, Allocation.released.is_(False))
        .order_by(Allocation.id)
    ).all()
    if not rows:
        return []
    invoice_ids = sorted({invoice.id for _, invoice in rows})
    invoices = _locked_invoices(
        session, select(Invoice).where(Invoice.id.in_(invoice_ids)).order_by(Invoice.id)
    )
    for allocation, _ in rows:
        allocation.released = True
        allocation.released_at = unit.now
        allocation.released_by = unit.actor.name
    session.flush()
    settle_invoice_statuses(unit, invoices, reason=reason)
    return [
        AllocationInfo(invoice.number, Money.from_minor(a.amount_minor, payment.currency))
        for a, invoice in rows
    ]


def reapply_released(unit: UnitOfWork, payment: Payment) -> list[AllocationInfo]:
    """Put a payment's money back on the invoices its last release took it from, as far as they
    are still open; the rest stays credit."""
    session = unit.session
    released = session.execute(
        select(Allocation, Invoice)
        .join(Invoice, Invoice.id == Allocation.invoice_id)
        .where(Allocation.payment_id == payment.id, Allocation.released.is_(True))
        .order_by(Allocation.released_at.desc(), Allocation.id)
    ).all()
    if not released:
        return []
    last_release = released[0][0].released_at
    wanted: dict[str, int] = {}
    for allocation, invoice in sorted(released, key=lambda pair: pair[0].id):
        if allocation.released_at == last_release and not allocation.via_credit:
            wanted[invoice.number] = wanted.get(invoice.number, 0) + allocation.amount_minor
    invoices = {
        i.number: i
        for i in _locked_invoices(
            session,
            select(Invoice)
            .where(Invoice.facility_id == payment.facility_id, Invoice.number.in_(sorted(wanted)))
            .order_by(Invoice.id),
        )
    }
    open_amounts = _open_amounts(session, list(invoices.values()))
    plan: list[tuple[Invoice, int]] = []
    for number, amount in wanted.items():
        invoice = invoices[number]
        take = min(amount, open_amounts[invoice.id])
        if invoice.status in OPEN_INVOICE_STATUSES and take > 0:
            plan.append((invoice, take))
    return _apply(unit, payment, plan, open_amounts, via_credit=False)


def live_allocations(session: Session, payment: Payment) -> list[AllocationInfo]:
    rows = session.execute(
        select(Allocation.amount_minor, Invoice.number)
        .join(Invoice, Invoice.id == Allocation.invoice_id)
        .where(Allocation.payment_id == payment.id, Allocation.released.is_(False))
        .order_by(Allocation.id)
    )
    return [
        AllocationInfo(number, Money.from_minor(amount, payment.currency))
        for amount, number in rows
    ]


def facility_credit(session: Session, facility: Facility) -> int:
    """The facility's credit: what its live payments hold unallocated."""
    payments = session.execute(
        select(Payment.id, Payment.amount_minor).where(
            Payment.facility_id == facility.id,
            Payment.status.in_([s.value for s in LIVE_STATUSES]),
        )
    ).all()
    allocated = payment_allocated(session, [p.id for p in payments])
    return sum(p.amount_minor - allocated.get(p.id, 0) for p in payments)


def credit_sources(
    session: Session, facility: Facility, *, lock: bool = True
) -> list[tuple[Payment, int]]:
    """Live payments with unallocated money, oldest first, locked while credit is applied (or
    only read, with `lock` false, to show where a facility's credit came from)."""
    query = (
        select(Payment)
        .where(
            Payment.facility_id == facility.id,
            Payment.status.in_([s.value for s in LIVE_STATUSES]),
        )
        .order_by(Payment.received_date, Payment.id)
    )
    payments = list(session.scalars(query.with_for_update() if lock else query))
    allocated = payment_allocated(session, [p.id for p in payments])
    return [
        (p, p.amount_minor - allocated.get(p.id, 0))
        for p in payments
        if p.amount_minor - allocated.get(p.id, 0) > 0
    ]


def _money(minor: int, payment: Payment) -> Money:
    return Money.from_minor(minor, payment.currency)
