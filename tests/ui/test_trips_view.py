"""Importing trips from the window: a file with bad rows is previewed row by row (bad rows with
their line and reason), nothing is written until Import, and Import takes the good rows only
once the person chose to leave the bad ones out. Dropping the file on the view does the same."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from billing_desk.services.trips import list_trips
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.views.trips import TripImportDialog, TripsView
from tests.ui.conftest import Gui, screenshot

TRIPS = """trip_id,facility,client,client_id,service_date,pickup,dropoff,status,fare,billable
N1,STMARY,Ana Sousa,C1,2026-05-11,12 Oak Rd,General Hospital,completed,40.00,yes
N2,STMARY,José Núñez,C2,2026-05-12,3 Elm St,Dialysis Centre,completed,12.34,yes
N3,NOWHERE,Ana Sousa,C1,2026-05-13,12 Oak Rd,General Hospital,completed,40.00,yes
N4,STMARY,Ana Sousa,C1,2026-05-14,12 Oak Rd,General Hospital,completed,12.345,yes
N5,STMARY,Li Wei,C3,2026-05-15,9 Pine Ave,Eye Clinic,completed,33.00,yes
"""


def _trip_ids(gui: Gui) -> set[str]:
    workspace = open_workspace(gui.db, "auditor", migrate=False)
    try:
        return {t.external_trip_id for t in list_trips(workspace, facility="STMARY")}
    finally:
        workspace.close()


def test_a_file_with_bad_rows_is_previewed_and_nothing_is_written_until_import(
    demo_gui: Gui, tmp_path: Path
) -> None:
    path = tmp_path / "dispatch-may.csv"
    path.write_text(TRIPS, encoding="utf-8")
    before = _trip_ids(demo_gui)
    application = demo_gui.start("clerk")
    view = application.window.show_view("Trips")
    assert isinstance(view, TripsView)
    dialog = view.import_file(path)
    demo_gui.wait(lambda: dialog.rows.rowCount() == 5, "the preview")
    outcomes = {r.line: (r.outcome, r.reason or "") for r in dialog.rows.rows}
    assert outcomes[2][0] == outcomes[3][0] == outcomes[6][0] == "new"
    assert outcomes[4] == ("bad", "unknown facility 'NOWHERE'.")
    assert outcomes[5][0] == "bad" and "more decimal places" in outcomes[5][1]
    assert "2 rows cannot be imported; the first is line 4" in dialog.message_bar.text.text()
    assert not dialog.import_button.isEnabled(), "bad rows are never imported quietly"
    screenshot(dialog, "trip-import-preview")
    assert _trip_ids(demo_gui) == before, "the preview wrote nothing"

    dialog.skip_bad.setChecked(True)
    assert dialog.import_button.isEnabled() and dialog.import_button.text() == "&Import 3 rows"
    demo_gui.qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    demo_gui.qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: "3 trips added" in view.message_bar.text.text(), "the import")
    assert _trip_ids(demo_gui) == before | {"N1", "N2", "N5"}

    # On a 1280-pixel screen every column up to the fare and invoice is in sight.
    application.window.resize(1280, 800)
    demo_gui.wait(lambda: view.model.rowCount() > 0, "the trips")
    demo_gui.idle(application)
    header = view.table.horizontalHeader()
    last = header.count() - 1
    assert header.sectionViewportPosition(last) < view.table.viewport().width()
    fare = [view.model.headerData(c, Qt.Orientation.Horizontal) for c in range(last + 1)].index(
        "Fare"
    )
    assert (
        header.sectionViewportPosition(fare) + header.sectionSize(fare)
        <= view.table.viewport().width()
    )
    screenshot(application.window, "trips-list", schemes=False)


def test_a_file_dropped_on_the_view_opens_its_preview(demo_gui: Gui, tmp_path: Path) -> None:
    path = tmp_path / "dropped.csv"
    path.write_text(TRIPS.replace("NOWHERE", "STMARY").replace("12.345", "12.35"), "utf-8")
    application = demo_gui.start("clerk")
    view = application.window.show_view("Trips")
    assert isinstance(view, TripsView) and view.acceptDrops()
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    drop = QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        data,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    # What Qt calls once the person lets go of the file over the view.
    view.dropEvent(drop)
    dialogs = application.window.findChildren(TripImportDialog)
    assert dialogs, "the drop opened the import preview"
    dialog = dialogs[-1]
    demo_gui.wait(lambda: dialog.rows.rowCount() == 5, "the preview")
    assert dialog.import_button.isEnabled() and dialog.import_button.text() == "&Import 5 rows"
    dialog.reject()
