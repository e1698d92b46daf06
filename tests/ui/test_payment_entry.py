"""Receiving payments from the keyboard, as a clerk with a pile of checks would: a check paying
two invoices and leaving credit, recorded once whatever is pressed twice or retried; a check
already recorded shown before Save and recorded for a manager's approval; a full card number
refused at its field and never kept."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget
from sqlalchemy import func, select

from billing_desk.db.models import Allocation, Payment
from billing_desk.domain.errors import EnvironmentFault
from billing_desk.services.invoices import open_invoices
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.views import payment_entry
from billing_desk.ui.views.payment_entry import PaymentForm
from billing_desk.ui.views.payments import PaymentsView
from billing_desk.ui.widgets import ReasonDialog
from tests.ui.conftest import Gui, screenshot

ROUTING, ACCOUNT = "021000021", "000123456789"


def _form(gui: Gui) -> tuple[object, PaymentsView, PaymentForm]:
    application = gui.start("clerk")
    view = application.window.show_view("Payments")
    assert isinstance(view, PaymentsView) and view.entry is not None
    gui.idle(application)
    gui.wait(lambda: view.entry is not None and bool(view.entry.facilities), "facilities")
    return application, view, view.entry


def _payments(gui: Gui) -> list[tuple[int, str, int, str]]:
    workspace = open_workspace(gui.db, "auditor", migrate=False)
    try:
        return workspace.read(
            lambda unit: [
                (p.id, p.status, p.amount_minor, p.check_number or "")
                for p in unit.session.scalars(select(Payment).order_by(Payment.id))
            ]
        )
    finally:
        workspace.close()


def _allocations_of(gui: Gui, payment_id: int) -> dict[str, int]:
    from billing_desk.db.models import Invoice

    workspace = open_workspace(gui.db, "auditor", migrate=False)
    try:
        return workspace.read(
            lambda unit: {
                number: amount
                for number, amount in unit.session.execute(
                    select(Invoice.number, func.sum(Allocation.amount_minor))
                    .join(Invoice, Invoice.id == Allocation.invoice_id)
                    .where(Allocation.payment_id == payment_id, Allocation.released.is_(False))
                    .group_by(Invoice.number)
                )
            }
        )
    finally:
        workspace.close()


def _type(gui: Gui, form: PaymentForm, text: str) -> QWidget:
    """Type into whatever has the focus now, then Tab on; returns where the text went."""
    target = form.window().focusWidget()
    assert target is not None
    gui.qtbot.keyClicks(target, text)  # type: ignore[attr-defined]
    gui.qtbot.keyClick(target, Qt.Key.Key_Tab)  # type: ignore[attr-defined]
    return target


def _open_of(gui: Gui, code: str) -> list[int]:
    workspace = open_workspace(gui.db, "auditor", migrate=False)
    try:
        return [i.open.minor for i in open_invoices(workspace, code)]
    finally:
        workspace.close()


def _money_text(minor: int) -> str:
    return f"{minor // 100:,}.{minor % 100:02d}"


def test_a_check_paying_two_invoices_and_leaving_credit_from_the_keyboard(demo_gui: Gui) -> None:
    application, view, form = _form(demo_gui)
    open_amounts = _open_of(demo_gui, "OAKVIEW")
    assert len(open_amounts) >= 2, "the demo leaves OAKVIEW two invoices open"
    total = open_amounts[0] + open_amounts[1] + 1000
    before = _payments(demo_gui)

    form.window().activateWindow()
    form.facility.setFocus()
    # Payer, received (today), method (check), number, routing, account, amount, memo.
    _type(demo_gui, form, "OAKVIEW")
    _type(demo_gui, form, "")
    _type(demo_gui, form, "")
    assert _type(demo_gui, form, "7001") is form.check_number
    assert _type(demo_gui, form, ROUTING) is form.routing
    assert _type(demo_gui, form, ACCOUNT) is form.account
    demo_gui.wait(lambda: form.allocations.rowCount() >= 2, "OAKVIEW's open invoices")
    assert _type(demo_gui, form, _money_text(total)) is form.amount
    memo = form.window().focusWidget()
    assert memo is form.memo
    demo_gui.qtbot.keyClicks(memo, "Two invoices and a little more")
    shown = dict(form.allocations.allocations())
    assert "credit to the facility" in form.totals.text()
    screenshot(application.window, "payment-form-filled")
    demo_gui.qtbot.keyClick(memo, Qt.Key.Key_Return)
    demo_gui.wait(lambda: "recorded" in view.message_bar.text.text(), "the saved payment")

    after = _payments(demo_gui)
    assert len(after) == len(before) + 1
    new = after[-1]
    assert new[2] == total and new[3] == "7001"
    stored = _allocations_of(demo_gui, new[0])
    assert {n: _money_text(m).replace(",", "") for n, m in stored.items()} == shown
    assert f"Payment {new[0]} recorded" in view.message_bar.text.text()
    # The form is blank for the next check, with a new key.
    assert form.amount.text() == "" and form.check_number.text() == ""
    screenshot(application.window, "payment-form-empty")


def test_enter_twice_and_a_retry_after_a_lost_connection_record_one_payment(
    demo_gui: Gui, monkeypatch: pytest.MonkeyPatch
) -> None:
    application, view, form = _form(demo_gui)
    form.facility.set_code("STMARY")
    form.method.setCurrentIndex(form.method.findData("transfer"))
    form.reference.setText("ACH-ONCE-1")
    form.amount.setText("100.00")
    before = len(_payments(demo_gui))
    form.window().activateWindow()
    form.amount.setFocus()
    demo_gui.qtbot.keyClick(form.amount, Qt.Key.Key_Return)
    demo_gui.qtbot.keyClick(form.amount, Qt.Key.Key_Return)
    demo_gui.wait(lambda: "recorded" in view.message_bar.text.text(), "the first payment")
    demo_gui.idle(application)
    assert len(_payments(demo_gui)) == before + 1

    # The connection drops after the commit and before the answer: the clerk retries.
    real = payment_entry.record_payment
    calls: list[str] = []

    def lost_after_commit(workspace, draft, key):  # type: ignore[no-untyped-def]
        calls.append(key)
        receipt = real(workspace, draft, key)
        if len(calls) == 1:
            raise EnvironmentFault("The connection to the database was lost.", retryable=True)
        return receipt

    monkeypatch.setattr(payment_entry, "record_payment", lost_after_commit)
    form.facility.set_code("STMARY")
    form.method.setCurrentIndex(form.method.findData("transfer"))
    form.reference.setText("ACH-ONCE-2")
    form.amount.setText("55.00")
    form.save()
    demo_gui.wait(lambda: form.message_bar.button("Retry") is not None, "the offer to retry")
    assert form.amount.text() == "55.00", "what was typed stays"
    retry = form.message_bar.button("Retry")
    assert retry is not None
    demo_gui.qtbot.mouseClick(retry, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: len(calls) == 2 and form.amount.text() == "", "the retry")
    assert calls[0] == calls[1], "the retry carried the same key"
    assert len(_payments(demo_gui)) == before + 2


def test_a_check_recorded_before_is_shown_before_save_and_goes_for_approval(
    demo_gui: Gui,
) -> None:
    workspace = open_workspace(demo_gui.db, "clerk", migrate=False)
    try:
        first = record_payment(
            workspace,
            PaymentDraft(
                "STMARY",
                "check",
                "80.00",
                date(2026, 5, 18),
                check_number="9911",
                routing_number=ROUTING,
                account_number=ACCOUNT,
            ),
            "first-9911",
        )
    finally:
        workspace.close()
    application, view, form = _form(demo_gui)
    form.facility.set_code("STMARY")
    form.facility.currentIndexChanged.emit(form.facility.currentIndex())
    for field, text in ((form.check_number, "9911"), (form.routing, ROUTING)):
        demo_gui.qtbot.keyClicks(field, text)
    demo_gui.qtbot.keyClicks(form.account, ACCOUNT)
    demo_gui.wait(lambda: form.duplicate_bar.isVisible(), "the duplicate warning")
    text = form.duplicate_bar.text.text()
    assert f"payment {first.payment_id}" in text and "recorded by clerk" in text
    screenshot(application.window, "payment-form-duplicate")
    form.amount.setText("80.00")
    override = form.duplicate_bar.button("Record for a manager's approval…")
    assert override is not None
    demo_gui.qtbot.mouseClick(override, Qt.MouseButton.LeftButton)
    dialog = application.window.findChildren(ReasonDialog)[-1]
    demo_gui.qtbot.keyClicks(dialog.reason, "the facility paid twice; refund follows")
    demo_gui.qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: "held for a manager" in view.message_bar.text.text(), "held")
    held = _payments(demo_gui)[-1]
    assert held[1] == "awaiting approval" and held[3] == "9911"


def test_a_full_card_number_is_refused_at_its_field_and_not_kept(demo_gui: Gui) -> None:
    _application, _view, form = _form(demo_gui)
    before = _payments(demo_gui)
    form.facility.set_code("STMARY")
    form.amount.setText("12.00")
    demo_gui.qtbot.keyClicks(form.memo, "card 4111 1111 1111 1111")
    # Refused as the last digit arrived: the field was emptied, nothing of it is kept.
    assert form.memo.text() == ""
    error = form.form.errors["memo"]
    assert error.isVisibleTo(form) and "looks like a full card number" in error.text()
    assert form.draft().memo is None
    screenshot(form, "payment-form-card-number", schemes=False)
    assert _payments(demo_gui) == before


def _hold(gui: Gui, person: str, number: str) -> int:
    """A check recorded twice on purpose by `person`: the second waits for approval."""
    workspace = open_workspace(gui.db, person, migrate=False)
    try:
        draft = PaymentDraft(
            "OAKVIEW",
            "check",
            "45.00",
            date(2026, 5, 18),
            check_number=number,
            routing_number=ROUTING,
            account_number=ACCOUNT,
        )
        record_payment(workspace, draft, f"first-{number}")
        held = record_payment(
            workspace, replace(draft, override_reason="paid twice, refund follows"), f"2-{number}"
        )
    finally:
        workspace.close()
    return held.payment_id


def test_a_manager_approves_in_the_queue_but_not_what_they_recorded(demo_gui: Gui) -> None:
    from billing_desk.ui.views.approvals import ApprovalsView

    by_clerk = _hold(demo_gui, "clerk", "7301")
    by_manager = _hold(demo_gui, "manager", "7302")
    application = demo_gui.start("manager")
    view = application.window.show_view("Approvals")
    assert isinstance(view, ApprovalsView)
    demo_gui.wait(lambda: view.model.rowCount() == 2, "two payments waiting")
    screenshot(application.window, "approvals-queue")

    def decide(payment_id: int, label: str) -> ReasonDialog:
        view.table.selectRow(view.model.row_of(payment_id) or 0)
        demo_gui.wait(lambda: view.buttons.count() > 1, "the decisions")
        button = next(
            view.buttons.itemAt(i).widget()
            for i in range(view.buttons.count())
            if view.buttons.itemAt(i).widget() is not None
            and view.buttons.itemAt(i).widget().text() == label
        )
        demo_gui.qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        dialog = application.window.findChildren(ReasonDialog)[-1]
        demo_gui.qtbot.keyClicks(dialog.reason, "checked with the facility")
        demo_gui.qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
        return dialog

    decide(by_clerk, "Approve…")
    demo_gui.wait(lambda: f"Payment {by_clerk} approved" in view.message_bar.text.text(), "ok")
    own = decide(by_manager, "Approve…")
    demo_gui.wait(lambda: own.message_bar.isVisible(), "the refusal")
    assert "another manager must approve it" in own.message_bar.text.text()
    statuses = {p[0]: p[1] for p in _payments(demo_gui)}
    assert statuses[by_clerk] == "recorded" and statuses[by_manager] == "awaiting approval"


def test_register_actions_follow_the_state_and_the_role(demo_gui: Gui) -> None:
    workspace = open_workspace(demo_gui.db, "clerk", migrate=False)
    try:
        recorded = record_payment(
            workspace,
            PaymentDraft("OAKVIEW", "transfer", "12.00", date(2026, 5, 18), reference="ACH-ACT-1"),
            "act-1",
        ).payment_id
    finally:
        workspace.close()

    def offered(person: str) -> tuple[object, PaymentsView, list[str]]:
        application = demo_gui.start(person)
        view = application.window.show_view("Payments")
        assert isinstance(view, PaymentsView)
        demo_gui.wait(lambda: view.model.row_of(recorded) is not None, "the payment")
        view.table.selectRow(view.model.row_of(recorded) or 0)
        demo_gui.wait(lambda: view.moves_row.count() > 0, "its next steps")
        labels = [
            view.moves_row.itemAt(i).widget().text()
            for i in range(view.moves_row.count())
            if view.moves_row.itemAt(i).widget() is not None
        ]
        return application, view, labels

    clerk, _view, labels = offered("clerk")
    assert "Void…" not in labels and "Returned by the bank…" in labels
    demo_gui.stop(clerk)
    manager, view, labels = offered("manager")
    assert "Void…" in labels
    void = next(
        view.moves_row.itemAt(i).widget()
        for i in range(view.moves_row.count())
        if view.moves_row.itemAt(i).widget() is not None
        and view.moves_row.itemAt(i).widget().text() == "Void…"
    )
    demo_gui.qtbot.mouseClick(void, Qt.MouseButton.LeftButton)
    dialog = manager.window.findChildren(ReasonDialog)[-1]
    demo_gui.qtbot.keyClicks(dialog.reason, "entered against the wrong facility")
    demo_gui.qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: "to voided" in view.message_bar.text.text(), "the void")
    assert {p[0]: p[1] for p in _payments(demo_gui)}[recorded] == "voided"


def _answer_question(gui: Gui, button: object) -> list[str]:
    """Answer the next question box with `button`, as the person would; returns its text."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    asked: list[str] = []

    def answer() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.isVisible():
                asked.append(widget.text())
                widget.button(button).click()  # type: ignore[arg-type]
                return
        QTimer.singleShot(20, answer)

    QTimer.singleShot(20, answer)
    return asked


