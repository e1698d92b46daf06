"""How recording a payment writes: each database hashes account numbers with its own key, however
many are open in one process, and a payment is stored with the hash the verifier recomputes from
its rows, whether its allocations moved invoices or not."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import select, update

from billing_desk.db.models import Allocation, DatabaseSecret, Invoice, InvoiceLine, Payment
from billing_desk.domain.integrity import content_hash
from billing_desk.services.integrity import invoice_record, payment_record
from billing_desk.services.invoices import run_invoice
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.verification import verify_session
from tests.conftest import BACKENDS, Database
from tests.support import load_trips, seed_facility, seed_users, trip

ROUTING, ACCOUNT = "021000021", "000123456789"


def check(number: str, amount: str, **changes: object) -> PaymentDraft:
    fields: dict[str, object] = {
        "facility": "STMARY",
        "method": "check",
        "amount": amount,
        "received": date(2026, 6, 2),
        "check_number": number,
        "routing_number": ROUTING,
        "account_number": ACCOUNT,
        **changes,
    }
    return PaymentDraft(**fields)  # type: ignore[arg-type]


def seeded(database: Database) -> Database:
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin)
    return database


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_database_hashes_account_numbers_with_its_own_key(
    backend: str, fresh_database: Callable[[str], Database]
) -> None:
    first, second = seeded(fresh_database(backend)), seeded(fresh_database(backend))
    other_key = "ab" * 32
    with second.workspace().engine.begin() as conn:
        conn.execute(
            update(DatabaseSecret)
            .where(DatabaseSecret.name == "account_hash_key")
            .values(value=other_key)
        )

    hashes = []
    for database in (first, second, first):
        receipt = record_payment(database.workspace("clerk"), check("7001", "10.00"), "k-hash")
        with database.workspace().engine.connect() as conn:
            hashes.append(
                conn.scalar(select(Payment.account_hash).where(Payment.id == receipt.payment_id))
            )

    expected = hmac.new(bytes.fromhex(other_key), ACCOUNT.encode(), hashlib.sha256).hexdigest()
    assert hashes[1] == expected
    assert hashes[0] == hashes[2] != expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_payments_and_invoices_carry_the_hash_the_verifier_recomputes(
    backend: str, fresh_database: Callable[[str], Database]
) -> None:
    database = seeded(fresh_database(backend))
    clerk, manager = database.workspace("clerk"), database.workspace("manager")
    load_trips(
        manager,
        [
            trip("A1", day=date(2026, 4, 10), fare="30.00"),
            trip("M1", day=date(2026, 5, 1), fare="40.00", line=3),
        ],
    )
    run_invoice(clerk, "STMARY", "2026-04", issue_date=date(2026, 5, 1))
    run_invoice(clerk, "STMARY", "2026-05", issue_date=date(2026, 6, 1))
    # Pays April in full and part of May (both move), then the rest of May (one moves), then
    # nothing is open (credit only); a held duplicate; a void that reopens the invoices.
    spanning = record_payment(clerk, check("8001", "35.00", auto_allocate=True), "k-1")
    record_payment(clerk, check("8002", "35.00", auto_allocate=True), "k-2")
    record_payment(clerk, check("8003", "5.00", auto_allocate=True), "k-3")
    record_payment(clerk, check("8001", "35.00", override_reason="sent twice, both cashed"), "k-4")
    change_status(manager, spanning.payment_id, "voided", "entered in error", "k-5")

    with database.workspace().engine.connect() as conn:
        allocations = conn.execute(select(Allocation)).all()
        lines = conn.execute(select(InvoiceLine)).all()
        payments = conn.execute(select(Payment)).all()
        invoices = conn.execute(select(Invoice)).all()
    assert (len(payments), len(allocations)) == (4, 3)
    for payment in payments:
        own = [a for a in allocations if a.payment_id == payment.id]
        expected = content_hash("payment", payment_record(payment, own))  # type: ignore[arg-type]
        assert payment.content_hash == expected, f"payment {payment.id}"
    for invoice in invoices:
        own_lines = [line for line in lines if line.invoice_id == invoice.id]
        expected = content_hash("invoice", invoice_record(invoice, own_lines))  # type: ignore[arg-type]
        assert invoice.content_hash == expected, f"invoice {invoice.number}"
    report = database.workspace("auditor").read(lambda unit: verify_session(unit.session))
    assert report.findings == ()
    assert (report.payments_checked, report.invoices_checked) == (4, 2)
