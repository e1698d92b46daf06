"""Lists a user reaches for: payments and deposits newest first (--oldest-first for the other
order), --limit keeping the newest, and deposit show."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from billing_desk.services.deposits import create_deposit
from billing_desk.services.payments import PaymentDraft, record_payment
from tests.cli.conftest import Cli, set_up_billing
from tests.conftest import Database


def _cash(database: Database, amount: str, day: date, key: str) -> int:
    receipt = record_payment(
        database.workspace("clerk"), PaymentDraft("STMARY", "cash", amount, day), key
    )
    return receipt.payment_id


def test_payment_list_is_newest_first_and_limit_keeps_the_newest(
    cli: Cli, database: Database, tmp_path: Path
) -> None:
    set_up_billing(cli, tmp_path)
    old = _cash(database, "1.00", date(2026, 5, 1), "p-old")
    new = _cash(database, "3.00", date(2026, 5, 20), "p-new")
    mid = _cash(database, "2.00", date(2026, 5, 10), "p-mid")
    listed = cli("payment", "list", "--json").json()
    assert [p["payment_id"] for p in listed] == [new, mid, old]
    assert [p["payment_id"] for p in cli("payment", "list", "--limit", "2", "--json").json()] == [
        new,
        mid,
    ]
    oldest = cli("payment", "list", "--oldest-first", "--limit", "1", "--json").json()
    assert [p["payment_id"] for p in oldest] == [old]


def test_deposit_list_and_show(cli: Cli, database: Database, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    first = _cash(database, "1.00", date(2026, 5, 1), "c1")
    second = _cash(database, "2.50", date(2026, 5, 2), "c2")
    third = _cash(database, "4.00", date(2026, 5, 3), "c3")
    clerk = database.workspace("clerk")
    early = create_deposit(clerk, [first, second], date(2026, 5, 4))
    late = create_deposit(clerk, [third], date(2026, 5, 6))
    listed = cli("deposit", "list", "--json").json()
    assert [(d["deposit_id"], d["total_minor"], d["item_count"]) for d in listed] == [
        (late.deposit_id, 400, 1),
        (early.deposit_id, 350, 2),
    ]
    assert [
        d["deposit_id"]
        for d in cli("deposit", "list", "--oldest-first", "--limit", "1", "--json").json()
    ] == [early.deposit_id]
    shown = cli("deposit", "show", str(early.deposit_id))
    assert shown.code == 0, shown.err
    assert "Total: 3.50" in shown.out and str(second) in shown.out
    missing = cli("deposit", "show", "999")
    assert missing.code != 0 and "deposit list" in missing.err
