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
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.errors import BadInput
from billing_desk.reports.aging import aging_csv, write_aging
from billing_desk.reports.audit import audit_csv, write_audit
from billing_desk.reports.compliance import compliance_csv, write_compliance
from billing_desk.reports.deposit_slip import deposit_slip_csv, write_deposit_slip
from billing_desk.reports.integrity import integrity_csv, write_integrity
from billing_desk.reports.reconciliation import reconciliation_csv, write_reconciliation
from billing_desk.reports.statement import (
    statement_csv,
    statement_file_name,
    write_combined,
    write_statement,
)
from billing_desk.services.compliance import compliance_report
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.services.provider import provider_details
from billing_desk.services.report_data import (
    Printed,
    aging_report_data,
    audit_report_data,
    deposit_slip_data,
    integrity_report_data,
    reconciliation_report_data,
    record_prints,
    statement_data,
    statements_data,
)
from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import WARNING
from billing_desk.ui.operations import Cancelled, Operation, Progress
from billing_desk.ui.pdf_preview import PdfPreview
from billing_desk.ui.views.base import View
from billing_desk.ui.widgets import FacilityBox, Form, pydate, qdate

STATEMENT, STATEMENTS, COMBINED, AGING = "statement", "statements", "combined", "aging"
DEPOSIT_SLIP, AUDIT, INTEGRITY, RECONCILIATION, COMPLIANCE = (
    "deposit_slip",
    "audit",
    "integrity",
    "reconciliation",
    "compliance",
)
REPORTS = (
    (STATEMENT, "Facility statement"),
    (STATEMENTS, "Statements for every facility (a folder of PDFs)"),
    (COMBINED, "Statements for every facility (one combined PDF)"),
    (DEPOSIT_SLIP, "Deposit slip"),
    (AGING, "Aging of open invoices"),
    (AUDIT, "Audit trail of a period"),
    (INTEGRITY, "Integrity of the history"),
    (RECONCILIATION, "Reconciliation run"),
    (COMPLIANCE, "Compliance score"),
)
# Which parameters each report reads; the others are disabled while it is chosen.
_USES = {
    STATEMENT: {"facility", "as_of"},
    STATEMENTS: {"as_of"},
    COMBINED: {"as_of"},
    DEPOSIT_SLIP: {"number"},
    AGING: {"as_of"},
    AUDIT: {"from", "as_of"},
    INTEGRITY: set(),
    RECONCILIATION: {"number"},
    COMPLIANCE: set(),
}


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
    skipped: list[str] = field(default_factory=list)  # nothing owed and nothing happened
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    cancelled: bool = False

    def sentence(self) -> str:
        parts = [f"{len(self.written)} statement{'s' if len(self.written) != 1 else ''} written"]
        if self.skipped:
            parts.append(
                f"{len(self.skipped)} skipped, nothing owed and no activity ("
                + ", ".join(self.skipped)
                + ")"
            )
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


def _writing(progress: Progress | None) -> None:
    """Between reading and writing: Cancel pressed while the data was read stops here, before
    any file is written or any print recorded."""
    if progress is not None:
        progress(1, 2, "Writing the PDF")


def make_statement(
    workspace: Workspace, code: str, as_of: date, folder: Path, progress: Progress | None = None
) -> Generated:
    data = statement_data(workspace, code, as_of=as_of)
    _writing(progress)
    pdf = folder / statement_file_name(data)
    csv = pdf.with_suffix(".csv")
    write_statement(pdf, data, provider_details(workspace), workspace.user_name)
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


def make_aging(
    workspace: Workspace, as_of: date, folder: Path, progress: Progress | None = None
) -> Generated:
    data = aging_report_data(workspace, as_of=as_of)
    return _written(
        workspace,
        folder / f"aging-{data.as_of.isoformat()}.pdf",
        lambda p: write_aging(p, data, provider_details(workspace), workspace.user_name),
        lambda p: aging_csv(p, data),
        Printed("aging_report", data.as_of.isoformat(), None, {"facilities": len(data.rows)}),
        f"Aging as of {data.as_of}",
        progress,
    )


