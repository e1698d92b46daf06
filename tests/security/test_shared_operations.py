"""The application's own work, done by real login roles on a shared database: everything a clerk
and a manager do passes the database's policies and triggers, and what segregation of duties
forbids is refused by the application first and by the database behind it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from billing_desk.domain.errors import PermissionDenied, Refused
from billing_desk.services import admin
from billing_desk.services.audit import seal
from billing_desk.services.credits import apply_credit
from billing_desk.services.deposits import create_deposit
from billing_desk.services.health import check_health
from billing_desk.services.idempotency import purge_keys
from billing_desk.services.invoices import run_invoice, void_invoice
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.services.verification import verify
from tests.security.conftest import (
    SharedDatabase,
    drop_shared_database,
    make_shared_database,
)
from tests.support import load_trips, trip


@pytest.fixture
def shared_fresh() -> Iterator[SharedDatabase]:
    """A shared database of this test's own, for tests that change its data."""
    database = make_shared_database()
    yield database
    drop_shared_database(database)


def _transfer(reference: str, amount: str, *, allocate: bool = True) -> PaymentDraft:
    return PaymentDraft(
        "FACA", "transfer", amount, date(2026, 6, 3), reference=reference, auto_allocate=allocate
    )


def _status(shared: SharedDatabase, query: str, *args: object) -> object:
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def test_the_billing_cycle_runs_under_the_databases_rules(shared_fresh: SharedDatabase) -> None:
    shared = shared_fresh
    clerk = shared.workspace("clerk_a")
    manager = shared.workspace("manager_a")
    invoice = shared.invoice_numbers["a"]
    # The clerk's transfer pays the rest of the invoice, the manager voids it, the invoice reopens.
    paid = record_payment(clerk, _transfer("ACH-1", "107.50"), "k-transfer")
    assert _status(shared, "SELECT status FROM invoice WHERE number = %s", invoice) == "paid"
    change_status(manager, paid.payment_id, "voided", "entered twice", "k-void")
    assert _status(shared, "SELECT status FROM invoice WHERE number = %s", invoice) == (
        "partially paid"
    )
    # Money to credit, then credit applied.
    extra = record_payment(clerk, _transfer("ACH-2", "5.00", allocate=False), "k-credit")
    assert extra.payment_id
    apply_credit(clerk, "FACA", invoice, "5.00", "k-apply")
    # A check deposited, then returned by the bank.
    slip = create_deposit(clerk, [shared.payment_ids["a"]], date(2026, 6, 4), idempotency_key="d")
    assert slip.deposit_id
    change_status(clerk, shared.payment_ids["a"], "returned", "NSF", "k-return")
    # A manager voids a new invoice, releasing its trips.
    load_trips(clerk, [trip("FACA-J1", facility="FACA", day=date(2026, 6, 5))])
    june = run_invoice(clerk, "FACA", "2026-06")
    void_invoice(manager, june.invoice_number, "wrong period")
    assert (
        _status(
            shared,
            "SELECT count(*) FROM invoice_line l JOIN invoice i ON i.id = l.invoice_id "
            "WHERE i.number = %s AND l.released",
            june.invoice_number,
        )
        == 1
    )
    # Every entry was sealed by the database's sealer, and the chain verifies.
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_pending").fetchone()
    assert row == (0,)
    auditor = shared.workspace("auditor")
    seal(manager)
    report = verify(auditor)
    assert report.ok, report.findings


