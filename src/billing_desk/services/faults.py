"""Named points inside multi-step writes where the crash and fault tests intervene.

Set BILLING_DESK_KILL_AT=<point> and the process dies with SIGKILL on reaching that point, as a
power cut would take it. Set BILLING_DESK_PAUSE_AT=<point> and BILLING_DESK_PAUSE_FILE=<path>
and the process, on reaching the point, writes its pid to that file and waits (at most
PAUSE_LIMIT_SECONDS) until the file is removed, its transaction still open, so that a test can
take the database away from it at a known moment. They exist to prove that a write is all or
nothing; unset, they do nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL_AT_VARIABLE = "BILLING_DESK_KILL_AT"
PAUSE_AT_VARIABLE = "BILLING_DESK_PAUSE_AT"
PAUSE_FILE_VARIABLE = "BILLING_DESK_PAUSE_FILE"
PAUSE_LIMIT_SECONDS = 60.0


def reached(point: str) -> None:
    if os.environ.get(KILL_AT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_AT_VARIABLE) == point:
        _pause(Path(os.environ[PAUSE_FILE_VARIABLE]))


def _pause(marker: Path) -> None:
    """Say we are here (the marker file), then wait until it is gone."""
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(str(os.getpid()), encoding="ascii")
    partial.replace(marker)  # appears whole, never half-written
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
