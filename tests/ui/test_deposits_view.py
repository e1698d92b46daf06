"""The Deposits view as a clerk uses it: pick three recorded checks from the keyboard, watch
the running count and total, press Deposit twice, and get one deposit whose slip opens in the
preview listing exactly those checks."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pypdfium2 as pdfium
from PySide6.QtCore import QItemSelectionModel, Qt

from billing_desk.domain.money import Money
from billing_desk.services.payments import PaymentDraft, list_payments, record_payment
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.views.deposits import DepositsView, SlipDialog
from tests.ui.conftest import Gui, screenshot


def _statuses(gui: Gui) -> dict[int, str]:
    workspace = open_workspace(gui.db, "auditor", migrate=False)
    try:
        return {p.payment_id: p.status for p in list_payments(workspace)}
    finally:
        workspace.close()


def _checks_arrived(gui: Gui) -> None:
    """Three checks the morning's mail brought, recorded by a clerk."""
    workspace = open_workspace(gui.db, "clerk", migrate=False)
    received = date.today() - timedelta(days=1)
    try:
        for number, (facility, amount) in enumerate(
            (("STMARY", "1200.00"), ("OAKVIEW", "310.55"), ("KOWAL", "99.99")), start=7001
        ):
            draft = PaymentDraft(
                facility,
                "check",
                amount,
                received,
                check_number=str(number),
                routing_number="021000021",
                account_number="4455667788",
            )
            record_payment(workspace, draft, str(uuid.uuid4()))
    finally:
        workspace.close()


def test_three_checks_make_one_deposit_and_its_slip(demo_gui: Gui) -> None:
    _checks_arrived(demo_gui)
    application = demo_gui.start("clerk")
    view = application.window.show_view("Deposits")
    assert isinstance(view, DepositsView)
    demo_gui.wait(lambda: view.model.rowCount() >= 3, "checks and cash to deposit")
    demo_gui.idle(application)
    checks = [r for r in view.model.rows if r.method == "check"]
    assert all(r.status == "recorded" and r.method in ("check", "cash") for r in view.model.rows)
    assert not view.deposit_button.isEnabled(), "nothing chosen, nothing to deposit"
    # Three rows of the same currency, chosen with the keyboard: the first, then Shift+Down.
    currency = checks[0].amount.currency
    wanted = [r for r in view.model.rows if r.amount.currency == currency][:3]
    rows = sorted(view.model.row_of(r.payment_id) or 0 for r in wanted)
    view.table.setFocus()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for row in rows:
        view.table.selectionModel().select(view.model.index(row, 0), flags)
    chosen = view.chosen()
    assert [p.payment_id for p in chosen] == [view.model.rows[r].payment_id for r in rows]
    total = sum((p.amount for p in chosen), Money.from_minor(0, currency))
    assert view.selected.text() == f"3 items, {application.desk.formats.money(total)}"  # type: ignore[union-attr]
    assert view.deposit_button.text() == "&Deposit 3 items"
    screenshot(application.window, "deposits-chosen")

    before = _statuses(demo_gui)
    demo_gui.qtbot.mouseClick(view.deposit_button, Qt.MouseButton.LeftButton)
    demo_gui.qtbot.mouseClick(view.deposit_button, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: "Deposit " in view.message_bar.text.text(), "the deposit")
    demo_gui.idle(application)
    after = _statuses(demo_gui)
    ids = {p.payment_id for p in chosen}
    assert {i for i in after if after[i] != before.get(i)} == ids, "exactly those three moved"
    assert all(after[i] == "deposited" for i in ids)
    assert "3 items" in view.message_bar.text.text()
    dialogs = application.window.findChildren(SlipDialog)
    assert len(dialogs) == 1, "one deposit, one slip"
    slip = dialogs[0]
    assert slip.preview.page_count >= 1
    text = "".join(page.get_textpage().get_text_range() for page in pdfium.PdfDocument(slip.pdf))
    for payment in chosen:
        assert payment.facility in text
    assert application.desk.formats.money(total).replace("$", "") in text.replace("$", "")  # type: ignore[union-attr]
    demo_gui.qtbot.wait(200)  # type: ignore[attr-defined]  # the page refits to the dialog
    assert slip.preview.page.pixmap().width() <= slip.preview.page_area.viewport().width()
    screenshot(slip, "deposit-slip-preview", schemes=False)
    slip.accept()
    demo_gui.wait(lambda: all(r.payment_id not in ids for r in view.model.rows), "the list")
    # The new deposit heads the deposits made, its three checks in transit; Enter opens its slip.
    number = int(view.message_bar.text.text().split()[1].rstrip(":"))
    demo_gui.wait(lambda: view.made.row_of(number) is not None, "the deposit in the list")
    made = view.made.rows[view.made.row_of(number) or 0]
    assert (made.items, made.cleared, made.standing) == (3, 0, "in transit")
    assert made.total == total
    view.made_table.setFocus()
    view.made_table.selectRow(view.made.row_of(number) or 0)
    demo_gui.qtbot.keyClick(view.made_table, Qt.Key.Key_Return)
    demo_gui.wait(lambda: len(application.window.findChildren(SlipDialog)) == 2, "its slip again")
    screenshot(application.window, "deposits-made")  # type: ignore[attr-defined]


def test_an_auditor_does_not_see_deposits(demo_gui: Gui) -> None:
    application = demo_gui.start("auditor")
    assert "Deposits" not in application.window.views
