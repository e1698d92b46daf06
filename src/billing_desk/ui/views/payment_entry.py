"""Receiving a payment: the form a clerk lives in. Fields in the order of the paper in hand
(payer, received date, method, the method's own fields, amount, memo), then the facility's open
invoices with the amount applied oldest first as it is typed, and Save (Enter from any field).

It can record a payment only once: the idempotency key is made when the form is blank and kept
for every retry of that submission (a double click, Enter pressed twice, a retry after a lost
connection), and a new one is made once the payment is saved. A check or reference already
recorded is shown before Save, with the way to record it for a manager's approval.
"""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape as esc
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money, parse_local_money
from billing_desk.domain.payments import PaymentMethod, refuse_card_numbers
from billing_desk.services.facilities import FacilityInfo
from billing_desk.services.invoices import OpenInvoice, open_invoices
from billing_desk.services.payments import (
    DuplicateInfo,
    PaymentDraft,
    PaymentReceipt,
    find_duplicate,
    record_payment,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar, show_at_field
from billing_desk.ui.models import RIGHT
from billing_desk.ui.operations import changes
from billing_desk.ui.widgets import FacilityBox, Form, ReasonDialog, pydate, qdate

Index = QModelIndex | QPersistentModelIndex
CARD_BRANDS = ("Visa", "Mastercard", "American Express", "Discover")
# Fields whose text might hold a card number typed by mistake: refused as it is typed.
FREE_TEXT = ("memo", "transfer reference", "processor reference", "payer")


class ReceivedDate(QDateEdit):
    """A received date: today by default, never in the future; the GnuCash and QuickBooks keys
    move it (t today, + and - a day, m and h the first and last day of the month)."""

    refused = Signal(str)

    def __init__(self, today: date, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.today = today
        # The fields before and after it in the form, for Tab and Shift+Tab.
        self.before: QWidget | None = None
        self.after: QWidget | None = None
        self.setCalendarPopup(True)
        self.setMaximumDate(qdate(today))
        self.setDate(qdate(today))

    def focusNextPrevChild(self, forward: bool) -> bool:
        # Tab leaves the field for the next one, as in every other field of the form; the
        # date's parts are reached with the arrow keys (Qt's date field would walk them).
        target = self.after if forward else self.before
        if target is None:
            return super().focusNextPrevChild(forward)
        reason = Qt.FocusReason.TabFocusReason if forward else Qt.FocusReason.BacktabFocusReason
        target.setFocus(reason)
        return True

    def keyPressEvent(self, event: QKeyEvent) -> None:
        day = pydate(self.date())
        text = event.text().lower()
        moves = {
            "t": self.today,
            "+": day + timedelta(days=1),
            "=": day + timedelta(days=1),
            "-": day - timedelta(days=1),
            "m": day.replace(day=1),
            "h": day.replace(day=calendar.monthrange(day.year, day.month)[1]),
        }
        if text in moves:
            wanted = moves[text]
            if wanted > self.today:
                self.refused.emit(
                    f"The received date cannot be after today ({self.today:%Y-%m-%d}); the "
                    "payment has not arrived yet."
                )
                wanted = self.today
            self.setDate(qdate(wanted))
            event.accept()
            return
        super().keyPressEvent(event)


@dataclass
class Line:
    """An open invoice in the form, with what the clerk applies to it."""

    invoice: OpenInvoice
    apply: int = 0  # minor units
    by_hand: bool = False


class AllocationModel(QAbstractTableModel):
    """The facility's open invoices and what the payment applies to each. What is typed is
    applied oldest due first (invoices ticked first go to the head of the queue); a line the
    clerk changed by hand keeps its amount."""

    applied_changed = Signal()
    COLUMNS = ("Pay", "Invoice", "Due", "Total", "Open", "Apply")

    def __init__(self, desk: Desk, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.formats = desk.formats
        self.desk = desk
        self.lines: list[Line] = []
        self.queue: list[str] = []  # invoice numbers ticked, in the order ticked
        self.amount: Money | None = None
        self.currency = "USD"

    # -- Qt's model interface -----------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.lines)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section >= 3:
            return int(RIGHT)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.lines):
            return None
        line, column = self.lines[index.row()], index.column()
        invoice, f = line.invoice, self.formats
        if role == Qt.ItemDataRole.CheckStateRole and column == 0:
            return (Qt.CheckState.Checked if line.apply else Qt.CheckState.Unchecked).value
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return (
                "",
                invoice.number,
                f.date(invoice.due_date)
                + (f" ({invoice.days_past_due} days late)" if invoice.days_past_due else ""),
                f.money(invoice.total),
                f.money(invoice.open),
                f.money(Money.from_minor(line.apply, self.currency)),
            )[column]
        if role == Qt.ItemDataRole.EditRole and column == 5:
            return _plain_local(Money.from_minor(line.apply, self.currency), self.desk)
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= 3:
            return int(RIGHT)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0:
            return base | Qt.ItemFlag.ItemIsUserCheckable
        if index.column() == 5:
            return base | Qt.ItemFlag.ItemIsEditable
        return base

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or not 0 <= index.row() < len(self.lines):
            return False
        line = self.lines[index.row()]
        if index.column() == 0 and role == Qt.ItemDataRole.CheckStateRole:
            number = line.invoice.number
            if Qt.CheckState(value) == Qt.CheckState.Checked:
                self.queue = [number, *(n for n in self.queue if n != number)]
            else:
                self.queue = [n for n in self.queue if n != number]
                line.apply, line.by_hand = 0, True
            self.distribute()
            return True
        if index.column() == 5 and role == Qt.ItemDataRole.EditRole:
            try:
                typed = _parse(str(value), self.currency, self.desk)
            except BadInput:
                return False
            line.apply = min(max(typed.minor, 0), line.invoice.open.minor)
            line.by_hand = True
            self.distribute()
            return True
        return False

    # -- for the form ---------------------------------------------------------------------

    def set_invoices(self, invoices: list[OpenInvoice], currency: str) -> None:
        self.beginResetModel()
        self.lines = [Line(i) for i in invoices]
        self.queue = []
        self.currency = currency
        self.endResetModel()
        self.distribute()

    def set_amount(self, amount: Money | None) -> None:
        self.amount = amount
        for line in self.lines:
            line.by_hand = False
        self.queue = []
        self.distribute()

    def distribute(self) -> None:
        """Apply the amount: lines set by hand keep theirs, the rest goes to ticked invoices
        first (in the order ticked), then oldest due first."""
        left = self.amount.minor if self.amount is not None else 0
        left -= sum(line.apply for line in self.lines if line.by_hand)
        order = sorted(
            (line for line in self.lines if not line.by_hand),
            key=lambda line: (
                self.queue.index(line.invoice.number)
                if line.invoice.number in self.queue
                else 9999,
                line.invoice.due_date,
            ),
        )
        for line in order:
            line.apply = max(0, min(line.invoice.open.minor, left))
            left -= line.apply
        if self.lines:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.lines) - 1, 5))
        self.applied_changed.emit()

    def applied(self) -> int:
        return sum(line.apply for line in self.lines)

    def allocations(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (line.invoice.number, Money.from_minor(line.apply, self.currency).plain())
            for line in self.lines
            if line.apply
        )