def make_combined(workspace: Workspace, as_of: date, folder: Path, progress: Progress) -> Generated:
    """The statement of every facility with a balance or activity, in one PDF, each from a new
    page with its own numbering; written to a part file first, so Cancel leaves nothing
    half-written."""
    datas = statements_data(workspace, None, as_of=as_of, progress=progress)
    if not datas:
        raise BadInput("No facility has a balance or activity up to that date; nothing to print.")
    pdf = folder / f"statements-{as_of.isoformat()}.pdf"
    partial = pdf.with_suffix(".part")
    try:
        write_combined(
            partial, datas, provider_details(workspace), workspace.user_name, progress=progress
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(pdf)
    record_prints(
        workspace,
        "report.print",
        [
            Printed(
                "statement",
                f"{d.facility.code}:{d.as_of}",
                d.facility.code,
                {"content_hash": d.content_hash, "batch": True},
            )
            for d in datas
        ],
    )
    return Generated(f"{len(datas)} statements as of {as_of}, combined", pdf)


def make_deposit_slip(
    workspace: Workspace, deposit_id: int, folder: Path, progress: Progress | None = None
) -> Generated:
    data = deposit_slip_data(workspace, deposit_id)
    return _written(
        workspace,
        folder / f"deposit-slip-{deposit_id}.pdf",
        lambda p: write_deposit_slip(p, data, provider_details(workspace), workspace.user_name),
        lambda p: deposit_slip_csv(p, data),
        Printed("deposit_slip", str(deposit_id), None, {"total_minor": data.total.minor}),
        f"Deposit slip {deposit_id}",
        progress,
    )


def make_audit(
    workspace: Workspace,
    first: date,
    last: date,
    folder: Path,
    progress: Progress | None = None,
) -> Generated:
    data = audit_report_data(workspace, date_from=first, date_to=last)
    shown = f"{len(data.entries)} entries" + (", the first only" if data.truncated else "")
    return _written(
        workspace,
        folder / f"audit-{first.isoformat()}-{last.isoformat()}.pdf",
        lambda p: write_audit(p, data, provider_details(workspace), workspace.user_name),
        lambda p: audit_csv(p, data),
        Printed(
            "audit_report",
            "filtered",
            None,
            {"filters": dict(data.filters), "entries": len(data.entries)},
        ),
        f"Audit trail {first} to {last} ({shown})",
        progress,
    )


def make_integrity(
    workspace: Workspace, folder: Path, progress: Progress | None = None
) -> Generated:
    data = integrity_report_data(workspace)
    v = data.verification
    verdict = "no findings" if v.ok else f"{len(v.findings)} findings"
    return _written(
        workspace,
        folder / "integrity.pdf",
        lambda p: write_integrity(p, data, provider_details(workspace), workspace.user_name),
        lambda p: integrity_csv(p, data),
        Printed(
            "integrity_report",
            str(v.head_sequence),
            None,
            {"ok": v.ok, "findings": len(v.findings)},
        ),
        f"Integrity of the history: {verdict}",
        progress,
    )


def make_reconciliation(
    workspace: Workspace, run_id: int, folder: Path, progress: Progress | None = None
) -> Generated:
    data = reconciliation_report_data(workspace, run_id)
    return _written(
        workspace,
        folder / f"reconciliation-{run_id}.pdf",
        lambda p: write_reconciliation(p, data, provider_details(workspace), workspace.user_name),
        lambda p: reconciliation_csv(p, data),
        Printed(
            "reconciliation_report",
            str(run_id),
            None,
            {"discrepancies": len(data.run.discrepancies)},
        ),
        f"Reconciliation run {run_id}",
        progress,
    )


def make_compliance(
    workspace: Workspace, folder: Path, progress: Progress | None = None
) -> Generated:
    data = compliance_report(workspace)
    return _written(
        workspace,
        folder / "compliance.pdf",
        lambda p: write_compliance(p, data, provider_details(workspace), workspace.user_name),
        lambda p: compliance_csv(p, data),
        Printed("compliance_report", str(data.score), None, {"score": data.score}),
        f"Compliance score {data.score}",
        progress,
    )


def _written(
    workspace: Workspace,
    pdf: Path,
    write_pdf: Callable[[Path], object],
    write_csv: Callable[[Path], object],
    printed: Printed,
    title: str,
    progress: Progress | None,
) -> Generated:
    """A report read: written as PDF and CSV and recorded as printed, unless Cancel came while
    it was read."""
    _writing(progress)
    csv = pdf.with_suffix(".csv")
    write_pdf(pdf)
    write_csv(csv)
    record_prints(workspace, "report.print", [printed])
    return Generated(title, pdf, csv)


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
            if not data.lines and data.opening.is_zero() and data.closing.is_zero():
                summary.skipped.append(code)
                continue
            target = folder / statement_file_name(data)
            partial = target.with_suffix(".part")
            write_statement(partial, data, provider_details(workspace), workspace.user_name)
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
        self.first_day = QDateEdit(self)
        self.first_day.setCalendarPopup(True)
        self.first_day.setDisplayFormat(desk.formats.date_format())
        self.first_day.setDate(qdate(desk.today()).addDays(-30))
        self.first_day.setMaximumDate(qdate(desk.today()))
        self.number = QSpinBox(self)
        self.number.setRange(1, 2_000_000_000)
        self.number.setAccessibleName("Deposit or run number")
        form = Form()
        form.add("&Report:", self.kind, error_key="report")
        self.facility_error = form.add("&Facility:", self.facility, error_key="facility")
        self.first_day_error = form.add("Fro&m:", self.first_day, error_key="from")
        form.add("&As of:", self.as_of, error_key="date")
        self.number_error = form.add("&Number:", self.number, error_key="number")
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
        kind = self.kind.currentData()
        uses = _USES.get(kind, set())
        # Only the fields this report reads are shown.
        self.form.show_row(self.facility, "facility" in uses)
        self.form.show_row(self.first_day, "from" in uses)
        self.form.show_row(self.as_of, "as_of" in uses)
        self.form.show_row(self.number, "number" in uses)
        self.form.set_label(self.as_of, "&To:" if kind == AUDIT else "&As of:")
        self.form.set_label(
            self.number,
            "Deposit &number:" if kind == DEPOSIT_SLIP else "Run &number:",
        )

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
            self._run(lambda ws, progress: make_statement(ws, code, as_of, folder, progress))
        elif kind == AGING:
            self._run(lambda ws, progress: make_aging(ws, as_of, folder, progress))
        elif kind == DEPOSIT_SLIP:
            deposit_id = self.number.value()
            self._run(lambda ws, progress: make_deposit_slip(ws, deposit_id, folder, progress))
        elif kind == RECONCILIATION:
            run_id = self.number.value()
            self._run(lambda ws, progress: make_reconciliation(ws, run_id, folder, progress))
        elif kind == AUDIT:
            first = pydate(self.first_day.date())
            if first > as_of:
                self.first_day_error.setText("The first day is after the last; choose it again.")
                self.first_day_error.show()
                self.first_day.setFocus()
                return
            self._run(lambda ws, progress: make_audit(ws, first, as_of, folder, progress))
        elif kind == INTEGRITY:
            self._run(lambda ws, progress: make_integrity(ws, folder, progress))
        elif kind == COMPLIANCE:
            self._run(lambda ws, progress: make_compliance(ws, folder, progress))
        elif kind == COMBINED:
            self.generate_button.setEnabled(False)
            self.summary_label.setText("Combining the statements of every facility…")
            self.desk.run(
                Operation(
                    self,
                    lambda ws, progress: make_combined(ws, as_of, folder, progress),
                    success=self._show,
                    failure=self._combined_failed,
                    progress_label="Combining statements",
                )
            )
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

    def _run(self, work: Callable[[Workspace, Progress], Generated]) -> None:
        self.generate_button.setEnabled(False)
        self.summary_label.setText("Generating…")

        def failed(error: BaseException) -> None:
            self.generate_button.setEnabled(True)
            self.summary_label.setText("")
            if isinstance(error, Cancelled):
                self.message_bar.show_message("Cancelled: nothing was written.", WARNING)
            else:
                self.desk.presenter.present(self, error, self.generate)

        self.desk.run(
            Operation(
                self,
                work,
                success=self._show,
                failure=failed,
                progress_label=f"Generating: {self.kind.currentText()}",
            )
        )

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

    def _combined_failed(self, error: BaseException) -> None:
        self.generate_button.setEnabled(True)
        self.summary_label.setText("")
        if isinstance(error, Cancelled):
            self.message_bar.show_message("Cancelled: no combined PDF was written.", WARNING)
        else:
            self.desk.presenter.present(self, error, self.generate)

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
