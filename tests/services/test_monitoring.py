"""The anomaly rules and their alerts, on both backends: each rule finds what the demo plants for
it with the sentence it should say and nothing in the rest of the demo; the rules run after each
payment without ever failing it; refused attempts are kept; alerts are raised once, closed by a
manager with a note, audited and announced."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from psycopg import sql
from sqlalchemy import select

from billing_desk.db.live_updates import install_live_updates
from billing_desk.db.models import Alert, AuditEntry, OperationFailure, Payment
from billing_desk.domain.errors import BadInput, PermissionDenied
from billing_desk.services import monitoring
from billing_desk.services.demo import load_demo_data
from billing_desk.services.live import LiveEvent, Subscription
from billing_desk.services.monitoring import (
    RULE_NAMES,
    AlertPoller,
    Finding,
    MonitoringConfig,
    close_alert,
    evaluate,
    failures_since,
    gather,
    list_alerts,
    run_monitor,
    settle,
    subscribe_alerts,
    watch,
)
from billing_desk.services.payments import PaymentDraft, change_status, record_payment
from billing_desk.services.reconciliation import (
    close_run,
    resolve_discrepancy,
    run_reconciliation,
)
from billing_desk.services.unit_of_work import Workspace
from tests.clocks import office_hours
from tests.conftest import BACKENDS, Database, _fresh_sqlite, pg_admin_connection, pg_url

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

AS_OF = date(2026, 5, 20)
CONFIG = MonitoringConfig()

# What each rule must say about what the demo plants for it.
EXPECTED: dict[str, str] = {
    "amount-outlier": r"Payment \d+ of [\d,.]+ USD is \d+(\.\d)? times \w+'s median payment of "
    r"[\d,.]+ USD \(robust z [\d.]+, over 10, over \d+ payments of its history\)\.",
    "overpayment": r"Payment \d+ of [\d,.]+ USD is [\d,.]+ USD more than the [\d,.]+ USD \w+ "
    r"owed on \d{4}-\d\d-\d\d\.",
    "velocity": r"4 voids at \w+ within 60 minutes up to \d{4}-\d\d-\d\d \d\d:\d\d UTC, more "
    r"than the 3 allowed\.",
    "after-hours": r"Payment \d+ was recorded by clerk at \w{3} \d{4}-\d\d-\d\d 22:40, outside "
    r"business hours 07:00-19:00 Mon-Fri \(UTC\)\.",
    "own-payment": r"manager recorded payment \d+ and tried to void it on \d{4}-\d\d-\d\d "
    r"11:07 UTC; it was refused \(segregation of duties\)\.",
    "reused-check": r"Check number \d+ from the same account was entered for \w+ with different "
    r"amounts: payments \d+ \([\d,.]+ USD\), \d+ \([\d,.]+ USD\)\.",
    "near-duplicate": r"Payments \d+ and \d+ from \w+ are both [\d,.]+ USD, received "
    r"\d{4}-\d\d-\d\d and \d{4}-\d\d-\d\d, under different references \(ACH \S+ and ACH \S+\)\.",
}
# Planted outside the demo (it has no closed reconciliation): see the test of its own.
NOT_IN_DEMO = {"closed-period"}


@dataclasses.dataclass
class Planted:
    database: Database
    findings: list[Finding]
    memos: dict[int, str]  # planted payment id -> its memo


@pytest.fixture(scope="module", params=BACKENDS)
def planted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Planted]:
    """The default demo with its anomalies, once per backend for the whole module."""
    name = None
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        database = _fresh_sqlite(template, tmp_path_factory.mktemp("monitoring"))
    else:
        template = request.getfixturevalue("pg_template")
        name = f"bd_test_{uuid.uuid4().hex[:12]}"
        with pg_admin_connection() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        database = Database("postgresql", pg_url(name))
    try:
        load_demo_data(database.workspace("newcomer"), as_of=AS_OF, anomalies=True)
        clerk = database.workspace("clerk")
        findings = clerk.read(lambda unit: evaluate(gather(unit.session, CONFIG)))
        memos = clerk.read(
            lambda unit: {
                pid: memo
                for pid, memo in unit.session.execute(
                    select(Payment.id, Payment.memo).where(Payment.memo.like("Anomaly:%"))
                )
            }
        )
        yield Planted(database, findings, memos)
    finally:
        database.close()
        if name is not None:
            with pg_admin_connection() as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@pytest.mark.parametrize("rule", sorted(set(RULE_NAMES) - NOT_IN_DEMO))
def test_each_rule_finds_what_the_demo_plants_for_it(planted: Planted, rule: str) -> None:
    mine = [f for f in planted.findings if f.rule == rule]
    planted_for_rule = {
        pid for pid, memo in planted.memos.items() if memo.startswith(f"Anomaly: {rule}")
    }
    assert planted_for_rule, f"the demo plants nothing for {rule}"
    assert mine, f"{rule} found nothing of {sorted(planted_for_rule)}"
    found = {pid for f in mine for pid in f.entities["payment"]}
    assert planted_for_rule <= found, (rule, sorted(found))
    for finding in mine:
        assert re.fullmatch(EXPECTED[rule], finding.explanation), finding.explanation


def test_the_rest_of_the_demo_raises_nothing(planted: Planted) -> None:
    """False positives: findings about no planted payment. The extra-zero payment is an
    overpayment too, and that is right."""
    clean = [f for f in planted.findings if not set(f.entities["payment"]) & set(planted.memos)]
    assert clean == []
    by_rule = {f.rule for f in planted.findings}
    assert by_rule == set(RULE_NAMES) - NOT_IN_DEMO


def test_one_payment_at_a_time_finds_what_the_period_finds(planted: Planted) -> None:
    """The after-commit run (one payment, its facility's history before it) finds, over the
    planted payments one by one, what the period run finds (a burst is found once, at the
    payment that crossed the line)."""
    clerk = planted.database.workspace("clerk")
    alone: set[tuple[str, str]] = set()
    for pid in planted.memos:
        found = clerk.read(
            lambda unit, p=pid: evaluate(gather(unit.session, CONFIG, payment_ids=[p]))
        )
        alone |= {(f.rule, f.fingerprint) for f in found}
    assert alone == {(f.rule, f.fingerprint) for f in planted.findings}


# -- on fresh databases -----------------------------------------------------------------------


def small_demo(database: Database) -> None:
    load_demo_data(database.workspace("newcomer"), facilities=3, months=6, as_of=AS_OF)


def busiest_facility(workspace: Workspace) -> tuple[str, int]:
    """(code, median payment) of the facility with the most payments (not counting voided
    ones, which no history holds)."""

    def read(unit):  # type: ignore[no-untyped-def]
        from billing_desk.db.models import Facility

        rows = unit.session.execute(
            select(Facility.code, Payment.amount_minor)
            .join(Payment, Payment.facility_id == Facility.id)
            .where(Payment.status != "voided")
        ).all()
        by: dict[str, list[int]] = {}
        for code, amount in rows:
            by.setdefault(code, []).append(amount)
        code = max(by, key=lambda c: (len(by[c]), c))
        amounts = sorted(by[code])
        return code, amounts[len(amounts) // 2]

    return workspace.read(read)  # type: ignore[no-any-return]


def cash(code: str, minor: int, day: date = date(2026, 5, 18)) -> PaymentDraft:
    return PaymentDraft(
        facility=code, method="cash", amount=f"{minor // 100}.{minor % 100:02d}", received=day
    )


def alerts_of(workspace: Workspace) -> list[Alert]:
    return workspace.read(lambda unit: list(unit.session.scalars(select(Alert).order_by(Alert.id))))


def test_rules_run_after_each_payment_commits(database: Database) -> None:
    small_demo(database)
    # In office hours on a weekday: the after-hours rule has nothing to add.
    clerk = database.workspace("clerk", clock=office_hours())
    watch(clerk)
    code, median = busiest_facility(clerk)
    receipt = record_payment(clerk, cash(code, median * 10), "extra-zero-1")
    alerts = alerts_of(clerk)
    assert {(a.rule, a.status, a.raised_by) for a in alerts} == {
        ("amount-outlier", "open", "clerk"),
        ("overpayment", "open", "clerk"),
    }
    assert all(f"Payment {receipt.payment_id} " in a.explanation for a in alerts)
    # Audited under alert.raise, in a request of its own after the payment's.
    entries = clerk.read(
        lambda unit: list(
            unit.session.execute(
                select(AuditEntry.action, AuditEntry.entity_type).where(
                    AuditEntry.entity_type == "anomaly_alert"
                )
            )
        )
    )
    assert {tuple(e) for e in entries} == {("alert.raise", "anomaly_alert")}
    assert len(entries) == len(alerts_of(clerk))
    # A replay of the same request raises nothing new.
    before = len(alerts_of(clerk))
    again = record_payment(clerk, cash(code, median * 10), "extra-zero-1")
    assert again.replayed and len(alerts_of(clerk)) == before


def test_a_failing_rule_never_fails_the_payment(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    small_demo(database)
    clerk = database.workspace("clerk")
    watch(clerk)
    code, median = busiest_facility(clerk)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a rule fell over")

    monkeypatch.setattr(monitoring, "gather", broken)
    with caplog.at_level(logging.WARNING):
        receipt = record_payment(clerk, cash(code, median * 10), "broken-rules-1")
    assert receipt.payment_id and not receipt.replayed
    assert alerts_of(clerk) == []
    assert "anomaly rules after payment" in caplog.text


def test_a_refused_attempt_on_ones_own_payment_is_kept_and_alerted(database: Database) -> None:
    small_demo(database)
    manager = database.workspace("manager")
    watch(manager)
    code, median = busiest_facility(manager)
    receipt = record_payment(manager, cash(code, median // 2), "own-1")
    with pytest.raises(PermissionDenied, match="segregation of duties"):
        change_status(manager, receipt.payment_id, "voided", "my mistake", "own-void-1")
    failures = failures_since(manager, datetime.now(UTC) - timedelta(minutes=5))
    assert [(f.user_name, f.action, f.kind) for f in failures] == [
        ("manager", "payment.transition", "segregation")
    ]
    own = [a for a in alerts_of(manager) if a.rule == "own-payment"]
    assert len(own) == 1
    assert re.fullmatch(
        rf"manager recorded payment {receipt.payment_id} and tried to void it on .* UTC; it was "
        r"refused \(segregation of duties\)\.",
        own[0].explanation,
    )
    # A typo is no event: bad input is not kept.
    with pytest.raises(BadInput):
        change_status(manager, 999_999, "voided", "no such payment", "own-void-2")
    assert len(failures_since(manager, datetime.now(UTC) - timedelta(minutes=5))) == 1


def test_a_payment_inside_a_closed_reconciliation_is_alerted(database: Database) -> None:
    small_demo(database)
    clerk, manager = database.workspace("clerk"), database.workspace("manager")
    watch(clerk)
    report = run_reconciliation(clerk, date(2026, 3, 1), date(2026, 3, 31))
    for finding in report.discrepancies:
        resolve_discrepancy(manager, finding.id, "seen to")
    closed = close_run(manager, report.run_id)
    code, median = busiest_facility(clerk)
    late = record_payment(clerk, cash(code, median // 3, date(2026, 3, 16)), "late-1")
    alerts = [a for a in alerts_of(clerk) if a.rule == "closed-period"]
    assert len(alerts) == 1 and alerts[0].severity == "critical"
    assert re.fullmatch(
        rf"Payment {late.payment_id} \(received 2026-03-16\) was recorded on \d{{4}}-\d\d-\d\d, "
        rf"after reconciliation run {closed.run_id} for 2026-03-01 to 2026-03-31 was closed on "
        r"\d{4}-\d\d-\d\d\.",
        alerts[0].explanation,
    )


def test_alerts_are_raised_once_and_closed_by_a_manager_with_a_note(database: Database) -> None:
    load_demo_data(database.workspace("newcomer"), as_of=AS_OF, anomalies=True)
    clerk, manager = database.workspace("clerk"), database.workspace("manager")
    # A period holding none of the anomalies raises nothing.
    quiet = run_monitor(clerk, date(2026, 1, 1), date(2026, 1, 31), config=CONFIG)
    assert quiet.raised == () and quiet.payments_checked > 0
    first = run_monitor(clerk, config=CONFIG)
    assert len(first.raised) == first.findings >= 8
    again = run_monitor(clerk, config=CONFIG)
    assert again.raised == () and again.already_raised == first.findings

    listed = list_alerts(clerk, open_only=True)
    assert {a.id for a in listed} == {a.id for a in first.raised}
    target = listed[0]
    with pytest.raises(PermissionDenied):
        close_alert(clerk, target.id, "looked at it")
    with pytest.raises(BadInput, match="needs a note"):
        close_alert(manager, target.id, "  ")
    closed = close_alert(manager, target.id, "called the facility; a typo, reversed")
    assert (closed.status, closed.closed_by) == ("acknowledged", "manager")
    dismissed = close_alert(manager, listed[1].id, "expected: year-end prepayment", dismiss=True)
    assert dismissed.status == "dismissed"
    with pytest.raises(BadInput, match="already acknowledged"):
        close_alert(manager, target.id, "again")
    assert len(list_alerts(clerk, open_only=True)) == len(listed) - 2
    actions = manager.read(
        lambda unit: [
            (e.action, e.user_name)
            for e in unit.session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.entity_type == "anomaly_alert",
                    AuditEntry.entity_id == str(target.id),
                )
                .order_by(AuditEntry.id)
            )
        ]
    )
    assert actions == [("alert.raise", "clerk"), ("alert.close", "manager")]


def test_new_alerts_reach_a_poller_and_on_postgresql_a_subscriber(database: Database) -> None:
    load_demo_data(database.workspace("newcomer"), as_of=AS_OF, anomalies=True)
    clerk = database.workspace("clerk")
    poller = AlertPoller(clerk, interval=0.01)
    assert poller.poll() == []
    raised = run_monitor(clerk, date(2026, 1, 1), date(2026, 5, 7), config=CONFIG).raised
    assert raised
    assert [a.id for a in poller.poll()] == sorted(a.id for a in raised)
    assert poller.poll() == []
    if database.backend != "postgresql":
        assert isinstance(subscribe_alerts(clerk), AlertPoller)
        return
    with clerk.engine.begin() as connection:
        install_live_updates(connection)
    subscription = subscribe_alerts(clerk)
    assert isinstance(subscription, Subscription)
    stopper = threading.Timer(10.0, subscription.stop)
    stopper.start()
    try:
        with subscription:
            later = run_monitor(clerk, date(2026, 5, 8), AS_OF, config=CONFIG).raised
            assert later
            event = next(u for u in subscription if isinstance(u, LiveEvent))
    finally:
        stopper.cancel()
    # One announcement per request, naming its first alert.
    assert (event.kind, event.entity_id) == ("alert", str(min(a.id for a in later)))


def test_thresholds_come_from_the_environment() -> None:
    config = MonitoringConfig.from_environment(
        {
            "BILLING_DESK_MONITOR_VELOCITY_MAX_VOIDS": "5",
            "BILLING_DESK_MONITOR_BUSINESS_START": "08:30",
            "BILLING_DESK_MONITOR_BUSINESS_DAYS": "0,1,2,3,4,5",
            "BILLING_DESK_MONITOR_OUTLIER_ROBUST_Z": "7.5",
        }
    )
    assert config.velocity_max_voids == 5
    assert config.business_start.hour == 8 and config.business_start.minute == 30
    assert config.business_days == frozenset(range(6))
    assert config.outlier_robust_z == 7.5
    with pytest.raises(BadInput, match="BILLING_DESK_MONITOR_NEAR_DUPLICATE_DAYS"):
        MonitoringConfig.from_environment({"BILLING_DESK_MONITOR_NEAR_DUPLICATE_DAYS": "soon"})
    with pytest.raises(BadInput, match="not a time zone"):
        MonitoringConfig.from_environment({"BILLING_DESK_MONITOR_BUSINESS_TIMEZONE": "Mars/Base"})


def test_failures_are_kept_only_when_watched(database: Database) -> None:
    small_demo(database)
    unwatched = database.workspace("clerk")
    code, median = busiest_facility(unwatched)
    mine = record_payment(unwatched, cash(code, median // 2), "kept-1").payment_id
    with pytest.raises(PermissionDenied):
        change_status(unwatched, mine, "voided", "clerks may not", "clerk-void-1")
    assert unwatched.read(lambda unit: unit.session.scalars(select(OperationFailure)).all()) == []
    watch(unwatched)
    watch(unwatched)  # once is enough
    with pytest.raises(PermissionDenied):
        change_status(unwatched, mine, "voided", "clerks may not", "clerk-void-2")
    kept = unwatched.read(lambda unit: unit.session.scalars(select(OperationFailure)).all())
    assert [(f.kind, f.user_name) for f in kept] == [("permission", "clerk")]


def test_in_the_background_the_payment_returns_before_the_rules_run(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_demo(database)
    clerk = database.workspace("clerk")
    watch(clerk, CONFIG, background=True)
    code, median = busiest_facility(clerk)
    release = threading.Event()
    real_gather = monitoring.gather

    def held_gather(*args: object, **kwargs: object) -> object:
        assert release.wait(10), "the test never let the rules run"
        return real_gather(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(monitoring, "gather", held_gather)
    # The rules wait on the event, yet the payment is recorded and returned.
    receipt = record_payment(clerk, cash(code, median * 10), "background-1")
    assert receipt.payment_id and alerts_of(clerk) == []
    assert not settle(clerk, timeout=0.05)
    release.set()
    assert settle(clerk, timeout=10)
    rules = {a.rule for a in alerts_of(clerk)}
    assert {"amount-outlier", "overpayment"} <= rules
