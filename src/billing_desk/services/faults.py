"""Named points inside multi-step writes where the crash tests kill the process.

Set BILLING_DESK_KILL_AT=<point> and the process dies with SIGKILL on reaching that point, as a
power cut would take it. It exists to prove that a write is all or nothing; unset, it does
nothing.
"""

from __future__ import annotations

import os
import signal

KILL_AT_VARIABLE = "BILLING_DESK_KILL_AT"


def reached(point: str) -> None:
    if os.environ.get(KILL_AT_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)
