"""The Invoices view, driven as a clerk and a manager would: filter by facility and status, open
an invoice, run invoices with a preview (nothing written until Bill), void with a reason as a
manager, and the same void refused to a clerk."""

from __future__ import annotations

from PySide6.QtCore import Qt

from billing_desk.domain.errors import PermissionDenied
from billing_desk.domain.periods import Period
from billing_desk.services.invoices import list_invoices, void_invoice
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.operations import Operation, changes
from billing_desk.ui.views.invoices import InvoicesView, RunInvoicesDialog
from billing_desk.ui.widgets import ReasonDialog
from tests.ui.conftest import Gui, screenshot


def _invoices_view(gui: Gui, person: str) -> tuple[object, InvoicesView]:
    application = gui.start(person)
    view = application.window.show_view("Invoices")
    assert isinstance(view, InvoicesView)
    gui.wait(lambda: view.model.rowCount() > 0, "invoices")
    gui.idle(application)
    return application, view


def _count_in_database(gui: Gui, facility: str) -> int:
    workspace = open_workspace(gui.db, "auditor", migrate=False)
    try:
        return len(list_invoices(workspace, facility=facility))
    finally:
        workspace.close()


def test_filter_open_and_run_invoices_with_a_preview(demo_gui: Gui) -> None:
    application, view = _invoices_view(demo_gui, "clerk")
    all_rows = view.model.rowCount()
    # Type part of the facility's name, as a clerk would, and pick it.
    view.facility.setFocus()
    view.facility.lineEdit().selectAll()
    demo_gui.qtbot.keyClicks(view.facility.lineEdit(), "STMARY")
    demo_gui.qtbot.keyClick(view.facility.lineEdit(), Qt.Key.Key_Return)
    demo_gui.wait(
        lambda: (
            0 < view.model.rowCount() < all_rows
            and all(r.facility == "STMARY" for r in view.model.rows)
        ),
        "only STMARY's invoices",
    )
    view.status.setCurrentIndex(view.status.findData("paid"))
    demo_gui.wait(
        lambda: view.model.rowCount() > 0 and all(r.status == "paid" for r in view.model.rows),
        "only paid invoices",
    )
    view.table.selectRow(0)
    first = view.model.rows[0]
    demo_gui.wait(lambda: view.detail.lines.rowCount() > 0, "the invoice's lines")
    assert first.number in view.detail.heading.text()
    assert view.detail.lines.rowCount() == first.trip_count
    screenshot(application.window, "invoices-detail")

    before = _count_in_database(demo_gui, "STMARY")
    view.run_action.trigger()
    dialog = application.window.findChildren(RunInvoicesDialog)[-1]
    dialog.facility.set_code("STMARY")
    dialog.month.set_period(Period(2026, 5))
    demo_gui.qtbot.mouseClick(dialog.preview_button, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: dialog.trips.rowCount() > 0, "the preview")
    previewed = dialog.trips.rowCount()
    assert f"Bill {previewed} trip" in dialog.bill_button.text()
    assert dialog.bill_button.isDefault()
    screenshot(dialog, "run-invoices-preview")
    # The preview wrote nothing.
    assert _count_in_database(demo_gui, "STMARY") == before
    # Two quick clicks bill once.
    demo_gui.qtbot.mouseClick(dialog.bill_button, Qt.MouseButton.LeftButton)
    demo_gui.qtbot.mouseClick(dialog.bill_button, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: "issued to STMARY" in view.message_bar.text.text(), "the new invoice")
    demo_gui.idle(application)
    assert _count_in_database(demo_gui, "STMARY") == before + 1
    assert f"{previewed} trips" in view.message_bar.text.text()


