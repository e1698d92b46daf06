"""Verify in the Audit view as an auditor uses it: the whole history checked in the background
with progress and Cancel; findings listed, each in a sentence, each opening what it names (the
payment whose amount was changed, the place in the chain where an entry was deleted); the status
bar's badge follows the result."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton
from sqlalchemy import select

from billing_desk.db.models import AuditEntry, AuditLink
from billing_desk.services import verification
from billing_desk.services.audit import audit_log
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.app import Application
from billing_desk.ui.views.audit import AuditView
from billing_desk.ui.views.payments import PaymentsView
from tests.tamper import tampering
from tests.ui.conftest import Gui, screenshot, wait_for_trail


def _audit(gui: Gui, person: str = "auditor") -> tuple[Application, AuditView]:
    application = gui.start(person)
    view = application.window.show_view("Audit")
    assert isinstance(view, AuditView)
    gui.wait(lambda: view.model.rowCount() > 0, "the first page")
    gui.idle(application)
    return application, view


def _verify_with_keys(gui: Gui, application: Application, view: AuditView) -> None:
    before = view.report
    gui.qtbot.keyClick(  # type: ignore[attr-defined]
        view.table,
        Qt.Key.Key_V,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    gui.wait(lambda: view.report is not None and view.report is not before, "the verification")
    gui.idle(application)


def test_a_clean_database_verifies_intact(demo_gui: Gui) -> None:
    application, view = _audit(demo_gui)
    _verify_with_keys(demo_gui, application, view)
    report = view.report
    assert report is not None and report.ok, report
    assert report.entries_checked > 1000 and report.payments_checked > 0
    assert view.findings.list.count() == 0
    assert view.tabs.currentWidget() is view.findings
    assert view.findings.summary.text().startswith("Intact")
    badge = application.window.status.badge
    demo_gui.wait(lambda: badge.text().startswith("Verified up to entry"), "the badge")
    assert badge.result is not None and badge.result.ok
    # The run is audited (once, and not on the GUI thread).
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        assert any(e.action == "audit.verify" for e in audit_log(reader, action="audit.verify"))
    finally:
        reader.close()
    screenshot(application.window, "audit-verify-intact")


def test_cancel_stops_the_verification_and_records_nothing(
    demo_gui: Gui, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The verification waits at its first progress report until Cancel has been pressed, so
    # the test does not race it.
    pressed = threading.Event()
    real = verification.verify

    def held(workspace, checkpoints=(), *, progress=None):  # type: ignore[no-untyped-def]
        def waiting(done: int, total: int, text: str = "") -> None:
            pressed.wait(10)
            assert progress is not None
            progress(done, total, text)

        return real(workspace, checkpoints, progress=waiting)

    monkeypatch.setattr("billing_desk.ui.views.audit.verify", held)
    application, view = _audit(demo_gui)
    view.verify_action.trigger()
    operation = view._verifying
    assert operation is not None and operation.dialog is not None
    assert operation.dialog.labelText() == "Verifying the audit trail"
    cancel = operation.dialog.findChild(QPushButton)
    assert cancel is not None and cancel.text() == "Cancel"
    demo_gui.qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    pressed.set()
    demo_gui.wait(lambda: "cancelled" in view.findings.summary.text(), "the cancellation")
    demo_gui.idle(application)
    assert view.report is None
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        assert audit_log(reader, action="audit.verify") == []
    finally:
        reader.close()


def test_a_changed_payment_amount_is_found_and_opens_the_payment(demo_gui: Gui) -> None:
    with tampering("sqlite", demo_gui.db) as t:
        payment = int(t.scalar("SELECT max(id) FROM payment"))
        t.sql("UPDATE payment SET amount_minor = amount_minor + 10000 WHERE id = :id", id=payment)
    application, view = _audit(demo_gui)
    _verify_with_keys(demo_gui, application, view)
    report = view.report
    assert report is not None and not report.ok
    named = {(f.kind, f.entity) for f in report.findings}
    assert named == {
        ("payment hash mismatch", f"payment {payment}"),
        ("row differs from its audit trail", f"payment {payment}"),
    }
    listed = [view.findings.list.item(i).text() for i in range(view.findings.list.count())]
    assert any(
        line.startswith(f"Payment hash mismatch — payment {payment}\n")
        and "changed outside" in line
        for line in listed
    ), listed
    badge = application.window.status.badge
    assert badge.text().startswith("Integrity problem: ")
    screenshot(application.window, "audit-verify-findings")

    # Enter on the hash mismatch opens the payment in the register.
    row = next(i for i, line in enumerate(listed) if line.startswith("Payment hash mismatch"))
    view.findings.list.setCurrentRow(row)
    view.findings.list.setFocus()
    demo_gui.qtbot.keyClick(view.findings.list, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    payments = application.window.current_view()
    assert isinstance(payments, PaymentsView)

    def selected() -> int | None:
        indexes = payments.table.selectionModel().selectedRows()
        return payments.model.rows[indexes[0].row()].payment_id if indexes else None

    demo_gui.wait(lambda: selected() == payment, "the payment selected in the register")

    # The other finding names the same row: a double click opens it too, and History there
    # shows the trail it no longer agrees with.
    payments.table.clearSelection()
    application.window.show_view("Audit")
    other = next(i for i, line in enumerate(listed) if line.startswith("Row differs"))
    item = view.findings.list.item(other)
    view.findings.list.scrollToItem(item)
    rect = view.findings.list.visualItemRect(item)
    # As a mouse does it: a click, then the second press that makes it a double click.
    for click in (demo_gui.qtbot.mouseClick, demo_gui.qtbot.mouseDClick):  # type: ignore[attr-defined]
        click(view.findings.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    demo_gui.wait(
        lambda: application.window.current_view() is payments and selected() == payment,
        "the payment again",
    )
    payments.history_action.trigger()
    assert wait_for_trail(demo_gui, application, "payment", payment) is view
    # A write elsewhere does not turn the badge green while the payment stays changed.
    badge.check()
    demo_gui.idle(application)
    assert badge.text().startswith("Integrity problem: ")


def test_a_deleted_audit_entry_is_found_and_opens_where_it_was(demo_gui: Gui) -> None:
    with tampering("sqlite", demo_gui.db) as t:
        t.unlock()  # the append-only triggers first, as an attacker with the file would
        gone = t.entry_at(40)
        before = t.entry_at(39)
        gone_id, before_id = gone.id, before.id
        t.sql("DELETE FROM audit_entry WHERE id = :id", id=gone_id)
    application, view = _audit(demo_gui)
    _verify_with_keys(demo_gui, application, view)
    report = view.report
    assert report is not None and not report.ok
    assert report.first_broken_sequence == 40
    missing = [f for f in report.findings if f.kind == "entry missing"]
    assert [(f.entity, f.sequence, f.entry_id) for f in missing] == [("sequence 40", 40, gone_id)]
    assert f"audit entry {gone_id} was deleted" in missing[0].detail
    listed = [view.findings.list.item(i).text() for i in range(view.findings.list.count())]
    line = next(i for i, text in enumerate(listed) if text.startswith("Entry missing"))
    assert "deleted from the database" in listed[line]

    view.findings.list.setCurrentRow(line)
    view.findings.list.setFocus()
    demo_gui.qtbot.keyClick(view.findings.list, Qt.Key.Key_Return)  # type: ignore[attr-defined]

    def selected() -> int | None:
        indexes = view.table.selectionModel().selectedRows()
        return view.model.rows[indexes[0].row()].entry_id if indexes else None

    # Where it was: the entry sealed just before it, among its neighbours, with a note.
    demo_gui.wait(lambda: selected() == before_id, "the entry before the deleted one")
    assert view.model.row_of(gone_id) is None
    assert "sequence 40" in view.message_bar.text.text() and "gone" in view.message_bar.text.text()
    # Newer entries above (fetched as the list scrolls up); the log starts 39 entries below.
    assert view.model.more_before and view.model.exhausted
    demo_gui.wait(
        lambda: getattr(view, "shown", None) is not None and view.shown.row.entry_id == before_id,
        "its detail",
    )
    assert view.tabs.currentWidget() is view.detail
    screenshot(application.window, "audit-verify-deleted-entry")
    badge = application.window.status.badge
    assert badge.text().startswith("Integrity problem: entry missing at sequence 40")


def test_go_to_sequence_and_the_ends_of_the_list(demo_gui: Gui) -> None:
    application, view = _audit(demo_gui)
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:

        def entry_at(sequence: int) -> int:
            return int(
                reader.read(
                    lambda unit: unit.session.scalar(
                        select(AuditEntry.id)
                        .join(AuditLink, AuditLink.entry_id == AuditEntry.id)
                        .where(AuditLink.sequence == sequence)
                    )
                )
            )

        wanted = entry_at(1234)
        first = entry_at(1)
    finally:
        reader.close()

    def selected() -> int | None:
        indexes = view.table.selectionModel().selectedRows()
        return view.model.rows[indexes[0].row()].entry_id if indexes else None

    qtbot = demo_gui.qtbot
    qtbot.keyClick(view.table, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)  # type: ignore[attr-defined]
    assert view.sequence.hasFocus()
    qtbot.keyClicks(view.sequence, "1234")  # type: ignore[attr-defined]
    qtbot.keyClick(view.sequence, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    demo_gui.wait(lambda: selected() == wanted, "sequence 1234")
    assert view.model.more_before and len(view.model.rows) < 400
    screenshot(application.window, "audit-go-to-sequence")
    ids = [r.entry_id for r in view.model.rows]
    assert ids == sorted(ids, reverse=True)

    # Scrolling up from there fetches the page before, keeping the order.
    count = view.model.rowCount()
    view.table.scrollToTop()
    demo_gui.wait(lambda: view.model.rowCount() > count, "the page before")
    ids = [r.entry_id for r in view.model.rows]
    assert ids == sorted(set(ids), reverse=True)

    # The first entry of the log, at the end of a newest-first list.
    qtbot.keyClick(  # type: ignore[attr-defined]
        view.table,
        Qt.Key.Key_Home,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    demo_gui.wait(lambda: selected() == first, "the first entry")
    assert view.model.rows[-1].entry_id == first and view.model.exhausted
    qtbot.keyClick(  # type: ignore[attr-defined]
        view.table,
        Qt.Key.Key_End,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    demo_gui.wait(lambda: not view.model.more_before and selected() is not None, "the last")
    assert selected() == view.model.rows[0].entry_id

    # A sequence the chain never reached is refused in words.
    view.sequence.clear()
    qtbot.keyClicks(view.sequence, "99999999")  # type: ignore[attr-defined]
    qtbot.keyClick(view.sequence, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    demo_gui.wait(lambda: "there is no sequence" in view.message_bar.text.text(), "the refusal")
