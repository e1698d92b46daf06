"""Shared mode: another clerk's payment appears in the open Payments view without a refresh, and
the status bar says the live feed is connected."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import keyring
import pytest
from keyring.backend import KeyringBackend

from billing_desk.services import credentials
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.ui.views.payments import PaymentsView
from tests.keyring_backend import MemoryKeyring
from tests.security.conftest import (
    PASSWORD,
    SharedDatabase,
    drop_shared_database,
    make_shared_database,
)
from tests.ui.conftest import Gui, screenshot


@pytest.fixture
def shared() -> Iterator[SharedDatabase]:
    database = make_shared_database()
    yield database
    drop_shared_database(database)


@pytest.fixture
def saved_password(shared: SharedDatabase) -> Iterator[str]:
    previous: KeyringBackend = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    url = shared.url("clerk_a", None)
    credentials.login(url, PASSWORD)
    yield url
    keyring.set_keyring(previous)


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