def test_a_manager_voids_with_a_reason_and_a_clerk_cannot(demo_gui: Gui) -> None:
    application, view = _invoices_view(demo_gui, "manager")
    target = next(r for r in view.model.rows if r.status == "issued")
    view.table.selectRow(view.model.row_of(target.number) or 0)
    demo_gui.wait(lambda: view.void_action.isEnabled(), "the void action")
    view.void_action.trigger()
    dialog = application.window.findChildren(ReasonDialog)[-1]
    assert not dialog.ok.isEnabled(), "no void without a reason"
    demo_gui.qtbot.keyClicks(dialog.reason, "billed to the wrong facility")
    assert dialog.ok.isEnabled()
    screenshot(dialog, "void-invoice")
    demo_gui.qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: f"{target.number} is void" in view.message_bar.text.text(), "the void")
    demo_gui.wait(
        lambda: any(r.number == target.number and r.status == "void" for r in view.model.rows),
        "the list to show it void",
    )
    demo_gui.stop(application)

    clerk, clerk_view = _invoices_view(demo_gui, "clerk")
    assert not clerk_view.void_action.isVisible()
    # Asked anyway (as a bug in a view would), the service refuses in one sentence.
    refused: list[BaseException] = []
    other = next(r for r in clerk_view.model.rows if r.status == "issued")
    assert clerk.desk is not None
    clerk.desk.run(
        Operation(
            clerk_view,
            lambda ws: void_invoice(ws, other.number, "trying"),
            failure=refused.append,
            changes=changes("invoices"),
        )
    )
    demo_gui.wait(lambda: bool(refused), "the refusal")
    assert isinstance(refused[0], PermissionDenied)
    assert "may not void invoices" in str(refused[0])


def test_what_is_owed_shows_and_filters(demo_gui: Gui) -> None:
    application, view = _invoices_view(demo_gui, "clerk")
    for row in view.model.rows:
        assert row.total == row.paid + row.credited + row.open or row.status == "void", row
    # Alt+H reaches the filter of what is owed; Down picks "Open", then "Overdue".
    demo_gui.qtbot.keyClick(application.window, Qt.Key.Key_H, Qt.KeyboardModifier.AltModifier)
    assert application.window.focusWidget() is view.owing
    demo_gui.qtbot.keyClick(view.owing, Qt.Key.Key_Down)
    demo_gui.wait(
        lambda: (
            view.model.rowCount() > 0
            and all(r.open.is_positive() for r in view.model.rows)
            and view.owing.currentData() == "open"
        ),
        "only invoices with something open",
    )
    open_rows = view.model.rowCount()
    demo_gui.qtbot.keyClick(view.owing, Qt.Key.Key_Down)
    demo_gui.wait(
        lambda: (
            view.owing.currentData() == "overdue"
            and 0 < view.model.rowCount() <= open_rows
            and all(r.overdue and r.open.is_positive() for r in view.model.rows)
        ),
        "only overdue invoices",
    )
    late = max(view.model.rows, key=lambda r: r.days_past_due)
    row = view.model.row_of(late.number)
    assert row is not None
    days_column = [
        view.model.headerData(c, Qt.Orientation.Horizontal) for c in range(view.model.columnCount())
    ].index("Late")
    assert view.model.index(row, days_column).data() == str(late.days_past_due)
    partly = next(r for r in view.model.rows if r.paid.is_positive())
    view.table.selectRow(view.model.row_of(partly.number) or 0)
    demo_gui.wait(lambda: partly.number in view.detail.heading.text(), "the invoice")
    view.detail.setCurrentWidget(view.detail.money_table)
    demo_gui.wait(lambda: view.detail.money.rowCount() > 0, "the money applied")
    assert partly.paid == sum(
        (m.amount for m in view.detail.money.rows if not m.released and not m.via_credit),
        partly.paid - partly.paid,
    )
    assert "days past due" in view.detail.heading.text()
    screenshot(application.window, "invoices-overdue")


