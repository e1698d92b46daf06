"""The demo's money clears through its bank's statements, written in each format the demo's bank
can send: each file goes through its importer, the lines match each morning (which is how money
clears), and a run over the history finds exactly the three things planted on purpose; then each
kind of discrepancy is planted and found."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select, text

from billing_desk.db.models import (
    BankLine,
    BankMatch,
    DepositItem,
    Payment,
    PaymentStatusChange,
    StatementFile,
)
from billing_desk.importers.statements import registry
from billing_desk.importers.statements.writers import WRITERS, BankEntry
from billing_desk.services.demo import load_demo_data
from billing_desk.services.matching import LIVE, unmatch_line
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.reconciliation import KINDS, run_reconciliation
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

AS_OF = date(2026, 5, 20)


@pytest.fixture
def demo(database: Database) -> Database:
    load_demo_data(database.workspace("newcomer"), facilities=2, months=3, as_of=AS_OF)
    return database


def cleared_but_unmatched_and_the_reverse(workspace: Workspace) -> list[tuple[int, str]]:
    """Payments whose status says the bank has their money while no bank credit is matched to
    them (or to the latest slip holding them), and the reverse."""

    def read(unit):  # type: ignore[no-untyped-def]
        session = unit.session
        credited = {
            (m.payment_id, m.deposit_id)
            for m, _line in session.execute(
                select(BankMatch, BankLine)
                .join(BankLine, BankLine.id == BankMatch.line_id)
                .where(BankMatch.active, BankLine.amount_minor > 0)
            )
        }
        paid_direct = {p for p, _d in credited if p is not None}
        slips = {d for _p, d in credited if d is not None}
        wrong = []
        for p in session.scalars(select(Payment).order_by(Payment.id)):
            slip = session.scalar(
                select(func.max(DepositItem.deposit_id)).where(DepositItem.payment_id == p.id)
            )
            at_bank = p.id in paid_direct or (slip is not None and slip in slips)
            if (p.status in ("cleared", "settled")) != (at_bank and p.status in LIVE):
                wrong.append((p.id, p.status))
        return wrong

    return workspace.read(read)


@pytest.mark.parametrize("bank_format", ["bai2", "camt053", "mt940", "ofx"])
def test_the_demo_clears_its_money_through_its_bank_statements(
    database: Database, bank_format: str
) -> None:
    """Whatever format the bank sends, the demo's money clears only by matching its lines, and a
    run over the whole history finds exactly what was planted: a slip credited 20.00 short, an
    unidentified credit and the bank's service charge."""
    summary = load_demo_data(
        database.workspace("newcomer"),
        facilities=7,  # dollars, Canadian dollars and euros
        months=2,
        as_of=AS_OF,
        bank_formats=dict.fromkeys(("USD", "EUR", "CAD"), bank_format),
    )
    clerk = database.workspace("clerk")
    assert summary.bank_lines - summary.bank_lines_matched == 2
    formats = clerk.read(lambda u: set(u.session.scalars(select(StatementFile.format).distinct())))
    assert formats == {bank_format}
    assert cleared_but_unmatched_and_the_reverse(clerk) == []
    clearing = clerk.read(
        lambda u: list(
            u.session.scalars(
                select(PaymentStatusChange.reason).where(
                    PaymentStatusChange.to_status.in_(("cleared", "settled"))
                )
            )
        )
    )
    assert clearing and all(r.startswith("matched to bank line ") for r in clearing)
    report = run_reconciliation(clerk, date(2025, 1, 1), AS_OF)
    found = sorted(
        (d.kind, d.expected_minor, d.actual_minor, d.currency) for d in report.discrepancies
    )
    short = next(d for d in report.discrepancies if d.kind == "amount mismatch")
    assert short.actual_minor is not None and short.expected_minor is not None
    assert found == sorted(
        [
            ("amount mismatch", short.expected_minor, short.expected_minor - 2000, "USD"),
            ("unexplained bank debit", None, -2500, "USD"),
            ("unmatched bank credit", None, found[-1][2], "USD"),
        ]
    )
    assert "The bank credited 20.00 USD less" in clerk.read(
        lambda u: u.session.scalar(select(BankMatch.detail).where(BankMatch.rule.like("%diff%")))
    )