def test_a_manager_cannot_void_a_payment_they_recorded(shared_fresh: SharedDatabase) -> None:
    manager = shared_fresh.workspace("manager_a")
    own = record_payment(manager, _transfer("ACH-9", "1.00"), "k-own")
    with pytest.raises(PermissionDenied):
        change_status(manager, own.payment_id, "voided", "mine", "k-own-void")
    with (
        shared_fresh.connect("manager_a") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("UPDATE payment SET status = 'voided' WHERE id = %s", (own.payment_id,))


def test_an_administrator_purges_keys_and_the_purge_is_audited(
    shared_fresh: SharedDatabase,
) -> None:
    shared = shared_fresh
    admin.add_user(
        shared.admin_url,
        shared.login("admin"),
        "admin",
        "another-long-password",
        all_facilities=True,
    )
    try:
        purge = purge_keys(_admin_workspace(shared, "another-long-password"), older_than_days=1)
        assert purge is not None
    finally:
        with psycopg.connect(shared.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {shared.login('admin')}")
            conn.execute(f"DROP ROLE IF EXISTS {shared.login('admin')}")


def test_admin_actions_are_audited_and_disable_ends_logins(shared_fresh: SharedDatabase) -> None:
    shared = shared_fresh
    admin.disable_user(shared.admin_url, shared.login("clerk_b"))
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        shared.connect("clerk_b")
    users = {u.name: u for u in admin.list_users(shared.admin_url)}
    assert not users[shared.login("clerk_b")].can_log_in
    assert users[shared.login("auditor")].facilities == ("*",)
    with psycopg.connect(shared.admin_url) as conn:
        actions = {str(r[0]) for r in conn.execute("SELECT DISTINCT action FROM audit_entry")}
    assert {"admin.init", "admin.user_add", "admin.user_disable"} <= actions


def test_init_is_idempotent_and_keeps_data(shared_fresh: SharedDatabase) -> None:
    before = _status(shared_fresh, "SELECT count(*) FROM payment")
    again = admin.init_shared(shared_fresh.admin_url)
    assert not again.migrated and again.created_roles == ()
    assert _status(shared_fresh, "SELECT count(*) FROM payment") == before
    with shared_fresh.connect("clerk_a") as conn:
        row = conn.execute("SELECT count(*) FROM payment").fetchone()
    assert row is not None and row[0] == 1


def _admin_workspace(shared: SharedDatabase, password: str):  # type: ignore[no-untyped-def]
    url = f"postgresql://{shared.login('admin')}:{password}@127.0.0.1:5432/{shared.name}"
    workspace = open_workspace(url)
    shared.opened.append(workspace)
    return workspace


def test_users_cannot_change_the_schema_and_are_told_who_can(
    shared_fresh: SharedDatabase,
) -> None:
    shared = shared_fresh
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        head = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert head is not None
        try:
            conn.execute("UPDATE alembic_version SET version_num = '0004'")
            with pytest.raises(Refused, match="only an administrator may upgrade"):
                open_workspace(shared.url("clerk_a"))
            conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
            with pytest.raises(Refused, match="upgraded by a newer billing-desk"):
                open_workspace(shared.url("clerk_a"))
        finally:
            conn.execute("UPDATE alembic_version SET version_num = %s", (head[0],))


def test_what_the_database_refuses_is_one_sentence_and_nothing_is_written(
    shared: SharedDatabase,
) -> None:
    """A clerk claiming to be a manager gets past the application's own check, and the
    database's policy stops the void: PermissionDenied, exit 3, nothing written."""
    pretender = open_workspace(shared.url("clerk_a"), shared.login("manager_a"))
    shared.opened.append(pretender)
    before = _status(shared, "SELECT count(*) FROM payment_status_change")
    with pytest.raises(PermissionDenied, match="The database refused this") as refused:
        change_status(pretender, shared.payment_ids["a"], "voided", "pretend", "k-pretend")
    assert refused.value.exit_code == 3
    assert len(str(refused.value.message).splitlines()) == 1
    assert _status(shared, "SELECT count(*) FROM payment_status_change") == before


def test_statements_and_reconciliation_run_under_the_databases_rules(
    shared_fresh: SharedDatabase,
) -> None:
    """A clerk imports and matches a bank statement and runs a reconciliation; a manager
    resolves and closes it: every step passes the grants, policies and triggers."""
    from billing_desk.domain.money import Money
    from billing_desk.domain.statements import Statement, StatementLine
    from billing_desk.services.matching import auto_match
    from billing_desk.services.reconciliation import (
        close_run,
        resolve_discrepancy,
        run_reconciliation,
    )
    from billing_desk.services.statements import import_statements

    shared = shared_fresh
    clerk = shared.workspace("clerk_a")
    manager = shared.workspace("manager_a")
    record_payment(clerk, _transfer("ACH-BANK", "7.00"), "k-bank")
    statement = Statement(
        "csv",
        "OPS-1",
        "USD",
        (
            StatementLine(
                date(2026, 6, 3), Money("7.00", "USD"), "line 2", bank_id="L1", reference="ACH-BANK"
            ),
            StatementLine(date(2026, 6, 4), Money("3.00", "USD"), "line 3", bank_id="L2"),
        ),
    )
    saved = import_statements(clerk, "ops.csv", b"ops", "csv", [statement], commit=True)
    assert saved.count("new") == 2
    assert len(auto_match(clerk).matched) == 1
    report = run_reconciliation(clerk, date(2026, 6, 1), date(2026, 6, 30))
    for finding in report.discrepancies:
        resolve_discrepancy(manager, finding.id, "checked with the bank")
    assert close_run(manager, report.run_id).status == "closed"
    # The clerk of the other facility sees the provider's bank lines, not A's payment.
    with shared.connect("clerk_b") as conn:
        row = conn.execute("SELECT count(*) FROM bank_line").fetchone()
        assert row == (2,)
        row = conn.execute("SELECT count(*) FROM payment WHERE transfer_reference = 'ACH-BANK'")
        assert row.fetchone() == (0,)


@pytest.mark.parametrize("person", ["clerk_a", "auditor"])
def test_the_health_view_reads_the_audit_queue_as_a_login(
    shared: SharedDatabase, person: str
) -> None:
    report = check_health(shared.workspace(person), keyring_check=lambda: True)
    items = {item.name: item for item in report.items}
    assert items["audit_queue"].status in ("ok", "warning")
    assert isinstance(items["audit_queue"].value["dead_rows"], int)