def test_credit_applied_once_from_the_keyboard(demo_gui: Gui) -> None:
    import uuid
    from datetime import date, timedelta

    from billing_desk.services.credits import credit_balance
    from billing_desk.services.payments import PaymentDraft, record_payment
    from billing_desk.ui.views.invoices import CreditDialog

    clerk = open_workspace(demo_gui.db, "clerk", migrate=False)
    try:
        draft = PaymentDraft(
            "KOWAL",
            "transfer",
            "100.00",
            date.today() - timedelta(days=1),
            reference="PREPAY-KOWAL-7",
        )
        record_payment(clerk, draft, str(uuid.uuid4()))
        credit = credit_balance(clerk, "KOWAL").credit
    finally:
        clerk.close()
    assert credit.minor >= 10_000
    application, view = _invoices_view(demo_gui, "clerk")
    target = next(r for r in view.model.rows if r.facility == "KOWAL" and r.open.is_positive())
    view.table.selectRow(view.model.row_of(target.number) or 0)
    demo_gui.wait(lambda: view.credit_action.isEnabled(), "the credit action")
    demo_gui.qtbot.keyClick(
        application.window,
        Qt.Key.Key_C,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    demo_gui.wait(lambda: bool(application.window.findChildren(CreditDialog)), "the dialog")
    dialog = application.window.findChildren(CreditDialog)[-1]
    assert "PREPAY-KOWAL-7" in dialog.origin.text(), "where the credit came from"
    # Asking for more than the credit is refused under the amount; nothing is applied.
    dialog.amount.selectAll()
    demo_gui.qtbot.keyClicks(dialog.amount, "99999")
    demo_gui.qtbot.keyClick(dialog.amount, Qt.Key.Key_Return)
    demo_gui.wait(lambda: dialog.form.errors["amount"].isVisible(), "the refusal")
    assert "apply at most" in dialog.form.errors["amount"].text()
    screenshot(dialog, "apply-credit-refused", schemes=False)
    dialog.amount.selectAll()
    demo_gui.qtbot.keyClicks(dialog.amount, "40")
    demo_gui.qtbot.keyClick(dialog.amount, Qt.Key.Key_Return)
    demo_gui.qtbot.keyClick(dialog.amount, Qt.Key.Key_Return)
    demo_gui.wait(lambda: "credit applied to" in view.message_bar.text.text(), "the application")
    demo_gui.idle(application)
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        kowal = list_invoices(reader, facility="KOWAL")
        after = next(i for i in kowal if i.number == target.number)
        left = credit_balance(reader, "KOWAL").credit
    finally:
        reader.close()
    assert target.open.minor - after.open.minor == 4_000, "applied once, not twice"
    assert credit.minor - left.minor == 4_000


def test_the_period_filter_keeps_one_billing_month(demo_gui: Gui) -> None:
    application, view = _invoices_view(demo_gui, "clerk")
    assert view.any_month.isChecked() and not view.month.isEnabled()
    demo_gui.qtbot.keyClick(application.window, Qt.Key.Key_N, Qt.KeyboardModifier.AltModifier)
    assert application.window.focusWidget() is view.any_month
    demo_gui.qtbot.keyClick(view.any_month, Qt.Key.Key_Space)
    assert view.month.isEnabled()
    view.month.set_period(Period(2026, 3))
    demo_gui.wait(
        lambda: (
            view.model.rowCount() > 0
            and all(r.period_start == Period(2026, 3).start for r in view.model.rows)
        ),
        "only March's invoices",
    )
    march = {r.facility for r in view.model.rows}
    assert len(march) == view.model.rowCount(), "one invoice per facility and month"


def test_run_invoices_opened_before_the_facility_list_arrived_fetches_it_and_keeps_the_choice(
    demo_gui: Gui,
) -> None:
    """Ctrl+I pressed the moment the view appears: the dialog has no list yet, fetches its own,
    and the facility asked for is chosen when it arrives (it once stayed empty)."""
    application = demo_gui.start("clerk")
    assert application.desk is not None
    dialog = RunInvoicesDialog(application.desk, [], "OAKVIEW", application.window)
    assert dialog.facility.code() is None
    demo_gui.wait(lambda: dialog.facility.code() == "OAKVIEW", "the list and the choice")
    dialog.reject()
