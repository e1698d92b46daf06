"""Logging in to a shared database (server, database, user, password), and choosing who is
working on an embedded one. The password is checked against the server in the background; it
is kept in the OS keyring only when the person asks and a usable keyring exists, and the dialog
says plainly when none does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from billing_desk.services.credentials import (
    NO_KEYRING,
    LoginResult,
    check_password,
    keyring_available,
    login,
    shared_location,
)
from billing_desk.services.users import UserInfo
from billing_desk.ui.errors import ErrorPresenter, MessageBar, show_at_field
from billing_desk.ui.operations import background
from billing_desk.ui.widgets import Form, make_primary


@dataclass(frozen=True)
class SharedLogin:
    """A checked login: the database URL (no password in it), the password for this session,
    and whether the keyring now keeps it."""

    url: str
    password: str
    saved: bool
    note: str | None


class LoginDialog(QDialog):
    logged_in = Signal(object)  # SharedLogin

    def __init__(
        self,
        presenter: ErrorPresenter,
        parent: QWidget | None = None,
        *,
        server: str = "",
        database: str = "billing",
        user: str = "",
        keyring_check: Callable[[], bool] = keyring_available,
    ) -> None:
        super().__init__(parent)
        self.presenter = presenter
        self.setWindowTitle("Connect to a shared database")
        self.message_bar = MessageBar(self)
        self.server = QLineEdit(server, self)
        self.server.setPlaceholderText("db.example.org")
        self.port = QSpinBox(self)
        self.port.setRange(1, 65535)
        self.port.setValue(5432)
        self.database = QLineEdit(database, self)
        self.user = QLineEdit(user, self)
        self.password = QLineEdit(self)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.remember = QCheckBox("&Remember the password in the system keyring", self)
        self.keyring_note = QLabel(self)
        self.keyring_note.setWordWrap(True)
        self.keyring_note.setAccessibleName("Keyring")
        form = Form()
        form.add("&Server:", self.server, error_key="server")
        form.add("P&ort:", self.port, error_key="port")
        form.add("&Database:", self.database, error_key="database")
        form.add("&User:", self.user, error_key="user")
        form.add("&Password:", self.password, error_key="password")
        form.addRow("", self.remember)
        self.form = form
        if keyring_check():
            self.remember.setChecked(True)
            self.keyring_note.hide()
        else:
            self.remember.setChecked(False)
            self.remember.setEnabled(False)
            self.keyring_note.setText(NO_KEYRING)
        buttons = QDialogButtonBox(self)
        self.connect_button = buttons.addButton("&Connect", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        make_primary(buttons, self.connect_button)
        buttons.accepted.connect(self.connect_to_server)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addLayout(form)
        # Below the form, at the dialog's full width: in a form row a wrapped sentence was
        # given a narrow column and cut after its second line.
        layout.addWidget(self.keyring_note)
        layout.addWidget(buttons)
        self.resize(460, 0)
        self.resize(460, self.heightForWidth(460) if self.hasHeightForWidth() else 0)

    def url(self) -> str:
        return (
            f"postgresql://{self.user.text().strip()}@{self.server.text().strip()}:"
            f"{self.port.value()}/{self.database.text().strip()}"
        )

    def connect_to_server(self) -> None:
        if not self.connect_button.isEnabled():
            return
        self.form.clear_errors()
        self.message_bar.hide()
        missing = [
            (key, text)
            for key, widget, text in (
                ("server", self.server, "Type the server's name or address."),
                ("database", self.database, "Type the database's name."),
                ("user", self.user, "Type your user name."),
                ("password", self.password, "Type your password."),
            )
            if not widget.text().strip()
        ]
        for key, text in missing:
            self.form.errors[key].setText(text)
            self.form.errors[key].show()
        if missing:
            return
        url, password, remember = self.url(), self.password.text(), self.remember.isChecked()
        self.connect_button.setEnabled(False)

        def check() -> SharedLogin:
            if remember:
                result: LoginResult = login(url, password)
                return SharedLogin(url, password, result.saved, result.note)
            check_password(shared_location(url), password)
            return SharedLogin(url, password, False, None)

        background(self, check, self._done, self._refused)

    def _refused(self, error: BaseException) -> None:
        self.connect_button.setEnabled(True)
        self.password.setFocus()
        self.password.selectAll()
        show_at_field(
            error,
            {"password": self.form.errors["password"]},
            lambda err: self.presenter.present(self, err, self.connect_to_server),
        )

    def _done(self, result: SharedLogin) -> None:
        # Dropped from the field at once; the application keeps it for this session only.
        self.password.clear()
        self.logged_in.emit(result)
        self.accept()


class PersonDialog(QDialog):
    """Who is working at this machine, among the people of an embedded database."""

    chosen = Signal(str)

    def __init__(
        self, people: list[UserInfo], current: str | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Working as")
        intro = QLabel(
            "Several people use this database. Who is working now? Everything you do is "
            "recorded under this name.",
            self,
        )
        intro.setWordWrap(True)
        self.people = QComboBox(self)
        for person in people:
            self.people.addItem(f"{person.name} ({person.role})", person.name)
        if current is not None:
            self.people.setCurrentIndex(max(self.people.findData(current), 0))
        form = Form()
        form.add("&Person:", self.people)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        make_primary(buttons, ok)
        buttons.accepted.connect(self._choose)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _choose(self) -> None:
        self.chosen.emit(str(self.people.currentData()))
        self.accept()
