"""Every item model of the application passes Qt's model tester with real data in it, and every
view and dialog is photographed in the light and the dark scheme (tests/ui/screenshots) for a
person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.modeltest import ModelTester

from billing_desk.domain.periods import Period
from billing_desk.ui.login import PersonDialog
from billing_desk.ui.models import RowsModel
from billing_desk.ui.views.facilities import FacilityDialog
from billing_desk.ui.views.invoices import InvoicesView, RunInvoicesDialog
from billing_desk.ui.views.payments import PaymentsView
from billing_desk.ui.views.people import PersonDialog as AddPersonDialog
from billing_desk.ui.views.trips import TripImportDialog, TripsView
from tests.ui.conftest import Gui, screenshot
from tests.ui.test_trips_view import TRIPS


class ModelCheck:
    """pytest-qt's model tester, run on a model and then let go of it (the windows of this test
    are closed one after another, and their models with them)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def check(self, model: RowsModel[object], force_py: bool = True) -> None:
        tester = ModelTester(self.config)
        tester.check(model, force_py=force_py)
        tester._cleanup()


def _models(widget: object) -> list[RowsModel[object]]:
    return [m for m in widget.findChildren(RowsModel)]  # type: ignore[attr-defined]


def test_every_model_passes_the_model_tester_and_every_view_is_photographed(
    demo_gui: Gui, pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    qtmodeltester = ModelCheck(pytestconfig)
    application = demo_gui.start("admin")
    window = application.window
    for title, view in window.views.items():
        window.show_view(title)
        demo_gui.idle(application)
        if isinstance(view, (InvoicesView, PaymentsView)):
            view.table.selectRow(0)
            demo_gui.idle(application)
        screenshot(window, f"view-{title.lower()}")
    for model in _models(window):
        qtmodeltester.check(model, force_py=True)
    # The models sort by their own keys, and the tester holds after sorting too.
    invoices = window.views["Invoices"]
    assert isinstance(invoices, InvoicesView)
    titles = [
        invoices.model.headerData(c, Qt.Orientation.Horizontal)
        for c in range(invoices.model.columnCount())
    ]
    invoices.table.sortByColumn(titles.index("Total"), Qt.SortOrder.DescendingOrder)
    totals = [r.total.minor for r in invoices.model.rows if r.total.currency == "USD"]
    assert totals == sorted(totals, reverse=True)
    qtmodeltester.check(invoices.model)
    demo_gui.stop(application)

    # The dialogs, each with its own model where it has one.
    clerk = demo_gui.start("clerk")
    window = clerk.window
    deposits = window.show_view("Deposits")
    demo_gui.idle(clerk)
    screenshot(window, "view-deposits")
    for model in _models(deposits):
        qtmodeltester.check(model, force_py=True)
    invoices = window.show_view("Invoices")
    assert isinstance(invoices, InvoicesView)
    demo_gui.idle(clerk)
    invoices.run_action.trigger()
    run = window.findChildren(RunInvoicesDialog)[-1]
    # The view may not have its facility list yet (it refreshes on the next turn of the event
    # loop); the dialog then fetches its own.
    demo_gui.wait(lambda: run.facility.findData("OAKVIEW") >= 0, "the facilities")
    run.facility.set_code("OAKVIEW")
    run.month.set_period(Period(2026, 5))
    run.preview()
    demo_gui.wait(lambda: run.trips.rowCount() > 0, "the preview")
    qtmodeltester.check(run.trips)
    run.reject()
    trips = window.show_view("Trips")
    assert isinstance(trips, TripsView)
    path = tmp_path / "trips.csv"
    path.write_text(TRIPS, encoding="utf-8")
    dialog = trips.import_file(path)
    demo_gui.wait(lambda: dialog.rows.rowCount() == 5, "the import preview")
    qtmodeltester.check(dialog.rows)
    dialog.reject()
    assert isinstance(dialog, TripImportDialog)
    demo_gui.stop(clerk)

    manager = demo_gui.start("manager")
    facilities = manager.window.show_view("Facilities")
    assert facilities is not None
    demo_gui.idle(manager)
    facilities.table.selectRow(0)  # type: ignore[attr-defined]
    facilities.edit()  # type: ignore[attr-defined]
    edit = manager.window.findChildren(FacilityDialog)[-1]
    screenshot(edit, "facility-edit")
    edit.reject()
    demo_gui.stop(manager)

    admin = demo_gui.start("admin")
    people = admin.window.show_view("People")
    assert people is not None
    demo_gui.idle(admin)
    people.add()  # type: ignore[attr-defined]
    add = admin.window.findChildren(AddPersonDialog)[-1]
    screenshot(add, "person-add")
    add.reject()
    chooser = PersonDialog(
        [r for r in people.model.rows],  # type: ignore[attr-defined]
        "admin",
        admin.window,
    )
    screenshot(chooser, "working-as")
    chooser.reject()
