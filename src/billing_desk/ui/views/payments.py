"""Payments: the payments received, newest first, with a facility and status filter and the
selected payment's allocations, credit and history."""

from __future__ import annotations

from functools import partial
from html import escape as esc

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.payments import PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.facilities import FacilityInfo, list_facilities
from billing_desk.services.payments import (
    PaymentDetail,
    PaymentReceipt,
    TransitionResult,
    list_payments,
    show_payment,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.payment_moves import Move, ask_and_move, next_moves
from billing_desk.ui.views.base import View, fit_columns, make_table, select_key, selected_row
from billing_desk.ui.views.payment_entry import PaymentForm
from billing_desk.ui.widgets import FacilityBox

# The newest payments, as many as a person scrolls through; the filters narrow the rest.
PAYMENTS_SHOWN = 2000


class PaymentsView(View):
    title = "Payments"
    summary = "money received"
    listens = frozenset({"payments", "deposits", "facilities", "statements"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.model: RowsModel[PaymentDetail] = RowsModel(
            [
                Column("No.", lambda r: str(r.payment_id), lambda r: r.payment_id, RIGHT),
                Column("Received", lambda r: f.date(r.received_date), lambda r: r.received_date),
                Column("Facility", lambda r: r.facility),
                Column("Method", lambda r: r.method.capitalize()),
                Column("Instrument", lambda r: r.instrument),
                Column("Status", lambda r: r.status.replace("_", " ").capitalize()),
                Column(
                    "Amount",
                    lambda r: f.money(r.amount),
                    lambda r: money_sort_key(r.amount),
                    RIGHT,
                ),
                Column("Recorded by", lambda r: r.recorded_by),
            ],
            key=lambda r: r.payment_id,
            parent=self,
        )
        self.facility = FacilityBox(self, allow_all=True)
        self.status = QComboBox(self)
        self.status.setAccessibleName("Status")
        self.status.addItem("Any status", None)
        for status in PaymentStatus:
            self.status.addItem(status.value.replace("_", " ").capitalize(), status.value)
        filters = QHBoxLayout()
        for text, widget in (("&Facility:", self.facility), ("&Status:", self.status)):
            caption = QLabel(text, self)
            caption.setBuddy(widget)
            filters.addWidget(caption)
            filters.addWidget(widget, 1 if widget is self.facility else 0)
        self.count = QLabel(self)
        filters.addWidget(self.count)
        self.layout_.addLayout(filters)
        # Receiving a payment: the form above the register, for those who record payments.
        self.entry: PaymentForm | None = None
        if desk.may(Permission.RECORD_PAYMENTS):
            self.entry = PaymentForm(desk, self)
            self.entry.setVisible(bool(desk.settings.value(self.settings_key("entry"), True)))
            self.entry.saved.connect(self._recorded)
            self.layout_.insertWidget(2, self.entry)
        self.table = make_table(
            self, self.model, "Payments", stretch=4, sort=(0, Qt.SortOrder.DescendingOrder)
        )
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
        self._clear_detail()

        self.history_action = self.action(
            "&History",
            self._history,
            shortcut="Ctrl+Shift+H",
            tip="Everything recorded about the selected payment, in the Audit view.",
        )

    def menu_actions(self) -> list[QAction]:
        return [self.receive_action, self.history_action, self.refresh_action]

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
        self.facility.set_code(None)
        self.status.setCurrentIndex(0)
        self.refresh()

    def refresh(self) -> None:
        facility, status = self.facility.code(), self.status.currentData()
        self.desk.query(self, list_facilities, self._facilities, key="payments-facilities")
        self.desk.query(
            self,
            lambda ws: _newest(list_payments(ws, facility=facility, status=status)),
            self._arrived,
            key="payments-list",
        )

    def _facilities(self, facilities: list[FacilityInfo]) -> None:
        self.facility.set_facilities(facilities)
        if self.entry is not None:
            self.entry.set_facilities(facilities)

    def _arrived(self, payments: list[PaymentDetail]) -> None:
        chosen = selected_row(self.table, self.model)
        self.model.set_rows(payments)
        fit_columns(self.table)
        n = len(payments)
        more = " (the newest; narrow the filters)" if n >= PAYMENTS_SHOWN else ""
        self.count.setText(f"{self.desk.formats.count(n)} payment{'s' if n != 1 else ''}{more}")
        key = self._wanted or (chosen.payment_id if chosen else None)
        self._wanted = None
        if key is not None:
            select_key(self.table, self.model, key)

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


def _newest(payments: list[PaymentDetail]) -> list[PaymentDetail]:
    return sorted(payments, key=lambda p: p.payment_id, reverse=True)[:PAYMENTS_SHOWN]
