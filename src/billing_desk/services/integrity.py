"""Integrity hashes of payments (with their allocations) and invoices (with their lines).

Every unit of work that touches a payment or an invoice restamps its hash before commit, so the
stamp changes only together with an audited change; the verifier recomputes the same records and
names any row whose stored hash no longer matches its content. A flush hook notes which payments
and invoices had their own row, an allocation or a line written in the session: only those can
have a new hash, so only those are restamped (an allocation changes its payment's hash, never its
invoice's). Hashes are computed from the session's objects; the database is read only for what
the session may not hold (the allocations of a payment recorded earlier, an invoice's lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction

from billing_desk.db.models import Allocation, Invoice, InvoiceLine, Payment
from billing_desk.domain.integrity import content_hash

PAYMENT_FIELDS = (
    "id",
    "facility_id",
    "method",
    "status",
    "amount_minor",
    "currency",
    "received_date",
    "payer",
    "memo",
    "check_number",
    "routing_number",
    "account_last4",
    "account_hash",
    "transfer_reference",
    "card_brand",
    "card_last4",
    "processor_ref",
    "natural_key",
    "duplicate_of_id",
    "override_reason",
    "approved_by",
    "recorded_by",
    "recorded_at",
)
ALLOCATION_FIELDS = ("id", "invoice_id", "amount_minor", "via_credit", "released")
INVOICE_FIELDS = (
    "id",
    "facility_id",
    "number",
    "sequence",
    "period_start",
    "period_end",
    "issue_date",
    "due_date",
    "status",
    "currency",
    "total_minor",
    "void_reason",
)
LINE_FIELDS = (
    "id",
    "trip_id",
    "line_no",
    "service_date",
    "description",
    "amount_minor",
    "released",
)
_WRITTEN = "billing_desk.integrity.written"
_Row = TypeVar("_Row", Payment, Invoice)


@dataclass
class _Written:
    """What a session's flushes wrote that a content hash covers. Holds the payments and
    allocations it inserted, so that they stay in the session until the restamp."""

    payments: set[int] = field(default_factory=set)
    invoices: set[int] = field(default_factory=set)
    new_payments: dict[int, Payment] = field(default_factory=dict)
    new_allocations: list[Allocation] = field(default_factory=list)


@event.listens_for(Session, "after_flush")
def _note_written(session: Session, _flush: UOWTransaction) -> None:
    written = _written(session)
    if written is None:
        written = session.info[_WRITTEN] = _Written()
    for obj in session.new:
        if isinstance(obj, Payment):
            written.new_payments[obj.id] = obj
        elif isinstance(obj, Allocation):
            written.new_allocations.append(obj)
    for rows in (session.new, session.dirty, session.deleted):
        for obj in rows:
            if isinstance(obj, Payment):
                written.payments.add(obj.id)
            elif isinstance(obj, Allocation):
                written.payments.add(obj.payment_id)
            elif isinstance(obj, Invoice):
                written.invoices.add(obj.id)
            elif isinstance(obj, InvoiceLine):
                written.invoices.add(obj.invoice_id)


@event.listens_for(Session, "after_transaction_end")
def _forget_written(session: Session, transaction: SessionTransaction) -> None:
    # Another transaction may add allocations to a payment this one inserted.
    if transaction.parent is None:
        session.info.pop(_WRITTEN, None)


def payment_record(payment: Payment, allocations: Iterable[Allocation]) -> dict[str, object]:
    record: dict[str, object] = {name: getattr(payment, name) for name in PAYMENT_FIELDS}
    record["allocations"] = [
        {name: getattr(a, name) for name in ALLOCATION_FIELDS}
        for a in sorted(allocations, key=lambda a: a.id)
    ]
    return record


def invoice_record(invoice: Invoice, lines: Iterable[InvoiceLine]) -> dict[str, object]:
    record: dict[str, object] = {name: getattr(invoice, name) for name in INVOICE_FIELDS}
    record["lines"] = [
        {name: getattr(line, name) for name in LINE_FIELDS}
        for line in sorted(lines, key=lambda line: line.id)
    ]
    return record


def payment_hash(session: Session, payment: Payment) -> str:
    """The hash of the payment with its allocations as the database has them."""
    allocations = session.scalars(select(Allocation).where(Allocation.payment_id == payment.id))
    return content_hash("payment", payment_record(payment, allocations))


def invoice_hash(session: Session, invoice: Invoice) -> str:
    """The hash of the invoice with its lines as the database has them."""
    lines = session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
    return content_hash("invoice", invoice_record(invoice, lines))


def restamp(session: Session, payment_ids: Iterable[int], invoice_ids: Iterable[int]) -> None:
    """Recompute and store the hashes of the given payments and invoices, skipping those whose
    row, allocations or lines this session has not written (their hash cannot have changed).
    The new stamps are written by one flush."""
    payments, invoices = set(payment_ids), set(invoice_ids)
    written = _written(session)
    if written is not None:
        payments &= written.payments
        invoices &= written.invoices
    stamps: list[tuple[Payment | Invoice, str]] = []
    for payment, allocations in _payments_with_allocations(session, sorted(payments)):
        stamps.append((payment, content_hash("payment", payment_record(payment, allocations))))
    for invoice, lines in _invoices_with_lines(session, sorted(invoices)):
        stamps.append((invoice, content_hash("invoice", invoice_record(invoice, lines))))
    changed = False
    for row, digest in stamps:
        if row.content_hash != digest:
            row.content_hash = digest
            changed = True
    if changed:
        session.flush()


def stamp_payment(session: Session, payment: Payment) -> None:
    """Set the payment's hash from the session's state of it, unflushed changes included, so
    that the flush that writes a change writes its stamp too (the restamp then has nothing left
    to do). New allocations are given their ids here, as the hash covers them."""
    _give_ids(session, [a for a in session.new if isinstance(a, Allocation) and a.id is None])
    [(_, allocations)] = _payments_with_allocations(session, [payment.id])
    digest = content_hash("payment", payment_record(payment, allocations))
    if payment.content_hash != digest:
        payment.content_hash = digest


def stamp_invoice(session: Session, invoice: Invoice) -> None:
    """Set the invoice's hash from the session's state of it (see `stamp_payment`)."""
    [(_, lines)] = _invoices_with_lines(session, [invoice.id])
    digest = content_hash("invoice", invoice_record(invoice, lines))
    if invoice.content_hash != digest:
        invoice.content_hash = digest


def _written(session: Session) -> _Written | None:
    written = session.info.get(_WRITTEN)
    return written if isinstance(written, _Written) else None


def _give_ids(session: Session, allocations: Sequence[Allocation]) -> None:
    """Ids for new allocations, taken as their insert would take them: from the column's
    sequence (PostgreSQL), or after the highest (SQLite, whose writers take turns)."""
    if not allocations:
        return
    with session.no_autoflush:
        if session.get_bind().dialect.name == "postgresql":
            ids = list(
                session.scalars(
                    text(
                        "SELECT nextval(pg_get_serial_sequence('allocation', 'id')) "
                        "FROM generate_series(1, :count)"
                    ),
                    {"count": len(allocations)},
                )
            )
        else:
            top = session.scalar(select(func.max(Allocation.id))) or 0
            ids = list(range(top + 1, top + 1 + len(allocations)))
    for allocation, allocation_id in zip(allocations, sorted(ids), strict=True):
        allocation.id = int(allocation_id)


def _payments_with_allocations(
    session: Session, ids: Sequence[int]
) -> list[tuple[Payment, list[Allocation]]]:
    """Each payment with all its allocations, as the session has them (unflushed ones too).
    Every allocation of a payment inserted in this session was inserted by it, so only the
    allocations of payments recorded earlier are read."""
    written = _written(session)
    new_payments = written.new_payments if written is not None else {}
    recorded_here = {
        i: p for i in ids if (p := new_payments.get(i)) is not None and inspect(p).persistent
    }
    allocations: dict[int, list[Allocation]] = {i: [] for i in ids}
    for allocation in written.new_allocations if written is not None else []:
        if allocation.payment_id in recorded_here and inspect(allocation).persistent:
            allocations[allocation.payment_id].append(allocation)
    for new in session.new:
        if isinstance(new, Allocation) and new.payment_id in allocations:
            allocations[new.payment_id].append(new)
    older = [i for i in ids if i not in recorded_here]
    found = {**recorded_here, **_in_session(session, Payment, older)}
    if older:
        with session.no_autoflush:
            for allocation in session.scalars(
                select(Allocation).where(Allocation.payment_id.in_(older))
            ):
                allocations[allocation.payment_id].append(allocation)
    return [(found[i], allocations[i]) for i in ids if i in found]


def _invoices_with_lines(
    session: Session, ids: Sequence[int]
) -> list[tuple[Invoice, list[InvoiceLine]]]:
    """Each invoice with all its lines, as the session has them (unflushed ones too)."""
    if not ids:
        return []
    invoices = _in_session(session, Invoice, ids)
    lines: dict[int, list[InvoiceLine]] = {i: [] for i in invoices}
    with session.no_autoflush:
        for line in session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id.in_(ids))):
            lines[line.invoice_id].append(line)
    for new in session.new:
        if isinstance(new, InvoiceLine) and new.invoice_id in lines:
            lines[new.invoice_id].append(new)
    return [(invoices[i], lines[i]) for i in ids if i in invoices]


def _in_session(session: Session, model: type[_Row], ids: Sequence[int]) -> dict[int, _Row]:
    """The rows with these ids: those the session holds as they are, the rest read."""
    found: dict[int, _Row] = {}
    for i in ids:
        held = session.identity_map.get(session.identity_key(model, i))
        if isinstance(held, model):
            found[i] = held
    missing = [i for i in ids if i not in found]
    if missing:
        with session.no_autoflush:
            found.update(
                (row.id, row) for row in session.scalars(select(model).where(model.id.in_(missing)))
            )
    return found
