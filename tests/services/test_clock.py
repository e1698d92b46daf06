"""Every rule and default that depends on the time, at moments the test chooses: inside and
outside business hours, on a weekday and at a weekend; velocity windows, key retention, "today",
aging and demo dates. Nothing here reads the wall clock, so the verdict is the same at any hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from billing_desk.db.models import IdempotencyRecord, Invoice
from billing_desk.domain.errors import BadInput
from billing_desk.services.clock import Clock, clock_from, fixed_clock
from billing_desk.services.demo import load_demo_data
from billing_desk.services.health import check_health
from billing_desk.services.idempotency import purge_keys
from billing_desk.services.monitoring import list_alerts, watch
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.report_data import aging_report_data
from tests.clocks import WEEKDAY_NIGHT, WEEKDAY_OFFICE_HOURS, WEEKEND_DAY, WEEKEND_NIGHT
from tests.conftest import Database
from tests.support import seed_facility, seed_users

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock


class SettableClock:
    """A clock the test moves by hand."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


def _cash(amount: str, received: date, memo: str | None = None) -> PaymentDraft:
    return PaymentDraft("STMARY", "cash", amount, received, memo=memo)


def _setup(database: Database, clock: Clock) -> None:
    admin = database.workspace("admin", clock=clock, zone=UTC)
    seed_users(admin)
    seed_facility(admin)


def test_clocks_refuse_a_moment_without_a_time_zone() -> None:
    with pytest.raises(ValueError, match="aware"):
        fixed_clock(datetime(2026, 7, 15, 10, 0))
    with pytest.raises(ValueError, match="aware"):
        clock_from(datetime(2026, 7, 15, 10, 0))


def test_a_running_clock_starts_at_its_moment_and_moves_on() -> None:
    clock = clock_from(WEEKEND_NIGHT)
    first, second = clock(), clock()
    assert WEEKEND_NIGHT <= first <= second < WEEKEND_NIGHT + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("moment", "after_hours"),
    [
        (WEEKDAY_OFFICE_HOURS, False),
        (WEEKDAY_NIGHT, True),
        (WEEKEND_DAY, True),
        (WEEKEND_NIGHT, True),
    ],
    ids=["weekday-office-hours", "weekday-night", "weekend-day", "weekend-night"],
)
def test_the_after_hours_rule_follows_the_workspace_clock(
    database: Database, moment: datetime, after_hours: bool
) -> None:
    clock = fixed_clock(moment)
    _setup(database, clock)
    clerk = database.workspace("clerk", clock=clock)
    watch(clerk)
    receipt = record_payment(clerk, _cash("12.00", moment.date()), "after-hours-1")
    rules = [(a.rule, a.entities.get("payment")) for a in list_alerts(clerk)]
    expected = [("after-hours", (receipt.payment_id,))] if after_hours else []
    assert rules == expected
    if after_hours:
        (alert,) = list_alerts(clerk)
        assert f"{moment:%a %Y-%m-%d %H:%M}" in alert.explanation


def test_the_velocity_window_counts_payments_by_the_clock(database: Database) -> None:
    clock = SettableClock(WEEKDAY_OFFICE_HOURS)
    _setup(database, clock)
    clerk = database.workspace("clerk", clock=clock)
    watch(clerk)
    # Twelve payments two minutes apart are allowed within the hour ...
    for n in range(12):
        record_payment(clerk, _cash(f"{10 + n}.00", clock().date()), f"vel-{n}")
        clock.advance(minutes=2)
    assert [a.rule for a in list_alerts(clerk)] == []
    # ... and a thirteenth 70 minutes later is not a burst: the first ones left the window.
    clock.advance(minutes=70)
    record_payment(clerk, _cash("22.00", clock().date()), "vel-late")
    assert [a.rule for a in list_alerts(clerk)] == []
    # Twelve more within minutes are.
    for n in range(12):
        clock.advance(minutes=1)
        record_payment(clerk, _cash(f"{10 + n}.50", clock().date()), f"vel-burst-{n}")
    assert "velocity" in {a.rule for a in list_alerts(clerk)}


