"""Closing a workspace waits for the anomaly rules still running on its worker thread: a check
that outlived its workspace handed its connection back to a disposed pool, and the connection
was closed by the garbage collector at some later moment, in the middle of unrelated work."""

from __future__ import annotations

import gc
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from billing_desk.services import monitoring
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import open_workspace
from tests.conftest import Database
from tests.support import seed_facility, seed_users


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_close_waits_for_the_background_rules(
    backend: str,
    fresh_database: Callable[[str], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = fresh_database(backend)
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin)
    finished = threading.Event()
    real = monitoring._check_safely

    def slow_check(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # a check that is still running when the window closes
        try:
            return real(*args, **kwargs)
        finally:
            finished.set()

    monkeypatch.setattr(monitoring, "_check_safely", slow_check)
    clerk = open_workspace(database.url, "clerk", migrate=False)
    monitoring.watch(clerk, background=True)
    draft = PaymentDraft("STMARY", "cash", "12.50", date(2026, 6, 2))
    record_payment(clerk, draft, str(uuid.uuid4()))
    clerk.close()
    assert finished.is_set(), "close returned while the rules were still running"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
