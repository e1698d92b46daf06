"""Matching bank lines to payments and deposits, and reconciliation runs, on both backends:
exact reference, amount within the window, a deposit of several checks, two identical same-day
payments, a returned check, a partial bank credit; then each kind of discrepancy planted and
found, resolved, and a closed run sealed."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, text

from billing_desk.db.models import AuditEntry, BankMatch
from billing_desk.domain.errors import BadInput, PermissionDenied, Refused
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services.deposits import create_deposit
from billing_desk.services.invoices import run_invoice
from billing_desk.services.matching import auto_match, match_line, unmatch_line
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.reconciliation import (
    close_run,
    resolve_discrepancy,
    run_reconciliation,
)
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database
from tests.support import load_trips, seed_facility, seed_users, trip

ACCOUNT = "US-OPERATING-1"
JUNE = (date(2026, 6, 1), date(2026, 6, 30))


def _transfer(ref: str, amount: str, day: int = 2) -> PaymentDraft:
    return PaymentDraft("STMARY", "transfer", amount, date(2026, 6, day), reference=ref)


def _check(number: str, amount: str, day: int = 2) -> PaymentDraft:
    return PaymentDraft(
        "STMARY",
        "check",
        amount,
        date(2026, 6, day),
        check_number=number,
        routing_number="021000021",
        account_number="000123456789",
    )


class Books:
    def __init__(self, database: Database) -> None:
        self.database = database
        seed_users(database.workspace("admin"))
        seed_facility(database.workspace("admin"))
        self.clerk = database.workspace("clerk")
        self.manager = database.workspace("manager")
        load_trips(self.clerk, [trip(f"T{i}", fare="500.00") for i in range(1, 4)])
        run_invoice(self.clerk, "STMARY", "2026-05")
        self.keys = 0
        self.files = 0

    def pay(self, draft: PaymentDraft) -> int:
        self.keys += 1
        return record_payment(self.clerk, draft, f"key-{self.keys}").payment_id

    def bank(self, *lines: tuple[int, str, str | None]) -> list[int]:
        """Import a statement of (day, amount, reference) lines; returns their line ids."""
        self.files += 1
        statement = Statement(
            "csv",
            ACCOUNT,
            "USD",
            tuple(
                StatementLine(
                    booked=date(2026, 6, day),
                    amount=Money(amount, "USD"),
                    location=f"line {n}",
                    bank_id=f"F{self.files}-{n}",
                    reference=ref,
                    counterparty="St Mary",
                )
                for n, (day, amount, ref) in enumerate(lines, start=1)
            ),
        )
        import_statements(
            self.clerk,
            f"bank-{self.files}.csv",
            f"file {self.files}".encode(),
            "csv",
            [statement],
            commit=True,
        )
        rows = self.clerk.read(
            lambda u: list(
                u.session.execute(text("SELECT id FROM bank_line ORDER BY id")).scalars()
            )
        )
        return rows[-len(lines) :]


@pytest.fixture
def books(database: Database) -> Books:
    return Books(database)


def matches(workspace: Workspace) -> dict[int, tuple[str, int | None, int | None]]:
    rows = workspace.read(
        lambda u: list(u.session.scalars(select(BankMatch).where(BankMatch.active)))
    )
    return {m.line_id: (m.rule, m.payment_id, m.deposit_id) for m in rows}


def test_each_rule_matches_what_it_should(books: Books) -> None:
    by_reference = books.pay(_transfer("ACH-77", "60.00"))
    by_window = books.pay(_transfer("WIRE-9", "41.00"))
    check_a = books.pay(_check("101", "10.00"))
    check_b = books.pay(_check("102", "15.00"))
    slip = create_deposit(books.clerk, [check_a, check_b], date(2026, 6, 3), idempotency_key="d1")
    lines = books.bank(
        (4, "60.00", "ACH-77"),  # reference and amount
        (5, "41.00", None),  # no reference: the amount, within the window
        (6, "25.00", "DEPOSIT"),  # one line for the deposit of two checks
    )
    summary = auto_match(books.clerk)
    assert len(summary.matched) == 3
    found = matches(books.clerk)
    assert found[lines[0]] == ("reference", by_reference, None)
    assert found[lines[1]] == ("amount-window", by_window, None)
    assert found[lines[2]] == ("deposit", None, slip.deposit_id)
    # Matching again finds nothing more and changes nothing.
    assert auto_match(books.clerk).matched == ()


def test_two_identical_same_day_payments_are_left_for_a_person(books: Books) -> None:
    first = books.pay(_transfer("A-1", "33.00"))
    second = books.pay(_transfer("A-2", "33.00"))
    lines = books.bank((3, "33.00", None), (3, "33.00", None))
    summary = auto_match(books.clerk)
    assert summary.matched == () and summary.ambiguous_lines == 2
    match_line(books.clerk, lines[0], payment_id=first, note="payer's advice")
    match_line(books.clerk, lines[1], payment_id=second)
    assert matches(books.clerk)[lines[0]] == ("manual", first, None)
    with pytest.raises(Refused, match="already matched"):
        match_line(books.clerk, lines[0], payment_id=second)
    unmatch_line(books.clerk, lines[0], "wrong payer")
    assert lines[0] not in matches(books.clerk)
    actions = books.clerk.read(lambda u: set(u.session.scalars(select(AuditEntry.action))))
    assert {"reconcile.match_manual", "reconcile.unmatch"} <= actions


def test_a_returned_check_matches_its_deposit_and_then_its_return(books: Books) -> None:
    check = books.pay(_check("201", "80.00"))
    slip = create_deposit(books.clerk, [check], date(2026, 6, 3), idempotency_key="d2")
    change_status(books.clerk, check, "returned", "NSF", "ret-1")
    lines = books.bank((4, "80.00", None), (9, "-80.00", "RETURN 201"))
    auto_match(books.clerk)
    found = matches(books.clerk)
    assert found[lines[0]] == ("deposit", None, slip.deposit_id)
    assert found[lines[1]] == ("return", check, None)


def test_a_clean_period_has_no_discrepancies(books: Books) -> None:
    books.pay(_transfer("ACH-1", "60.00"))
    books.bank((4, "60.00", "ACH-1"))
    auto_match(books.clerk)
    report = run_reconciliation(books.clerk, *JUNE)
    assert report.discrepancies == ()


def test_every_kind_of_discrepancy_is_found(books: Books, database: Database) -> None:
    partial = books.pay(_transfer("ACH-PART", "90.00"))
    books.pay(_transfer("NEVER-SEEN", "70.00"))
    # The stray credit is late enough in the month that the unseen transfer is not in transit.
    books.bank((12, "55.55", None), (5, "30.00", "ACH-PART"))
    auto_match(books.clerk)
    # Planted behind the application's back: the books themselves disagree.
    admin = database.workspace("admin")
    with admin.engine.begin() as conn:
        conn.execute(text("UPDATE invoice SET total_minor = total_minor + 1"))
        conn.execute(text("UPDATE payment SET amount_minor = 1 WHERE id = :p"), {"p": partial})
    report = run_reconciliation(books.clerk, *JUNE)
    kinds = {d.kind for d in report.discrepancies}
    assert {
        "unmatched bank credit",
        "payment never seen at the bank",
        "amount mismatch",
        "invoice total differs from its lines",
        "integrity hash mismatch",
    } <= kinds
    mismatch = next(d for d in report.discrepancies if d.kind == "amount mismatch")
    assert (mismatch.expected_minor, mismatch.actual_minor) == (1, 3000)


def test_money_is_in_transit_until_the_statements_run_past_it(books: Books) -> None:
    """A payment of June 2 with no bank line is not yet "never seen" while the bank's statements
    end before June 7 (IN_TRANSIT_DAYS); once they run to June 7 it is."""
    books.pay(_transfer("ON-ITS-WAY", "70.00"))
    books.bank((6, "12.34", None))

    def never_seen() -> list[str]:
        report = run_reconciliation(books.clerk, *JUNE)
        return [d.detail for d in report.discrepancies if d.kind.startswith("payment never")]

    assert never_seen() == []
    books.bank((7, "1.00", None))
    assert never_seen() == ["transfer payment 1 received 2026-06-02"]


def test_a_duplicate_payment_and_an_over_allocation_are_found(books: Books) -> None:
    first = books.pay(_transfer("DUP-1", "20.00"))
    again = record_payment(
        books.clerk,
        PaymentDraft(
            "STMARY",
            "transfer",
            "20.00",
            date(2026, 6, 2),
            reference="DUP-1",
            override_reason="the facility paid twice",
        ),
        "key-dup",
    )
    change_status(books.manager, again.payment_id, "recorded", "approved", "approve-dup")
    report = run_reconciliation(books.clerk, *JUNE)
    duplicate = [d for d in report.discrepancies if d.kind == "duplicate payment"]
    assert [d.payment_id for d in duplicate] == [again.payment_id]
    assert first


def test_resolving_and_closing_a_run_seals_it(books: Books) -> None:
    books.bank((4, "12.34", None))
    report = run_reconciliation(books.clerk, *JUNE)
    (finding,) = report.discrepancies
    with pytest.raises(PermissionDenied):
        resolve_discrepancy(books.clerk, finding.id, "clerk cannot")
    with pytest.raises(Refused, match="open discrepancies"):
        close_run(books.manager, report.run_id)
    with pytest.raises(BadInput):
        resolve_discrepancy(books.manager, finding.id, "  ")
    resolve_discrepancy(books.manager, finding.id, "interest credited by the bank")
    closed = close_run(books.manager, report.run_id)
    assert closed.status == "closed" and closed.content_hash
    with pytest.raises(Refused, match="closed"):
        resolve_discrepancy(books.manager, finding.id, "again")
    events = books.clerk.read(
        lambda u: list(
            u.session.scalars(
                select(AuditEntry.after).where(AuditEntry.action == "reconcile.close")
            )
        )
    )
    assert any(closed.content_hash in (e or "") for e in events)
    # Later runs find it again as a new finding; the closed run is untouched.
    later = run_reconciliation(books.clerk, *JUNE)
    assert [d.kind for d in later.discrepancies] == ["unmatched bank credit"]
