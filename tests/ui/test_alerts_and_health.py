"""Alerts and Health as a manager uses them: on a shared database an alert raised by another
person's program appears without a refresh, with the count in the navigation and a word in the
status bar; the manager acknowledges it with a note, which a clerk cannot. Health shows a planted
problem (entries left unsealed past the bound, months-old idempotency keys) as a warning with the
sentence that says what to do."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from billing_desk.services.monitoring import watch
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.verification import check_chain
from billing_desk.ui.views.alerts import AlertsView
from billing_desk.ui.views.health import HealthView
from billing_desk.ui.widgets import ReasonDialog
from tests.security.conftest import (
    SharedDatabase,
)
from tests.tamper import tampering
from tests.ui.conftest import Gui, screenshot

# The overpayment rule reads the clock; run again under a moved wall clock by `make test`.
pytestmark = pytest.mark.clock


@pytest.fixture
def logins(log_in: Callable[[str], str]) -> dict[str, str]:
    return {person: log_in(person) for person in ("manager_a", "clerk_a")}


def test_an_alert_raised_elsewhere_appears_and_a_manager_acknowledges_it(
    gui: Gui, shared: SharedDatabase, logins: dict[str, str]
) -> None:
    application = gui.start(db=logins["manager_a"])
    window = application.window
    view = window.show_view("Alerts")
    assert isinstance(view, AlertsView)
    gui.wait(lambda: window.status.live.text() == "Live", "the live feed")
    gui.idle(application)
    assert view.model.rowCount() == 0
    # A manager of one facility reads only its entries: the chain, which links every
    # facility's, is the auditors' to verify, never a false "Integrity problem".
    badge = window.status.badge
    gui.wait(lambda: badge.result is not None, "the integrity badge")
    assert badge.text() == "Chain verified by auditors"
    auditor = check_chain(shared.workspace("auditor"))
    assert auditor.ok and not auditor.partial_view and auditor.sequence > 0

    # A clerk in another program records far more than FACA owes: the overpayment rule fires.
    clerk = shared.workspace("clerk_a")
    watch(clerk)
    record_payment(
        clerk,
        PaymentDraft("FACA", "transfer", "9000.00", date(2026, 6, 3), reference="ACH-OVER-9"),
        "over-9",
    )
    gui.wait(lambda: view.model.rowCount() == 1, "the alert, without a refresh")
    alert = view.model.rows[0]
    assert (alert.rule, alert.facility, alert.status) == ("overpayment", "FACA", "open")
    gui.wait(lambda: "new alert" in window.statusBar().currentMessage(), "the status bar")
    view.table.selectRow(0)
    assert view.ack_action.isVisible() and view.ack_action.isEnabled()
    gui.idle(application)
    screenshot(window, "alerts-raised-elsewhere")

    view.ack_action.trigger()
    dialog = window.findChildren(ReasonDialog)[-1]
    assert not dialog.ok.isEnabled(), "no acknowledgement without a note"
    gui.qtbot.keyClicks(dialog.reason, "FACA prepaid June; refund offered")  # type: ignore[attr-defined]
    dialog.ok.click()
    gui.wait(lambda: "acknowledged by" in view.message_bar.text.text(), "the acknowledgement")
    gui.wait(lambda: view.model.rowCount() == 0, "no open alert left")
    application.close()

    # A clerk sees the alert but has no way to close it.
    as_clerk = gui.start(db=logins["clerk_a"])
    clerk_view = as_clerk.window.show_view("Alerts")
    assert isinstance(clerk_view, AlertsView)
    clerk_view.open_only.setChecked(False)
    gui.wait(lambda: clerk_view.model.rowCount() == 1, "the closed alert")
    clerk_view.table.selectRow(0)
    assert not clerk_view.ack_action.isVisible() and not clerk_view.dismiss_action.isVisible()
    clerk_view.close_selected(dismiss=True)
    assert not as_clerk.window.findChildren(ReasonDialog)


def test_health_shows_a_planted_problem_with_what_to_do(
    demo_gui: Gui, request: pytest.FixtureRequest
) -> None:
    with tampering("sqlite", demo_gui.db) as tamper:
        tamper.unlock()
        last = int(tamper.scalar("SELECT max(sequence) FROM audit_link"))
        keep = last - 3
        left = [
            int(tamper.scalar("SELECT entry_id FROM audit_link WHERE sequence = :s", s=sequence))
            for sequence in range(keep + 1, last + 1)
        ]
        # As if the program stopped after committing them and before sealing.
        tamper.sql("DELETE FROM audit_link WHERE sequence > :s", s=keep)
        tamper.head_to_last_link()
        for entry in left:
            tamper.sql("INSERT INTO audit_pending (entry_id) VALUES (:e)", e=entry)

    # An hour later, nothing has sealed them.
    later = time_machine.travel(datetime.now(UTC) + timedelta(hours=1), tick=True)
    later.start()
    request.addfinalizer(later.stop)
    application = demo_gui.start("manager")
    view = application.window.show_view("Health")
    assert isinstance(view, HealthView)
    demo_gui.wait(lambda: view.items.rowCount() > 0, "the health items")
    items = {item.name: item for item in view.items.rows}
    assert items["unsealed"].status == "warning", items["unsealed"]
    assert items["unsealed"].value["count"] == len(left)
    assert items["unsealed"].sentence.startswith(f"{len(left)} audit entries wait to be sealed")
    assert items["unsealed"].sentence.endswith("run `billing-desk audit seal`.")
    assert items["idempotency_keys"].status == "warning"
    demo_gui.wait(lambda: view.checks.rowCount() > 0, "the compliance checks")
    assert "Compliance score" in view.score.text()
    assert "warning" in view.summary_label.text()
    demo_gui.idle(application)
    screenshot(application.window, "health-planted-problem")
