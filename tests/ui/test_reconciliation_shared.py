"""The Reconciliation view of a clerk on a shared database whose bank line another facility's
clerk matched: the line reads as taken by another facility's payment, offers no candidates and
no Unmatch, and the clerk's own line is matched as usual."""

from __future__ import annotations

from collections.abc import Callable

from billing_desk.ui.views.reconciliation import ReconciliationView
from tests.security.conftest import SharedDatabase
from tests.security.test_matching_across_facilities import a_matched_b_waiting
from tests.ui.conftest import Gui, screenshot


def test_a_line_another_facility_matched_is_shown_taken_and_left_alone(
    gui: Gui, shared: SharedDatabase, log_in: Callable[[str], str]
) -> None:
    _payments, lines = a_matched_b_waiting(shared)
    application = gui.start(db=log_in("clerk_b"))
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    gui.wait(lambda: view.lines.rowCount() == 2, "the lines left to match")
    assert lines["ACH-A"] not in {r.id for r in view.lines.rows}
    view.which.setCurrentIndex(view.which.findData("all"))
    gui.wait(lambda: view.lines.rowCount() == 3, "every line")
    taken = next(r for r in view.lines.rows if r.id == lines["ACH-A"])
    assert taken.matched_elsewhere
    view.lines_table.selectRow(view.lines.row_of(taken.id) or 0)
    gui.wait(lambda: "another facility's" in view.difference.text(), "the line's words")
    gui.idle(application)
    assert view.difference.text() == (
        f"Line {taken.id} is matched to another facility's payment or slip; "
        "someone who works for it unmatches it if it is wrong."
    )
    assert view.found.rowCount() == 0, "no candidates for a line that is taken"
    assert not view.unmatch_button.isEnabled()
    screenshot(application.window, "reconciliation-shared-taken-line")
    # The clerk's own line is matched as usual, by the rules.
    view.auto_button.click()
    gui.wait(lambda: "Auto-match matched" in view.message_bar.text.text(), "auto-match")
    gui.wait(
        lambda: any(r.id == lines["ACH-B"] and r.payment_id for r in view.lines.rows),
        "B's line matched",
    )
