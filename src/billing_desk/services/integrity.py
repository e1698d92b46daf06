"""Integrity hashes of payments (with their allocations) and invoices (with their lines).

Every unit of work that touches a payment or an invoice restamps its hash before commit, so the
stamp changes only together with an audited change; the verifier recomputes the same records and
names any row whose stored hash no longer matches its content.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    allocations = session.scalars(select(Allocation).where(Allocation.payment_id == payment.id))
    return content_hash("payment", payment_record(payment, allocations))


def invoice_hash(session: Session, invoice: Invoice) -> str:
    lines = session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
    return content_hash("invoice", invoice_record(invoice, lines))


def restamp(session: Session, payment_ids: Iterable[int], invoice_ids: Iterable[int]) -> None:
    """Recompute and store the hashes of the given payments and invoices."""
    for payment in session.scalars(select(Payment).where(Payment.id.in_(sorted(set(payment_ids))))):
        digest = payment_hash(session, payment)
        if payment.content_hash != digest:
            payment.content_hash = digest
    for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(sorted(set(invoice_ids))))):
        digest = invoice_hash(session, invoice)
        if invoice.content_hash != digest:
            invoice.content_hash = digest
    session.flush()
