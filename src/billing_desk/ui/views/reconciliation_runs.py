"""A reconciliation run in the window: the period's discrepancies grouped by kind, with the
figures as money and what each concerns; a manager resolves each with a note and closes the run,
which seals it (its content hash goes into the audit trail) and leaves it read-only."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.money import Money
from billing_desk.domain.roles import Permission
from billing_desk.services.reconciliation import (
    DiscrepancyInfo,
    RunReport,
    close_run,
    resolve_discrepancy,
    run_reconciliation,
    show_run,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.operations import Cancelled, changes
from billing_desk.ui.views.base import fit_columns, make_table, selected_row
from billing_desk.ui.widgets import ReasonDialog, make_primary


def concerns(d: DiscrepancyInfo) -> str:
    """What the discrepancy is about, as the other views and the command line name it."""
    parts = [
        f"{what} {number}"
        for what, number in (
            ("line", d.line_id),
            ("payment", d.payment_id),
            ("deposit", d.deposit_id),
            ("invoice", d.invoice_id),
            ("trip", d.trip_id),
        )
        if number is not None
    ]
    return ", ".join(parts)


class ReconciliationRunDialog(QDialog):
    """Run a reconciliation for a period and work through what it found. Enter (or a double
    click) on a discrepancy closes the dialog and opens what it concerns: its bank line here, its
    payment in the register, or its invoice among the invoices."""

    open_requested = Signal(object)  # the DiscrepancyInfo to show

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setWindowTitle("Reconciliation run")
        f = desk.formats
        self.message_bar = MessageBar(self)
        today = date.today()
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        self.date_from = self._date_edit(first)
        self.date_to = self._date_edit(today)
        self.run_button = QPushButton("&Run", self)
        self.run_button.setEnabled(desk.may(Permission.RECONCILE))
        self.summary = QLabel("Choose the period the bank's statements cover, then Run.", self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        def money(minor: int | None, d: DiscrepancyInfo) -> Money | None:
            if minor is None or d.currency is None:
                return None
            return Money.from_minor(minor, d.currency)

        def shown(amount: Money | None) -> str:
            return f.money(amount) if amount is not None else ""

        def key(amount: Money | None) -> tuple[str, int]:
            return money_sort_key(amount) if amount is not None else ("", 0)

        self.rows: RowsModel[DiscrepancyInfo] = RowsModel(
            [
                Column("Kind", lambda d: d.kind),
                Column("Status", lambda d: d.status),
                Column(
                    "Expected",
                    lambda d: shown(money(d.expected_minor, d)),
                    lambda d: key(money(d.expected_minor, d)),
                    RIGHT,
                ),
                Column(
                    "At the bank / found",
                    lambda d: shown(money(d.actual_minor, d)),
                    lambda d: key(money(d.actual_minor, d)),
                    RIGHT,
                ),
                Column("Concerns", concerns),
                Column("Detail", lambda d: d.detail, tooltip=lambda d: d.detail),
                Column("Note", lambda d: d.note or "", tooltip=lambda d: d.note),
            ],
            key=lambda d: d.id,
            parent=self,
        )
        self.table = make_table(
            self, self.rows, "Discrepancies", stretch=5, sort=(0, Qt.SortOrder.AscendingOrder)
        )
        manager = desk.may(Permission.RESOLVE_DISCREPANCIES)
        buttons = QDialogButtonBox(self)
        self.resolve_button = buttons.addButton("Re&solve…", QDialogButtonBox.ButtonRole.ActionRole)
        self.close_run_button = buttons.addButton(
            "&Close and seal the run", QDialogButtonBox.ButtonRole.ActionRole
        )
        # Resolving and closing are a manager's; a clerk sees what the run found.
        self.resolve_button.setVisible(manager)
        self.close_run_button.setVisible(manager)
        done = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        done.clicked.connect(self.accept)
        make_primary(buttons, self.run_button)

        period = QHBoxLayout()
        for text, edit in (("&From:", self.date_from), ("&To:", self.date_to)):
            caption = QLabel(text, self)
            caption.setBuddy(edit)
            # Never squeezed by the date boxes beside it.
            caption.setMinimumWidth(caption.fontMetrics().horizontalAdvance(text) + 8)
            period.addSpacing(8)
            period.addWidget(caption)
            period.addWidget(edit)
        period.addWidget(self.run_button)
        period.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addLayout(period)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(1100, 560)

        self.report: RunReport | None = None
        self.run_button.clicked.connect(self.run)
        self.resolve_button.clicked.connect(self.resolve)
        self.close_run_button.clicked.connect(self.close_the_run)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._ready())
        self.table.activated.connect(lambda _: self._open_chosen())
        self._ready()

    def _date_edit(self, day: date) -> QDateEdit:
        edit = QDateEdit(self)
        edit.setCalendarPopup(True)
        edit.setDisplayFormat(self.desk.formats.date_format())
        edit.setDate(QDate(day.year, day.month, day.day))
        return edit

    def _open_chosen(self) -> None:
        chosen = selected_row(self.table, self.rows)
        if chosen is None or (
            chosen.line_id is None
            and chosen.payment_id is None
            and chosen.invoice_number is None
            and chosen.deposit_id is None
        ):
            return
        self.accept()
        self.open_requested.emit(chosen)

    def run(self) -> None:
        if not self.run_button.isEnabled():
            return
        first, last = _day(self.date_from.date()), _day(self.date_to.date())
        self.run_button.setEnabled(False)
        self.summary.setText(f"Reconciling {self.desk.formats.date(first)} to …")

        def refused(error: BaseException) -> None:
            self.run_button.setEnabled(True)
            if isinstance(error, Cancelled):
                self.summary.setText("Cancelled: no run was recorded.")
                return
            self.desk.presenter.present(self, error, None)

        self.desk.change(
            self,
            lambda ws, progress: run_reconciliation(ws, first, last, progress=progress),
            self.show_report,
            changes("statements"),
            failure=refused,
            progress_label="Reconciling the books with the bank",
        )

    def show_report(self, report: RunReport) -> None:
        self.report = report
        self.run_button.setEnabled(self.desk.may(Permission.RECONCILE))
        f = self.desk.formats
        kinds = Counter(d.kind for d in report.discrepancies)
        by_kind = "; ".join(f"{kind}: {n}" for kind, n in sorted(kinds.items()))
        period = f"{f.date(report.date_from)} to {f.date(report.date_to)}"
        if report.status == "closed":
            state = f"closed and sealed (content hash {report.content_hash or ''})"
        else:
            state = f"open, {report.open_count} of {len(report.discrepancies)} still open"
        found = (
            f"{len(report.discrepancies)} discrepancies ({by_kind})"
            if report.discrepancies
            else "no discrepancy: the books and the bank agree"
        )
        self.summary.setText(f"Run {report.run_id}, {period}: {found}. The run is {state}.")
        self.rows.set_rows(list(report.discrepancies))
        fit_columns(self.table, widest_chars=30)
        self._ready()

    def _ready(self) -> None:
        report = self.report
        chosen = selected_row(self.table, self.rows)
        is_open = report is not None and report.status == "open"
        self.resolve_button.setEnabled(is_open and chosen is not None and chosen.status == "open")
        self.close_run_button.setEnabled(is_open and report is not None and report.open_count == 0)

    def resolve(self) -> None:
        chosen = selected_row(self.table, self.rows)
        report = self.report
        if chosen is None or report is None or not self.resolve_button.isEnabled():
            return
        number, run_id = chosen.id, report.run_id
        dialog = ReasonDialog(
            self,
            f"Resolve discrepancy {number}",
            f"{chosen.kind}: {chosen.detail}\n\n&What explains it (e.g. the bank's charge for "
            "the month, a deposit traced with the bank)?",
            "Re&solve",
        )

        def reread(_: object) -> None:
            dialog.accept()
            self.desk.query(self, lambda ws: show_run(ws, run_id), self.show_report)

        dialog.submitted.connect(
            lambda note: self.desk.change(
                dialog,
                lambda ws: resolve_discrepancy(ws, number, note),
                reread,
                changes("statements"),
                failure=lambda err: dialog.failed(err, self.desk.presenter.present),
            )
        )
        dialog.open()

    def close_the_run(self) -> None:
        report = self.report
        if report is None or not self.close_run_button.isEnabled():
            return
        run_id = report.run_id
        self.close_run_button.setEnabled(False)

        def refused(error: BaseException) -> None:
            self._ready()
            self.desk.presenter.present(self, error, None)

        self.desk.change(
            self,
            lambda ws: close_run(ws, run_id),
            self.show_report,
            changes("statements"),
            failure=refused,
        )


def _day(value: QDate) -> date:
    return date(value.year(), value.month(), value.day())