def test_key_retention_is_counted_from_the_clock(database: Database) -> None:
    clock = SettableClock(WEEKDAY_OFFICE_HOURS)
    _setup(database, clock)
    clerk = database.workspace("clerk", clock=clock)
    record_payment(clerk, _cash("20.00", clock().date()), "kept-key")
    admin = database.workspace("admin", clock=clock)

    def keys() -> int:
        return admin.read(
            lambda unit: unit.session.scalar(select(func.count()).select_from(IdempotencyRecord))
        )

    clock.advance(days=29, hours=23)
    assert purge_keys(admin, older_than_days=30).removed == 0
    assert keys() == 1
    clock.advance(hours=2)
    assert purge_keys(admin, older_than_days=30).removed == 1
    assert keys() == 0


def test_health_counts_stale_keys_and_failures_by_the_clock(database: Database) -> None:
    clock = SettableClock(WEEKEND_NIGHT)
    _setup(database, clock)
    clerk = database.workspace("clerk", clock=clock)
    record_payment(clerk, _cash("20.00", clock().date()), "aging-key")
    items = {i.name: i for i in check_health(clerk, keyring_check=lambda: True).items}
    assert items["idempotency_keys"].status == "ok"
    clock.advance(days=45)
    items = {i.name: i for i in check_health(clerk, keyring_check=lambda: True).items}
    assert items["idempotency_keys"].status != "ok"
    assert check_health(clerk, keyring_check=lambda: True).checked_at == clock()


@pytest.mark.parametrize("moment", [WEEKDAY_OFFICE_HOURS, WEEKEND_NIGHT], ids=["day", "night"])
def test_today_is_the_clocks_day(database: Database, moment: datetime) -> None:
    clock = fixed_clock(moment)
    _setup(database, clock)
    clerk = database.workspace("clerk", clock=clock, zone=UTC)
    assert record_payment(clerk, _cash("5.00", moment.date()), "today-1").payment_id
    with pytest.raises(BadInput, match="in the future"):
        record_payment(clerk, _cash("5.00", moment.date() + timedelta(days=1)), "tomorrow-1")


def test_today_is_reckoned_in_the_persons_time_zone(database: Database) -> None:
    # 23:30 UTC on Saturday is already Sunday in Kiritimati (UTC+14) and still Saturday in Adak.
    clock = fixed_clock(WEEKEND_NIGHT)
    _setup(database, clock)
    sunday = WEEKEND_NIGHT.date() + timedelta(days=1)
    east = database.workspace("clerk", clock=clock, zone=ZoneInfo("Pacific/Kiritimati"))
    west = database.workspace("clerk", clock=clock, zone=ZoneInfo("America/Adak"))
    assert record_payment(east, _cash("5.00", sunday), "east-1").payment_id
    with pytest.raises(BadInput, match="in the future"):
        record_payment(west, _cash("6.00", sunday), "west-1")


def test_demo_data_and_aging_default_to_the_clocks_day(database: Database) -> None:
    as_of = date(2026, 5, 20)
    clock = fixed_clock(datetime(2026, 5, 20, 22, 30, tzinfo=UTC))
    admin = database.workspace("newcomer", clock=clock, zone=UTC)
    load_demo_data(admin, facilities=2, months=3)
    newest_issue = admin.read(
        lambda unit: unit.session.scalar(select(func.max(Invoice.issue_date)))
    )
    assert newest_issue is not None and newest_issue <= as_of
    clerk = database.workspace("clerk", clock=clock, zone=UTC)
    assert aging_report_data(clerk).as_of == as_of
    # The same data seen 40 days later has moved on in its aging buckets.
    later = database.workspace("clerk", clock=fixed_clock(clock() + timedelta(days=40)), zone=UTC)
    then, now = aging_report_data(clerk), aging_report_data(later)
    assert now.as_of == as_of + timedelta(days=40)
    assert sum(r.buckets[0].minor for r in now.rows) < sum(r.buckets[0].minor for r in then.rows)
