"""The status bar's integrity badge: verified up to the chain's head on a clean database,
updated after a write; "not yet sealed" while entries wait for the sealer; red with the findings
listed after someone changed an audit entry behind the application's back."""

from __future__ import annotations

from collections.abc import Callable

from billing_desk.db.live_updates import install_live_updates
from billing_desk.services.facilities import NewFacility, add_facility
from billing_desk.services.unit_of_work import Workspace
from billing_desk.services.users import add_user
from billing_desk.ui.operations import changes
from billing_desk.ui.statusbar import FindingsDialog
from billing_desk.ui.views.audit import AuditView
from tests.conftest import Database
from tests.tamper import tampering
from tests.ui.conftest import Gui, screenshot


def test_a_clean_database_is_verified_and_the_badge_follows_new_entries(demo_gui: Gui) -> None:
    application = demo_gui.start("manager")
    badge = application.window.status.badge
    demo_gui.wait(lambda: badge.result is not None, "the first check")
    first = badge.result
    assert first is not None and first.ok and first.unsealed.count == 0
    assert badge.text().startswith(f"Verified up to entry {first.sequence:,}")
    desk = application.desk
    assert desk is not None
    desk.change(
        application.window,
        lambda ws: add_facility(ws, NewFacility("NEWFAC", "New Facility")),
        None,
        changes("facilities"),
    )
    demo_gui.wait(
        lambda: badge.result is not None and badge.result.sequence > first.sequence,
        "the badge to check the new entries",
    )
    assert badge.text().startswith("Verified up to entry")
    screenshot(application.window.status, "status-bar-verified")


def test_entries_waiting_for_the_sealer_are_shown(
    gui: Gui, fresh_database: Callable[[str], Database]
) -> None:
    database = fresh_database("postgresql")
    # The test server's login is `postgres`: on PostgreSQL you are the login you connect as.
    setup = database.workspace(None)
    add_user(setup, "postgres", "admin")
    # The live feed sets its trigger up on a database that lacks it, and that write would seal
    # the waiting entry before the badge's first check: set it up beforehand, as `admin init` does.
    with setup.engine.begin() as connection:
        install_live_updates(connection)
    # A write whose seal after commit does not happen (a sealer that lost its connection).
    unsealed: Workspace = database.workspace(None)
    unsealed._seal_after_commit = lambda: None  # type: ignore[method-assign]
    add_facility(unsealed, NewFacility("WAITING", "Waiting Care Home"))
    application = gui.start(db=database.url)
    badge = application.window.status.badge
    gui.wait(lambda: badge.result is not None or "not checked" in badge.text(), "the first check")
    assert badge.result is not None, badge.toolTip()
    assert badge.result.ok
    assert badge.result.unsealed.count >= 1
    assert "not yet sealed" in badge.text()
    # Starting the window wrote nothing that could have sealed it.
    assert badge.result.sequence == 1


def test_a_changed_audit_entry_turns_the_badge_red_with_its_findings(demo_gui: Gui) -> None:
    with tampering("sqlite", demo_gui.db) as t:
        t.unlock()
        entry = t.entry_at(5)
        t.set_entry(entry.id, {"user_name": "mallory"})
    application = demo_gui.start("auditor")
    badge = application.window.status.badge
    demo_gui.wait(lambda: badge.result is not None, "the check")
    result = badge.result
    assert result is not None and not result.ok
    assert badge.text().startswith("Integrity problem:")
    assert badge.font().bold()
    assert any("sequence 5" in f.entity for f in result.findings)
    # A click lists the findings in the Audit view, where each opens what it names.
    badge.click()
    audit = application.window.current_view()
    assert isinstance(audit, AuditView)
    findings = audit.findings.list
    listed = [findings.item(i).text() for i in range(findings.count())]
    assert any(line.startswith("Entry altered — sequence 5") for line in listed), listed
    screenshot(audit.tabs, "integrity-findings")
    screenshot(application.window.status, "status-bar-problem")
    # A person with no Audit view (none has none today) gets the findings in a dialog.
    dialog = FindingsDialog(result, application.window)
    dialog_listed = [dialog.findings.item(i).text() for i in range(dialog.findings.count())]
    assert any("entry altered" in line and "sequence 5" in line for line in dialog_listed)
