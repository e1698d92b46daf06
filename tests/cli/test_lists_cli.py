"""Lists a user reaches for: payments and deposits newest first (--oldest-first for the other
order), --limit keeping the newest, and deposit show."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from billing_desk.services.deposits import create_deposit
from billing_desk.services.payments import PaymentDraft, record_payment
from tests.cli.conftest import Cli, set_up_billing
from tests.conftest import Database
from tests.corpus import CORPUS_ROOT

CAMT_NAME = "camt053v04_raiffeisen_ch_16_entries.xml"


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


def test_import_statement_header_is_labelled(cli: Cli, tmp_path: Path) -> None:
    set_up_billing(cli, tmp_path)
    ran = cli("import", "statement", str(CORPUS_ROOT / "camt053" / CAMT_NAME))
    assert ran.code == 0, ran.err
    header = ran.out.splitlines()[0]
    assert header.startswith("Account ") and ", currency " in header, header
    assert ", period " in header and " to " in header, header


def test_audit_log_summary_is_one_line_per_request_and_request_narrows(
    cli: Cli, database: Database, tmp_path: Path
) -> None:
    set_up_billing(cli, tmp_path)
    # The auditor's own reads are audited too: look at the clerk's actions, which stay put.
    rows = cli("audit", "log", "--by", "clerk", "--json", user="auditor").json()
    assert isinstance(rows, list)
    requests = {r["request_id"] for r in rows}
    summary = cli("audit", "log", "--by", "clerk", "--summary", "--json", user="auditor").json()
    assert isinstance(summary, list)
    assert len(summary) == len(requests) < len(rows)
    assert sum(s["rows"] for s in summary) == len(rows)
    biggest = max(summary, key=lambda s: s["rows"])
    only = cli("audit", "log", "--request", biggest["request_id"], "--json", user="auditor").json()
    assert isinstance(only, list) and len(only) == biggest["rows"]
    assert {r["request_id"] for r in only} == {biggest["request_id"]}
    human = cli("audit", "log", "--by", "clerk", "--summary", user="auditor")
    assert biggest["request_id"] in human.out and biggest["action"] in human.out
