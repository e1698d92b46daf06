"""The demo data reconciled against the bank statement its money would produce, written in every
format we import: each file goes through its importer, the lines match, the period reconciles
with no discrepancy; then each kind of discrepancy is planted and found."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import select, text

from billing_desk.db.models import Deposit, Payment, PaymentStatusChange
from billing_desk.importers.statements import registry
from billing_desk.services.demo import load_demo_data
from billing_desk.services.matching import LIVE, auto_match, unmatch_line
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.reconciliation import KINDS, run_reconciliation
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database
from tests.statement_writers import WRITERS, BankEntry

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

AS_OF = date(2026, 5, 20)
ACCOUNT = "100200300"


def bank_entries(workspace: Workspace) -> dict[str, list[BankEntry]]:
    """What the bank saw, per currency: each deposit the next day, each live transfer or card
    payment on its day, each returned check coming back."""

    def read(unit):  # type: ignore[no-untyped-def]
        session = unit.session
        out: dict[str, list[BankEntry]] = defaultdict(list)
        for d in session.scalars(select(Deposit).order_by(Deposit.id)):
            out[d.currency].append(
                BankEntry(
                    d.deposit_date + timedelta(days=1), d.total_minor, f"DEP{d.id}", None, "Deposit"
                )
            )
        for p in session.scalars(select(Payment).order_by(Payment.id)):
            if p.method in ("transfer", "card") and p.status in LIVE:
                out[p.currency].append(
                    BankEntry(
                        p.received_date,
                        p.amount_minor,
                        f"PAY{p.id}",
                        p.transfer_reference or p.processor_ref,
                        p.payer or "Payer",
                    )
                )
        returns = session.execute(
            select(PaymentStatusChange, Payment)
            .join(Payment, Payment.id == PaymentStatusChange.payment_id)
            .where(PaymentStatusChange.to_status == "returned", Payment.status == "returned")
        )
        for change, p in returns:
            out[p.currency].append(
                BankEntry(
                    change.changed_at.date(),
                    -p.amount_minor,
                    f"RET{change.id}",
                    None,
                    "Returned item",
                )
            )
        return out

    return workspace.read(read)


def import_in_every_format(clerk: Workspace, entries: dict[str, list[BankEntry]]) -> set[str]:
    """Spread each currency's lines over the five formats, one file each, and import them."""
    used = set()
    for currency, lines in sorted(entries.items()):
        for n, (name, write) in enumerate(sorted(WRITERS.items())):
            part = sorted(lines[n :: len(WRITERS)], key=lambda e: e.booked)
            if not part:
                continue
            data = write(ACCOUNT, currency, part)
            detected = registry.detect(data)
            assert detected == name
            if name == "csv":
                from billing_desk.importers.statements import csv_statement

                statements = csv_statement.parse_with(
                    data, csv_statement.guess_mapping(data, name="bank")
                )
                statements = [replace(s, account=ACCOUNT) for s in statements]
            else:
                statements = registry.parse(data, name)
            parsed = [(ln.booked, ln.amount.minor) for s in statements for ln in s.lines]
            assert parsed == [(e.booked, e.amount_minor) for e in part], name
            result = import_statements(clerk, f"bank.{name}", data, name, statements, commit=True)
            assert result.count("new") == len(part), name
            used.add(name)
    return used


@pytest.fixture
def demo(database: Database) -> Database:
    load_demo_data(database.workspace("newcomer"), facilities=2, months=3, as_of=AS_OF)
    return database


def test_the_demo_reconciles_through_every_format(demo: Database) -> None:
    clerk = demo.workspace("clerk")
    used = import_in_every_format(clerk, bank_entries(clerk))
    assert used == set(WRITERS)
    summary = auto_match(clerk)
    assert summary.unmatched_lines == 0, summary
    report = run_reconciliation(clerk, date(2025, 1, 1), AS_OF)
    assert report.discrepancies == (), report.discrepancies[:5]


def test_each_kind_of_discrepancy_is_planted_and_found(demo: Database) -> None:
    clerk = demo.workspace("clerk")
    import_in_every_format(clerk, bank_entries(clerk))
    auto_match(clerk)
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
        ACCOUNT,
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
                "ON m.deposit_id = i.deposit_id AND m.active"
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
                    "INSERT INTO bank_match (line_id, payment_id, rule, detail, matched_at, "
                    "matched_by, active) VALUES "
                    "(:l, :p, 'manual', '{}', CURRENT_TIMESTAMP, 'clerk', :a)"
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
