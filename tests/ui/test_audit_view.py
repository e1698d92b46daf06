"""The Audit view as an auditor and a manager use it: the list fetches keyset pages as it is
scrolled (never the whole log), a filter starts a new first page, an entry shows exactly the
fields that changed, and History on a payment opens its trail."""

from __future__ import annotations

import uuid

import pytest
from PySide6.QtCore import Qt
from pytestqt.modeltest import ModelTester

from billing_desk.services import audit_browser
from billing_desk.services.audit_browser import PAGE_SIZE, AuditFilter, audit_entry
from billing_desk.services.payments import change_status, list_payments
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.views.audit import AuditView
from billing_desk.ui.views.deposits import DepositsView
from billing_desk.ui.views.payments import PaymentsView
from tests.ui.conftest import Gui, screenshot, wait_for_trail


def _audit(gui: Gui, person: str) -> tuple[object, AuditView]:
    application = gui.start(person)
    view = application.window.show_view("Audit")
    assert isinstance(view, AuditView)
    gui.wait(lambda: view.model.rowCount() > 0, "the first page")
    gui.idle(application)
    return application, view


def test_pages_are_fetched_as_the_list_scrolls(
    demo_gui: Gui, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages: list[tuple[AuditFilter, int | None]] = []
    real_page = audit_browser.audit_page

    def counted(workspace, wanted, *, after=None, newest_first=True, limit=PAGE_SIZE):  # type: ignore[no-untyped-def]
        pages.append((wanted, after))
        return real_page(workspace, wanted, after=after, newest_first=newest_first, limit=limit)

    monkeypatch.setattr("billing_desk.ui.views.audit.audit_page", counted)
    application, view = _audit(demo_gui, "auditor")
    # Thousands of entries in the demo; one page read, and the newest first.
    assert view.model.rowCount() == PAGE_SIZE and len(pages) == 1
    ids = [r.entry_id for r in view.model.rows]
    assert ids == sorted(ids, reverse=True)
    tester = ModelTester(pytestconfig)
    tester.check(view.model, force_py=True)
    tester._cleanup()
    # Scrolling to the end asks for exactly one more page, continuing after the last one.
    view.table.scrollToBottom()
    demo_gui.wait(lambda: view.model.rowCount() == 2 * PAGE_SIZE, "the second page")
    assert len(pages) == 2 and pages[1][1] == ids[-1]
    more = [r.entry_id for r in view.model.rows]
    assert more == sorted(set(more), reverse=True), "no entry twice, none skipped out of order"
    screenshot(application.window, "audit-browser")  # type: ignore[attr-defined]

    # A filter starts again from a first page of its own.
    view.entity_type.setFocus()
    demo_gui.qtbot.keyClicks(view.entity_type, "invoice")
    demo_gui.qtbot.keyClick(view.entity_type, Qt.Key.Key_Return)
    demo_gui.wait(
        lambda: (
            view.model.rowCount() > 0
            and view.model.exhausted
            and all(r.entity_type == "invoice" for r in view.model.rows)
        ),
        "only invoices",
    )
    assert pages[-1] == (AuditFilter(entity_type="invoice"), None)
    assert len(pages) == 3


def test_a_voided_payment_shows_exactly_what_changed(demo_gui: Gui) -> None:
    workspace = open_workspace(demo_gui.db, "manager", migrate=False)
    try:
        payment = next(
            p for p in list_payments(workspace) if p.status == "recorded" and p.method == "transfer"
        )
        change_status(
            workspace, payment.payment_id, "voided", "recorded twice by mistake", str(uuid.uuid4())
        )
    finally:
        workspace.close()
    application = demo_gui.start("auditor")
    payments = application.window.show_view("Payments")
    assert isinstance(payments, PaymentsView)
    demo_gui.wait(lambda: payments.model.rowCount() > 0, "payments")
    payments.table.selectRow(payments.model.row_of(payment.payment_id) or 0)
    payments.history_action.trigger()
    view = wait_for_trail(demo_gui, application, "payment", payment.payment_id)
    # The move writes the payment's row more than once (its status, then what follows from
    # it); the entry that changed the status is the one a reader looks for.
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        status_entry = next(
            r.entry_id
            for r in view.model.rows
            if r.action == "payment.transition"
            and "status" in {f.name for f in audit_entry(reader, r.entry_id).changed}
        )
    finally:
        reader.close()
    view.table.selectRow(view.model.row_of(status_entry) or 0)
    demo_gui.wait(
        lambda: (
            getattr(view, "shown", None) is not None and view.shown.row.entry_id == status_entry
        ),
        "the void's detail",
    )
    changed = {f.name for f in view.shown.changed}
    assert "status" in changed
    assert changed == {"status"}, changed
    status = next(f for f in view.shown.changed if f.name == "status")
    assert (status.before, status.after) == ("recorded", "voided")
    text = view.detail.toPlainText()
    assert "recorded" in text and "voided" in text and "Unchanged" in text
    assert "amount_minor" not in {f.name for f in view.shown.changed}
    assert "Everything this request did" in text
    screenshot(application.window, "audit-payment-void")


def test_history_of_a_deposit_opens_its_trail(demo_gui: Gui) -> None:
    application = demo_gui.start("clerk")
    deposits = application.window.show_view("Deposits")
    assert isinstance(deposits, DepositsView)
    demo_gui.wait(lambda: deposits.made.rowCount() > 0, "the deposits made")
    deposits.made_table.selectRow(0)
    chosen = deposits.made.row_at(deposits.made_table.selectionModel().selectedRows()[0].row())
    assert chosen is not None
    deposits.history_action.trigger()
    view = wait_for_trail(demo_gui, application, "deposit", chosen.deposit_id)
    assert view.entity_type.text() == "deposit"


def test_an_edited_invoice_shows_exactly_what_changed(demo_gui: Gui) -> None:
    """An invoice voided by a manager: its entry shows the fields the void wrote, before and
    after, and none of those it left alone (its lines, total, dates)."""
    from billing_desk.services.invoices import list_invoices, void_invoice
    from billing_desk.ui.views.invoices import InvoicesView

    manager = open_workspace(demo_gui.db, "manager", migrate=False)
    try:
        invoice = next(
            i for i in list_invoices(manager) if i.status == "issued" and not i.paid.minor
        )
        void_invoice(manager, invoice.number, "entered against the wrong facility")
    finally:
        manager.close()
    application = demo_gui.start("auditor")
    invoices = application.window.show_view("Invoices")
    assert isinstance(invoices, InvoicesView)
    invoices.open_invoice(invoice.number)
    demo_gui.wait(
        lambda: (
            (chosen := invoices.table.selectionModel().selectedRows()) != []
            and invoices.model.rows[chosen[0].row()].number == invoice.number
        ),
        "the invoice selected",
    )
    invoices.history_action.trigger()
    view = wait_for_trail(demo_gui, application, "invoice")
    assert any(r.action == "invoice.void" for r in view.model.rows)
    # The void writes the invoice's row more than once (its status, then its content hash);
    # the entry that changed the status is the one a reader looks for.
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        void = next(
            r
            for r in view.model.rows
            if r.action == "invoice.void"
            and "status" in {f.name for f in audit_entry(reader, r.entry_id).changed}
        )
    finally:
        reader.close()
    view.table.selectRow(view.model.row_of(void.entry_id) or 0)
    demo_gui.wait(
        lambda: (
            getattr(view, "shown", None) is not None and view.shown.row.entry_id == void.entry_id
        ),
        "the void's detail",
    )
    changed = {f.name: (f.before, f.after) for f in view.shown.changed}
    assert changed["status"][1] == "void"
    assert changed["void_reason"] == (None, "entered against the wrong facility")
    assert set(changed) <= {"status", "void_reason", "voided_by", "voided_at", "content_hash"}
    assert not {"total_minor", "issue_date", "due_date", "number"} & set(changed)
    text = view.detail.toPlainText()
    assert "entered against the wrong facility" in text and "Unchanged" in text
