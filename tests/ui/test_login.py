"""Connecting to a shared database from the window: the password is checked against the server
in the background, kept in the keyring when there is one and the person asks, and otherwise
held for this session only with a plain sentence saying so."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from PySide6.QtCore import Qt

from billing_desk.domain.roles import Role
from billing_desk.services import credentials
from billing_desk.services.credentials import NO_KEYRING
from billing_desk.ui.login import LoginDialog
from tests.keyring_backend import MemoryKeyring
from tests.security.conftest import (
    PASSWORD,
    SharedDatabase,
    drop_shared_database,
    make_shared_database,
)
from tests.ui.conftest import Gui, screenshot


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedDatabase]:
    database = make_shared_database()
    yield database
    drop_shared_database(database)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous: KeyringBackend = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous: KeyringBackend = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def _fill(gui: Gui, dialog: LoginDialog, database: SharedDatabase, password: str) -> None:
    dialog.server.setText("127.0.0.1")
    dialog.port.setValue(5432)
    dialog.database.setText(database.name)
    dialog.user.setText(database.login("clerk_a"))
    dialog.password.setFocus()
    gui.qtbot.keyClicks(dialog.password, password)  # type: ignore[attr-defined]


def test_login_with_a_keyring_keeps_the_password_there(
    gui: Gui,
    shared: SharedDatabase,
    memory_keyring: MemoryKeyring,
) -> None:
    application = gui.start()
    dialog = application.connect_shared()
    assert dialog.remember.isEnabled() and dialog.remember.isChecked()
    assert dialog.keyring_note.isHidden()
    _fill(gui, dialog, shared, "wrong password")
    gui.qtbot.mouseClick(dialog.connect_button, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    gui.wait(lambda: dialog.message_bar.isVisible(), "the refusal")
    assert "refused the password" in dialog.message_bar.text.text()
    assert memory_keyring.secrets == {}
    assert dialog.user.text() == shared.login("clerk_a"), "what was typed stays"
    screenshot(dialog, "login-refused")
    # Enter after a refusal connects again (it once pressed Cancel, whose button had taken the
    # focus while Connect was busy).
    assert dialog.connect_button.isDefault()
    assert dialog.focusWidget() is dialog.password

    dialog.password.clear()
    gui.qtbot.keyClicks(dialog.password, PASSWORD)  # type: ignore[attr-defined]
    gui.qtbot.keyClick(dialog.password, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    gui.wait(
        lambda: application.desk is not None and application.desk.is_shared, "the shared database"
    )
    desk = application.desk
    assert desk is not None
    assert desk.person.name == shared.login("clerk_a") and desk.person.role is Role.CLERK
    assert list(memory_keyring.secrets.values()) == [PASSWORD]
    assert dialog.password.text() == ""
    gui.idle(application)


def test_login_without_a_keyring_says_so_and_stores_nothing(
    gui: Gui,
    shared: SharedDatabase,
    no_keyring: None,
) -> None:
    application = gui.start()
    dialog = application.connect_shared()
    assert not dialog.remember.isEnabled() and not dialog.remember.isChecked()
    assert dialog.keyring_note.text() == NO_KEYRING and not dialog.keyring_note.isHidden()
    screenshot(dialog, "login-no-keyring")
    _fill(gui, dialog, shared, PASSWORD)
    gui.qtbot.mouseClick(dialog.connect_button, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    gui.wait(
        lambda: application.desk is not None and application.desk.is_shared, "the shared database"
    )
    url = credentials.shared_location(dialog.url()).url
    assert credentials.saved_password(url) is None
    gui.idle(application)
