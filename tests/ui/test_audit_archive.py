"""The auditor's archive from the window: a manager exports one from the Audit view with
progress, opens it, and the window says it is an archive, of which database and when; nothing
can be edited in it, and it verifies intact offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from billing_desk.services import archive as archive_service
from billing_desk.ui.views.audit import AuditView
from tests.ui.conftest import Gui, screenshot
from tests.ui.test_archive_and_roles import _editing_actions


def test_export_open_read_only_and_verify(demo_gui: Gui, monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[tuple[str, int, int]] = []
    real = archive_service.export_archive

    def watched(workspace, out, *, progress=None):  # type: ignore[no-untyped-def]
        def seen(table: str, done: int, total: int) -> None:
            reported.append((table, done, total))
            assert progress is not None
            progress(table, done, total)

        return real(workspace, out, progress=seen)

    monkeypatch.setattr("billing_desk.ui.views.audit.export_archive", watched)
    application = demo_gui.start("manager")
    window = application.window
    view = window.show_view("Audit")
    assert isinstance(view, AuditView)
    demo_gui.idle(application)
    assert view.export_action.isVisible()
    demo_gui.qtbot.keyClick(  # type: ignore[attr-defined]
        view.table,
        Qt.Key.Key_E,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    dialogs = window.findChildren(QFileDialog, "chooseFile")
    assert dialogs, "the export asks where the file goes"
    dialog = dialogs[-1]
    out = demo_gui.folder / "exported.sqlite3"
    dialog.selectFile(str(out))
    dialog.accept()
    demo_gui.wait(lambda: "Archive written" in view.message_bar.text.text(), "the export")
    assert out.exists()
    tables = {t for t, _, _ in reported}
    assert {"audit_entry", "payment", "invoice"} <= tables
    assert all(done <= total for _, done, total in reported)
    screenshot(window, "archive-exported")

    # Open it from the message, as the manager would.
    opener = view.message_bar.button("&Open it")
    assert opener is not None
    opener.click()
    demo_gui.wait(
        lambda: application.desk is not None and application.desk.read_only, "the archive"
    )
    demo_gui.wait(lambda: window.status.origin is not None, "where the archive comes from")
    title = window.windowTitle()
    assert title.startswith(f"Auditor's archive of {demo_gui.db} as of "), title
    assert "(read-only)" in title
    status = window.status.database.text()
    assert status.startswith(f"An auditor's archive, read-only, of {Path(demo_gui.db).name} as of ")
    assert "exported by manager" in status and status.endswith(f"— {out.name}"), status
    assert demo_gui.db in window.status.database.toolTip()
    # No editing action anywhere.
    for each in window.views.values():
        window.show_view(each.title)
        offered = [a for a in each.menu_actions() if a.isVisible() and a.isEnabled()]
        assert _editing_actions(offered) == [], each.title
    audit = window.show_view("Audit")
    assert isinstance(audit, AuditView)
    assert not audit.export_action.isVisible()
    demo_gui.wait(lambda: audit.model.rowCount() > 0, "the archive's entries")
    demo_gui.idle(application)
    # Verified offline, intact; nothing recorded in the archive.
    # The file dialog closed: the offscreen platform gives no window the focus back by itself.
    window.activateWindow()
    demo_gui.wait(lambda: QApplication.activeWindow() is window, "the window active")
    demo_gui.qtbot.keyClick(  # type: ignore[attr-defined]
        audit.table,
        Qt.Key.Key_V,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    demo_gui.wait(lambda: audit.report is not None, "the verification")
    assert audit.report is not None and audit.report.ok, audit.report.findings
    demo_gui.idle(application)
    screenshot(window, "archive-title")


def test_only_managers_and_auditors_export(demo_gui: Gui) -> None:
    for person, may in (("clerk", False), ("admin", False), ("auditor", True)):
        application = demo_gui.start(person)
        view = application.window.views["Audit"]
        assert isinstance(view, AuditView)
        assert view.export_action.isVisible() is may, person
        demo_gui.stop(application)


def test_a_file_that_exists_is_refused_in_words(demo_gui: Gui, tmp_path: Path) -> None:
    application = demo_gui.start("auditor")
    view = application.window.show_view("Audit")
    assert isinstance(view, AuditView)
    taken = tmp_path / "taken.sqlite3"
    taken.write_text("mine")
    view.export_archive(taken)
    demo_gui.wait(lambda: "already exists" in view.message_bar.text.text(), "the refusal")
    assert taken.read_text() == "mine"
