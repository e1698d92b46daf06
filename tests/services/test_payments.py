"""Recording payments through the service layer, on both backends: idempotency keys, the
natural-key guard, allocations and facility credit, card-data rules, bad input, key cleanup."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing_desk.db.models import Base, IdempotencyRecord, Payment
from billing_desk.domain.errors import BadInput, BillingError, PermissionDenied, Refused
from billing_desk.domain.money import Money
from billing_desk.services.allocations import AllocationInfo
from billing_desk.services.credits import apply_credit, credit_balance
from billing_desk.services.idempotency import purge_keys
from billing_desk.services.invoices import run_invoice, show_invoice, void_invoice
from billing_desk.services.payments import (
    PaymentDraft,
    change_status,
    list_payments,
    record_payment,
    show_payment,
)
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.users import add_user
from tests.clocks import today_of
from tests.conftest import BACKENDS, Database, pg_admin_connection, pg_url
from tests.support import load_trips, seed_facility, seed_users, trip

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

MAY_INVOICE = "STMARY-000001"  # 52.34 USD, due 2026-07-01
APRIL_INVOICE = "STMARY-000002"  # 30.00 USD, due 2026-05-31: the oldest due, numbered second
RECEIVED = date(2026, 6, 2)

CHECK = PaymentDraft(
    "STMARY",
    "check",
    "60.00",
    RECEIVED,
    check_number="1001",
    routing_number="021000021",
    account_number="000123456789",
)
TRANSFER = PaymentDraft("STMARY", "transfer", "60.00", RECEIVED, reference="ACH 2026-06-001")
CARD = PaymentDraft(
    "STMARY",
    "card",
    "60.00",
    RECEIVED,
    card_brand="Visa",
    card_last4="4242",
    processor_ref="ch_3PqR7",
)
CASH = PaymentDraft("STMARY", "cash", "20.00", RECEIVED)

# Every table a payment operation may write to: "nothing written" means none of these changed.
WRITTEN_TABLES = (
    "payment",
    "payment_status_change",
    "allocation",
    "invoice_status_change",
    "refund",
    "deposit",
    "deposit_item",
    "idempotency_record",
    "maintenance_run",
    "audit_entry",
)
MISSING_KEY = (
    "Every payment change needs an idempotency key; pass --idempotency-key with a value unique "
    "to this request (reuse it only to retry the same request)."
)


@dataclass
class Billing:
    database: Database
    admin: Workspace
    clerk: Workspace
    manager: Workspace
    manager2: Workspace


@pytest.fixture(params=BACKENDS)
def billing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Billing]:
    yield from cloned_billing(request, tmp_path)


def cloned_billing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Billing]:
    """A fresh database per test, on the backend in `request.param`, holding `seed_billing`'s
    data. Seeding through the services costs more than most tests, so it runs once per backend
    into a template that each test clones."""
    backend: str = request.param
    template = _seeded_template(request, backend)
    if backend == "sqlite":
        path = tmp_path / "billing.sqlite3"
        shutil.copyfile(template, path)
        database = Database("sqlite", str(path))
    else:
        name = f"bd_test_{uuid.uuid4().hex[:12]}"
        _pg_admin(sql.SQL("CREATE DATABASE {} TEMPLATE {}"), name, template)
        database = Database("postgresql", pg_url(name))
    try:
        yield Billing(
            database,
            database.workspace("admin"),
            database.workspace("clerk"),
            database.workspace("manager"),
            database.workspace("manager2"),
        )
    finally:
        database.close()
        if backend == "postgresql":
            _pg_admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), name)


_SEEDED_TEMPLATES: dict[str, str] = {}


def _seeded_template(request: pytest.FixtureRequest, backend: str) -> str:
    """The SQLite file or PostgreSQL database seeded for this test process, made on first use."""
    if backend in _SEEDED_TEMPLATES:
        return _SEEDED_TEMPLATES[backend]
    if backend == "sqlite":
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        path = factory.mktemp("seeded") / "billing.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        template, database = str(path), Database("sqlite", str(path))
    else:
        base: str = request.getfixturevalue("pg_template")
        template = f"{base}_payments"
        _pg_admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), template)
        _pg_admin(sql.SQL("CREATE DATABASE {} TEMPLATE {}"), template, base)
        request.config.add_cleanup(
            lambda: _pg_admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), template)
        )
        database = Database("postgresql", pg_url(template))
    try:
        seed_billing(database)
    finally:
        # Every connection closes: SQLite folds its WAL into the file, PostgreSQL can copy it.
        database.close()
    _SEEDED_TEMPLATES[backend] = template
    return template


def _pg_admin(statement: sql.SQL, *names: str) -> None:
    with pg_admin_connection() as conn:
        conn.execute(statement.format(*(sql.Identifier(n) for n in names)))


def seed_billing(database: Database) -> None:
    """Users (two managers), facilities STMARY and OAKVIEW in USD, and two issued STMARY
    invoices whose numbers run against their due dates."""
    admin = database.workspace("admin")
    seed_users(admin)
    add_user(admin, "manager2", "manager")
    seed_facility(admin, "STMARY")
    seed_facility(admin, "OAKVIEW")
    load_trips(
        database.workspace("manager"),
        [
            trip("M1", day=date(2026, 5, 1), fare="40.00"),
            trip("M2", day=date(2026, 5, 2), fare="12.34"),
            trip("A1", day=date(2026, 4, 10), fare="30.00"),
        ],
    )
    clerk = database.workspace("clerk")
    run_invoice(clerk, "STMARY", "2026-05", issue_date=date(2026, 6, 1))
    run_invoice(clerk, "STMARY", "2026-04", issue_date=date(2026, 5, 1))


def usd(amount: str) -> Money:
    return Money(amount, "USD")


def draft(base: PaymentDraft, **changes: Any) -> PaymentDraft:
    return replace(base, **changes)


def row_counts(workspace: Workspace) -> dict[str, int]:
    with workspace.engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in WRITTEN_TABLES
        }


def rows(workspace: Workspace, sql: str, **params: object) -> list[tuple[Any, ...]]:
    with workspace.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def allocation_rows(workspace: Workspace, payment_id: int) -> list[tuple[Any, ...]]:
    """(invoice number, minor units, via credit, released) of every allocation, released too."""
    return [
        (number, amount, bool(via_credit), bool(released))
        for number, amount, via_credit, released in rows(
            workspace,
            "SELECT i.number, a.amount_minor, a.via_credit, a.released FROM allocation a "
            "JOIN invoice i ON i.id = a.invoice_id WHERE a.payment_id = :id ORDER BY a.id",
            id=payment_id,
        )
    ]


def invoice_status(workspace: Workspace, number: str) -> str:
    return show_invoice(workspace, number).summary.status


def invoice_moves(workspace: Workspace, number: str) -> list[tuple[str | None, str]]:
    return [(h.from_status, h.to_status) for h in show_invoice(workspace, number).history]


# A refused call: what it tries, the call, the error it must raise and that error's message.
Case = tuple[str, Callable[[], object], type[BillingError], str]


def refusal_problems(cases: Iterable[Case]) -> list[str]:
    """Run each refused call; describe every one that was accepted, raised another error type,
    or said something other than the expected sentence."""
    problems = []
    for label, call, error, message in cases:
        try:
            call()
        except BillingError as err:
            if type(err) is not error or str(err) != message:
                problems.append(f"{label}: {type(err).__name__}({str(err)!r}), wanted {message!r}")
        else:
            problems.append(f"{label}: accepted, wanted {error.__name__}({message!r})")
    return problems


def mismatch(key: str, differs: str) -> str:
    return (
        f"Idempotency key {key} was already used for a different request ({differs}); "
        "use a new key for a new request."
    )


def already_recorded(what: str, payment_id: int, received: date = RECEIVED) -> str:
    return (
        f"The {what} was already recorded as payment {payment_id} on {received}; if this really "
        "is a second payment, record it with --override-reason for a manager to approve."
    )


# -- idempotency keys -----------------------------------------------------------------------


def test_a_replay_returns_the_first_receipt_and_writes_nothing(billing: Billing) -> None:
    wanted = draft(CHECK, payer="St Mary Accounts", allocations=((MAY_INVOICE, "52.34"),))
    first = record_payment(billing.clerk, wanted, "k-1")
    assert first.replayed is False
    assert (first.status, first.amount, first.credit) == ("recorded", usd("60.00"), usd("7.66"))
    assert first.allocations == (AllocationInfo(MAY_INVOICE, usd("52.34")),)
    before = row_counts(billing.clerk)
    # The same request, however it is written, and by whoever retries it: the key belongs to
    # the facility's request, not to a user.
    retries = [
        (billing.clerk, wanted, "k-1"),
        (billing.manager, wanted, "k-1"),
        (billing.clerk, wanted, "  k-1 "),
        (billing.clerk, draft(wanted, amount="60"), "k-1"),
        (billing.clerk, draft(wanted, amount="$60.00"), "k-1"),
        (billing.clerk, draft(wanted, amount="USD 60.00"), "k-1"),
        (billing.clerk, draft(wanted, currency="usd"), "k-1"),
        (billing.clerk, draft(wanted, payer="  St Mary Accounts  "), "k-1"),
        (billing.clerk, draft(wanted, check_number="0001001"), "k-1"),
        (billing.clerk, draft(wanted, account_number="0001-2345-6789"), "k-1"),
        (billing.clerk, draft(wanted, routing_number="021 000 021"), "k-1"),
        (billing.clerk, draft(wanted, allocations=((" stmary-000001 ", "52.340"),)), "k-1"),
    ]

    receipts = [record_payment(workspace, d, key) for workspace, d, key in retries]

    assert receipts == [replace(first, replayed=True)] * len(retries)
    assert row_counts(billing.clerk) == before
    assert [p.payment_id for p in list_payments(billing.clerk)] == [first.payment_id]


def test_a_reused_key_with_a_changed_request_is_refused_naming_the_field(
    billing: Billing,
) -> None:
    check = draft(
        CHECK, payer="St Mary Accounts", memo="May trips", allocations=((MAY_INVOICE, "52.34"),)
    )
    record_payment(billing.clerk, check, "k-check")
    record_payment(billing.clerk, TRANSFER, "k-transfer")
    record_payment(billing.clerk, CARD, "k-card")
    before = row_counts(billing.clerk)
    changed: list[tuple[str, PaymentDraft, str]] = [
        ("k-check", draft(check, amount="61.00"), "amount_minor differs"),
        ("k-check", draft(check, received=date(2026, 6, 3)), "received differs"),
        ("k-check", draft(check, check_number="1002"), "check_number differs"),
        ("k-check", draft(check, routing_number="011000015"), "routing_number differs"),
        ("k-check", draft(check, account_number="000123456780"), "account_hash differs"),
        ("k-check", draft(check, payer="Oak View Accounts"), "payer differs"),
        ("k-check", draft(check, payer=None), "payer differs"),
        ("k-check", draft(check, memo="June trips"), "memo differs"),
        (
            "k-check",
            draft(check, allocations=((MAY_INVOICE, "52.00"),)),
            "allocations differs",
        ),
        (
            "k-check",
            draft(check, allocations=((APRIL_INVOICE, "30.00"),)),
            "allocations differs",
        ),
        ("k-check", draft(check, auto_allocate=True), "auto_allocate differs"),
        ("k-check", draft(check, override_reason="paid twice"), "override_reason differs"),
        (
            "k-check",
            draft(
                check, method="cash", check_number=None, routing_number=None, account_number=None
            ),
            "account_hash, check_number, method, routing_number differ",
        ),
        ("k-transfer", draft(TRANSFER, reference="ACH 2026-06-002"), "reference differs"),
        ("k-card", draft(CARD, card_brand="Mastercard"), "card_brand differs"),
        ("k-card", draft(CARD, card_last4="4243"), "card_last4 differs"),
        ("k-card", draft(CARD, processor_ref="ch_3PqR8"), "processor_ref differs"),
    ]

    problems = refusal_problems(
        (
            f"{key} with {differs}",
            lambda d=changed_draft, k=key: record_payment(billing.clerk, d, k),
            Refused,
            mismatch(key, differs),
        )
        for key, changed_draft, differs in changed
    )

    assert problems == []
    assert row_counts(billing.clerk) == before


def test_the_same_key_in_another_facility_is_an_independent_payment(billing: Billing) -> None:
    here = record_payment(billing.clerk, CHECK, "k-1")
    there = record_payment(billing.clerk, draft(CHECK, facility="OAKVIEW"), "k-1")

    assert there.replayed is False
    assert there.facility == "OAKVIEW"
    assert there.payment_id != here.payment_id
    assert [(p.payment_id, p.facility) for p in list_payments(billing.clerk)] == [
        (here.payment_id, "STMARY"),
        (there.payment_id, "OAKVIEW"),
    ]
    assert record_payment(billing.clerk, CHECK, "k-1").payment_id == here.payment_id
    replayed_there = record_payment(billing.clerk, draft(CHECK, facility="oakview"), "k-1")
    assert (replayed_there.payment_id, replayed_there.replayed) == (there.payment_id, True)


def test_a_missing_or_malformed_key_is_bad_input(billing: Billing) -> None:
    def unusable(key: str) -> str:
        return (
            f"'{key}' is not a usable idempotency key; use 1 to 200 visible ASCII characters "
            "without spaces."
        )

    too_long = "k" * 201
    cases = [
        ("no key", None, MISSING_KEY),
        ("empty key", "", MISSING_KEY),
        ("whitespace key", " \t ", MISSING_KEY),
        ("key with a space", "my key", unusable("my key")),
        ("key with a tab", "my\tkey", unusable("my\tkey")),
        ("non-ASCII key", "clé-1", unusable("clé-1")),
        ("201-character key", too_long, unusable(too_long)),
    ]
    before = row_counts(billing.clerk)

    problems = refusal_problems(
        (label, lambda k=key: record_payment(billing.clerk, CHECK, k), BadInput, message)
        for label, key, message in cases
    )
    problems += refusal_problems(
        [
            (
                "transition without a key",
                lambda: change_status(billing.manager, 1, "voided", "typo", None),
                BadInput,
                MISSING_KEY,
            ),
            (
                "credit without a key",
                lambda: apply_credit(billing.clerk, "STMARY", MAY_INVOICE, "1.00", "  "),
                BadInput,
                MISSING_KEY,
            ),
        ]
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    longest = record_payment(billing.clerk, CHECK, "k" * 200)
    assert longest.status == "recorded"


# -- the natural-key guard ------------------------------------------------------------------


def test_the_same_check_under_a_new_key_is_refused_naming_the_earlier_payment(
    billing: Billing,
) -> None:
    first = record_payment(billing.clerk, CHECK, "k-1")
    before = row_counts(billing.clerk)
    same_check = [
        ("same entry", CHECK, billing.clerk),
        ("by another user", CHECK, billing.manager),
        (
            "written differently, other amount and day",
            draft(
                CHECK,
                check_number="001001",
                account_number="0001 2345 6789",
                amount="61.00",
                received=date(2026, 6, 3),
            ),
            billing.clerk,
        ),
    ]

    problems = refusal_problems(
        (
            label,
            lambda d=d, ws=ws, n=n: record_payment(ws, d, f"k-again-{n}"),
            Refused,
            already_recorded("check 1001 from account ending 6789", first.payment_id),
        )
        for n, (label, d, ws) in enumerate(same_check)
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    # Not the same check: another account, another bank, another facility; cash has no number.
    others = [
        record_payment(billing.clerk, draft(CHECK, account_number="000123456780"), "k-2"),
        record_payment(billing.clerk, draft(CHECK, routing_number="011000015"), "k-3"),
        record_payment(billing.clerk, draft(CHECK, facility="OAKVIEW"), "k-4"),
        record_payment(billing.clerk, CASH, "k-5"),
        record_payment(billing.clerk, CASH, "k-6"),
    ]
    assert [r.status for r in others] == ["recorded"] * 5
    assert len({first.payment_id, *(r.payment_id for r in others)}) == 6


def test_the_same_transfer_or_card_reference_is_refused(billing: Billing) -> None:
    transfer = record_payment(billing.clerk, TRANSFER, "k-1")
    card = record_payment(billing.clerk, CARD, "k-2")
    assert (transfer.status, card.status) == ("recorded", "authorized")
    before = row_counts(billing.clerk)

    problems = refusal_problems(
        [
            (
                "transfer reference in other case and spacing",
                lambda: record_payment(
                    billing.clerk,
                    draft(TRANSFER, reference="  ach   2026-06-001 ", amount="10.00"),
                    "k-3",
                ),
                Refused,
                already_recorded("transfer reference ACH 2026-06-001", transfer.payment_id),
            ),
            (
                "card processor reference in other case",
                lambda: record_payment(
                    billing.clerk, draft(CARD, processor_ref="CH_3PQR7", card_last4="1111"), "k-4"
                ),
                Refused,
                already_recorded("card processor reference CH_3PQR7", card.payment_id),
            ),
        ]
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    another = record_payment(billing.clerk, draft(TRANSFER, reference="ACH 2026-06-002"), "k-5")
    elsewhere = record_payment(billing.clerk, draft(TRANSFER, facility="OAKVIEW"), "k-6")
    assert (another.status, elsewhere.status) == ("recorded", "recorded")


def test_a_check_without_a_number_waits_for_a_second_manager(billing: Billing) -> None:
    unnumbered = draft(CHECK, check_number=None, auto_allocate=True)
    before = row_counts(billing.clerk)
    with pytest.raises(Refused) as refused:
        record_payment(billing.clerk, unnumbered, "k-1")
    assert str(refused.value) == (
        "A check without a number needs a manager's approval; record it with --override-reason "
        "saying why, and a manager approves it."
    )
    assert row_counts(billing.clerk) == before

    held = record_payment(
        billing.manager, draft(unnumbered, override_reason="number torn off"), "k-2"
    )
    assert (held.status, held.allocations, held.credit) == ("awaiting approval", (), usd("0"))
    assert allocation_rows(billing.clerk, held.payment_id) == []
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "issued"

    with pytest.raises(PermissionDenied) as by_clerk:
        change_status(billing.clerk, held.payment_id, "recorded", "looks fine", "t-1")
    assert str(by_clerk.value) == (
        "clerk is a clerk, and a clerk may not void, refund or approve payments."
    )
    with pytest.raises(PermissionDenied) as by_recorder:
        change_status(billing.manager, held.payment_id, "recorded", "looks fine", "t-2")
    assert str(by_recorder.value) == (
        f"manager recorded payment {held.payment_id}, so another manager must approve it "
        "(segregation of duties)."
    )
    assert show_payment(billing.clerk, held.payment_id).status == "awaiting approval"

    approved = change_status(
        billing.manager2, held.payment_id, "recorded", "number confirmed by phone", "t-3"
    )

    assert (approved.from_status, approved.status) == ("awaiting approval", "recorded")
    # The allocation asked for when it was recorded (automatic) happens on approval.
    assert approved.allocations == (
        AllocationInfo(APRIL_INVOICE, usd("30.00")),
        AllocationInfo(MAY_INVOICE, usd("30.00")),
    )
    detail = show_payment(billing.clerk, held.payment_id)
    assert (detail.status, detail.override_reason, detail.approved_by) == (
        "recorded",
        "number torn off",
        "manager2",
    )
    assert [(h.from_status, h.to_status, h.changed_by, h.reason) for h in detail.history] == [
        (None, "awaiting approval", "manager", "number torn off"),
        ("awaiting approval", "recorded", "manager2", "number confirmed by phone"),
    ]
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "paid"
    assert invoice_status(billing.clerk, MAY_INVOICE) == "partially paid"


def test_an_overridden_duplicate_is_held_until_another_manager_approves(
    billing: Billing,
) -> None:
    first = record_payment(billing.clerk, draft(CHECK, amount="30.00"), "k-1")
    second_entry = draft(
        CHECK,
        amount="30.00",
        allocations=((APRIL_INVOICE, "30.00"),),
        override_reason="the facility sent the same check number twice",
    )

    held = record_payment(billing.clerk, second_entry, "k-2")

    assert (held.status, held.duplicate_of, held.allocations) == (
        "awaiting approval",
        first.payment_id,
        (),
    )
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "issued"
    approved = change_status(billing.manager, held.payment_id, "recorded", "confirmed", "t-1")
    assert approved.allocations == (AllocationInfo(APRIL_INVOICE, usd("30.00")),)
    listed = list_payments(billing.clerk, facility="STMARY")
    assert [(p.payment_id, p.status, p.instrument, p.duplicate_of) for p in listed] == [
        (first.payment_id, "recorded", "check 1001, routing 021000021, account ...6789", None),
        (
            held.payment_id,
            "recorded",
            "check 1001, routing 021000021, account ...6789",
            first.payment_id,
        ),
    ]
    assert show_payment(billing.clerk, held.payment_id).approved_by == "manager"
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "paid"


def test_the_database_itself_refuses_a_second_payment_with_the_same_natural_key(
    billing: Billing,
) -> None:
    first = record_payment(billing.clerk, CHECK, "k-1")
    names = [c.name for c in Payment.__table__.columns if c.name != "id"]

    def copy(natural_key: str) -> Any:
        values = ", ".join(natural_key if name == "natural_key" else name for name in names)
        return text(
            f"INSERT INTO payment ({', '.join(names)}) SELECT {values} FROM payment WHERE id = :id"
        )

    engine = billing.clerk.engine
    # The copy is a valid row in every other respect: with another natural key it goes in.
    with engine.connect() as conn:
        conn.execute(copy("'check:another'"), {"id": first.payment_id})
        conn.rollback()
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        conn.execute(copy("natural_key"), {"id": first.payment_id})

    if billing.database.backend == "postgresql":
        assert getattr(refused.value.orig, "sqlstate", None) == "23505"
        assert "uq_payment_natural_key" in str(refused.value.orig)
    else:
        assert "UNIQUE constraint failed: payment.facility_id, payment.natural_key" in str(
            refused.value.orig
        )
    assert [p.payment_id for p in list_payments(billing.clerk)] == [first.payment_id]


# -- allocations and credit -----------------------------------------------------------------


def test_an_explicit_allocation_pays_the_invoice_and_the_rest_is_credit(billing: Billing) -> None:
    receipt = record_payment(
        billing.clerk, draft(CHECK, allocations=(("stmary-000001", "52.34"),)), "k-1"
    )

    assert receipt.allocations == (AllocationInfo(MAY_INVOICE, usd("52.34")),)
    assert receipt.credit == usd("7.66")
    assert allocation_rows(billing.clerk, receipt.payment_id) == [(MAY_INVOICE, 5234, False, False)]
    history = show_invoice(billing.clerk, MAY_INVOICE).history
    assert [(h.from_status, h.to_status, h.changed_by, h.reason) for h in history] == [
        (None, "issued", "clerk", "invoice run"),
        ("issued", "paid", "clerk", f"payment {receipt.payment_id}"),
    ]
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "issued"
    assert credit_balance(billing.clerk, "STMARY").credit == usd("7.66")
    detail = show_payment(billing.clerk, receipt.payment_id)
    assert (detail.allocations, detail.credit) == (receipt.allocations, usd("7.66"))


def test_automatic_allocation_pays_the_oldest_due_invoice_first(billing: Billing) -> None:
    first = record_payment(billing.clerk, draft(CHECK, amount="40.00", auto_allocate=True), "k-1")
    assert first.allocations == (
        AllocationInfo(APRIL_INVOICE, usd("30.00")),
        AllocationInfo(MAY_INVOICE, usd("10.00")),
    )
    assert first.credit == usd("0")
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "paid"
    assert invoice_status(billing.clerk, MAY_INVOICE) == "partially paid"

    second = record_payment(
        billing.clerk, draft(TRANSFER, amount="50.00", auto_allocate=True), "k-2"
    )
    assert second.allocations == (AllocationInfo(MAY_INVOICE, usd("42.34")),)
    assert second.credit == usd("7.66")

    # Nothing is open any more: all of it becomes credit.
    third = record_payment(billing.clerk, draft(CASH, amount="5.00", auto_allocate=True), "k-3")
    assert (third.allocations, third.credit) == ((), usd("5.00"))

    assert invoice_moves(billing.clerk, MAY_INVOICE) == [
        (None, "issued"),
        ("issued", "partially paid"),
        ("partially paid", "paid"),
    ]
    assert invoice_moves(billing.clerk, APRIL_INVOICE) == [(None, "issued"), ("issued", "paid")]
    assert credit_balance(billing.clerk, "STMARY").credit == usd("12.66")


def test_allocations_an_invoice_or_the_payment_cannot_take_are_refused(billing: Billing) -> None:
    load_trips(billing.manager, [trip("J1", day=date(2026, 3, 5), fare="15.00")])
    run_invoice(billing.clerk, "STMARY", "2026-03", issue_date=date(2026, 4, 1))
    void_invoice(billing.manager, "STMARY-000003", "billed in error")
    record_payment(
        billing.clerk,
        draft(CHECK, amount="30.00", allocations=((APRIL_INVOICE, "30.00"),)),
        "k-paid",
    )
    before = row_counts(billing.clerk)

    def refused(
        label: str, changes: dict[str, Any], error: type[BillingError], message: str
    ) -> Case:
        # Every attempt uses key k-x: a refused attempt must leave the key unused.
        wanted = draft(CHECK, check_number="2002", **changes)
        return (label, lambda: record_payment(billing.clerk, wanted, "k-x"), error, message)

    problems = refusal_problems(
        [
            refused(
                "above the open amount",
                {"allocations": ((MAY_INVOICE, "52.35"),)},
                Refused,
                "Invoice STMARY-000001 has only 52.34 USD open; allocate at most that (the rest "
                "stays as credit).",
            ),
            refused(
                "above the payment",
                {
                    "amount": "50.00",
                    "allocations": ((MAY_INVOICE, "40.00"), (APRIL_INVOICE, "10.01")),
                },
                BadInput,
                "The allocations add up to 50.01 USD, more than the 50.00 USD available; lower "
                "them.",
            ),
            refused(
                "to a void invoice",
                {"allocations": (("STMARY-000003", "10.00"),)},
                Refused,
                "Invoice STMARY-000003 is void; only open invoices take payments.",
            ),
            refused(
                "to a paid invoice",
                {"allocations": ((APRIL_INVOICE, "1.00"),)},
                Refused,
                "Invoice STMARY-000002 is paid; only open invoices take payments.",
            ),
            refused(
                "to an unknown invoice",
                {"allocations": (("STMARY-000099", "1.00"),)},
                BadInput,
                "There is no invoice STMARY-000099 for this facility; `billing-desk invoice list "
                "--facility CODE` shows them.",
            ),
            refused(
                "to another facility's invoice",
                {"facility": "OAKVIEW", "allocations": ((MAY_INVOICE, "1.00"),)},
                BadInput,
                "There is no invoice STMARY-000001 for this facility; `billing-desk invoice list "
                "--facility CODE` shows them.",
            ),
            refused(
                "one invoice twice",
                {"allocations": ((MAY_INVOICE, "1.00"), ("stmary-000001", "2.00"))},
                BadInput,
                "An invoice is named twice in the allocations; give each invoice once.",
            ),
            refused(
                "explicit and automatic",
                {"allocations": ((MAY_INVOICE, "1.00"),), "auto_allocate": True},
                BadInput,
                "Choose either explicit allocations or --auto, not both.",
            ),
            refused(
                "a zero allocation",
                {"allocations": ((MAY_INVOICE, "0.00"),)},
                BadInput,
                "'0.00' is zero; enter an amount greater than zero.",
            ),
            refused(
                "a negative allocation",
                {"allocations": ((MAY_INVOICE, "-1.00"),)},
                BadInput,
                "'-1.00' is negative; enter a positive amount.",
            ),
        ]
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    assert invoice_status(billing.clerk, MAY_INVOICE) == "issued"
    corrected = record_payment(
        billing.clerk,
        draft(CHECK, check_number="2002", allocations=((MAY_INVOICE, "52.34"),)),
        "k-x",
    )
    assert (corrected.replayed, corrected.credit) == (False, usd("7.66"))


def test_credit_is_applied_to_an_invoice_later(billing: Billing) -> None:
    payment = record_payment(billing.clerk, draft(CHECK, amount="100.00"), "k-1")
    assert payment.credit == usd("100.00")

    applied = apply_credit(billing.clerk, "STMARY", "stmary-000002", "30.00", "c-1")

    assert (applied.invoice_number, applied.amount, applied.credit_left) == (
        APRIL_INVOICE,
        usd("30.00"),
        usd("70.00"),
    )
    assert applied.from_payments == (payment.payment_id,)
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "paid"
    before = row_counts(billing.clerk)
    assert apply_credit(billing.clerk, "STMARY", APRIL_INVOICE, "30.00", "c-1") == replace(
        applied, replayed=True
    )
    assert row_counts(billing.clerk) == before

    problems = refusal_problems(
        [
            (
                "more than the credit",
                lambda: apply_credit(billing.clerk, "STMARY", MAY_INVOICE, "70.01", "c-2"),
                Refused,
                "STMARY has 70.00 USD of credit; apply at most that.",
            ),
            (
                "more than the invoice's open amount",
                lambda: apply_credit(billing.clerk, "STMARY", MAY_INVOICE, "60.00", "c-2"),
                Refused,
                "Invoice STMARY-000001 has only 52.34 USD open; apply at most that.",
            ),
            (
                "to a paid invoice",
                lambda: apply_credit(billing.clerk, "STMARY", APRIL_INVOICE, "1.00", "c-2"),
                Refused,
                "Invoice STMARY-000002 is paid; only open invoices take payments.",
            ),
            (
                "another facility's credit",
                lambda: apply_credit(billing.clerk, "OAKVIEW", MAY_INVOICE, "1.00", "c-2"),
                Refused,
                "OAKVIEW has 0.00 USD of credit; apply at most that.",
            ),
        ]
    )
    assert problems == []
    assert row_counts(billing.clerk) == before

    rest = apply_credit(billing.clerk, "STMARY", MAY_INVOICE, "52.34", "c-2")
    assert rest.credit_left == usd("17.66")
    assert invoice_status(billing.clerk, MAY_INVOICE) == "paid"
    assert credit_balance(billing.clerk, "STMARY").credit == usd("17.66")
    assert allocation_rows(billing.clerk, payment.payment_id) == [
        (APRIL_INVOICE, 3000, True, False),
        (MAY_INVOICE, 5234, True, False),
    ]


def test_credit_spread_over_several_payments_is_refused_naming_the_whole_open_amount(
    billing: Billing,
) -> None:
    first = record_payment(billing.clerk, draft(CASH, amount="40.00"), "k-1")
    second = record_payment(billing.clerk, draft(CASH, amount="40.00"), "k-2")
    before = row_counts(billing.clerk)

    # 52.34 is open and 80.00 of credit is available; the refusal must say 52.34, the amount
    # the user can act on, not what is left after the first payment's part was taken.
    with pytest.raises(Refused) as refused:
        apply_credit(billing.clerk, "STMARY", MAY_INVOICE, "60.00", "c-1")
    assert str(refused.value) == (
        "Invoice STMARY-000001 has only 52.34 USD open; apply at most that."
    )
    assert row_counts(billing.clerk) == before

    applied = apply_credit(billing.clerk, "STMARY", MAY_INVOICE, "52.34", "c-2")
    assert applied.from_payments == (first.payment_id, second.payment_id)
    assert applied.credit_left == usd("27.66")


# -- card data, account numbers -------------------------------------------------------------


def test_full_card_numbers_and_security_codes_are_refused_wherever_they_are_typed(
    billing: Billing,
) -> None:
    def looks_like_a_card(field: str) -> str:
        return (
            f"The {field} looks like a full card number; never enter one: keep only the card "
            "brand, its last four digits and the processor's reference."
        )

    security_code = (
        "The memo holds what looks like a card security code; never enter one: remove it."
    )
    cases = [
        ("spaced number in a memo", draft(CHECK, memo="paid with 4111 1111 1111 1111"), "memo"),
        ("dashed number as payer", draft(CHECK, payer="4111-1111-1111-1111"), "payer"),
        ("number as card brand", draft(CARD, card_brand="5555555555554444"), "card brand"),
        (
            "number in a processor reference",
            draft(CARD, processor_ref="txn 5555 5555 5555 4444"),
            "processor reference",
        ),
        (
            "number in an override reason",
            draft(CHECK, override_reason="card 4111111111111111 declined"),
            "override reason",
        ),
        (
            "whole number as last four",
            draft(CARD, card_last4="4111111111111111"),
            "card's last four digits",
        ),
        ("number in a cash memo", draft(CASH, memo="5555-5555-5555-4444"), "memo"),
    ]
    before = row_counts(billing.clerk)

    problems = refusal_problems(
        (
            label,
            lambda d=d, n=n: record_payment(billing.clerk, d, f"k-{n}"),
            BadInput,
            looks_like_a_card(field),
        )
        for n, (label, d, field) in enumerate(cases)
    )
    problems += refusal_problems(
        (
            f"security code {memo!r}",
            lambda memo=memo: record_payment(billing.clerk, draft(CARD, memo=memo), "k-cvv"),
            BadInput,
            security_code,
        )
        for memo in ("CVV 123", "cvc: 9876", "security code 321")
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    # Numbers that are not card numbers pass: too long, failing the Luhn check, a phone number.
    harmless = record_payment(
        billing.clerk,
        draft(
            CHECK,
            memo="batch 41111111111111110000, ref 4111 1111 1111 1112, call 555 123 4567",
            payer="Ward 12",
        ),
        "k-ok",
    )
    assert show_payment(billing.clerk, harmless.payment_id).memo == (
        "batch 41111111111111110000, ref 4111 1111 1111 1112, call 555 123 4567"
    )


def test_a_card_number_in_a_transfer_reference_is_refused(billing: Billing) -> None:
    # The reference is stored as typed (upper-cased); a card number must never reach it.
    with pytest.raises(BadInput) as refused:
        record_payment(billing.clerk, draft(TRANSFER, reference="4111 1111 1111 1111"), "k-1")
    assert str(refused.value) == (
        "The transfer reference looks like a full card number; never enter one: keep only the "
        "card brand, its last four digits and the processor's reference."
    )
    assert list_payments(billing.clerk) == []


def test_card_and_check_details_belong_to_their_own_methods(billing: Billing) -> None:
    def not_last4(value: str) -> str:
        return f"'{value}' is not the last four digits of a card; enter exactly 4 digits."

    cases = [
        ("three digits", draft(CARD, card_last4="123"), not_last4("123")),
        ("five digits", draft(CARD, card_last4="12345"), not_last4("12345")),
        ("letters", draft(CARD, card_last4="12a4"), not_last4("12a4")),
        (
            "card brand on a check",
            draft(CHECK, card_brand="Visa"),
            "Card details belong to card payments, not to a check payment.",
        ),
        (
            "last four on a transfer",
            draft(TRANSFER, card_last4="4242"),
            "Card details belong to card payments, not to a transfer payment.",
        ),
        (
            "processor reference on cash",
            draft(CASH, processor_ref="ch_1"),
            "Card details belong to card payments, not to a cash payment.",
        ),
        (
            "check number on a card",
            draft(CARD, check_number="1001"),
            "Check details belong to check payments, not to a card payment.",
        ),
        (
            "reference on a card",
            draft(CARD, reference="ACH 1"),
            "A reference belongs to bank transfers; for a card payment use the memo.",
        ),
        (
            "card without processor reference",
            draft(CARD, processor_ref=None),
            "A card payment needs the card brand, its last four digits and the processor's "
            "reference (--card-brand, --card-last4, --processor-ref).",
        ),
        (
            "transfer without reference",
            draft(TRANSFER, reference="   "),
            "A bank transfer needs its reference; give it with --reference.",
        ),
        (
            "routing number with a wrong check digit",
            draft(CHECK, routing_number="021000022"),
            "'021000022' is not a valid routing number (its check digit is wrong); copy it "
            "again from the check into --routing.",
        ),
        (
            "routing number of seven digits",
            draft(CHECK, routing_number="0210000"),
            "'0210000' is not a routing number; enter its 9 digits as printed on the check with "
            "--routing.",
        ),
        (
            "check without its routing number",
            draft(CHECK, routing_number=None),
            "A check payment needs its routing number; copy it from the check into --routing.",
        ),
        (
            "check number with letters",
            draft(CHECK, check_number="10A1"),
            "'10A1' is not a check number; enter its digits.",
        ),
    ]
    before = row_counts(billing.clerk)

    problems = refusal_problems(
        (label, lambda d=d, n=n: record_payment(billing.clerk, d, f"k-{n}"), BadInput, message)
        for n, (label, d, message) in enumerate(cases)
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    card = record_payment(billing.clerk, draft(CARD, card_last4=" 4242 "), "k-card")
    assert show_payment(billing.clerk, card.payment_id).instrument == (
        "Visa ...4242, processor ref ch_3PqR7"
    )


def test_a_malformed_account_number_is_refused_in_plain_english(billing: Billing) -> None:
    with pytest.raises(BadInput) as refused:
        record_payment(billing.clerk, draft(CHECK, account_number="12ab"), "k-1")
    assert str(refused.value) == (
        "'12ab' is not an account number; enter its 4 to 17 digits as printed on the check "
        "with --account."
    )


def test_account_numbers_are_never_stored(billing: Billing) -> None:
    account, other_account = "987654321012", "987654321013"
    first = record_payment(
        billing.clerk, draft(CHECK, account_number=account, check_number="501"), "k-1"
    )
    second = record_payment(
        billing.clerk, draft(CHECK, account_number="9876-5432-1012", check_number="502"), "k-2"
    )
    other = record_payment(
        billing.clerk, draft(CHECK, account_number=other_account, check_number="501"), "k-3"
    )

    leaks = []
    with billing.clerk.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                for column, value in row._mapping.items():
                    if any(number in str(value) for number in (account, other_account)):
                        leaks.append(f"{table.name}.{column}")
        scanned = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("payment", "idempotency_record")
        }
    assert leaks == []
    assert scanned == {"payment": 3, "idempotency_record": 3}

    hashes = dict(
        rows(billing.clerk, "SELECT id, account_hash FROM payment WHERE account_last4 = '1012'")
    )
    assert set(hashes) == {first.payment_id, second.payment_id}
    assert hashes[first.payment_id] == hashes[second.payment_id]
    assert len(hashes[first.payment_id]) == 64
    # Keyed: the plain digest of the number would let anyone with the table guess accounts.
    assert hashes[first.payment_id] != hashlib.sha256(account.encode()).hexdigest()
    [(other_hash, other_last4)] = rows(
        billing.clerk,
        "SELECT account_hash, account_last4 FROM payment WHERE id = :id",
        id=other.payment_id,
    )
    assert (other_last4, other_hash != hashes[first.payment_id]) == ("1013", True)
    assert show_payment(billing.clerk, first.payment_id).instrument == (
        "check 501, routing 021000021, account ...1012"
    )


# -- bad amounts, dates and users -----------------------------------------------------------


def test_bad_amounts_and_dates_are_refused_with_their_messages(billing: Billing) -> None:
    tomorrow = today_of(billing.clerk) + timedelta(days=1)
    cases = [
        ("12.345", {"amount": "12.345"}, BadInput, "'12.345' has more decimal places than USD "
         "allows (2); enter an amount such as 12.34."),
        ("abc", {"amount": "abc"}, BadInput, "'abc' is not an amount; enter a number such as "
         "1234.56."),
        ("-5", {"amount": "-5"}, BadInput, "'-5' is negative; enter a positive amount."),
        ("0", {"amount": "0"}, BadInput, "'0' is zero; enter an amount greater than zero."),
        ("1e3", {"amount": "1e3"}, BadInput, "'1e3' is not an amount; write it out in digits "
         "such as 1000.00."),
        ("empty", {"amount": "  "}, BadInput, "The amount is empty; enter a number such as "
         "1234.56."),
        ("EUR amount", {"amount": "EUR 12.00"}, BadInput, "'EUR 12.00' is in EUR, not USD; "
         "enter the amount in USD, such as 1234.56."),
        ("EUR currency", {"currency": "EUR"}, BadInput, "STMARY is billed in USD; a payment in "
         "EUR cannot be recorded against it."),
        ("future", {"received": tomorrow}, BadInput, f"The received date {tomorrow} is in the "
         "future; enter the day the payment arrived."),
        ("unknown facility", {"facility": "NOWHERE"}, BadInput, "There is no facility with "
         "code 'NOWHERE'; `billing-desk facility list` shows them."),
        ("unknown method", {"method": "bitcoin"}, BadInput, "'bitcoin' is not a payment "
         "method; choose one of check, transfer, card, cash."),
    ]  # fmt: skip
    before = row_counts(billing.clerk)

    problems = refusal_problems(
        (
            label,
            lambda changes=changes, n=n: record_payment(
                billing.clerk, draft(CHECK, **changes), f"k-{n}"
            ),
            error,
            message,
        )
        for n, (label, changes, error, message) in enumerate(cases)
    )
    problems += refusal_problems(
        [
            (
                "an auditor",
                lambda: record_payment(billing.database.workspace("auditor"), CHECK, "k-a"),
                PermissionDenied,
                "auditor is an auditor, and an auditor may not record payments.",
            ),
            (
                "an admin",
                lambda: record_payment(billing.admin, CHECK, "k-a"),
                PermissionDenied,
                "admin is an admin, and an admin may not record payments.",
            ),
        ]
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    today = record_payment(billing.clerk, draft(CHECK, received=today_of(billing.clerk)), "k-ok")
    assert today.status == "recorded"


# -- key cleanup ----------------------------------------------------------------------------


def test_purging_removes_only_old_keys_and_is_recorded(billing: Billing) -> None:
    old = record_payment(billing.clerk, CHECK, "k-old")
    new = record_payment(billing.clerk, draft(CHECK, check_number="1002"), "k-new")
    with Session(billing.clerk.engine) as session, session.begin():
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == "k-old")
            .values(created_at=datetime.now(UTC) - timedelta(days=31))
        )

    problems = refusal_problems(
        [
            (
                "a clerk",
                lambda: purge_keys(billing.clerk, older_than_days=30),
                PermissionDenied,
                "clerk is a clerk, and a clerk may not run maintenance.",
            ),
            (
                "a manager",
                lambda: purge_keys(billing.manager, older_than_days=30),
                PermissionDenied,
                "manager is a manager, and a manager may not run maintenance.",
            ),
            (
                "zero days",
                lambda: purge_keys(billing.admin, older_than_days=0),
                BadInput,
                "Keys must be kept at least 1 day; give --older-than-days 1 or more.",
            ),
        ]
    )
    assert problems == []
    assert rows(billing.clerk, "SELECT count(*) FROM maintenance_run") == [(0,)]

    purged = purge_keys(billing.admin, older_than_days=30)

    assert (purged.removed, purged.older_than_days) == (1, 30)
    assert rows(billing.clerk, "SELECT key FROM idempotency_record ORDER BY key") == [("k-new",)]
    [(action, ran_by, detail)] = rows(
        billing.clerk, "SELECT action, ran_by, detail FROM maintenance_run"
    )
    assert (action, ran_by) == ("purge idempotency keys", "admin")
    assert {k: json.loads(detail)[k] for k in ("removed", "older_than_days")} == {
        "removed": 1,
        "older_than_days": 30,
    }
    # The newer key still replays; the purged one no longer does, and the natural-key guard
    # still keeps its check from being recorded twice.
    assert record_payment(billing.clerk, draft(CHECK, check_number="1002"), "k-new") == replace(
        new, replayed=True
    )
    with pytest.raises(Refused) as refused:
        record_payment(billing.clerk, CHECK, "k-old")
    assert str(refused.value) == already_recorded(
        "check 1001 from account ending 6789", old.payment_id
    )
    assert purge_keys(billing.admin, older_than_days=30).removed == 0
    assert rows(billing.clerk, "SELECT count(*) FROM maintenance_run") == [(2,)]
