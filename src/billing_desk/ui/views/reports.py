"""Reports: choose a report and its parameters, generate it in the background, read it in the
preview (thumbnails, zoom, page x of y), save it as PDF or CSV, print it through the system's
dialog. Batch statements write one PDF per facility into a folder with progress; Cancel keeps
the finished files whole and starts no more, and a summary says what was written and what not.

Every generated report is recorded in the audit trail as printed, as the command line does."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.errors import BadInput
from billing_desk.reports.aging import aging_csv, write_aging
from billing_desk.reports.statement import statement_csv, statement_file_name, write_statement
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.services.report_data import (
    Printed,
    Provider,
    aging_report_data,
    record_prints,
    statement_data,
)
from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import WARNING
from billing_desk.ui.operations import Cancelled, Operation, Progress
from billing_desk.ui.pdf_preview import PdfPreview
from billing_desk.ui.views.base import View
from billing_desk.ui.widgets import FacilityBox, Form, pydate, qdate

STATEMENT, STATEMENTS, AGING = "statement", "statements", "aging"
REPORTS = (
    (STATEMENT, "Facility statement"),
    (STATEMENTS, "Statements for every facility (a folder of PDFs)"),
    (AGING, "Aging of open invoices"),
)


@dataclass(frozen=True)
class Generated:
    """A report written to `pdf` (and `csv` where it has one), ready to preview."""

    title: str
    pdf: Path
    csv: Path | None = None


@dataclass
class BatchSummary:
    folder: Path
    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    cancelled: bool = False

    def sentence(self) -> str:
        parts = [f"{len(self.written)} statement{'s' if len(self.written) != 1 else ''} written"]
        if self.failed:
            parts.append(
                f"{len(self.failed)} failed ("
                + "; ".join(f"{code}: {why}" for code, why in self.failed)
                + ")"
            )
        if self.not_started:
            parts.append(
                f"{len(self.not_started)} not started after Cancel ("
                + ", ".join(self.not_started)
                + ")"
            )
        return f"{', '.join(parts)} in {self.folder}."


def make_statement(workspace: Workspace, code: str, as_of: date, folder: Path) -> Generated:
    data = statement_data(workspace, code, as_of=as_of)
    pdf = folder / statement_file_name(data)
    csv = pdf.with_suffix(".csv")
    write_statement(pdf, data, Provider.from_environment(), workspace.user_name)
    statement_csv(csv, data)
    detail = {
        "as_of": data.as_of.isoformat(),
        "content_hash": data.content_hash,
        "closing_minor": data.closing.minor,
        "format": "pdf+csv",
    }
    record_prints(
        workspace,
        "report.print",
        [Printed("statement", f"{data.facility.code}:{data.as_of}", data.facility.code, detail)],
    )
    return Generated(f"Statement of {data.facility.code} as of {data.as_of}", pdf, csv)


def make_aging(workspace: Workspace, as_of: date, folder: Path) -> Generated:
    data = aging_report_data(workspace, as_of=as_of)
    pdf = folder / f"aging-{data.as_of.isoformat()}.pdf"
    csv = pdf.with_suffix(".csv")
    write_aging(pdf, data, Provider.from_environment(), workspace.user_name)
    aging_csv(csv, data)
    record_prints(
        workspace,
        "report.print",
        [Printed("aging_report", data.as_of.isoformat(), None, {"facilities": len(data.rows)})],
    )
    return Generated(f"Aging as of {data.as_of}", pdf, csv)


def make_statements(
    workspace: Workspace,
    codes: list[str],
    as_of: date,
    folder: Path,
    progress: Progress,
) -> BatchSummary:
    """One statement per facility, each written whole before the next starts; Cancel stops
    between statements, so no file is ever left half-written."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(folder)
    for index, code in enumerate(codes):
        if progress.cancelled:
            summary.cancelled = True
            summary.not_started = codes[index:]
            break
        try:
            progress(index, len(codes), f"{code} ({index + 1} of {len(codes)})")
        except Cancelled:
            summary.cancelled = True
            summary.not_started = codes[index:]
            break
        try:
            data = statement_data(workspace, code, as_of=as_of)
            target = folder / statement_file_name(data)
            partial = target.with_suffix(".part")
            write_statement(partial, data, Provider.from_environment(), workspace.user_name)
            partial.replace(target)
        except BadInput as err:
            summary.failed.append((code, err.message))
            continue
        record_prints(
            workspace,
            "report.print",
            [
                Printed(
                    "statement", f"{code}:{data.as_of}", code, {"content_hash": data.content_hash}
                )
            ],
        )
        summary.written.append(code)
    return summary