class PaymentForm(QWidget):
    """Record one payment at a time; `saved` carries each receipt."""

    saved = Signal(object)  # PaymentReceipt

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setAccessibleName("Receive a payment")
        self.message_bar = MessageBar(self)
        self.facilities: dict[str, FacilityInfo] = {}
        self.key = self._new_key()
        self._saving = False
        self._duplicate: DuplicateInfo | None = None
        self._override: str | None = None

        self.facility = FacilityBox(self)
        self.facility.setAccessibleName("Payer facility")
        self.facility.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.facility.setMinimumContentsLength(28)
        self.received = ReceivedDate(desk.today(), self)
        self.received.setDisplayFormat(desk.formats.date_format())
        self.received.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.method = QComboBox(self)
        self.method.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        for kind in PaymentMethod:
            self.method.addItem(kind.value.capitalize(), kind.value)
        self.check_number, self.routing, self.account = QLineEdit(), QLineEdit(), QLineEdit()
        self.reference = QLineEdit()
        self.card_brand = QComboBox()
        self.card_brand.setEditable(True)
        self.card_brand.addItems(CARD_BRANDS)
        self.card_last4 = QLineEdit()
        self.card_last4.setMaxLength(4)
        self.card_last4.setInputMask("9999;_")
        self.processor_ref = QLineEdit()
        self.amount = QLineEdit(self)
        self.amount.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.amount.setPlaceholderText(_plain_local(Money.from_minor(123456, "USD"), desk))
        self.memo = QLineEdit(self)

        form = Form()
        form.add("Pa&yer:", self.facility, error_key="facility")
        form.add("&Received:", self.received, error_key="received")
        form.add("&Method:", self.method, error_key="method")
        self.method_fields = QStackedWidget(self)
        self.method_fields.setAccessibleName("Method details")
        self.method_forms: dict[str, Form] = {}
        for method, rows in (
            (
                "check",
                (
                    ("Check &number:", self.check_number, "check number"),
                    ("Rou&ting:", self.routing, "routing"),
                    ("Acc&ount:", self.account, "account"),
                ),
            ),
            ("transfer", (("Re&ference:", self.reference, "reference"),)),
            (
                "card",
                (
                    ("Card &brand:", self.card_brand, "brand"),
                    ("&Last four:", self.card_last4, "last four"),
                    ("Processor re&f:", self.processor_ref, "processor"),
                ),
            ),
            ("cash", ()),
        ):
            page = QWidget(self.method_fields)
            page_form = Form(page)
            page_form.setContentsMargins(0, 0, 0, 0)
            for label, field, key in rows:
                page_form.add(label, field, error_key=key)
            if not rows:
                page_form.addRow(QLabel("Cash needs no details.", page))
            self.method_forms[method] = page_form
            self.method_fields.addWidget(page)
        form.addRow(self.method_fields)
        form.add("&Amount:", self.amount, error_key="amount")
        form.add("M&emo:", self.memo, error_key="memo")
        self.form = form

        self.duplicate_bar = MessageBar(self)
        self.allocations = AllocationModel(desk, self)
        self.invoices = QTableView(self)
        self.invoices.setModel(self.allocations)
        self.invoices.setAccessibleName("Open invoices")
        self.invoices.verticalHeader().hide()
        self.invoices.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.invoices.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.AnyKeyPressed
        )
        header = self.invoices.horizontalHeader()
        header.setStretchLastSection(False)
        for column in range(len(AllocationModel.COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.totals = QLabel(self)
        self.totals.setAccessibleName("Amount, applied and unapplied")
        self.totals.setTextFormat(Qt.TextFormat.RichText)
        self.save_button = QPushButton("&Save", self)
        self.save_button.setDefault(True)
        self.clear_button = QPushButton("&Clear", self)
        self.clear_button.setAutoDefault(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.totals, 1)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.save_button)

        left = QVBoxLayout()
        left.addLayout(form)
        left.addStretch(1)
        right = QVBoxLayout()
        caption = QLabel("Open &invoices (applied oldest due first as you type the amount):")
        caption.setBuddy(self.invoices)
        right.addWidget(caption)
        right.addWidget(self.invoices, 1)
        columns = QHBoxLayout()
        columns.addLayout(left, 2)
        columns.addLayout(right, 3)
        box = QGroupBox("Receive a payment", self)
        inside = QVBoxLayout(box)
        inside.addWidget(self.duplicate_bar)
        inside.addLayout(columns, 1)
        inside.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message_bar)
        layout.addWidget(box)

        self.received.before, self.received.after = self.facility, self.method
        self.setTabOrder(self.facility, self.received)
        self.setTabOrder(self.received, self.method)
        self.setTabOrder(self.method, self.check_number)
        self.setTabOrder(self.check_number, self.routing)
        self.setTabOrder(self.routing, self.account)
        self.setTabOrder(self.account, self.amount)
        self.setTabOrder(self.amount, self.memo)
        self.setTabOrder(self.memo, self.invoices)
        self.setTabOrder(self.invoices, self.save_button)

        self._duplicate_check = QTimer(self)
        self._duplicate_check.setSingleShot(True)
        self._duplicate_check.setInterval(250)
        self._duplicate_check.timeout.connect(self._look_for_duplicate)
        # The facility's open invoices are fetched as soon as what is typed names one.
        self._chosen_code: str | None = None
        self._facility_settle = QTimer(self)
        self._facility_settle.setSingleShot(True)
        self._facility_settle.setInterval(150)
        self._facility_settle.timeout.connect(self._facility_typed)
        self.facility.currentTextChanged.connect(lambda _: self._facility_settle.start())
        self.method.currentIndexChanged.connect(self._method_chosen)
        self.received.refused.connect(lambda text: self._field_error("received", text))
        self.amount.textEdited.connect(self._amount_typed)
        self.allocations.applied_changed.connect(self._show_totals)
        for field in (self.check_number, self.routing, self.account, self.reference):
            field.textEdited.connect(lambda _: self._duplicate_check.start())
        self.processor_ref.textEdited.connect(lambda _: self._duplicate_check.start())
        for name, field in (
            ("memo", self.memo),
            ("transfer reference", self.reference),
            ("processor reference", self.processor_ref),
            ("check number", self.check_number),
            ("account", self.account),
        ):
            field.textEdited.connect(lambda text, n=name, w=field: self._no_card_number(n, w, text))
        self.save_button.clicked.connect(self.save)
        self.clear_button.clicked.connect(self.clear)
        for child in self.findChildren(QWidget):
            child.installEventFilter(self)
        self._method_chosen()
        self._show_totals()

    # -- keys ----------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Enter saves from any field (but not while an invoice's amount is being edited:
        there it confirms the amount)."""
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            editing = self.invoices.state() == QAbstractItemView.State.EditingState
            enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            a_field = not isinstance(watched, QPushButton) or watched is self.save_button
            if enter and not editing and a_field:
                self.save()
                return True
        return super().eventFilter(watched, event)

    # -- what the person types ---------------------------------------------------------------------

    def set_facilities(self, facilities: list[FacilityInfo]) -> None:
        self.facilities = {f.code: f for f in facilities}
        self.facility.set_facilities(facilities)

    def _facility_typed(self) -> None:
        if self.facility.code() != self._chosen_code:
            self._facility_chosen()

    def _facility_chosen(self) -> None:
        code = self._chosen_code = self.facility.code()
        self.allocations.set_invoices([], self._currency())
        if code is None:
            return
        self.desk.query(
            self, lambda ws: open_invoices(ws, code), self._invoices_arrived, key="open-invoices"
        )
        self._duplicate_check.start()

    def _invoices_arrived(self, invoices: list[OpenInvoice]) -> None:
        self.allocations.set_invoices(invoices, self._currency())
        self.allocations.set_amount(self._typed_amount())

    def _method_chosen(self) -> None:
        method = str(self.method.currentData())
        self.method_fields.setCurrentIndex(list(self.method_forms).index(method))
        self._duplicate_check.start()

    def _currency(self) -> str:
        facility = self.facilities.get(self.facility.code() or "")
        return facility.currency if facility else "USD"

    def _typed_amount(self) -> Money | None:
        text = self.amount.text().strip()
        if not text:
            return None
        try:
            return _parse(text, self._currency(), self.desk)
        except BadInput:
            return None

    def _amount_typed(self, _: str) -> None:
        self.form.errors["amount"].hide()
        self.allocations.set_amount(self._typed_amount())

    def _show_totals(self) -> None:
        f, currency = self.desk.formats, self._currency()
        amount = self._typed_amount()
        applied = Money.from_minor(self.allocations.applied(), currency)
        if amount is None:
            self.totals.setText(f"Applied {esc(f.money(applied))}")
            return
        unapplied = Money.from_minor(amount.minor - applied.minor, currency)
        credit = " (credit to the facility)" if unapplied.is_positive() else ""
        self.totals.setText(
            f"Amount <b>{esc(f.money(amount))}</b> = applied {esc(f.money(applied))} + "
            f"unapplied <b>{esc(f.money(unapplied))}</b>{credit}"
        )

    def _no_card_number(self, name: str, field: QLineEdit, text: str) -> None:
        """A full card number is refused as it is typed, and not kept: the field is emptied."""
        try:
            refuse_card_numbers(name, text)
        except BadInput as refusal:
            field.clear()
            self._field_error(_error_key(name), refusal.message)

    def _field_error(self, key: str, text: str) -> None:
        label = self.form.errors.get(key)
        for page in self.method_forms.values():
            label = label or page.errors.get(key)
        if label is None:
            self.message_bar.show_message(text, "warning")
            return
        label.setText(text)
        label.show()

    # -- duplicates ---------------------------------------------------------------------------

    def draft(self) -> PaymentDraft:
        method = str(self.method.currentData())
        check, transfer, card = method == "check", method == "transfer", method == "card"
        return PaymentDraft(
            facility=self.facility.code() or self.facility.currentText(),
            method=method,
            amount=_dot_amount(self.amount.text(), self._currency(), self.desk),
            received=pydate(self.received.date()),
            check_number=self.check_number.text() if check else None,
            routing_number=self.routing.text() if check else None,
            account_number=self.account.text() if check else None,
            reference=self.reference.text() if transfer else None,
            card_brand=self.card_brand.currentText() if card else None,
            card_last4=self.card_last4.text() if card else None,
            processor_ref=self.processor_ref.text() if card else None,
            memo=self.memo.text() or None,
            allocations=self.allocations.allocations(),
            override_reason=self._override,
        )

    def _look_for_duplicate(self) -> None:
        if self.facility.code() is None:
            return
        draft = self.draft()
        self.desk.query(
            self, lambda ws: find_duplicate(ws, draft), self._duplicate_found, key="duplicate"
        )

    def _duplicate_found(self, found: DuplicateInfo | None) -> None:
        self._duplicate = found
        if found is None:
            self.duplicate_bar.hide()
            self._override = None
            return
        f = self.desk.formats
        self.duplicate_bar.show_message(
            f"The {found.instrument} was already recorded: payment {found.payment_id}, "
            f"{f.money(found.amount)} received {f.date(found.received_date)}, recorded by "
            f"{found.recorded_by} on {f.datetime(found.recorded_at)} ({found.status}). Saving "
            "it again is refused, unless a manager approves it as a second payment.",
            "warning",
            {"Record for a manager's &approval…": self.ask_override},
        )

    def ask_override(self) -> None:
        dialog = ReasonDialog(
            self,
            "Record for a manager's approval",
            "Why is this a second payment and not the same one entered twice? A manager who did "
            "not record it approves it before it counts. &Reason:",
            "&Record for approval",
        )

        def chosen(reason: str) -> None:
            self._override = reason
            dialog.accept()
            self.save()

        dialog.submitted.connect(chosen)
        dialog.open()

    # -- saving ---------------------------------------------------------------------------------

    def save(self) -> None:
        """Record the payment once, whatever happens to this submission (its key stays the same
        for every retry until the payment is saved)."""
        if self._saving:
            return
        self.form.clear_errors()
        for page in self.method_forms.values():
            page.clear_errors()
        self.message_bar.hide()
        if self.facility.code() is None:
            self._field_error("facility", "Choose the facility that paid (type part of its name).")
            return
        if not self.amount.text().strip():
            self._field_error("amount", "Type the amount received.")
            return
        self._saving = True
        self.save_button.setEnabled(False)
        draft, key = self.draft(), self.key
        self.desk.change(
            self,
            lambda ws: record_payment(ws, draft, key),
            self._saved,
            changes("payments", "invoices"),
            failure=self._refused,
        )

    def _refused(self, error: BaseException) -> None:
        self._saving = False
        self.save_button.setEnabled(True)
        labels = {**self.form.errors}
        for page in self.method_forms.values():
            labels.update(page.errors)
        show_at_field(error, labels, lambda err: self.desk.presenter.present(self, err, self.save))

    def _saved(self, receipt: PaymentReceipt) -> None:
        self._saving = False
        self.save_button.setEnabled(True)
        self.saved.emit(receipt)
        self.clear()

    def clear(self) -> None:
        """A blank form, with a new key, for the next payment."""
        self.key = self._new_key()
        self._override, self._duplicate = None, None
        for field in (
            self.check_number,
            self.routing,
            self.account,
            self.reference,
            self.card_last4,
            self.processor_ref,
            self.amount,
            self.memo,
        ):
            field.clear()
        self.duplicate_bar.hide()
        self.form.clear_errors()
        self.allocations.set_amount(None)
        self._facility_chosen()
        self.facility.setFocus()

    def has_unsaved(self) -> bool:
        return bool(
            self.amount.text().strip()
            or self.check_number.text().strip()
            or self.reference.text().strip()
            or self.memo.text().strip()
        )

    @staticmethod
    def _new_key() -> str:
        return f"gui-{uuid.uuid4()}"


def _error_key(name: str) -> str:
    return {
        "transfer reference": "reference",
        "processor reference": "processor",
        "check number": "check number",
    }.get(name, name)


def _marks(desk: Desk) -> tuple[str, str]:
    locale = desk.formats.locale
    return locale.decimalPoint(), locale.groupSeparator()


def _parse(text: str, currency: str, desk: Desk) -> Money:
    decimal, group = _marks(desk)
    return parse_local_money(text, currency, decimal_mark=decimal, group_mark=group)


def _dot_amount(text: str, currency: str, desk: Desk) -> str:
    """The amount as the service reads it (a dot for decimals); what cannot be read goes as
    typed, and the service's refusal names it."""
    try:
        return _parse(text, currency, desk).plain()
    except BadInput:
        return text


def _plain_local(amount: Money, desk: Desk) -> str:
    decimal, _group = _marks(desk)
    return amount.plain().replace(".", decimal)


class PaymentDialog(QDialog):
    """The form in a window of its own, reachable from an invoice or a facility."""

    def __init__(
        self,
        desk: Desk,
        facilities: list[FacilityInfo],
        code: str | None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Receive a payment")
        self.form = PaymentForm(desk, self)
        self.form.set_facilities(facilities)
        if code:
            self.form.facility.set_code(code)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        self.resize(980, 560)
        self.form.saved.connect(lambda _: self.accept())

    def reject(self) -> None:
        # Escape or Cancel with a payment half typed asks first; nothing typed closes at once.
        if self.form.has_unsaved() and not confirm_discard(self):
            return
        super().reject()


def confirm_discard(parent: QWidget) -> bool:
    """Whether the person agrees to lose the payment they were typing."""
    answer = QMessageBox.question(
        parent,
        "Discard the payment?",
        "The payment you were typing has not been saved. Discard it?",
        QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Discard
