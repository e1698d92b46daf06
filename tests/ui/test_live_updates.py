"""Shared mode: another clerk's payment appears in the open Payments view without a refresh, and
the status bar says the live feed is connected."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date

import pytest

from billing_desk.services import live
from billing_desk.services.live import Subscription
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.users import add_user
from billing_desk.ui import live as ui_live
from billing_desk.ui.views.payments import PaymentsView
from tests.conftest import Database
from tests.security.conftest import (
    SharedDatabase,
)
from tests.ui.conftest import Gui, screenshot


@pytest.fixture
def saved_password(log_in: Callable[[str], str]) -> str:
    return log_in("clerk_a")


def test_another_clerks_payment_appears_without_a_refresh(
    gui: Gui, shared: SharedDatabase, saved_password: str
) -> None:
    application = gui.start(db=saved_password)
    window = application.window
    view = window.show_view("Payments")
    assert isinstance(view, PaymentsView)
    gui.wait(lambda: view.model.rowCount() == 1, "the one payment of FACA")
    gui.wait(lambda: window.status.live.text() == "Live", "the live feed")

    # Another clerk of the same facility, in another program.
    colleague = shared.workspace("clerk_a")
    receipt = record_payment(
        colleague,
        PaymentDraft("FACA", "transfer", "321.00", date(2026, 6, 4), reference="ACH-LIVE-1"),
        "live-1",
    )
    gui.wait(
        lambda: any(r.payment_id == receipt.payment_id for r in view.model.rows),
        "the colleague's payment",
    )
    gui.idle(application)
    screenshot(window, "live-payment-appeared", schemes=False)


def test_closing_the_window_while_the_feed_starts_leaves_no_connection_open(
    gui: Gui, fresh_database: Callable[[str], Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window's close button closes the database before the application stops the feed:
    a feed still setting up must finish first, or its connection goes back to a disposed pool
    and stays open (fresh_database fails the test on any connection left open)."""
    database = fresh_database("postgresql")
    add_user(database.workspace(None), "postgres", "admin")
    started = threading.Event()

    def slow_subscribe(workspace: Workspace) -> Subscription:
        started.set()
        time.sleep(0.5)  # the person closes the window meanwhile
        return live.subscribe(workspace)

    monkeypatch.setattr(ui_live, "subscribe", slow_subscribe)
    application = gui.start(db=database.url)
    gui.wait(started.is_set, "the feed to start")
    feed = application.feed
    assert feed is not None
    application.window.close()
    assert feed._thread is not None and not feed._thread.is_alive()
