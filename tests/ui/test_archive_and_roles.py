"""Who sees what: an auditor's archive opens read-only (the title says so, no editing action is
offered, and a write through any path is refused), and each role sees only its views and
actions."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction

from billing_desk.domain.errors import Refused
from billing_desk.domain.roles import Permission
from billing_desk.services.archive import export_archive
from billing_desk.services.facilities import NewFacility, add_facility
from billing_desk.services.invoices import void_invoice
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.operations import Operation, changes
from tests.ui.conftest import Gui, screenshot

# The actions of a view that only read: everything else edits.
READING_ACTIONS = {
    "Re&fresh",
    "&History",
    "&Clear the filters",
    "&Generate the report",
    "&Print…",
    "&Find…",
    "&Verify the audit trail",
    "&Go to sequence…",
    "Jump to the &first entry",
    "Jump to the &last entry",
    "Verify against &checkpoints…",
}


def _editing_actions(actions: list[QAction]) -> list[str]:
    return [a.text() for a in actions if a.text() not in READING_ACTIONS]


def test_an_archive_opens_read_only_and_refuses_every_write(demo_gui: Gui) -> None:
    archive = demo_gui.folder / "audit.archive.sqlite3"
    source = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        export_archive(source, archive)
    finally:
        source.close()

    application = demo_gui.start("auditor", db=str(archive))
    window, desk = application.window, application.desk
    assert desk is not None and desk.read_only
    assert "read-only" in window.windowTitle() and "archive" in window.windowTitle()
    assert "auditor's archive, read-only" in window.status.database.text()
    assert window.welcome is None
    # No editing action anywhere: each view offers only what reads.
    for view in window.views.values():
        window.show_view(view.title)
        offered = [a for a in view.menu_actions() if a.isVisible() and a.isEnabled()]
        assert _editing_actions(offered) == [], view.title
    assert not any(desk.may(p) for p in Permission if p is not Permission.READ)
    demo_gui.idle(application)
    screenshot(window, "archive-read-only")

    # A write attempted anyway, as a bug in a view would, is refused and writes nothing.
    refusals: list[BaseException] = []
    for work in (
        lambda ws: void_invoice(ws, "STMARY-000001", "attempt"),
        lambda ws: add_facility(ws, NewFacility("NEWONE", "New One")),
    ):
        desk.run(Operation(window, work, failure=refusals.append, changes=changes("invoices")))
    demo_gui.wait(lambda: len(refusals) == 2, "both writes to be refused")
    assert all(isinstance(r, Refused) and "read-only" in str(r) for r in refusals)


@pytest.mark.parametrize(
    ("person", "views", "actions"),
    [
        (
            "clerk",
            [
                "Payments",
                "Deposits",
                "Reconciliation",
                "Invoices",
                "Trips",
                "Alerts",
                "Audit",
                "Reports",
                "Health",
                "Facilities",
            ],
            {
                "Invoices": {"&Run invoices…", "Apply &credit…", "Receive a &payment…"},
                "Deposits": {"&Deposit the selected…"},
                "Reconciliation": {
                    "&Import a statement…",
                    "&Match the line",
                    "&Auto-match",
                    "Reconciliation &run…",
                },
                "Trips": {"&Import trips…"},
                "Facilities": {"Receive a &payment…"},
                "Alerts": set(),
            },
        ),
        (
            "manager",
            [
                "Payments",
                "Approvals",
                "Deposits",
                "Reconciliation",
                "Invoices",
                "Trips",
                "Alerts",
                "Audit",
                "Reports",
                "Health",
                "Facilities",
            ],
            {
                "Invoices": {
                    "&Run invoices…",
                    "&Void invoice…",
                    "Apply &credit…",
                    "Receive a &payment…",
                },
                "Facilities": {"&Add facility…", "&Edit facility…", "Receive a &payment…"},
                "Alerts": {"&Acknowledge…", "&Dismiss…"},
            },
        ),
        (
            "auditor",
            ["Payments", "Invoices", "Trips", "Alerts", "Audit", "Reports", "Health", "Facilities"],
            {"Invoices": set()},
        ),
        (
            "admin",
            [
                "Payments",
                "Invoices",
                "Trips",
                "Alerts",
                "Audit",
                "Reports",
                "Health",
                "Facilities",
                "People",
            ],
            {"People": {"&Add person…", "&Change role or turn off…"}, "Invoices": set()},
        ),
    ],
)
def test_each_role_sees_its_views_and_actions(
    demo_gui: Gui, person: str, views: list[str], actions: dict[str, set[str]]
) -> None:
    application = demo_gui.start(person)
    window = application.window
    assert list(window.views) == views
    for title, expected in actions.items():
        shown = {a.text() for a in window.views[title].menu_actions() if a.isVisible()}
        assert shown - READING_ACTIONS == expected, title
