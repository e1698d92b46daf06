"""Checkpoints in the window: a manager on a machine without an OS keyring (keyring's fail
backend, as on a headless Linux) is told so and signs the chain's head with their key file,
saving the note where they choose; after more history is written, an auditor holds a copy taken
before the checkpoint to that note, with a key they chose to trust in their own settings, and the
rollback is found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from billing_desk.services.archive import export_archive
from billing_desk.services.checkpoints import generate_key, register_key
from billing_desk.services.facilities import NewFacility, add_facility
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.app import Application
from billing_desk.ui.views.audit import AuditView
from billing_desk.ui.views.checkpoints import TRUSTED_KEYS_SETTING
from tests.keyring_backend import MemoryKeyring
from tests.ui.conftest import Gui, screenshot


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def _audit(gui: Gui, application: Application) -> AuditView:
    view = application.window.show_view("Audit")
    assert isinstance(view, AuditView)
    gui.wait(lambda: view.model.rowCount() > 0, "the first page")
    gui.idle(application)
    return view


def _keys(gui: Gui, widget: object, key: Qt.Key) -> None:
    window = application_window = widget.window()  # type: ignore[attr-defined]
    application_window.activateWindow()
    gui.wait(lambda: QApplication.activeWindow() is window, "the window active")
    gui.qtbot.keyClick(  # type: ignore[attr-defined]
        widget, key, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )


def test_sign_then_a_copy_from_before_is_caught_rolling_back(
    demo_gui: Gui, no_keyring: None
) -> None:
    folder = demo_gui.folder
    key_file = folder / "manager.key"
    made = generate_key("manager-key", key_file=key_file)
    # The copy from before: an archive, which opens read-only (a plain copy of the file would
    # be written to when opened, and then differ from the checkpoint as a fork, not a rollback).
    older = folder / "older-copy.sqlite3"
    manager = open_workspace(demo_gui.db, "manager", migrate=False)
    try:
        register_key(manager, made.vkey)
        export_archive(manager, older)
    finally:
        manager.close()

    application = demo_gui.start("manager")
    view = _audit(demo_gui, application)
    assert view.sign_action.isVisible()
    _keys(demo_gui, view.table, Qt.Key.Key_K)
    dialog = view.sign_dialog
    demo_gui.wait(lambda: dialog.keyring_ready, "the keyring looked for")
    assert not dialog.use_keyring.isEnabled() and dialog.use_file.isChecked()
    assert "No OS keyring is available" in dialog.keyring_state.text()
    note = folder / "notes" / "before-more-history.note"
    note.parent.mkdir()
    qtbot = demo_gui.qtbot
    qtbot.keyClicks(dialog.key_file, str(key_file))  # type: ignore[attr-defined]
    dialog.note_file.clear()
    qtbot.keyClicks(dialog.note_file, str(note))  # type: ignore[attr-defined]
    screenshot(dialog, "checkpoint-sign")
    qtbot.mouseClick(dialog.sign_button, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    demo_gui.wait(lambda: "Checkpoint signed" in view.message_bar.text.text(), "the signature")
    assert note.read_text(encoding="utf-8").startswith("billing-desk/")
    assert str(note) in view.message_bar.text.text()
    demo_gui.stop(application)

    # More history after the checkpoint.
    later = open_workspace(demo_gui.db, "manager", migrate=False)
    try:
        add_facility(later, NewFacility("LATER", "Later Care Home"))
    finally:
        later.close()

    # The auditor, on the copy from before, holds it to the note with a key of their choosing.
    auditor = demo_gui.start("auditor", db=str(older))
    audit = _audit(demo_gui, auditor)
    assert not audit.sign_action.isVisible()
    _keys(demo_gui, audit.table, Qt.Key.Key_P)
    checkpoints = audit.checkpoints_dialog
    assert checkpoints.keys.count() == 0  # nothing trusted yet, nothing taken from the database
    qtbot.keyClicks(checkpoints.new_key, made.vkey)  # type: ignore[attr-defined]
    qtbot.keyClick(checkpoints.new_key, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    assert checkpoints.keys.count() == 1
    assert auditor.window.settings.value(TRUSTED_KEYS_SETTING) == [made.vkey]
    add = next(
        b
        for b in checkpoints.findChildren(type(checkpoints.verify_button))
        if b.text() == "Add &notes…"
    )
    qtbot.mouseClick(add, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    chooser = checkpoints.findChildren(QFileDialog, "chooseFile")[-1]
    chooser.setDirectory(str(note.parent))
    chooser.selectFile(str(note))
    chooser.accept()
    assert checkpoints.note_paths() == [note]
    screenshot(checkpoints, "checkpoint-verify")
    qtbot.mouseClick(checkpoints.verify_button, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    demo_gui.wait(lambda: audit.report is not None, "the verification")
    report = audit.report
    assert report is not None and not report.ok
    assert report.checkpoints_checked == 1
    kinds = {(f.kind, f.entity) for f in report.findings}
    assert kinds == {("chain behind checkpoint", f"checkpoint {note.name}")}, report.findings
    listed = audit.findings.list.item(0).text()
    assert "rollback" in listed and "older copy" in listed
    demo_gui.idle(auditor)
    screenshot(auditor.window, "checkpoint-rollback-found")


def test_a_key_in_the_keyring_signs_and_the_live_database_holds(demo_gui: Gui) -> None:
    memory = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(memory)
    try:
        made = generate_key("manager-key")
        manager = open_workspace(demo_gui.db, "manager", migrate=False)
        try:
            register_key(manager, made.vkey)
        finally:
            manager.close()
        application = demo_gui.start("manager")
        view = _audit(demo_gui, application)
        view.sign_action.trigger()
        dialog = view.sign_dialog
        demo_gui.wait(lambda: dialog.keyring_ready and dialog.key_name.count() == 1, "the keys")
        assert dialog.use_keyring.isEnabled() and dialog.use_keyring.isChecked()
        assert dialog.key_name.currentText() == "manager-key"
        note = Path(demo_gui.folder) / "today.note"
        dialog.note_file.setText(str(note))
        dialog.sign_button.click()
        demo_gui.wait(lambda: note.exists(), "the note")
        demo_gui.idle(application)
        # Held to its own checkpoint, the live database is intact.
        application.window.settings.setValue(TRUSTED_KEYS_SETTING, [made.vkey])
        view.notes = [note]
        view.verify()
        demo_gui.wait(lambda: view.report is not None, "the verification")
        assert view.report is not None and view.report.ok, view.report.findings
        assert view.report.checkpoints_checked == 1
    finally:
        keyring.set_keyring(previous)
