"""Facilities: the hospitals, care homes and clinics billed; managers and administrators add
them and change their name, terms and billing contact."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.roles import Permission
from billing_desk.services.facilities import (
    FacilityInfo,
    NewFacility,
    add_facility,
    change_facility,
    list_facilities,
)
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar, show_at_field
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.operations import changes
from billing_desk.ui.views.base import View, fit_columns, make_table, select_key, selected_row
from billing_desk.ui.views.payment_entry import PaymentDialog
from billing_desk.ui.widgets import Form, make_primary


class FacilitiesView(View):
    title = "Facilities"
    summary = "who is billed"
    listens = frozenset({"facilities"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        self.model: RowsModel[FacilityInfo] = RowsModel(
            [
                Column("Code", lambda r: r.code),
                Column("Name", lambda r: r.name),
                Column("Currency", lambda r: r.currency),
                Column(
                    "Terms",
                    lambda r: f"{r.payment_terms_days} days",
                    lambda r: r.payment_terms_days,
                    RIGHT,
                ),
                Column("Billing contact", lambda r: r.billing_contact_name or ""),
                Column("E-mail", lambda r: r.billing_contact_email or ""),
                Column("Address", lambda r: (r.billing_address or "").replace("\n", ", ")),
            ],
            key=lambda r: r.code,
            parent=self,
        )
        self.table = make_table(self, self.model, "Facilities", stretch=1)
        self.layout_.addWidget(self.table, 1)
        may = desk.may(Permission.MANAGE_FACILITIES)
        self.add_action = self.action(
            "&Add facility…", self.add, shortcut="Ctrl+N", tip="Add a facility to bill."
        )
        self.edit_action = self.action(
            "&Edit facility…",
            self.edit,
            shortcut="Ctrl+E",
            tip="Change the selected facility's name, terms or billing contact.",
        )
        self.add_action.setVisible(may)
        self.edit_action.setVisible(may)
        self.edit_action.setEnabled(False)
        self.table.selectionModel().selectionChanged.connect(
            lambda *_: self.edit_action.setEnabled(selected_row(self.table, self.model) is not None)
        )
        if may:
            self.table.activated.connect(lambda _: self.edit())
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        self.receive_action = self.action(
            "Receive a &payment…",
            self.receive_payment,
            shortcut="Ctrl+Shift+P",
            tip="Record a payment from the selected facility, its open invoices listed.",
        )
        self.receive_action.setVisible(desk.may(Permission.RECORD_PAYMENTS))
        self._wanted: str | None = None

    def menu_actions(self) -> list[QAction]:
        return [self.add_action, self.edit_action, self.receive_action, self.refresh_action]

    def receive_payment(self) -> None:
        chosen = selected_row(self.table, self.model)
        dialog = PaymentDialog(
            self.desk, list(self.model.rows), chosen.code if chosen else None, self
        )
        dialog.form.saved.connect(
            lambda receipt: self.message_bar.show_message(
                f"Payment {receipt.payment_id} recorded: "
                f"{self.desk.formats.money(receipt.amount)} from {receipt.facility}."
            )
        )
        dialog.open()

    def refresh(self) -> None:
        self.desk.query(self, list_facilities, self._arrived, key="facilities")

    def _arrived(self, facilities: list[FacilityInfo]) -> None:
        chosen = selected_row(self.table, self.model)
        self.model.set_rows(facilities)
        fit_columns(self.table)
        key = self._wanted or (chosen.code if chosen else None)
        self._wanted = None
        if key:
            select_key(self.table, self.model, key)

    def add(self) -> None:
        self._open(FacilityDialog(self.desk, None, self))

    def edit(self) -> None:
        facility = selected_row(self.table, self.model)
        if facility is not None and self.desk.may(Permission.MANAGE_FACILITIES):
            self._open(FacilityDialog(self.desk, facility, self))

    def _open(self, dialog: FacilityDialog) -> None:
        dialog.saved.connect(self._saved)
        dialog.open()

    def _saved(self, facility: FacilityInfo, added: bool) -> None:
        self._wanted = facility.code
        verb = "added" if added else "saved"
        self.message_bar.show_message(f"Facility {facility.code} ({facility.name}) {verb}.")

    def save_state(self) -> None:
        self.save_header(self.table)

    def restore_state(self) -> None:
        self.restore_header(self.table)


class FacilityDialog(QDialog):
    """Add a facility, or change one (its code and currency then stay as they are)."""

    saved = Signal(object, bool)

    def __init__(
        self, desk: Desk, facility: FacilityInfo | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.desk = desk
        self.adding = facility is None
        self.setWindowTitle("Add a facility" if facility is None else f"Edit {facility.code}")
        self.message_bar = MessageBar(self)
        self.code = QLineEdit(self)
        self.code.setMaxLength(16)
        self.code.setPlaceholderText("e.g. STMARY")
        self.name = QLineEdit(self)
        self.currency = QLineEdit("USD", self)
        self.currency.setMaxLength(3)
        self.currency.setInputMask(">AAA")
        self.terms = QSpinBox(self)
        self.terms.setRange(0, 365)
        self.terms.setValue(30)
        self.terms.setSuffix(" days")
        self.contact = QLineEdit(self)
        self.email = QLineEdit(self)
        self.address = QPlainTextEdit(self)
        self.address.setTabChangesFocus(True)
        self.address.setFixedHeight(self.fontMetrics().height() * 4)
        form = Form()
        form.add("&Code:", self.code)
        form.add("&Name:", self.name)
        form.add("C&urrency:", self.currency)
        form.add("Payment &terms:", self.terms, error_key="terms")
        form.add("Billing &contact:", self.contact, error_key="contact")
        form.add("&E-mail:", self.email, error_key="e-mail")
        form.add("&Address:", self.address)
        self.form = form
        if facility is not None:
            self.code.setText(facility.code)
            self.code.setReadOnly(True)
            self.name.setText(facility.name)
            self.currency.setText(facility.currency)
            self.currency.setReadOnly(True)
            self.terms.setValue(facility.payment_terms_days)
            self.contact.setText(facility.billing_contact_name or "")
            self.email.setText(facility.billing_contact_email or "")
            self.address.setPlainText(facility.billing_address or "")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        make_primary(buttons, self.save_button)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(480, 0)

    def draft(self) -> NewFacility:
        return NewFacility(
            self.code.text(),
            self.name.text(),
            self.currency.text() or "USD",
            self.terms.value(),
            self.contact.text(),
            self.email.text(),
            self.address.toPlainText(),
        )

    def save(self) -> None:
        if not self.save_button.isEnabled():
            return
        self.form.clear_errors()
        self.message_bar.hide()
        self.save_button.setEnabled(False)
        draft, adding = self.draft(), self.adding
        self.desk.change(
            self,
            lambda ws: add_facility(ws, draft) if adding else change_facility(ws, draft),
            self._done,
            changes("facilities"),
            failure=self._refused,
        )

    def _refused(self, error: BaseException) -> None:
        self.save_button.setEnabled(True)
        show_at_field(
            error, self.form.errors, lambda err: self.desk.presenter.present(self, err, self.save)
        )

    def _done(self, facility: FacilityInfo) -> None:
        self.saved.emit(facility, self.adding)
        self.accept()
