"""When a row was written is the database's to confirm: every column that records the moment of
a write (an audit entry's recorded_at, a status change's changed_at, an allocation's or an
alert's time, a match's, a deposit's ...) must be the database's time, give or take the clock
skew allowed, as a payment's recorded_at already was. A user writing directly dated those rows
as they liked: an own audit entry backdated, history and alerts placed in another period.

This module's database is set up as production is (5 minutes), not with the suite's wide skew."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from psycopg import errors

from billing_desk.db.shared import WRITE_TIMES
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services import admin
from billing_desk.services.clock import clock_from
from billing_desk.services.deposits import create_deposit
from billing_desk.services.matching import auto_match, unmatch_line
from billing_desk.services.monitoring import close_alert, run_monitor
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.reconciliation import close_run, resolve_discrepancy, run_reconciliation
from billing_desk.services.statements import import_statements
from tests.security.conftest import SharedDatabase, drop_shared_database, make_shared_database

# Who may insert into each table at all (the time is what is refused, not the INSERT).
_WRITER = {
    "facility": "administrator",
    "maintenance_run": "administrator",
    "provider_setting": "manager_a",
    "signing_key": "manager_a",
    "checkpoint": "manager_a",
    "refund": "manager_a",
}
_BACKDATED = "now() - interval '1 day'"


@pytest.fixture(scope="module")
def strict() -> Iterator[SharedDatabase]:
    database = make_shared_database()
    try:
        admin.init_shared(database.admin_url, max_clock_skew=300)
        yield database
    finally:
        drop_shared_database(database)


def _inserted() -> list[tuple[str, str]]:
    return [(table, column) for table, (columns, _) in WRITE_TIMES.items() for column in columns]


@pytest.mark.parametrize(("table", "column"), _inserted(), ids=lambda value: str(value))
def test_a_row_dated_a_day_back_is_refused(strict: SharedDatabase, table: str, column: str) -> None:
    """Only the time is given: the database refuses the row for its date, before anything else
    is checked about it."""
    with (
        strict.connect(_WRITER.get(table, "clerk_a")) as conn,
        pytest.raises(errors.InsufficientPrivilege, match="clock right"),
    ):
        conn.execute(f"INSERT INTO {table} ({column}) VALUES ({_BACKDATED})")


@pytest.mark.parametrize("when", ["now()", "now() - interval '1 minute'"])
@pytest.mark.parametrize(("table", "column"), _inserted(), ids=lambda value: str(value))
def test_a_row_dated_now_passes_the_time_check(
    strict: SharedDatabase, table: str, column: str, when: str
) -> None:
    """The control: the same incomplete row dated now, or a minute ago, is refused (or not) for
    something else."""
    with (
        strict.connect(_WRITER.get(table, "clerk_a")) as conn,
        conn.transaction(force_rollback=True),
    ):
        try:
            conn.execute(f"SAVEPOINT s; INSERT INTO {table} ({column}) VALUES ({when})")
        except psycopg.Error as refused:
            assert "clock right" not in str(refused), refused


@pytest.mark.parametrize(
    ("person", "statement"),
    [
        (
            "clerk_a",
            "UPDATE allocation SET released = true, released_by = current_user, "
            f"released_at = {_BACKDATED} WHERE payment_id = %(payment)s",
        ),
        (
            "manager_a",
            "UPDATE invoice SET status = 'void', void_reason = 'x', voided_by = current_user, "
            f"voided_at = {_BACKDATED} WHERE number = %(invoice)s",
        ),
    ],
    ids=["allocation-released", "invoice-voided"],
)
def test_a_change_dated_a_day_back_is_refused(
    strict: SharedDatabase, person: str, statement: str
) -> None:
    with (
        strict.connect(person) as conn,
        pytest.raises(errors.InsufficientPrivilege, match="clock right"),
        conn.transaction(force_rollback=True),
    ):
        conn.execute(
            statement,
            {"payment": strict.payment_ids["a"], "invoice": strict.invoice_numbers["a"]},
        )


def test_the_applications_writes_at_the_databases_time_pass(strict: SharedDatabase) -> None:
    """Through the application, with desktop clocks that agree with the server's: payments and
    their allocations, keys and audit entries; a manager's status change; a deposit slip; an
    imported statement, a match and its undoing; a reconciliation resolved and closed; alerts
    raised and closed. Every time column is written within the 5 minutes allowed."""
    with psycopg.connect(strict.admin_url) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    clock = clock_from(row[0])
    clerk = strict.workspace("clerk_a", clock=clock)
    manager = strict.workspace("manager_a", clock=clock)
    day = row[0].date()
    transfer = record_payment(
        clerk,
        PaymentDraft("FACA", "transfer", "7.00", day, reference="ACH-TIMES"),
        f"times-{uuid.uuid4().hex[:8]}",
    )
    check = record_payment(
        clerk,
        PaymentDraft(
            "FACA",
            "check",
            "4.00",
            day,
            check_number="7001",
            routing_number="021000021",
            account_number="000123456780",
        ),
        f"times-{uuid.uuid4().hex[:8]}",
    )
    create_deposit(clerk, [check.payment_id], day, idempotency_key=f"times-{uuid.uuid4().hex}")
    statement = Statement(
        "csv",
        "TIMES-1",
        "USD",
        (
            StatementLine(day, Money("7.00", "USD"), "line 2", bank_id="T1", reference="ACH-TIMES"),
            StatementLine(day, Money("3.00", "USD"), "line 3", bank_id="T2"),
        ),
    )
    import_statements(clerk, "times.csv", b"times", "csv", [statement], commit=True)
    assert len(auto_match(clerk).matched) >= 1
    with psycopg.connect(strict.admin_url) as conn:
        line = conn.execute("SELECT id FROM bank_line WHERE bank_id = 'T1'").fetchone()
    assert line is not None
    unmatch_line(clerk, int(line[0]), "checking the times")  # type: ignore[call-overload]
    change_status(manager, transfer.payment_id, "voided", "entered twice", "times-void")
    report = run_reconciliation(clerk, day, day)
    for finding in report.discrepancies:
        resolve_discrepancy(manager, finding.id, "checked with the bank")
    close_run(manager, report.run_id)
    raised = run_monitor(clerk).raised
    for alert in raised:
        close_alert(manager, alert.id, "seen")