def test_quitting_with_a_payment_half_typed_asks_first(demo_gui: Gui) -> None:
    from PySide6.QtWidgets import QMessageBox

    application, _view, form = _form(demo_gui)
    form.amount.setFocus()
    demo_gui.qtbot.keyClicks(form.amount, "125.00")  # type: ignore[attr-defined]
    window = application.window  # type: ignore[attr-defined]
    asked = _answer_question(demo_gui, QMessageBox.StandardButton.Cancel)
    window.quit()
    assert asked and "not been saved" in asked[0]
    assert window.isVisible() and form.amount.text() == "125.00", "Cancel keeps the work"
    asked = _answer_question(demo_gui, QMessageBox.StandardButton.Discard)
    window.quit()
    assert asked and not window.isVisible()


def test_a_payment_from_an_invoice_opens_on_its_facility(demo_gui: Gui) -> None:
    from billing_desk.ui.views.invoices import InvoicesView
    from billing_desk.ui.views.payment_entry import PaymentDialog

    application = demo_gui.start("clerk")
    invoices = application.window.show_view("Invoices")
    assert isinstance(invoices, InvoicesView)
    demo_gui.wait(lambda: invoices.model.rowCount() > 0, "invoices")
    demo_gui.idle(application)
    target = next(r for r in invoices.model.rows if r.open.is_positive())
    invoices.table.selectRow(invoices.model.row_of(target.number) or 0)
    invoices.receive_action.trigger()
    dialog = application.window.findChildren(PaymentDialog)[-1]
    assert dialog.form.facility.code() == target.facility
    demo_gui.wait(lambda: dialog.form.allocations.rowCount() > 0, "its open invoices")
    assert target.number in {line.invoice.number for line in dialog.form.allocations.lines}
    dialog.reject()  # nothing typed: closes without asking
    assert not dialog.isVisible()


def test_a_payment_from_a_facility_opens_on_it(demo_gui: Gui) -> None:
    from billing_desk.ui.views.facilities import FacilitiesView
    from billing_desk.ui.views.payment_entry import PaymentDialog

    application = demo_gui.start("clerk")
    facilities = application.window.show_view("Facilities")
    assert isinstance(facilities, FacilitiesView)
    demo_gui.wait(lambda: facilities.model.rowCount() > 0, "facilities")
    facilities.table.selectRow(facilities.model.row_of("KOWAL") or 0)
    demo_gui.qtbot.keyClick(  # type: ignore[attr-defined]
        application.window,
        Qt.Key.Key_P,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    dialog = application.window.findChildren(PaymentDialog)[-1]
    assert dialog.form.facility.code() == "KOWAL"
    dialog.reject()
