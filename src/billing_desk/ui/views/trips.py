"""Trips: the list with its filters, and importing a dispatch export (by the file dialog or by
dropping the file on the view) with a preview of good and bad rows before anything is written."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.periods import Period
from billing_desk.domain.roles import Permission
from billing_desk.domain.trips import RowProblem, TripRecord
from billing_desk.importers.trips_csv import TripFile, read_trip_file
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.services.trips import (
    TripImportPreview,
    TripImportResult,
    TripInfo,
    TripRowPreview,
    import_trips,
    list_trips,
    preview_trip_import,
)
from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.operations import changes
from billing_desk.ui.views.base import View, fit_columns, make_table
from billing_desk.ui.widgets import FacilityBox, MonthEdit, make_primary

# The newest trips first, and not more than a person can scroll: the filters narrow it.
TRIPS_SHOWN = 5000
OUTCOME_WORDS = {"new": "New", "changed": "Changed", "unchanged": "Unchanged", "bad": "Bad"}


class TripsView(View):
    title = "Trips"
    summary = "completed rides to bill"
    listens = frozenset({"trips", "invoices", "facilities"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.model: RowsModel[TripInfo] = RowsModel(
            [
                Column("Trip", lambda r: r.external_trip_id),
                Column("Facility", lambda r: r.facility),
                Column("Date", lambda r: f.date(r.service_date), lambda r: r.service_date),
                Column("Client", lambda r: r.client),
                Column("From", lambda r: r.pickup, tooltip=lambda r: r.pickup),
                Column("To", lambda r: r.dropoff, tooltip=lambda r: r.dropoff),
                Column("Status", lambda r: r.status.capitalize()),
                Column("Billable", lambda r: "Yes" if r.billable else "No"),
                Column("Fare", lambda r: f.money(r.fare), lambda r: money_sort_key(r.fare), RIGHT),
                Column("Invoice", lambda r: r.invoice_number or "not billed"),
            ],
            key=lambda r: (r.facility, r.external_trip_id),
            parent=self,
        )
        self.facility = FacilityBox(self, allow_all=True)
        self.month = MonthEdit(self)
        self.month.set_period(Period.of(desk.today()))
        self.any_month = QCheckBox("&Any month", self)
        self.any_month.setChecked(True)
        self.month.setEnabled(False)
        self.unbilled = QCheckBox("&Unbilled only", self)
        filters = QHBoxLayout()
        caption = QLabel("&Facility:", self)
        caption.setBuddy(self.facility)
        filters.addWidget(caption)
        filters.addWidget(self.facility, 1)
        month_caption = QLabel("&Month:", self)
        month_caption.setBuddy(self.month)
        filters.addWidget(month_caption)
        filters.addWidget(self.month)
        filters.addWidget(self.any_month)
        filters.addWidget(self.unbilled)
        self.count = QLabel(self)
        filters.addWidget(self.count)
        self.layout_.addLayout(filters)
        self.table = make_table(self, self.model, "Trips", sort=(2, Qt.SortOrder.DescendingOrder))
        self.layout_.addWidget(self.table, 1)
        if desk.may(Permission.IMPORT_TRIPS):
            hint = QLabel("Drop a dispatch export (CSV) here to import it.", self)
            hint.setEnabled(False)
            self.layout_.addWidget(hint)

        self.facility.when_chosen(self.refresh)
        self.month.dateChanged.connect(lambda _: self.refresh())
        self.any_month.toggled.connect(self._any_month)
        self.unbilled.toggled.connect(lambda _: self.refresh())

        self.import_action = self.action(
            "&Import trips…",
            self.choose_file,
            shortcut="Ctrl+I",
            tip="Load a dispatch export; you see every row before anything is written.",
        )
        self.import_action.setVisible(desk.may(Permission.IMPORT_TRIPS))
        self.setAcceptDrops(desk.may(Permission.IMPORT_TRIPS))
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )

    def menu_actions(self) -> list[QAction]:
        return [self.import_action, self.refresh_action]

    def _any_month(self, checked: bool) -> None:
        self.month.setEnabled(not checked)
        self.refresh()

    def refresh(self) -> None:
        facility = self.facility.code()
        period = None if self.any_month.isChecked() else self.month.period()
        unbilled = self.unbilled.isChecked()
        self.desk.query(self, list_facilities, self._facilities, key="trips-facilities")
        self.desk.query(
            self,
            lambda ws: list_trips(
                ws,
                facility=facility,
                period_start=period.start if period else None,
                period_end=period.end if period else None,
                unbilled_only=unbilled,
                limit=TRIPS_SHOWN,
            ),
            self._arrived,
            key="trips-list",
        )

    def _facilities(self, facilities: list[FacilityInfo]) -> None:
        self.facility.set_facilities(facilities)

    def _arrived(self, trips: list[TripInfo]) -> None:
        self.model.set_rows(trips)
        fit_columns(self.table, widest_chars=22)
        n = len(trips)
        more = " (the first ones; narrow the filters)" if n >= TRIPS_SHOWN else ""
        self.count.setText(f"{self.desk.formats.count(n)} trip{'s' if n != 1 else ''}{more}")

    # -- importing ------------------------------------------------------------------------------

    def choose_file(self) -> None:
        folder = str(self.desk.settings.value("trips/folder", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(
            self, "Import trips", folder, "Dispatch exports (*.csv);;All files (*)"
        )
        if path:
            self.desk.settings.setValue("trips/folder", str(Path(path).parent))
            self.import_file(Path(path))

    def import_file(self, path: Path) -> TripImportDialog:
        dialog = TripImportDialog(self.desk, path, self)
        dialog.imported.connect(self._imported)
        dialog.open()
        dialog.start()
        return dialog

    def _imported(self, name: str, result: TripImportResult) -> None:
        skipped = len(result.skipped)
        self.message_bar.show_message(
            f"{name}: {result.added} trips added, {result.updated} updated, {result.unchanged} "
            f"unchanged" + (f", {skipped} bad rows left out." if skipped else ".")
        )

    def dropped(self, files: list[Path]) -> None:
        self.import_file(files[0])

    def save_state(self) -> None:
        self.save_header(self.table)

    def restore_state(self) -> None:
        self.restore_header(self.table)


class TripImportDialog(QDialog):
    """Reads the file and checks every row against the database in the background, shows good
    and bad rows (bad ones with their line and reason), and writes nothing until Import. With
    bad rows, Import takes the good ones only once "leave the bad rows out" is ticked."""

    imported = Signal(str, object)

    def __init__(self, desk: Desk, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.path = path
        self.setWindowTitle(f"Import trips from {path.name}")
        self.message_bar = MessageBar(self)
        self.summary = QLabel(f"Reading {path.name}…", self)
        self.summary.setWordWrap(True)
        f = desk.formats
        self.rows: RowsModel[TripRowPreview] = RowsModel(
            [
                Column("Line", lambda r: str(r.line), lambda r: r.line, RIGHT),
                Column("Outcome", lambda r: OUTCOME_WORDS[r.outcome], emphasis=_is_bad),
                Column("Trip", lambda r: r.trip_id),
                Column("Facility", lambda r: r.facility),
                Column("Date", lambda r: f.date(r.service_date), lambda r: str(r.service_date)),
                Column("Client", lambda r: r.client),
                Column(
                    "Fare",
                    lambda r: f.money(r.fare) if r.fare is not None else r.fare_text,
                    lambda r: money_sort_key(r.fare) if r.fare is not None else (r.fare_text,),
                    RIGHT,
                ),
                Column(
                    "Why not",
                    lambda r: r.reason or "",
                    emphasis=_is_bad,
                    tooltip=lambda r: r.reason,
                ),
            ],
            key=lambda r: r.line,
            parent=self,
        )
        self.table = make_table(self, self.rows, "Rows of the file", stretch=7)
        self.skip_bad = QCheckBox("&Leave the bad rows out and import the others", self)
        self.skip_bad.hide()
        self.buttons = QDialogButtonBox(self)
        self.import_button = self.buttons.addButton(
            "&Import", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.import_button.setEnabled(False)
        make_primary(self.buttons, self.import_button)
        self.import_button.clicked.connect(self.commit)
        self.buttons.rejected.connect(self.reject)
        self.skip_bad.toggled.connect(lambda _: self._update_button())
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.skip_bad)
        layout.addWidget(self.buttons)
        self.resize(1060, 520)
        self._file: TripFile | None = None
        self._preview: TripImportPreview | None = None

    def start(self) -> None:
        path = self.path

        def read_and_check(ws: Workspace) -> tuple[TripFile, TripImportPreview]:
            parsed = read_trip_file(path)
            return parsed, preview_trip_import(ws, parsed.records, parsed.problems)

        self.desk.query(self, read_and_check, self._checked, failure=self._failed)

    def _checked(self, result: tuple[TripFile, TripImportPreview]) -> None:
        self._file, self._preview = result
        preview = self._preview
        self.rows.set_rows(preview.rows)
        fit_columns(self.table)
        bad = preview.count("bad")
        self.summary.setText(
            f"{self.path.name}: {len(preview.rows)} rows — {preview.count('new')} new, "
            f"{preview.count('changed')} changed, {preview.count('unchanged')} unchanged, "
            f"{bad} bad. Nothing is written until you press Import."
        )
        if bad:
            first = preview.bad[0]
            self.message_bar.show_message(
                f"{bad} row{'s' if bad != 1 else ''} cannot be imported; the first is line "
                f"{first.line}: {first.reason} Correct the file and import it again, or leave the "
                "bad rows out.",
                "warning",
            )
            self.skip_bad.show()
        self._update_button()

    def _update_button(self) -> None:
        preview = self._preview
        if preview is None:
            self.import_button.setEnabled(False)
            return
        good = len(preview.rows) - preview.count("bad")
        allowed = good > 0 and (preview.count("bad") == 0 or self.skip_bad.isChecked())
        self.import_button.setEnabled(allowed)
        self.import_button.setText(f"&Import {good} row{'s' if good != 1 else ''}")

    def _failed(self, error: BaseException) -> None:
        self.summary.setText(f"{self.path.name} cannot be imported.")
        self.desk.presenter.present(self, error, self.start)

    def commit(self) -> None:
        parsed = self._file
        if parsed is None or not self.import_button.isEnabled():
            return
        self.import_button.setEnabled(False)
        skip = self.skip_bad.isChecked()
        records: list[TripRecord] = list(parsed.records)
        problems: list[RowProblem] = list(parsed.problems)
        self.desk.change(
            self,
            lambda ws: import_trips(ws, records, skip_bad=skip, problems=problems),
            self._done,
            changes("trips"),
            failure=self._refused,
        )

    def _refused(self, error: BaseException) -> None:
        self._update_button()
        self.desk.presenter.present(self, error, self.commit)

    def _done(self, result: TripImportResult) -> None:
        self.imported.emit(self.path.name, result)
        self.accept()


def _is_bad(row: TripRowPreview) -> bool:
    return row.outcome == "bad"