class ReportsView(View):
    title = "Reports"
    summary = "statements, aging, printing"

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        self.kind = QComboBox(self)
        for value, label in REPORTS:
            self.kind.addItem(label, value)
        self.facility = FacilityBox(self)
        self.facility.setMinimumWidth(self.fontMetrics().averageCharWidth() * 34)
        self.as_of = QDateEdit(self)
        self.as_of.setCalendarPopup(True)
        self.as_of.setDisplayFormat(desk.formats.date_format())
        self.as_of.setDate(qdate(desk.today()))
        self.as_of.setMaximumDate(qdate(desk.today()))
        form = Form()
        form.add("&Report:", self.kind, error_key="report")
        self.facility_error = form.add("&Facility:", self.facility, error_key="facility")
        form.add("&As of:", self.as_of, error_key="date")
        self.form = form
        self.generate_button = QPushButton("&Generate", self)
        self.generate_button.setDefault(True)
        self.save_button = QPushButton("&Save PDF…", self)
        self.save_csv_button = QPushButton("Save &CSV…", self)
        self.print_button = QPushButton("&Print…", self)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.save_csv_button)
        buttons.addWidget(self.print_button)
        left = QWidget(self)
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(form)
        column.addLayout(buttons)
        self.summary_label = QLabel(self)
        self.summary_label.setWordWrap(True)
        self.summary_label.setAccessibleName("Report summary")
        column.addWidget(self.summary_label)
        column.addStretch(1)
        self.preview = PdfPreview(self)
        self.pages = QStackedWidget(self)
        self.pages.addWidget(self.preview)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(left)
        splitter.addWidget(self.pages)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 900])
        self.layout_.addWidget(splitter, 1)

        self.generate_button.clicked.connect(self.generate)
        self.save_button.clicked.connect(lambda: self._save(pdf=True))
        self.save_csv_button.clicked.connect(lambda: self._save(pdf=False))
        self.print_button.clicked.connect(self._print)
        self.kind.currentIndexChanged.connect(lambda _: self._kind_changed())
        self.generate_action = self.action("&Generate the report", self.generate, shortcut="Ctrl+G")
        self.print_action = self.action(
            "&Print…", self._print, shortcut=QKeySequence.StandardKey.Print
        )
        self._folder = tempfile.mkdtemp(prefix="billing-desk-reports-")
        folder = self._folder
        self.destroyed.connect(lambda: shutil.rmtree(folder, ignore_errors=True))
        self.generated: Generated | None = None
        self.batch: BatchSummary | None = None
        self._facilities: list[FacilityInfo] = []
        # Where a batch writes, chosen by the person; tests set it to skip the folder dialog.
        self.choose_folder: Callable[[], Path | None] = self._ask_folder
        self._kind_changed()
        self._outputs()

    def menu_actions(self) -> list[QAction]:
        return [self.generate_action, self.print_action]

    def refresh(self) -> None:
        self.desk.query(self, list_facilities, self._arrived, key="reports-facilities")

    def _arrived(self, facilities: list[FacilityInfo]) -> None:
        self._facilities = facilities
        self.facility.set_facilities(facilities)

    def _kind_changed(self) -> None:
        self.facility.setEnabled(self.kind.currentData() == STATEMENT)

    def _outputs(self) -> None:
        shown = self.generated is not None
        self.save_button.setEnabled(shown)
        self.print_button.setEnabled(shown)
        self.print_action.setEnabled(shown)
        self.save_csv_button.setEnabled(
            shown and self.generated is not None and self.generated.csv is not None
        )

    def generate(self) -> None:
        if not self.generate_button.isEnabled():
            return
        self.form.clear_errors()
        kind = self.kind.currentData()
        as_of = pydate(self.as_of.date())
        folder = Path(self._folder)
        if kind == STATEMENT:
            code = self.facility.code()
            if code is None:
                self.facility_error.setText("Choose the facility whose statement to make.")
                self.facility_error.show()
                self.facility.setFocus()
                return
            self._run(lambda ws: make_statement(ws, code, as_of, folder))
        elif kind == AGING:
            self._run(lambda ws: make_aging(ws, as_of, folder))
        else:
            target = self.choose_folder()
            if target is None:
                return
            codes = [f.code for f in self._facilities]
            self.generate_button.setEnabled(False)
            self.summary_label.setText(f"Writing {len(codes)} statements to {target}…")
            self.desk.run(
                Operation(
                    self,
                    lambda ws, progress: make_statements(ws, codes, as_of, target, progress),
                    success=self._batch_done,
                    failure=self._batch_failed,
                    progress_label="Writing statements",
                )
            )

    def _run(self, work: Callable[[Workspace], Generated]) -> None:
        self.generate_button.setEnabled(False)
        self.summary_label.setText("Generating…")

        def failed(error: BaseException) -> None:
            self.generate_button.setEnabled(True)
            self.summary_label.setText("")
            self.desk.presenter.present(self, error, self.generate)

        self.desk.query(self, work, self._show, failure=failed)

    def _show(self, generated: Generated) -> None:
        self.generate_button.setEnabled(True)
        self.generated = generated
        self.preview.open(generated.pdf)
        self.summary_label.setText(
            f"{generated.title}: {self.preview.page_count} page"
            f"{'s' if self.preview.page_count != 1 else ''}. Save or print it from here."
        )
        self._outputs()

    def _batch_done(self, summary: BatchSummary) -> None:
        self.generate_button.setEnabled(True)
        self.batch = summary
        self.summary_label.setText(summary.sentence())
        if summary.failed or summary.cancelled:
            self.message_bar.show_message(summary.sentence(), WARNING)
        else:
            self.message_bar.show_message(summary.sentence())

    def _batch_failed(self, error: BaseException) -> None:
        self.generate_button.setEnabled(True)
        self.summary_label.setText("")
        if not isinstance(error, Cancelled):
            self.desk.presenter.present(self, error, None)

    def _ask_folder(self) -> Path | None:
        chosen = QFileDialog.getExistingDirectory(self, "Write the statements into which folder?")
        return Path(chosen) if chosen else None

    def _save(self, *, pdf: bool) -> None:
        generated = self.generated
        if generated is None:
            return
        source = generated.pdf if pdf else generated.csv
        if source is None:
            return
        kind = "PDF (*.pdf)" if pdf else "CSV (*.csv)"
        target, _ = QFileDialog.getSaveFileName(self, "Save the report", source.name, kind)
        if target:
            self.save_to(Path(target), pdf=pdf)

    def save_to(self, target: Path, *, pdf: bool = True) -> None:
        generated = self.generated
        source = None if generated is None else (generated.pdf if pdf else generated.csv)
        if source is None:
            return
        try:
            shutil.copyfile(source, target)
        except OSError as err:
            self.message_bar.show_message(
                f"Could not save {target} ({err.strerror}); choose another folder.", WARNING
            )
            return
        self.message_bar.show_message(f"Saved {target}.")

    def _print(self) -> None:
        if self.generated is not None:
            printed = self.preview.print_with_dialog()
            if printed:
                self.message_bar.show_message(f"Sent {printed} pages to the printer.")
