"""The health view and the compliance score, on both backends: an unreachable server is failing
with a sentence saying so; each item turns as its evidence does; and the score moves by exactly
the weight of a check when the problem it names is fixed."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text, update

from billing_desk.db.engine import resolve_location
from billing_desk.db.models import ReconciliationRun
from billing_desk.domain.errors import PermissionDenied
from billing_desk.services.compliance import CHECKS, ComplianceReport, compliance_report
from billing_desk.services.demo import load_demo_data
from billing_desk.services.health import (
    FAILING,
    OK,
    WARNING,
    HealthItem,
    HealthSettings,
    check_health,
)
from billing_desk.services.idempotency import purge_keys
from billing_desk.services.monitoring import watch
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.reconciliation import resolve_discrepancy, run_reconciliation
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database
from tests.support import seed_users

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

AS_OF = date(2026, 5, 20)


def test_an_unreachable_server_is_failing_with_a_sentence() -> None:
    # Nothing listens on port 1; the shared server is never stopped by a test.
    workspace = Workspace(resolve_location("postgresql://postgres@127.0.0.1:1/billing"), "admin")
    try:
        report = check_health(workspace, keyring_check=lambda: True)
    finally:
        workspace.close()
    assert report.failing and report.status == FAILING
    database = report.items[0]
    assert (database.name, database.status) == ("database", FAILING)
    assert database.sentence.startswith(
        "The database cannot be reached: Cannot reach the database server at 127.0.0.1:1"
    )
    assert database.sentence.endswith("Nothing else could be checked.")
    assert [i.name for i in report.items] == ["database", "keyring"]


def test_health_items_follow_their_evidence(database: Database) -> None:
    load_demo_data(database.workspace("newcomer"), facilities=3, months=2, as_of=AS_OF)
    admin = database.workspace("admin")
    report = check_health(admin, keyring_check=lambda: False)
    status = {i.name: i.status for i in report.items}
    assert status["database"] == status["migrations"] == status["unsealed"] == OK
    assert status["failed_operations"] == OK and status["discrepancies"] == OK
    assert status["checkpoint"] == WARNING  # never signed
    assert status["idempotency_keys"] == WARNING  # the demo's keys are months old
    assert status["keyring"] == WARNING
    assert not report.failing

    # A refused attempt, kept by a watched workspace, is a failed operation.
    clerk = database.workspace("clerk")
    watch(clerk)
    draft = PaymentDraft(facility="NAKANO", method="cash", amount="10.00", received=AS_OF)
    paid = record_payment(clerk, draft, "health-1")
    with pytest.raises(PermissionDenied):
        change_status(clerk, paid.payment_id, "voided", "oops", "health-2")
    purge_keys(admin)
    run_reconciliation(clerk, date(2026, 4, 1), AS_OF)
    after = {i.name: i for i in check_health(admin, keyring_check=lambda: True).items}
    assert after["failed_operations"].status == WARNING
    assert after["failed_operations"].value["by_kind"] == {"permission": 1}
    assert after["idempotency_keys"].status == OK
    assert after["discrepancies"].status == WARNING
    assert after["discrepancies"].sentence.startswith(
        "3 reconciliation discrepancies are open"
    ) or ("reconciliation discrepancies are open" in after["discrepancies"].sentence)
    assert after["keyring"].status == OK
    since = datetime.now(UTC) + timedelta(minutes=1)
    later = {i.name: i for i in check_health(admin, failures_since=since).items}
    assert later["failed_operations"].status == OK


def _passed(report: ComplianceReport) -> dict[str, bool]:
    return {c.name: c.passed for c in report.checks}


def _weight(name: str) -> int:
    return next(c.weight for c in CHECKS if c.name == name)


def test_the_score_moves_exactly_as_its_checks_do(database: Database) -> None:
    load_demo_data(database.workspace("newcomer"), facilities=3, months=2, as_of=AS_OF)
    auditor, admin = database.workspace("auditor"), database.workspace("admin")
    clerk, manager = database.workspace("clerk"), database.workspace("manager")
    assert sum(c.weight for c in CHECKS) == 100

    # Planted: discrepancies left open for a month (the run's start moved back, as if it had
    # been left alone that long).
    found = run_reconciliation(clerk, date(2026, 3, 1), AS_OF)
    assert found.discrepancies
    with admin.engine.begin() as conn:
        conn.execute(
            update(ReconciliationRun.__table__).values(
                started_at=datetime.now(UTC) - timedelta(days=30)
            )
        )
    start = compliance_report(auditor)
    assert start.score == sum(c.weight for c in start.checks if c.passed)
    assert not _passed(start)["discrepancies_resolved"]
    assert not _passed(start)["keys_purged"]  # the demo's keys are months old
    failing = next(c for c in start.checks if c.name == "discrepancies_resolved")
    assert f"{len(found.discrepancies)} discrepancies have been open more than 14 days" in (
        failing.evidence
    )
    assert failing.action.startswith("A manager resolves each")

    # Fixed one at a time: the score rises by each check's weight and nothing else changes.
    for finding in found.discrepancies:
        resolve_discrepancy(manager, finding.id, "checked with the bank")
    resolved = compliance_report(auditor)
    assert resolved.score == start.score + _weight("discrepancies_resolved")
    assert _passed(resolved) == {**_passed(start), "discrepancies_resolved": True}

    purge_keys(admin)
    purged = compliance_report(auditor)
    assert purged.score == resolved.score + _weight("keys_purged")
    assert _passed(purged) == {**_passed(resolved), "keys_purged": True}
    assert all(c.action == "" for c in purged.checks if c.passed)
    assert all(c.action for c in purged.checks if not c.passed)


def test_the_audit_queue_item_follows_its_dead_rows(
    fresh_database: Callable[[str], Database],
) -> None:
    database = fresh_database("postgresql")
    load_demo_data(database.workspace("newcomer"), facilities=2, months=1, as_of=AS_OF)
    admin = database.workspace("admin")
    with admin.engine.connect() as connection:
        autovacuum = connection.execute(text("SHOW autovacuum")).scalar_one() == "on"
    # Every write's entries went through the queue and were deleted by the sealer; a backend
    # reports its table statistics when it ends, so end them all.
    database.close()
    admin = database.workspace("admin")
    deadline = time.monotonic() + 15
    while True:
        item = _item(admin, "audit_queue", HealthSettings(queue_dead_rows_warning=1))
        if item.value["dead_rows"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert item.value["dead_rows"] > 0
    assert item.status == WARNING
    assert "VACUUM ANALYZE audit_pending" in item.sentence
    assert item.value["autovacuum"] is autovacuum
    assert ("Autovacuum is off" in item.sentence) is not autovacuum
    assert _item(admin, "audit_queue", HealthSettings()).status == OK


def test_sqlite_has_no_audit_queue_item(fresh_database: Callable[[str], Database]) -> None:
    admin = fresh_database("sqlite").workspace("admin")
    seed_users(admin)
    assert "audit_queue" not in {i.name for i in check_health(admin).items}


def _item(workspace: Workspace, name: str, settings: HealthSettings) -> HealthItem:
    report = check_health(workspace, settings=settings, keyring_check=lambda: True)
    return next(i for i in report.items if i.name == name)
