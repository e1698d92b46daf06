"""What is owed: each invoice's paid, credited and open amounts, each facility's balance and aging,
and the CLI that shows them, from one service function."""

from __future__ import annotations

import json
from datetime import date

import pytest
import time_machine

from billing_desk.cli.app import run
from billing_desk.domain.money import Money
from billing_desk.services.balances import facility_balances
from billing_desk.services.credits import apply_credit
from billing_desk.services.invoices import list_invoices, run_invoice, show_invoice
from billing_desk.services.payments import PaymentDraft, record_payment
from tests.clocks import WEEKDAY_OFFICE_HOURS, office_hours
from tests.conftest import Database
from tests.support import load_trips, seed_facility, seed_users, trip

pytestmark = pytest.mark.clock


def usd(text: str) -> Money:
    return Money(text, "USD")


@pytest.fixture
def owed(database: Database) -> Database:
    """On 2026-07-15: STMARY-000001 (March, due 2026-05-01, 75 days late) 100.00 open;
    STMARY-000002 (June, due 2026-08-01, current) 50.00, of which 20.00 paid by payment and
    10.00 by credit from another payment that left 5.00 unapplied."""
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")
    seed_facility(admin, "OAKVIEW")
    load_trips(
        database.workspace("manager"),
        [
            trip("T1", day=date(2026, 3, 2), fare="100.00"),
            trip("T2", day=date(2026, 6, 2), fare="50.00"),
        ],
    )
    clerk = database.workspace("clerk", clock=office_hours())
    run_invoice(clerk, "STMARY", "2026-03", issue_date=date(2026, 4, 1))
    run_invoice(clerk, "STMARY", "2026-06", issue_date=date(2026, 7, 2))
    record_payment(
        clerk,
        PaymentDraft(
            "STMARY",
            "transfer",
            "20.00",
            date(2026, 7, 3),
            reference="ACH 1",
            allocations=(("STMARY-000002", "20.00"),),
        ),
        "pay-1",
    )
    record_payment(
        clerk,
        PaymentDraft("STMARY", "transfer", "15.00", date(2026, 7, 4), reference="ACH 2"),
        "pay-2",
    )
    apply_credit(clerk, "STMARY", "STMARY-000002", "10.00", "credit-1")
    return database


def test_each_invoice_says_what_is_paid_credited_and_open(owed: Database) -> None:
    clerk = owed.workspace("clerk", clock=office_hours())
    rows = {s.number: s for s in list_invoices(clerk)}
    late, current = rows["STMARY-000001"], rows["STMARY-000002"]
    assert (late.paid, late.credited, late.open, late.days_past_due) == (
        usd("0.00"),
        usd("0.00"),
        usd("100.00"),
        75,
    )
    assert (current.paid, current.credited, current.open, current.days_past_due) == (
        usd("20.00"),
        usd("10.00"),
        usd("20.00"),
        0,
    )
    assert [s.number for s in list_invoices(clerk, overdue_only=True)] == ["STMARY-000001"]
    assert len(list_invoices(clerk, open_only=True)) == 2


def test_history_says_where_the_money_came_from(owed: Database) -> None:
    clerk = owed.workspace("clerk", clock=office_hours())
    record_payment(
        clerk,
        PaymentDraft("STMARY", "transfer", "15.00", date(2026, 7, 5), reference="ACH 3"),
        "pay-3",
    )
    apply_credit(clerk, "STMARY", "STMARY-000002", "20.00", "credit-2")
    detail = show_invoice(clerk, "STMARY-000002")
    # 20.00 of credit comes from what is left of payment 2 (5.00) and payment 3 (15.00).
    assert [m.describe().split(" ")[0] for m in detail.money] == [
        "payment",
        "credit",
        "credit",
        "credit",
    ]
    assert detail.summary.open == usd("0.00") and detail.summary.status == "paid"
    reasons = [h.reason or "" for h in detail.history]
    assert reasons[:2] == ["invoice run", f"payment {detail.money[0].payment_id}"]
    # Paid in full by credit: the history must not name the credit's payment as a payment.
    assert reasons[-1].startswith("credit from payment "), reasons


def test_facility_balance_ages_open_invoices_and_subtracts_credit(owed: Database) -> None:
    oakview, stmary = facility_balances(owed.workspace("clerk", clock=office_hours()))
    assert stmary.open == usd("120.00")
    assert stmary.credit == usd("5.00")
    assert stmary.balance == usd("115.00")
    assert stmary.overdue == usd("100.00")
    assert stmary.oldest_due == date(2026, 5, 1)
    assert [(a.bucket, a.amount.minor, a.invoices) for a in stmary.aging] == [
        ("current", 2000, 1),
        ("1-30", 0, 0),
        ("31-60", 0, 0),
        ("61-90", 10000, 1),
        ("over 90", 0, 0),
    ]
    assert oakview.balance == usd("0.00") and oakview.open_invoices == 0


def test_cli_shows_balances_and_open_amounts_in_minor_units(
    owed: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_DESK_DB", owed.url)

    def cli(*args: str) -> str:
        capsys.readouterr()
        with time_machine.travel(WEEKDAY_OFFICE_HOURS, tick=False):
            code = run(["--user", "clerk", *args])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    balance = json.loads(cli("facility", "balance", "STMARY", "--json"))
    assert (balance["balance_minor"], balance["credit_minor"], balance["overdue_minor"]) == (
        11500,
        500,
        10000,
    )
    assert [a["amount_minor"] for a in balance["aging"]] == [2000, 0, 0, 10000, 0]
    listed = json.loads(cli("invoice", "list", "--overdue", "--json"))
    assert [(i["number"], i["open_minor"], i["days_past_due"]) for i in listed] == [
        ("STMARY-000001", 10000, 75)
    ]
    assert len(json.loads(cli("invoice", "list", "--open", "--limit", "1", "--json"))) == 1
    shown = cli("invoice", "show", "STMARY-000002")
    assert "open: 20.00" in shown and "from credit from payment" in shown
    assert "115.00" in cli("facility", "list")
