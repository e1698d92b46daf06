"""Payments: the payments received, newest first, with a facility and status filter and the
selected payment's allocations, credit and history."""

from __future__ import annotations

from datetime import date
from functools import partial
from html import escape as esc

from PySide6.QtCore import QByteArray, QDate, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.payments import PaymentMethod, PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.services.payment_register import (
    PAGE_SIZE,
    PaymentFilter,
    PaymentRow,
    payment_page,
)
from billing_desk.services.payments import (
    PaymentDetail,
    PaymentReceipt,
    TransitionResult,
    show_payment,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.models import RIGHT, Column, PagedModel
from billing_desk.ui.payment_moves import Move, ask_and_move, next_moves
from billing_desk.ui.views.base import View, fit_columns, make_table, selected_row
from billing_desk.ui.views.payment_entry import PaymentForm
from billing_desk.ui.widgets import FacilityBox, pydate

NO_DATE = QDate(2000, 1, 1)


class PaymentsView(View):
    title = "Payments"
    summary = "money received"
    listens = frozenset({"payments", "deposits", "facilities", "statements"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.model: PagedModel[PaymentRow] = PagedModel(
            [
                Column("No.", lambda r: str(r.payment_id), align=RIGHT),
                Column("Received", lambda r: f.date(r.received_date)),
                Column("Facility", lambda r: r.facility),
                Column("Method", lambda r: r.method.capitalize()),
                Column("Instrument", lambda r: r.instrument, tooltip=lambda r: r.instrument),
                Column("Status", lambda r: r.status.replace("_", " ").capitalize()),
                Column("Amount", lambda r: f.money(r.amount), align=RIGHT),
                Column("Recorded by", lambda r: r.recorded_by),
                Column("Payer / memo", lambda r: " — ".join(t for t in (r.payer, r.memo) if t)),
            ],
            key=lambda r: r.payment_id,
            page_size=PAGE_SIZE,
            parent=self,
        )
        self.facility = FacilityBox(self, allow_all=True)
        self.status = QComboBox(self)
        self.status.addItem("Any status", None)
        for status in PaymentStatus:
            self.status.addItem(status.value.replace("_", " ").capitalize(), status.value)
        self.method = QComboBox(self)
        self.method.addItem("Any method", None)
        for method in PaymentMethod:
            self.method.addItem(method.value.capitalize(), method.value)
        self.received_from = _date_filter(self, desk)
        self.received_to = _date_filter(self, desk)
        self.amount_from = QLineEdit(self)
        self.amount_to = QLineEdit(self)
        self.recorded_by = QLineEdit(self)
        self.text = QLineEdit(self)
        self.amount_from.setPlaceholderText("any")
        self.amount_to.setPlaceholderText("any")
        self.recorded_by.setPlaceholderText("anyone")
        self.text.setPlaceholderText("payer, memo, check no. or reference")
        for line in (self.amount_from, self.amount_to):
            line.setAlignment(Qt.AlignmentFlag.AlignRight)
        grid = QGridLayout()
        # The form above uses most letters for its own fields, so the filters take none:
        # Ctrl+F reaches the text filter, and Tab walks from there through the others.
        fields: list[tuple[str, QWidget]] = [
            ("Facility:", self.facility),
            ("Status:", self.status),
            ("Method:", self.method),
            ("Text:", self.text),
            ("Received from:", self.received_from),
            ("to:", self.received_to),
            ("Amount between:", self.amount_from),
            ("and:", self.amount_to),
            ("Recorded by:", self.recorded_by),
        ]
        for number, (caption_text, widget) in enumerate(fields):
            caption = QLabel(caption_text, self)
            caption.setBuddy(widget)
            widget.setAccessibleName(caption_text.replace("&", "").rstrip(":"))
            row, column = (0, number * 2) if number < 4 else (1, (number - 4) * 2)
            grid.addWidget(caption, row, column)
            grid.addWidget(widget, row, column + 1)
        for column in (1, 3, 5, 7, 9):
            grid.setColumnStretch(column, 1)
        for line in (self.amount_from, self.amount_to):
            line.setMinimumWidth(self.fontMetrics().averageCharWidth() * 10)
        self.text.setMinimumWidth(self.fontMetrics().averageCharWidth() * 24)
        self.count = QLabel(self)
        self.count.setAccessibleName("Payments shown")
        self.count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(self.count, 0, 8, 1, 2)
        self.layout_.addLayout(grid)
        # Receiving a payment: the form above the register, for those who record payments.
        self.entry: PaymentForm | None = None
        if desk.may(Permission.RECORD_PAYMENTS):
            self.entry = PaymentForm(desk, self)
            self.entry.setVisible(bool(desk.settings.value(self.settings_key("entry"), True)))
            self.entry.saved.connect(self._recorded)
            self.layout_.insertWidget(2, self.entry)
        self.table = make_table(self, self.model, "Payments", stretch=8)
        # Newest first, as fetched: sorting the part already fetched would mislead.
        self.table.setSortingEnabled(False)
        self.table.horizontalHeader().setSortIndicatorShown(False)
        self.model.more_wanted.connect(self._next_page)
        self.detail = QLabel(self)
        self.detail.setWordWrap(True)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setAccessibleName("Payment detail")
        self.detail.setMargin(6)
        # What may happen next to the selected payment, as buttons under its detail.
        self.moves = QWidget(self)
        self.moves_row = QHBoxLayout(self.moves)
        self.moves_row.setContentsMargins(6, 0, 6, 6)
        lower = QWidget(self)
        lower_column = QVBoxLayout(lower)
        lower_column.setContentsMargins(0, 0, 0, 0)
        lower_column.addWidget(self.detail, 1)
        lower_column.addWidget(self.moves)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(lower)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.layout_.addWidget(self.splitter, 1)
        self.facility.when_chosen(self.refresh)
        self.status.currentIndexChanged.connect(lambda _: self.refresh())
        self.method.currentIndexChanged.connect(lambda _: self.refresh())
        for line in (self.amount_from, self.amount_to, self.recorded_by, self.text):
            line.returnPressed.connect(self.refresh)
        for edit in (self.received_from, self.received_to):
            edit.editingFinished.connect(self.refresh)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_selected())
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self.receive_action = self.action(
            "&Receive a payment",
            self.receive,
            shortcut="Ctrl+N",
            tip="Show the form and start a new payment (Enter saves it).",
        )
        self.receive_action.setVisible(self.entry is not None)
        self._wanted: int | None = None
        self._filter = PaymentFilter()
        self._clear_detail()

        self.find_action = self.action(
            "&Find…",
            self._find,
            shortcut=QKeySequence.StandardKey.Find,
            tip="Filter the register by payer, memo, check number or reference.",
        )
        self.history_action = self.action(
            "&History",
            self._history,
            shortcut="Ctrl+Shift+H",
            tip="Everything recorded about the selected payment, in the Audit view.",
        )

    def menu_actions(self) -> list[QAction]:
        return [self.receive_action, self.find_action, self.history_action, self.refresh_action]

    def unsaved(self) -> bool:
        return self.entry is not None and self.entry.has_unsaved()

    def _find(self) -> None:
        self.text.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.text.selectAll()

    def _history(self) -> None:
        payment = selected_row(self.table, self.model)
        if payment is not None:
            self.open_history("payment", str(payment.payment_id))

    def receive(self) -> None:
        if self.entry is None:
            return
        self.entry.show()
        self.entry.facility.setFocus()
        editor = self.entry.facility.lineEdit()
        if editor is not None:
            editor.selectAll()

    def _recorded(self, receipt: PaymentReceipt) -> None:
        f = self.desk.formats
        waiting = receipt.status == PaymentStatus.AWAITING_APPROVAL.value
        held = " — held for a manager's approval" if waiting else ""
        applied = ", ".join(f"{a.invoice_number} {f.money(a.amount)}" for a in receipt.allocations)
        credit = f"; {f.money(receipt.credit)} credit" if receipt.credit.is_positive() else ""
        self.message_bar.show_message(
            f"Payment {receipt.payment_id} recorded: {f.money(receipt.amount)} from "
            f"{receipt.facility}{held}" + (f", applied to {applied}" if applied else "") + credit,
            actions={"&Open": partial(self.open_payment, receipt.payment_id)},
        )

    def open_payment(self, payment_id: int) -> None:
        """Select payment `payment_id` in the register (from elsewhere in the application)."""
        self._wanted = payment_id
        self.clear_filters()

    def clear_filters(self) -> None:
        for box in (self.status, self.method):
            blocked = box.blockSignals(True)
            box.setCurrentIndex(0)
            box.blockSignals(blocked)
        self.facility.set_code(None)
        for line in (self.amount_from, self.amount_to, self.recorded_by, self.text):
            line.clear()
        self.received_from.setDate(NO_DATE)
        self.received_to.setDate(NO_DATE)
        self.refresh()

    def current_filter(self) -> PaymentFilter:
        def day(edit: QDateEdit) -> date | None:
            return None if edit.date() == NO_DATE else pydate(edit.date())

        def text(line: QLineEdit) -> str | None:
            return line.text().strip() or None

        return PaymentFilter(
            facility=self.facility.code(),
            status=self.status.currentData(),
            method=self.method.currentData(),
            received_from=day(self.received_from),
            received_to=day(self.received_to),
            amount_from=text(self.amount_from),
            amount_to=text(self.amount_to),
            recorded_by=text(self.recorded_by),
            text=text(self.text),
        )

    def refresh(self) -> None:
        self.desk.query(self, list_facilities, self._facilities, key="payments-facilities")
        chosen = selected_row(self.table, self.model)
        if self._wanted is None and chosen is not None:
            self._wanted = chosen.payment_id
        self._filter = self.current_filter()
        self.model.restart()
        self._fetch(None)

    def _next_page(self) -> None:
        last = self.model.last_key()
        self._fetch(last if isinstance(last, int) else None)

    def _fetch(self, after: int | None) -> None:
        wanted, size = self._filter, self.model.page_size
        self.desk.query(
            self,
            lambda ws: payment_page(ws, wanted, after=after, limit=size),
            self._arrived,
            key="payments-list",
            failure=self._refused,
        )

    def _refused(self, error: BaseException) -> None:
        self.model.append([])
        self.count.setText("")
        self.desk.presenter.present(self, error, self.refresh)

    def _facilities(self, facilities: list[FacilityInfo]) -> None:
        self.facility.set_facilities(facilities)
        if self.entry is not None:
            self.entry.set_facilities(facilities)

    def _arrived(self, payments: list[PaymentRow]) -> None:
        first_page = not self.model.rows
        self.model.append(payments)
        if first_page:
            fit_columns(self.table)
        n = len(self.model.rows)
        shown = f"{self.desk.formats.count(n)} payment{'s' if n != 1 else ''}"
        more = "" if self.model.exhausted else " so far (more as you scroll)"
        self.count.setText(shown + more)
        if self._wanted is not None:
            row = self.model.row_of(self._wanted)
            if row is not None:
                self._wanted = None
                self.table.selectRow(row)
                self.table.scrollTo(self.model.index(row, 0))
            elif self.model.exhausted:
                self._wanted = None

    def _clear_detail(self) -> None:
        self.detail.setText("Select a payment to see where its money went.")
        if hasattr(self, "moves_row"):
            self._offer_moves(None)

    def _show_selected(self) -> None:
        payment = selected_row(self.table, self.model)
        if payment is None:
            self._clear_detail()
            return
        number = payment.payment_id
        self.desk.query(self, lambda ws: show_payment(ws, number), self._detail, key="payment")

    def _offer_moves(self, payment: PaymentDetail | None) -> None:
        while self.moves_row.count():
            item = self.moves_row.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        if payment is None or self.desk.read_only:
            return
        for move in next_moves(payment):
            if not self.desk.may(move.permission):
                continue
            button = QPushButton(move.label, self.moves)
            button.setAutoDefault(False)
            button.clicked.connect(partial(self._move, payment, move))
            self.moves_row.addWidget(button)
        self.moves_row.addStretch(1)

    def _move(self, payment: PaymentDetail, move: Move) -> None:
        ask_and_move(self.desk, self, payment, move, self._moved)

    def _moved(self, result: TransitionResult) -> None:
        released = f"; released {len(result.released)} allocations" if result.released else ""
        self.message_bar.show_message(
            f"Payment {result.payment_id} moved from {result.from_status} to "
            f"{result.status}{released}."
        )
        self._wanted = result.payment_id

    def _detail(self, p: PaymentDetail) -> None:
        self._offer_moves(p)
        f = self.desk.formats
        lines = [
            f"<b>Payment {p.payment_id}</b> — {esc(f.money(p.amount))} from {esc(p.facility)} by "
            f"{esc(p.method)} ({esc(p.instrument)}), received {f.date(p.received_date)}, recorded "
            f"by {esc(p.recorded_by)} on {f.datetime(p.recorded_at)}; "
            f"<b>{esc(p.status.replace('_', ' '))}</b>"
        ]
        if p.allocations:
            applied = ", ".join(
                f"{esc(a.invoice_number)} {esc(f.money(a.amount))}" for a in p.allocations
            )
            lines.append(f"Applied to: {applied}")
        if not p.credit.is_zero():
            lines.append(f"Credit to the facility: {esc(f.money(p.credit))}")
        for h in p.history:
            why = f" — {esc(h.reason)}" if h.reason else ""
            lines.append(
                f"{f.datetime(h.changed_at)}: {esc(h.from_status or 'new')} → "
                f"{esc(h.to_status)} by {esc(h.changed_by)}{why}"
            )
        self.detail.setText("<br>".join(lines))

    def save_state(self) -> None:
        self.save_header(self.table)
        self.desk.settings.setValue(self.settings_key("splitter"), self.splitter.saveState())

    def restore_state(self) -> None:
        self.restore_header(self.table)
        state = self.desk.settings.value(self.settings_key("splitter"))
        if isinstance(state, QByteArray):
            self.splitter.restoreState(state)


def _date_filter(parent: QWidget, desk: Desk) -> QDateEdit:
    edit = QDateEdit(parent)
    edit.setCalendarPopup(True)
    edit.setDisplayFormat(desk.formats.date_format())
    edit.setMinimumDate(NO_DATE)
    edit.setSpecialValueText("any")
    edit.setDate(NO_DATE)
    return edit
