"""Approvals: a manager's queue of payments held for a second person (a check or reference
recorded twice on purpose, a check without a number), with what is needed to decide on one
screen: the payment, why it was recorded, and the payment it duplicates. Approve or refuse with
a note; nobody approves what they recorded themselves (the service refuses it, and says so)."""

from __future__ import annotations

from functools import partial
from html import escape as esc

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from billing_desk.domain.payments import PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.payments import (
    PaymentDetail,
    TransitionResult,
    list_payments,
    show_payment,
)
from billing_desk.services.unit_of_work import Workspace
from billing_desk.ui.desk import Desk
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.payment_moves import ask_and_move, next_moves
from billing_desk.ui.views.base import View, fit_columns, make_table, selected_row


class ApprovalsView(View):
    title = "Approvals"
    summary = "payments waiting for a manager"
    permission = Permission.APPROVE_PAYMENTS
    listens = frozenset({"payments"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        f = desk.formats
        self.model: RowsModel[PaymentDetail] = RowsModel(
            [
                Column("No.", lambda r: str(r.payment_id), lambda r: r.payment_id, RIGHT),
                Column("Received", lambda r: f.date(r.received_date), lambda r: r.received_date),
                Column("Facility", lambda r: r.facility),
                Column(
                    "Amount", lambda r: f.money(r.amount), lambda r: money_sort_key(r.amount), RIGHT
                ),
                Column("Instrument", lambda r: r.instrument),
                Column("Recorded by", lambda r: r.recorded_by),
                Column(
                    "Why", lambda r: r.override_reason or "", tooltip=lambda r: r.override_reason
                ),
            ],
            key=lambda r: r.payment_id,
            parent=self,
        )
        self.count = QLabel(self)
        self.layout_.addWidget(self.count)
        self.table = make_table(self, self.model, "Payments awaiting approval", stretch=6)
        self.detail = QLabel(self)
        self.detail.setWordWrap(True)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setAccessibleName("What to decide")
        self.detail.setMargin(6)
        self.buttons = QHBoxLayout()
        lower = QWidget(self)
        column = QVBoxLayout(lower)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.detail, 1)
        column.addLayout(self.buttons)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(lower)
        self.layout_.addWidget(self.splitter, 1)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected())
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self.detail.setText("Select a payment to see what it duplicates.")

    def menu_actions(self) -> list[QAction]:
        return [self.refresh_action]

    def refresh(self) -> None:
        waiting = PaymentStatus.AWAITING_APPROVAL.value
        self.desk.query(
            self, lambda ws: list_payments(ws, status=waiting), self._arrived, key="approvals"
        )

    def _arrived(self, payments: list[PaymentDetail]) -> None:
        self.model.set_rows(payments)
        fit_columns(self.table)
        n = len(payments)
        self.count.setText(
            f"{n} payment{'s' if n != 1 else ''} waiting for a manager's decision."
            if n
            else "Nothing is waiting for a decision."
        )
        if n:
            self.table.selectRow(0)
        self._selected()

    def _selected(self) -> None:
        payment = selected_row(self.table, self.model)
        self._clear_buttons()
        if payment is None:
            self.detail.setText("Select a payment to see what it duplicates.")
            return
        self.desk.query(self, partial(_with_duplicate, payment), self._show, key="approval")

    def _show(self, pair: tuple[PaymentDetail, PaymentDetail | None]) -> None:
        payment, duplicate = pair
        f = self.desk.formats
        lines = [
            f"<b>Payment {payment.payment_id}</b>: {esc(f.money(payment.amount))} from "
            f"{esc(payment.facility)} by {esc(payment.method)} ({esc(payment.instrument)}), "
            f"received {f.date(payment.received_date)}, recorded by {esc(payment.recorded_by)} "
            f"on {f.datetime(payment.recorded_at)}.",
            f"Why it was recorded: <i>{esc(payment.override_reason or '(no reason given)')}</i>",
        ]
        if duplicate is not None:
            lines.append(
                f"It duplicates payment {duplicate.payment_id}: {esc(f.money(duplicate.amount))} "
                f"received {f.date(duplicate.received_date)}, recorded by "
                f"{esc(duplicate.recorded_by)}, now {esc(duplicate.status)}."
            )
        else:
            lines.append("It duplicates no recorded payment (a check without a number).")
        if payment.recorded_by == self.desk.person.name:
            lines.append("<b>You recorded it: another manager decides (segregation of duties).</b>")
        self.detail.setText("<br>".join(lines))
        for move in next_moves(payment):
            if not self.desk.may(move.permission):
                continue
            button = QPushButton(move.label, self)
            button.setAutoDefault(False)
            button.clicked.connect(
                partial(ask_and_move, self.desk, self, payment, move, self._done)
            )
            self.buttons.addWidget(button)
        self.buttons.addStretch(1)

    def _clear_buttons(self) -> None:
        while self.buttons.count():
            item = self.buttons.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()

    def _done(self, result: TransitionResult) -> None:
        verb = "approved" if result.status != PaymentStatus.VOIDED.value else "refused"
        self.message_bar.show_message(f"Payment {result.payment_id} {verb} ({result.status}).")

    def save_state(self) -> None:
        self.save_header(self.table)
        self.desk.settings.setValue(self.settings_key("splitter"), self.splitter.saveState())

    def restore_state(self) -> None:
        self.restore_header(self.table)
        state = self.desk.settings.value(self.settings_key("splitter"))
        if isinstance(state, QByteArray):
            self.splitter.restoreState(state)


def _with_duplicate(
    payment: PaymentDetail, workspace: Workspace
) -> tuple[PaymentDetail, PaymentDetail | None]:
    fresh = show_payment(workspace, payment.payment_id)
    duplicate = (
        show_payment(workspace, fresh.duplicate_of) if fresh.duplicate_of is not None else None
    )
    return fresh, duplicate
