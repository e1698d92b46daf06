"""Invoices: the list with its filters, an invoice's lines, payments and history, running
invoices for a facility and month with a preview of the trips before anything is written, and
voiding with a reason (managers)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from html import escape as esc

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money, parse_local_money
from billing_desk.domain.periods import Period
from billing_desk.domain.roles import Permission
from billing_desk.domain.states import InvoiceStatus
from billing_desk.services.credits import (
    CreditApplied,
    CreditBalance,
    CreditSource,
    apply_credit,
    credit_origin,
)
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.services.invoices import (
    BillableTrip,
    InvoiceDetail,
    InvoiceLineInfo,
    InvoiceMoney,
    InvoiceRunPreview,
    InvoiceRunResult,
    InvoiceSummary,
    StatusChangeInfo,
    list_invoices,
    preview_invoice_run,
    run_invoice,
    show_invoice,
    void_invoice,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar, show_at_field
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.operations import changes
from billing_desk.ui.views.base import View, fit_columns, make_table, select_key, selected_row
from billing_desk.ui.views.payment_entry import PaymentDialog
from billing_desk.ui.widgets import FacilityBox, Form, MonthEdit, ReasonDialog, make_primary

OWING_FILTERS = [("All invoices", ""), ("Open", "open"), ("Overdue", "overdue")]

STATUS_FILTERS = [("Any status", None)] + [
    (s.value.capitalize(), s.value) for s in InvoiceStatus if s is not InvoiceStatus.DRAFT
]


@dataclass(frozen=True)
class InvoiceFilter:
    facility: str | None = None
    status: str | None = None
    owing: str = ""
    period: Period | None = None


class InvoicesView(View):
    title = "Invoices"
    summary = "bills to facilities"
    listens = frozenset({"invoices", "payments", "facilities", "trips"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.model: RowsModel[InvoiceSummary] = RowsModel(
            [
                Column("Number", lambda r: r.number),
                Column("Facility", lambda r: r.facility),
                Column("Issued", lambda r: f.date(r.issue_date), lambda r: r.issue_date),
                Column("Due", lambda r: f.date(r.due_date), lambda r: r.due_date),
                Column(
                    "Late",
                    lambda r: f.count(r.days_past_due) if r.overdue else "",
                    lambda r: r.days_past_due,
                    RIGHT,
                    tooltip=lambda r: (
                        f"{r.days_past_due} days past its due date" if r.overdue else None
                    ),
                ),
                Column("Status", lambda r: r.status.capitalize()),
                Column(
                    "Total", lambda r: f.money(r.total), lambda r: money_sort_key(r.total), RIGHT
                ),
                Column(
                    "Paid",
                    lambda r: f.money(r.paid + r.credited),
                    lambda r: money_sort_key(r.paid + r.credited),
                    RIGHT,
                ),
                Column(
                    "Open",
                    lambda r: f.money(r.open) if r.open.is_positive() else "",
                    lambda r: money_sort_key(r.open),
                    RIGHT,
                    emphasis=lambda r: r.overdue,
                ),
            ],
            key=lambda r: r.number,
            parent=self,
        )
        # Filters: a row above the list, each reachable by its mnemonic.
        self.facility = FacilityBox(self, allow_all=True)
        self.status = QComboBox(self)
        for label, value in STATUS_FILTERS:
            self.status.addItem(label, value)
        self.status.setAccessibleName("Status")
        self.owing = QComboBox(self)
        for label, value in OWING_FILTERS:
            self.owing.addItem(label, value)
        self.owing.setAccessibleName("What is owed")
        self.facility.setAccessibleName("Facility")
        self.month = MonthEdit(self)
        self.month.set_period(Period.of(desk.today()))
        self.month.setEnabled(False)
        self.any_month = QCheckBox("A&ny period", self)
        self.any_month.setChecked(True)
        filters = QHBoxLayout()
        for text, widget in (
            ("&Facility:", self.facility),
            ("&Status:", self.status),
            ("S&how:", self.owing),
            ("&Period:", self.month),
        ):
            caption = QLabel(text, self)
            caption.setBuddy(widget)
            filters.addWidget(caption)
            filters.addWidget(widget, 1 if widget is self.facility else 0)
        filters.addWidget(self.any_month)
        filters.addStretch(0)
        self.count = QLabel(self)
        self.count.setAccessibleName("Number of invoices shown")
        filters.addWidget(self.count)
        self.layout_.addLayout(filters)

        self.table = make_table(
            self, self.model, "Invoices", stretch=1, sort=(2, Qt.SortOrder.DescendingOrder)
        )
        self.detail = InvoiceDetailPane(desk, self)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.layout_.addWidget(self.splitter, 1)

        self.facility.when_chosen(self.refresh)
        self.status.currentIndexChanged.connect(lambda _: self.refresh())
        self.owing.currentIndexChanged.connect(lambda _: self.refresh())
        self.month.dateChanged.connect(lambda _: self.refresh())
        self.any_month.toggled.connect(self._any_month)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_selected())
        self.table.activated.connect(lambda _: self._show_selected())

        self.run_action = self.action(
            "&Run invoices…",
            self.run_invoices,
            shortcut="Ctrl+R",
            tip="Bill a facility's completed trips of a month, after a preview.",
        )
        self.void_action = self.action(
            "&Void invoice…",
            self.void_selected,
            shortcut="Ctrl+Shift+V",
            tip="Void the selected invoice with a reason (managers); its trips can then be "
            "billed again.",
        )
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self.run_action.setVisible(desk.may(Permission.RUN_INVOICES))
        self.void_action.setVisible(desk.may(Permission.VOID_INVOICES))
        self.void_action.setEnabled(False)
        self._facilities: list[FacilityInfo] = []
        self._wanted: str | None = None

        self.credit_action = self.action(
            "Apply &credit…",
            self.apply_credit,
            shortcut="Ctrl+Shift+C",
            tip="Pay the selected invoice from the facility's credit (money it paid beyond its "
            "invoices).",
        )
        self.credit_action.setVisible(desk.may(Permission.RECORD_PAYMENTS))
        self.credit_action.setEnabled(False)
        self.receive_action = self.action(
            "Receive a &payment…",
            self.receive_payment,
            shortcut="Ctrl+Shift+P",
            tip="Record a payment from the selected invoice's facility, its open invoices listed.",
        )
        self.receive_action.setVisible(desk.may(Permission.RECORD_PAYMENTS))
        self.history_action = self.action(
            "&History",
            self._history,
            shortcut="Ctrl+Shift+H",
            tip="Everything recorded about the selected invoice, in the Audit view.",
        )

    def menu_actions(self) -> list[QAction]:
        return [
            self.run_action,
            self.void_action,
            self.credit_action,
            self.receive_action,
            self.history_action,
            self.refresh_action,
        ]

    def receive_payment(self) -> None:
        invoice = selected_row(self.table, self.model)
        dialog = PaymentDialog(
            self.desk, self._facilities, invoice.facility if invoice else None, self
        )
        dialog.form.saved.connect(
            lambda receipt: self.message_bar.show_message(
                f"Payment {receipt.payment_id} recorded: "
                f"{self.desk.formats.money(receipt.amount)} from {receipt.facility}."
            )
        )
        dialog.open()

    def apply_credit(self) -> None:
        invoice = selected_row(self.table, self.model)
        if invoice is None or not invoice.open.is_positive():
            return
        code = invoice.facility
        self.desk.query(
            self,
            lambda ws: credit_origin(ws, code),
            lambda found: self._ask_credit(invoice, *found),
            key="invoice-credit",
        )

    def _ask_credit(
        self, invoice: InvoiceSummary, balance: CreditBalance, origin: tuple[CreditSource, ...]
    ) -> None:
        if not balance.credit.is_positive():
            self.message_bar.show_message(
                f"{balance.facility} has no credit to apply; credit comes from payments larger "
                "than the invoices they paid."
            )
            return
        dialog = CreditDialog(self.desk, invoice, balance, origin, self)
        dialog.applied.connect(
            lambda done: self.message_bar.show_message(
                f"{self.desk.formats.money(done.amount)} of {done.facility}'s credit applied to "
                f"{done.invoice_number}; {self.desk.formats.money(done.credit_left)} of credit "
                "left."
            )
        )
        dialog.open()

    def _history(self) -> None:
        invoice = selected_row(self.table, self.model)
        if invoice is not None:
            self.open_history("invoice", text=f'"{invoice.number}"')

    # -- fetching -----------------------------------------------------------------------------

    def current_filter(self) -> InvoiceFilter:
        return InvoiceFilter(
            self.facility.code(),
            self.status.currentData(),
            self.owing.currentData(),
            None if self.any_month.isChecked() else self.month.period(),
        )

    def _any_month(self, checked: bool) -> None:
        self.month.setEnabled(not checked)
        self.refresh()

    def refresh(self) -> None:
        wanted = self.current_filter()
        self.desk.query(self, list_facilities, self._facilities_arrived, key="invoices-facilities")
        self.desk.query(
            self,
            lambda ws: list_invoices(
                ws,
                facility=wanted.facility,
                status=wanted.status,
                open_only=wanted.owing == "open",
                overdue_only=wanted.owing == "overdue",
                period_from=wanted.period.start if wanted.period else None,
                period_to=wanted.period.end if wanted.period else None,
            ),
            self._arrived,
            key="invoices-list",
        )

    def _facilities_arrived(self, facilities: list[FacilityInfo]) -> None:
        self._facilities = facilities
        self.facility.set_facilities(facilities)

    def _arrived(self, invoices: list[InvoiceSummary]) -> None:
        chosen = selected_row(self.table, self.model)
        self.model.set_rows(invoices)
        fit_columns(self.table)
        n = len(invoices)
        self.count.setText(f"{self.desk.formats.count(n)} invoice{'s' if n != 1 else ''}")
        key = self._wanted or (chosen.number if chosen else None)
        self._wanted = None
        if key is not None:
            select_key(self.table, self.model, key)
        self._show_selected()

    def _show_selected(self) -> None:
        invoice = selected_row(self.table, self.model)
        self.void_action.setEnabled(
            invoice is not None and invoice.status not in (InvoiceStatus.VOID.value,)
        )
        self.credit_action.setEnabled(invoice is not None and invoice.open.is_positive())
        if invoice is None:
            self.detail.clear()
            return
        number = invoice.number
        self.desk.query(
            self, lambda ws: show_invoice(ws, number), self.detail.show_invoice, key="invoice"
        )

    def open_invoice(self, number: str) -> None:
        """Select the invoice `number` (from elsewhere in the application)."""
        self._wanted = number
        self.facility.set_code(None)
        self.status.setCurrentIndex(0)
        self.owing.setCurrentIndex(0)
        self.any_month.setChecked(True)
        self.refresh()

    # -- actions ------------------------------------------------------------------------------

    def run_invoices(self) -> None:
        dialog = RunInvoicesDialog(self.desk, self._facilities, self.facility.code(), self)
        dialog.billed.connect(self._billed)
        dialog.open()

    def _billed(self, result: InvoiceRunResult) -> None:
        self._wanted = result.invoice_number
        self.message_bar.show_message(
            f"Invoice {result.invoice_number} issued to {result.facility} for {result.period}: "
            f"{result.trip_count} trips, {self.desk.formats.money(result.total)}, due "
            f"{self.desk.formats.date(result.due_date)}."
        )

    def void_selected(self) -> None:
        invoice = selected_row(self.table, self.model)
        if invoice is None or not self.desk.may(Permission.VOID_INVOICES):
            return
        dialog = ReasonDialog(
            self,
            f"Void invoice {invoice.number}",
            f"Void invoice {invoice.number} of {invoice.facility} "
            f"({self.desk.formats.money(invoice.total)})? Its trips can then be billed again. "
            "&Why?",
            "&Void invoice",
        )
        number = invoice.number

        def voided(summary: InvoiceSummary) -> None:
            dialog.accept()
            self.message_bar.show_message(f"Invoice {summary.number} is void.")

        dialog.submitted.connect(
            lambda reason: self.desk.change(
                dialog,
                lambda ws: void_invoice(ws, number, reason),
                voided,
                changes("invoices", "trips"),
                failure=lambda err: dialog.failed(err, self.desk.presenter.present),
            )
        )
        dialog.open()

    def save_state(self) -> None:
        self.save_header(self.table)
        self.desk.settings.setValue(self.settings_key("splitter"), self.splitter.saveState())

    def restore_state(self) -> None:
        self.restore_header(self.table)
        state = self.desk.settings.value(self.settings_key("splitter"))
        if isinstance(state, QByteArray):
            self.splitter.restoreState(state)


class InvoiceDetailPane(QTabWidget):
    """The selected invoice: its lines, and its status history."""

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Invoice detail")
        f = desk.formats
        self.heading = QLabel(self)
        self.heading.setWordWrap(True)
        self.heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.lines: RowsModel[InvoiceLineInfo] = RowsModel(
            [
                Column("Line", lambda r: str(r.line_no), lambda r: r.line_no, RIGHT),
                Column("Trip", lambda r: r.trip_id),
                Column("Service date", lambda r: f.date(r.service_date), lambda r: r.service_date),
                Column("Description", lambda r: r.description),
                Column(
                    "Amount",
                    lambda r: f.money(r.amount),
                    lambda r: money_sort_key(r.amount),
                    RIGHT,
                ),
            ],
            key=lambda r: r.line_no,
            parent=self,
        )
        self.history: RowsModel[StatusChangeInfo] = RowsModel(
            [
                Column("When", lambda r: f.datetime(r.changed_at), lambda r: r.changed_at),
                Column("From", lambda r: (r.from_status or "").capitalize()),
                Column("To", lambda r: r.to_status.capitalize()),
                Column("By", lambda r: r.changed_by),
                Column("Why", lambda r: r.reason or ""),
            ],
            key=lambda r: (r.changed_at, r.to_status),
            parent=self,
        )
        self.money: RowsModel[InvoiceMoney] = RowsModel(
            [
                Column("Applied", lambda r: f.datetime(r.applied_at), lambda r: r.applied_at),
                Column("From", lambda r: r.describe()),
                Column(
                    "Amount",
                    lambda r: f.money(r.amount),
                    lambda r: money_sort_key(r.amount),
                    RIGHT,
                ),
                Column("By", lambda r: r.applied_by),
            ],
            key=lambda r: (r.applied_at, r.payment_id, r.via_credit),
            parent=self,
        )
        lines_page = QWidget(self)
        lines_layout = QVBoxLayout(lines_page)
        lines_layout.setContentsMargins(4, 4, 4, 4)
        lines_layout.addWidget(self.heading)
        self.lines_table = make_table(lines_page, self.lines, "Invoice lines", stretch=3)
        lines_layout.addWidget(self.lines_table)
        self.history_table = make_table(self, self.history, "Status history", stretch=4)
        self.money_table = make_table(self, self.money, "Payments applied", stretch=1)
        self.addTab(lines_page, "&Lines")
        self.addTab(self.money_table, "Pa&yments")
        self.addTab(self.history_table, "&History")
        self._formats = f
        self.clear()

    def clear(self) -> None:
        self.heading.setText("Select an invoice to see its lines and history.")
        self.lines.set_rows([])
        self.money.set_rows([])
        self.history.set_rows([])

    def show_invoice(self, detail: InvoiceDetail) -> None:
        s, f = detail.summary, self._formats
        text = (
            f"<b>{esc(s.number)}</b> — {esc(s.facility)}, {s.period_start:%B %Y}; issued "
            f"{f.date(s.issue_date)}, due {f.date(s.due_date)}; <b>{esc(s.status)}</b>; total "
            f"<b>{esc(f.money(s.total))}</b>; paid {esc(f.money(s.paid))}, credited "
            f"{esc(f.money(s.credited))}, open <b>{esc(f.money(s.open))}</b>"
        )
        if s.overdue:
            text += f" — <b>{s.days_past_due} days past due</b>"
        if detail.void_reason:
            text += f"<br>Voided: {esc(detail.void_reason)}"
        self.heading.setText(text)
        self.lines.set_rows(detail.lines)
        fit_columns(self.lines_table)
        self.money.set_rows(detail.money)
        fit_columns(self.money_table)
        self.history.set_rows(detail.history)
        fit_columns(self.history_table)


class CreditDialog(QDialog):
    """Apply part of a facility's credit to one open invoice: the amount starts at what can be
    applied (the smaller of the credit and the open amount); one idempotency key per dialog, so
    a double press or a retry applies it once."""

    applied = Signal(object)

    def __init__(
        self,
        desk: Desk,
        invoice: InvoiceSummary,
        balance: CreditBalance,
        origin: tuple[CreditSource, ...],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.desk = desk
        self.invoice = invoice
        self.key = str(uuid.uuid4())
        f = desk.formats
        self.setWindowTitle(f"Apply credit to {invoice.number}")
        self.message_bar = MessageBar(self)
        intro = QLabel(
            f"{esc(balance.facility)} has <b>{esc(f.money(balance.credit))}</b> of credit; "
            f"invoice {esc(invoice.number)} has <b>{esc(f.money(invoice.open))}</b> open.",
            self,
        )
        intro.setWordWrap(True)
        sources = "".join(
            f"<br>• payment {s.payment_id}, received {f.date(s.received_date)} "
            f"({esc(s.instrument)}): {esc(f.money(s.left))}"
            for s in origin
        )
        self.origin = QLabel(f"The credit comes from (applied oldest first):{sources}", self)
        self.origin.setWordWrap(True)
        most = min(balance.credit.minor, invoice.open.minor)
        decimal = f.locale.decimalPoint()
        self.amount = QLineEdit(
            Money.from_minor(most, invoice.total.currency).plain().replace(".", decimal), self
        )
        self.amount.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.form = Form()
        self.form.add("&Amount to apply:", self.amount, error_key="amount")
        buttons = QDialogButtonBox(self)
        self.ok = buttons.addButton("&Apply credit", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        make_primary(buttons, self.ok)
        buttons.accepted.connect(self.submit)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.setSpacing(10)
        layout.addWidget(intro)
        layout.addWidget(self.origin)
        layout.addLayout(self.form)
        layout.addWidget(buttons)
        # The dialog grows when a refusal appears under the amount, rather than cut it.
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
        self.resize(480, 0)

    def submit(self) -> None:
        if not self.ok.isEnabled():
            return
        self.form.clear_errors()
        currency = self.invoice.total.currency
        locale = self.desk.formats.locale
        try:
            amount = parse_local_money(
                self.amount.text(),
                currency,
                decimal_mark=locale.decimalPoint(),
                group_mark=locale.groupSeparator(),
                allow_zero=False,
            ).plain()
        except BadInput as err:
            self.form.errors["amount"].setText(err.message)
            self.form.errors["amount"].show()
            return
        self.ok.setEnabled(False)
        facility, number, key = self.invoice.facility, self.invoice.number, self.key

        def done(result: CreditApplied) -> None:
            self.applied.emit(result)
            self.accept()

        def refused(error: BaseException) -> None:
            self.ok.setEnabled(True)
            # "has only $X open" and "has $X of credit" are both about the amount asked for.
            under_amount = {"apply at most": self.form.errors["amount"]}
            show_at_field(
                error, under_amount, lambda err: self.desk.presenter.present(self, err, None)
            )

        self.desk.change(
            self,
            lambda ws: apply_credit(ws, facility, number, amount, key),
            done,
            changes("invoices", "payments"),
            failure=refused,
        )


class RunInvoicesDialog(QDialog):
    """Run invoices for a facility and month: first a preview of the trips that will be billed
    (nothing written), then "Bill N trips", which bills exactly the trips previewed."""

    billed = Signal(object)

    def __init__(
        self,
        desk: Desk,
        facilities: list[FacilityInfo],
        facility: str | None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setWindowTitle("Run invoices")
        self.message_bar = MessageBar(self)
        self.facility = FacilityBox(self)
        self.facility.set_facilities(facilities)
        self.facility.set_code(facility)
        if not facilities:
            # Opened before the view's list arrived: fetch it here (the code asked for is kept).
            desk.query(self, list_facilities, self.facility.set_facilities)
        self.month = MonthEdit(self)
        # Trips are billed after their month ends: last month is the usual choice.
        today = desk.today()
        self.month.set_period(Period(today.year - (today.month == 1), (today.month - 2) % 12 + 1))
        form = Form()
        form.add("&Facility:", self.facility)
        form.add("&Month:", self.month, error_key="period")
        self.form = form
        self.preview_label = QLabel("Choose a facility and month, then Preview.", self)
        self.preview_label.setWordWrap(True)
        f = desk.formats
        self.trips: RowsModel[BillableTrip] = RowsModel(
            [
                Column("Trip", lambda r: r.trip_id),
                Column("Date", lambda r: f.date(r.service_date), lambda r: r.service_date),
                Column("Description", lambda r: r.description),
                Column("Fare", lambda r: f.money(r.fare), lambda r: money_sort_key(r.fare), RIGHT),
            ],
            key=lambda r: r.trip_id,
            parent=self,
        )
        self.table = make_table(self, self.trips, "Trips to bill", stretch=2)
        self.buttons = QDialogButtonBox(self)
        self.preview_button = self.buttons.addButton(
            "&Preview", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.bill_button = self.buttons.addButton(
            "&Bill trips", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.bill_button.setEnabled(False)
        make_primary(self.buttons, self.preview_button)
        self.preview_button.clicked.connect(self.preview)
        self.bill_button.clicked.connect(self.bill)
        self.buttons.rejected.connect(self.reject)
        # A new choice invalidates the preview: what is billed is always what was shown.
        self.facility.currentIndexChanged.connect(lambda _: self._forget_preview())
        self.month.dateChanged.connect(lambda _: self._forget_preview())
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addLayout(form)
        layout.addWidget(self.preview_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.buttons)
        self.setTabOrder(self.facility, self.month)
        self._preview: InvoiceRunPreview | None = None
        self.resize(720, 480)

    def _forget_preview(self) -> None:
        self._preview = None
        self.trips.set_rows([])
        self.bill_button.setEnabled(False)
        self.bill_button.setText("&Bill trips")
        make_primary(self.buttons, self.preview_button)
        self.preview_label.setText("Choose a facility and month, then Preview.")

    def preview(self) -> None:
        self.form.clear_errors()
        self.message_bar.hide()
        code = self.facility.code()
        if code is None:
            self.form.errors["facility"].setText("Choose the facility to bill.")
            self.form.errors["facility"].show()
            return
        period = str(self.month.period())
        self.preview_button.setEnabled(False)
        self.desk.query(
            self,
            lambda ws: preview_invoice_run(ws, code, period),
            self._previewed,
            failure=self._refused,
        )

    def _previewed(self, preview: InvoiceRunPreview) -> None:
        self.preview_button.setEnabled(True)
        self._preview = preview
        f = self.desk.formats
        self.trips.set_rows(preview.trips)
        fit_columns(self.table)
        n = len(preview.trips)
        self.preview_label.setText(
            f"{n} trip{'s' if n != 1 else ''} of {preview.facility} in {preview.period}, "
            f"total {f.money(preview.total)}; the invoice will be dated "
            f"{f.date(preview.issue_date)} and due {f.date(preview.due_date)}. Nothing is "
            "written until you bill them."
        )
        self.bill_button.setText(f"&Bill {n} trip{'s' if n != 1 else ''}")
        self.bill_button.setEnabled(True)
        make_primary(self.buttons, self.bill_button)
        self.bill_button.setFocus()

    def _refused(self, error: BaseException) -> None:
        self.preview_button.setEnabled(True)
        self.bill_button.setEnabled(self._preview is not None)
        show_at_field(
            error,
            self.form.errors,
            lambda err: self.desk.presenter.present(self, err, None),
        )

    def bill(self) -> None:
        preview = self._preview
        if preview is None or not self.bill_button.isEnabled():
            return
        # Exactly the trips shown: one arriving since the preview waits for the next run.
        self.bill_button.setEnabled(False)
        trip_ids = [t.trip_id for t in preview.trips]
        self.desk.change(
            self,
            lambda ws: run_invoice(ws, preview.facility, preview.period, trip_ids=trip_ids),
            self._done,
            changes("invoices", "trips"),
            failure=self._refused,
        )

    def _done(self, result: InvoiceRunResult) -> None:
        self.billed.emit(result)
        self.accept()
