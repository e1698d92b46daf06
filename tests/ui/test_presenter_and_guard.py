"""Failures through the one error presenter, and the guard that keeps the database off the GUI
thread: a refusal next to its field with what was typed kept; a database that cannot be reached
with Retry, which works once it can; a bug logged with its traceback and a short apology, the
window still working; and a unit of work opened on the GUI thread refused before it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql
from PySide6.QtCore import Qt

from billing_desk.services.facilities import list_facilities
from billing_desk.services.users import add_user
from billing_desk.ui.desk import GuiThreadUnit
from billing_desk.ui.operations import Operation
from billing_desk.ui.views.facilities import FacilitiesView, FacilityDialog
from tests.conftest import pg_admin_connection, pg_url
from tests.ui.conftest import Guards, Gui, screenshot


def test_a_refusal_is_shown_at_its_field_and_what_was_typed_stays(demo_gui: Gui) -> None:
    application = demo_gui.start("manager")
    view = application.window.show_view("Facilities")
    assert isinstance(view, FacilitiesView)
    view.add_action.trigger()
    dialog = application.window.findChildren(FacilityDialog)[-1]
    demo_gui.qtbot.keyClicks(dialog.code, "stmary")
    demo_gui.qtbot.keyClicks(dialog.name, "A second St. Mary's")
    demo_gui.qtbot.keyClick(dialog.name, Qt.Key.Key_Return)
    error = dialog.form.errors["code"]
    demo_gui.wait(lambda: error.isVisible(), "the refusal under the code")
    assert error.text() == "A facility with code STMARY already exists; choose another code."
    assert dialog.code.text() == "stmary" and dialog.name.text() == "A second St. Mary's"
    assert dialog.isVisible() and dialog.save_button.isEnabled()
    screenshot(dialog, "facility-refused")
    dialog.code.clear()
    demo_gui.qtbot.keyClicks(dialog.code, "stmary2")
    demo_gui.qtbot.keyClick(dialog.code, Qt.Key.Key_Return)
    demo_gui.wait(lambda: "STMARY2" in view.message_bar.text.text(), "the facility added")
    assert not dialog.isVisible()


def test_an_unreachable_database_offers_retry_which_works_once_it_is_there(gui: Gui) -> None:
    name = f"bd_later_{Path(gui.folder).name[-8:].lower()}"
    url = pg_url(name)
    application = gui.start()
    application.open(url)
    bar = application.window.message_bar
    gui.wait(lambda: bar.isVisible() and bar.button("Retry") is not None, "the refusal")
    assert f"There is no database {name}" in bar.text.text()
    assert "could not be opened" in application.window.opening.text()
    screenshot(application.window, "database-unreachable", schemes=False)
    with pg_admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        retry = bar.button("Retry")
        assert retry is not None
        gui.qtbot.mouseClick(retry, Qt.MouseButton.LeftButton)
        gui.wait(
            lambda: application.desk is not None and application.desk.is_shared,
            "the database after Retry",
        )
        gui.idle(application)
    finally:
        gui.stop(application)
        with pg_admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.mark.expects_bug
def test_a_bug_is_logged_with_its_traceback_and_the_window_goes_on(
    demo_gui: Gui, gui_guards: Guards
) -> None:
    application = demo_gui.start("clerk")
    desk = application.desk
    assert desk is not None
    view = application.window.show_view("Invoices")
    assert view is not None

    def broken(_: object) -> None:
        raise ZeroDivisionError("a bug in a view")

    desk.run(Operation(view, lambda ws: 1 // 0, success=broken))
    demo_gui.wait(lambda: bool(gui_guards.bugs), "the bug")
    assert isinstance(gui_guards.bugs[0], ZeroDivisionError)
    text = view.message_bar.text.text()
    assert text.startswith("Sorry: billing-desk hit an internal error")
    log_file = desk.presenter.log_file
    assert str(log_file) in text
    logged = log_file.read_text(encoding="utf-8")
    assert "ZeroDivisionError" in logged and "Traceback" in logged
    screenshot(application.window, "bug-apology", schemes=False)
    # The window is still working.
    found: list[object] = []
    desk.query(view, list_facilities, found.append)
    demo_gui.wait(lambda: bool(found), "a query after the bug")
    gui_guards.bugs.clear()


def test_a_unit_of_work_on_the_gui_thread_is_refused(demo_gui: Gui, gui_guards: Guards) -> None:
    application = demo_gui.start("admin")
    desk = application.desk
    assert desk is not None
    with pytest.raises(GuiThreadUnit, match="GUI thread"):
        add_user(desk.workspace, "sneaky", "clerk")
    # Refused before it ran (the failure log's own unit after it was refused too).
    assert gui_guards.opened_on_gui_thread
    gui_guards.opened_on_gui_thread.clear()
    # The same call as a background operation is fine.
    done: list[object] = []
    desk.run(Operation(None, lambda ws: add_user(ws, "patient", "clerk"), success=done.append))
    demo_gui.wait(lambda: bool(done), "the background write")
