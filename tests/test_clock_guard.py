"""The clock guard of `make test` works: under BILLING_DESK_TEST_CLOCK the test process's wall
clock really stands on a Saturday night, so a test that depends on the hour fails whenever the
suite runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import moved_wall_clock

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 12, 5, 1, 0, tzinfo=UTC), datetime(2026, 11, 28, 23, 30, tzinfo=UTC)),
        (datetime(2026, 12, 5, 23, 45, tzinfo=UTC), datetime(2026, 12, 5, 23, 30, tzinfo=UTC)),
        (datetime(2026, 12, 9, 14, 0, tzinfo=UTC), datetime(2026, 12, 5, 23, 30, tzinfo=UTC)),
        (datetime(2026, 12, 6, 0, 10, tzinfo=UTC), datetime(2026, 12, 5, 23, 30, tzinfo=UTC)),
    ],
)
def test_weekend_night_is_the_latest_saturday_night_before_now(
    now: datetime, expected: datetime
) -> None:
    assert moved_wall_clock("weekend-night", now) == expected


def test_an_iso_moment_needs_its_offset() -> None:
    moment = "2026-07-18T23:30:00+00:00"
    assert moved_wall_clock(moment, datetime.now(UTC)) == datetime.fromisoformat(moment)
    with pytest.raises(ValueError, match="UTC offset"):
        moved_wall_clock("2026-07-18T23:30:00", datetime.now(UTC))


def test_under_the_guard_a_test_sees_a_saturday_night(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            from datetime import UTC, date, datetime

            def test_it_is_saturday_night():
                now = datetime.now(UTC)
                assert (now.weekday(), now.hour, now.minute // 10) == (5, 23, 3)
                assert date.today() == datetime.now().date()
            """
        )
    )
    # The suite's own guard fixture, as tests/conftest.py gives it to every test.
    (tmp_path / "conftest.py").write_text("from tests.conftest import _wall_clock_guard\n")
    env = {**os.environ, "BILLING_DESK_TEST_CLOCK": "weekend-night", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)]
    guarded = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert guarded.returncode == 0, guarded.stdout + guarded.stderr
    # Without the guard the same probe sees the machine's clock (and fails, except on a
    # Saturday between 23:30 and 23:40 UTC).
    env.pop("BILLING_DESK_TEST_CLOCK")
    now = datetime.now(UTC)
    if (now.weekday(), now.hour, now.minute // 10) != (5, 23, 3):
        plain = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert plain.returncode == 1, plain.stdout + plain.stderr
