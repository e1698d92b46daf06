"""Moments the tests choose instead of reading the wall clock: inside and outside business hours
(07:00-19:00 Mon-Fri, UTC by default), on a weekday and at a weekend."""

from __future__ import annotations

from datetime import UTC, date, datetime

from billing_desk.services.clock import Clock, clock_from
from billing_desk.services.unit_of_work import Workspace

# Wednesday 15 July 2026 and Saturday 18 July 2026: after every date the tests write into data.
WEEKDAY_OFFICE_HOURS = datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
WEEKDAY_NIGHT = datetime(2026, 7, 15, 22, 40, tzinfo=UTC)
WEEKEND_DAY = datetime(2026, 7, 18, 11, 0, tzinfo=UTC)
WEEKEND_NIGHT = datetime(2026, 7, 18, 23, 30, tzinfo=UTC)


def office_hours() -> Clock:
    """A clock running from a weekday morning in office hours."""
    return clock_from(WEEKDAY_OFFICE_HOURS)


def today_of(workspace: Workspace) -> date:
    """The workspace's today: its clock's moment in its time zone (what services call today)."""
    return workspace.clock().astimezone(workspace.zone).date()