def test_each_kind_of_discrepancy_is_planted_and_found(demo: Database) -> None:
    clerk = demo.workspace("clerk")
    manager = demo.workspace("manager")
    admin = demo.workspace("admin")

    def scalar(sql: str) -> int:
        with admin.engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())

    # Unmatched bank credit and amount mismatch: a stray line, and one with a transfer's
    # reference but another amount.
    transfer = scalar(
        "SELECT min(id) FROM payment WHERE method = 'transfer' AND status IN "
        "('recorded', 'cleared')"
    )
    reference = admin.read(lambda u: u.session.get(Payment, transfer).transfer_reference)
    currency = admin.read(lambda u: u.session.get(Payment, transfer).currency)
    extra = WRITERS["camt053"](
        "100200300",
        currency,
        [
            BankEntry(AS_OF, 1234, "STRAY1", None, "Unknown"),
            BankEntry(AS_OF, 777, "STRAY2", reference, "Short payer"),
            BankEntry(AS_OF, -2500, "FEE1", None, "Bank fee"),
            BankEntry(AS_OF, -2600, "FEE2", None, "Bank fee"),
            BankEntry(AS_OF, 4321, "STRAY3", None, "Odd credit"),
        ],
    )
    import_statements(
        clerk, "extra.xml", extra, "camt053", registry.parse(extra, "camt053"), commit=True
    )
    # Payment never seen at the bank: a deposit's line unmatched.
    deposit_line = scalar("SELECT min(line_id) FROM bank_match WHERE deposit_id IS NOT NULL")
    unmatch_line(clerk, deposit_line, "planted: the bank never had it")
    # Duplicate payment: the same transfer entered again with an override, approved.
    code = facility_code(admin, transfer)
    again = record_payment(
        clerk,
        PaymentDraft(
            code, "transfer", "1.00", AS_OF, reference=reference, override_reason="paid twice"
        ),
        "planted-dup",
    )
    change_status(manager, again.payment_id, "recorded", "approved", "planted-approve")
    # Matches the rules would refuse, written behind the application's back: a fee debit
    # matched to the live duplicate transfer (sign mismatch), a check matched alone although
    # its deposit is matched too (match does not fit, payment matched twice), and a matched
    # transfer voided.
    with admin.engine.begin() as conn:
        line_of = {
            bank_id: line_id
            for bank_id, line_id in conn.execute(
                text("SELECT bank_id, id FROM bank_line WHERE bank_id IN ('FEE2', 'STRAY3')")
            )
        }
        deposited_check = conn.execute(
            text(
                "SELECT min(i.payment_id) FROM deposit_item i JOIN bank_match m "
                "ON m.deposit_id = i.deposit_id AND m.active WHERE i.payment_id NOT IN "
                "(SELECT payment_id FROM bank_match WHERE active AND payment_id IS NOT NULL)"
            )
        ).scalar()
        matched_transfer = conn.execute(
            text(
                "SELECT min(m.payment_id) FROM bank_match m JOIN payment p ON p.id = m.payment_id "
                "WHERE m.active AND p.method = 'transfer' AND p.id <> :t"
            ),
            {"t": transfer},
        ).scalar()
        for line_id, payment_id in (
            (line_of["FEE2"], again.payment_id),
            (line_of["STRAY3"], deposited_check),
        ):
            conn.execute(
                text(
                    "INSERT INTO bank_match (line_id, direction, payment_id, rule, detail, "
                    "matched_at, matched_by, active) VALUES (:l, (SELECT CASE WHEN amount_minor"
                    " > 0 THEN 'credit' ELSE 'debit' END FROM bank_line WHERE id = :l), :p, "
                    "'manual', '{}', CURRENT_TIMESTAMP, 'clerk', :a)"
                ),
                {"l": line_id, "p": payment_id, "a": True},
            )
        conn.execute(
            text("UPDATE payment SET status = 'voided' WHERE id = :p"), {"p": matched_transfer}
        )
    # The books disagree with themselves, behind the application's back.
    with admin.engine.begin() as conn:
        conn.execute(text("DROP INDEX uq_invoice_line_trip_billed"))
        first = conn.execute(
            text("SELECT id, invoice_id, trip_id, facility_id FROM invoice_line ORDER BY id")
        ).first()
        other = conn.execute(
            text("SELECT id FROM invoice WHERE id <> :i AND facility_id = :f ORDER BY id"),
            {"i": first.invoice_id, "f": first.facility_id},
        ).scalar()
        conn.execute(
            text(
                "INSERT INTO invoice_line (invoice_id, facility_id, trip_id, line_no, "
                "service_date, description, amount_minor, released) SELECT :o, facility_id, "
                "trip_id, 999, service_date, description, 0, :f FROM invoice_line WHERE id = :l"
            ),
            {"o": other, "l": first.id, "f": False},
        )
        conn.execute(
            text("UPDATE invoice SET total_minor = total_minor + 5 WHERE id = :o"), {"o": other}
        )
        conn.execute(
            text(
                "UPDATE allocation SET amount_minor = amount_minor + 100000 WHERE id = "
                "(SELECT min(id) FROM allocation WHERE NOT released)"
            )
        )
    report = run_reconciliation(clerk, date(2025, 1, 1), AS_OF)
    found = {d.kind for d in report.discrepancies}
    assert found == set(KINDS), sorted(set(KINDS) - found)


def facility_code(workspace: Workspace, payment_id: int) -> str:
    def read(unit):  # type: ignore[no-untyped-def]
        from billing_desk.db.models import Facility

        payment = unit.session.get(Payment, payment_id)
        return unit.session.get(Facility, payment.facility_id).code

    return str(workspace.read(read))
