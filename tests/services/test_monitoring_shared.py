"""Monitoring on a shared PostgreSQL database, by real login roles: the rules run after a
clerk's payment and raise alerts under row-level security, a manager's refused attempt on their
own payment is kept and alerted, a manager of one facility closes its alerts, and nobody sees or
closes another facility's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from billing_desk.domain.errors import BadInput, PermissionDenied
from billing_desk.services.monitoring import close_alert, list_alerts, run_monitor, watch
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from tests.security.conftest import SharedDatabase, drop_shared_database, make_shared_database

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock


@pytest.fixture
def shared() -> Iterator[SharedDatabase]:
    database = make_shared_database()
    yield database
    drop_shared_database(database)


def _transfer(reference: str, amount: str) -> PaymentDraft:
    return PaymentDraft("FACA", "transfer", amount, date(2026, 6, 3), reference=reference)


def test_alerts_under_the_databases_rules(shared: SharedDatabase) -> None:
    # In office hours on a weekday (the shared database's clock), so that the after-hours rule
    # has nothing to say.
    clerk = shared.workspace("clerk_a")
    watch(clerk)
    # Far more than FACA owes: an overpayment, raised after the commit as the clerk's role.
    record_payment(clerk, _transfer("ACH-OVER-1", "9000.00"), "over-1")
    raised = list_alerts(clerk)
    assert [(a.rule, a.facility, a.raised_by) for a in raised] == [
        ("overpayment", "FACA", shared.login("clerk_a"))
    ]

    manager = shared.workspace("manager_a")
    watch(manager)
    own = record_payment(manager, _transfer("ACH-OWN-1", "1.00"), "own-1")
    with pytest.raises(PermissionDenied, match="segregation of duties"):
        change_status(manager, own.payment_id, "voided", "mine", "own-void-1")
    rules = {a.rule for a in list_alerts(manager)}
    assert "own-payment" in rules

    # The other facility's people see none of it and cannot close it.
    other = shared.workspace("manager_b")
    assert list_alerts(other) == []
    with pytest.raises(BadInput, match="There is no alert"):
        close_alert(other, raised[0].id, "not mine")
    with shared.connect("clerk_b") as conn:
        assert conn.execute("SELECT count(*) FROM anomaly_alert").fetchone() == (0,)
    # A clerk may not close alerts, in the application nor in the database.
    with pytest.raises(PermissionDenied):
        close_alert(clerk, raised[0].id, "fine")
    with (
        shared.connect("clerk_a") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("UPDATE anomaly_alert SET status = 'dismissed'")
    closed = close_alert(manager, raised[0].id, "the facility prepaid June")
    assert closed.closed_by == shared.login("manager_a")
    # Running the rules on demand raises nothing already raised.
    assert run_monitor(manager).raised == ()
