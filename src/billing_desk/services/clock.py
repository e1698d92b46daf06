"""Where "now" comes from. Every service reads the time through its workspace's clock, so a test
(or a replay) can choose the moment instead of depending on when it happens to run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from time import monotonic

Clock = Callable[[], datetime]
"""A function returning the current moment as an aware datetime."""


def system_clock() -> datetime:
    """The machine's clock, in UTC."""
    return datetime.now(UTC)


def fixed_clock(moment: datetime) -> Clock:
    """A clock that always says `moment` (aware; a naive moment is refused)."""
    _require_aware(moment)
    return lambda: moment


def clock_from(start: datetime) -> Clock:
    """A clock that starts at `start` and then runs at the machine's pace: time still passes
    between two operations, as it does for a person, but the day and hour are chosen."""
    _require_aware(start)
    origin = monotonic()
    return lambda: start + timedelta(seconds=monotonic() - origin)


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a clock needs an aware moment, with its time zone; got {moment!r}")
