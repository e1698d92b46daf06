"""People: who works in this database and in which role. An administrator adds people, changes
a role or turns someone off (never deleted: their name stays in the audit trail). On a shared
database people are database logins, managed with `billing-desk admin user add`."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.roles import Permission, Role
from billing_desk.services.users import UserInfo, add_user, change_user, list_users
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar, show_at_field
from billing_desk.ui.models import Column, RowsModel
from billing_desk.ui.operations import changes
from billing_desk.ui.views.base import View, fit_columns, make_table, select_key, selected_row
from billing_desk.ui.widgets import Form, make_primary

ROLE_WORDS = {
    Role.CLERK: "Clerk — records payments, deposits, imports and reconciles",
    Role.MANAGER: "Manager — approves, voids, resolves, prints statements",
    Role.AUDITOR: "Auditor — reads and verifies, never writes",
    Role.ADMIN: "Administrator — people, facilities, maintenance",
}


class PeopleView(View):
    title = "People"
    summary = "who works here"
    permission = Permission.MANAGE_USERS
    listens = frozenset({"people"})

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(desk, parent)
        self.model: RowsModel[UserInfo] = RowsModel(
            [
                Column("Name", lambda r: r.name),
                Column("Role", lambda r: r.role.capitalize()),
                Column("Active", lambda r: "Yes" if r.active else "No — turned off"),
            ],
            key=lambda r: r.name,
            parent=self,
        )
        self.table = make_table(self, self.model, "People", stretch=2)
        self.layout_.addWidget(self.table, 1)
        may = desk.may(Permission.MANAGE_USERS) and not desk.is_shared
        self.add_action = self.action(
            "&Add person…", self.add, shortcut="Ctrl+N", tip="Register someone who will work here."
        )
        self.edit_action = self.action(
            "&Change role or turn off…",
            self.edit,
            shortcut="Ctrl+E",
            tip="Change the selected person's role, or turn them off.",
        )
        self.add_action.setVisible(may)
        self.edit_action.setVisible(may)
        self.edit_action.setEnabled(False)
        self.table.selectionModel().selectionChanged.connect(
            lambda *_: self.edit_action.setEnabled(selected_row(self.table, self.model) is not None)
        )
        self.refresh_action = self.action(
            "Re&fresh", self.refresh, shortcut=QKeySequence.StandardKey.Refresh
        )
        if desk.is_shared:
            self.message_bar.show_message(
                "On a shared database each person is a database login: an administrator adds "
                "them with `billing-desk admin user add`, which asks for their first password."
            )
        self._wanted: str | None = None

    def menu_actions(self) -> list[QAction]:
        return [self.add_action, self.edit_action, self.refresh_action]

    def refresh(self) -> None:
        self.desk.query(self, list_users, self._arrived, key="people")

    def _arrived(self, people: list[UserInfo]) -> None:
        self.model.set_rows(people)
        fit_columns(self.table)
        if self._wanted:
            select_key(self.table, self.model, self._wanted)
            self._wanted = None

    def add(self) -> None:
        self._open(PersonDialog(self.desk, None, self))

    def edit(self) -> None:
        person = selected_row(self.table, self.model)
        if person is not None and self.add_action.isVisible():
            self._open(PersonDialog(self.desk, person, self))

    def _open(self, dialog: PersonDialog) -> None:
        dialog.saved.connect(self._saved)
        dialog.open()

    def _saved(self, person: UserInfo) -> None:
        self._wanted = person.name
        state = "" if person.active else ", turned off"
        self.message_bar.show_message(f"{person.name} is {person.role}{state}.")

    def save_state(self) -> None:
        self.save_header(self.table)

    def restore_state(self) -> None:
        self.restore_header(self.table)


class PersonDialog(QDialog):
    saved = Signal(object)

    def __init__(self, desk: Desk, person: UserInfo | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.person = person
        self.setWindowTitle("Add a person" if person is None else f"Change {person.name}")
        self.message_bar = MessageBar(self)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("their login name, e.g. jsmith")
        self.role = QComboBox(self)
        for role, words in ROLE_WORDS.items():
            self.role.addItem(words, role.value)
        self.active = QCheckBox("&Can work here", self)
        self.active.setChecked(True)
        form = Form()
        form.add("&Name:", self.name, error_key="name")
        form.add("&Role:", self.role, error_key="role")
        if person is not None:
            self.name.setText(person.name)
            self.name.setReadOnly(True)
            self.role.setCurrentIndex(max(self.role.findData(person.role), 0))
            self.active.setChecked(person.active)
            form.addRow("", self.active)
        else:
            # A new person can always work; the box is only for changing someone.
            self.active.hide()
            self.role.setCurrentIndex(self.role.findData(Role.CLERK.value))
        self.form = form
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

    def save(self) -> None:
        if not self.save_button.isEnabled():
            return
        self.form.clear_errors()
        self.save_button.setEnabled(False)
        name, role, active = self.name.text(), str(self.role.currentData()), self.active.isChecked()
        if self.person is None:
            work = lambda ws: add_user(ws, name, role)  # noqa: E731
        else:
            work = lambda ws: change_user(ws, name, role=role, active=active)  # noqa: E731
        self.desk.change(self, work, self._done, changes("people"), failure=self._refused)

    def _refused(self, error: BaseException) -> None:
        self.save_button.setEnabled(True)
        show_at_field(
            error, self.form.errors, lambda err: self.desk.presenter.present(self, err, self.save)
        )

    def _done(self, person: UserInfo) -> None:
        self.saved.emit(person)
        self.accept()
