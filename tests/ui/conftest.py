"""The desktop application under test: real widgets, offscreen, driven with keys and clicks.

Every test runs with two guards: no unit of work may open on the GUI thread (the application's
own check, recorded here so that a violation fails the test even where a slot swallowed it), and
no bug may reach the error presenter unless the test expects one. Screenshots of what a test
looked at go to tests/ui/screenshots (or BILLING_DESK_SCREENSHOTS), in the light and the dark
scheme where the test asks for both.
"""

from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from PySide6.QtCore import QEvent, QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from billing_desk.services import credentials
from billing_desk.services.credentials import set_password_source
from billing_desk.services.demo import load_demo_data
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui import desk as desk_module
from billing_desk.ui.app import Application, make_application
from billing_desk.ui.collector import GuiThreadCollector
from billing_desk.ui.errors import ErrorPresenter
from billing_desk.ui.views.audit import AuditView
from billing_desk.ui.window import MainWindow
from tests.conftest import Database
from tests.keyring_backend import MemoryKeyring
from tests.security.conftest import (
    PASSWORD,
    SharedDatabase,
    drop_shared_database,
    make_shared_database,
)

SCREENSHOTS = Path(
    os.environ.get("BILLING_DESK_SCREENSHOTS", Path(__file__).parent / "screenshots")
)
DEMO_AS_OF = "2026-05-20"
WAIT_MS = 60_000


@pytest.fixture(scope="session")
def desk_app(qapp: QApplication) -> QApplication:
    """pytest-qt's application, set up as billing-desk sets up its own (locale, fonts)."""
    return make_application()


@dataclass
class Guards:
    """What the guards saw; a test that provokes one on purpose inspects and clears it."""

    opened_on_gui_thread: list[str] = field(default_factory=list)
    bugs: list[BaseException] = field(default_factory=list)


@pytest.fixture(autouse=True)
def gui_thread_collector(desk_app: QApplication) -> Iterator[GuiThreadCollector]:
    """As the application runs: the cycle collector only on the GUI thread (ui/collector.py),
    and back to automatic collection for the tests of other layers."""
    collector = GuiThreadCollector(desk_app)
    yield collector
    collector.stop()
    collector.deleteLater()


@pytest.fixture(autouse=True)
def gui_guards(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Guards]:
    guards = Guards()
    opened_on_gui_thread, bugs = guards.opened_on_gui_thread, guards.bugs
    check = desk_module.refuse_gui_thread

    def recording_check() -> None:
        try:
            check()
        except desk_module.GuiThreadUnit:
            opened_on_gui_thread.append("".join(traceback.format_stack(limit=12)))
            raise

    monkeypatch.setattr(desk_module, "refuse_gui_thread", recording_check)
    original_bug = ErrorPresenter.bug

    def recording_bug(self: ErrorPresenter, parent: QWidget | None, error: BaseException) -> None:
        bugs.append(error)
        original_bug(self, parent, error)

    monkeypatch.setattr(ErrorPresenter, "bug", recording_bug)
    yield guards
    assert not opened_on_gui_thread, "a unit of work was opened on the GUI thread:\n" + "\n".join(
        opened_on_gui_thread
    )
    if not request.node.get_closest_marker("expects_bug"):
        assert not bugs, f"the error presenter was handed bugs: {bugs!r}"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    """An embedded database with the demo data, made once; tests copy it."""
    from datetime import date

    path = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    shutil.copyfile(sqlite_template, path)
    workspace = open_workspace(str(path), "newcomer", migrate=False)
    try:
        load_demo_data(workspace, as_of=date.fromisoformat(DEMO_AS_OF))
    finally:
        workspace.close()
    return path


@dataclass
class Gui:
    """One application on one database, as a person starts it."""

    qtbot: object
    folder: Path
    app: QApplication
    db: str
    settings_file: Path
    started: list[Application] = field(default_factory=list)

    def start(self, user: str | None = None, *, db: str | None = None) -> Application:
        settings = QSettings(str(self.settings_file), QSettings.Format.IniFormat)
        application = Application(self.app, settings)
        self.started.append(application)
        assert application.start(db or self.db, user)
        self.wait(lambda: application.desk is not None, "the database to open")
        return application

    def wait(self, condition: Callable[[], bool], what: str, timeout: int = WAIT_MS) -> None:
        self.qtbot.waitUntil(condition, timeout=timeout)  # type: ignore[attr-defined]

    def idle(self, application: Application) -> None:
        """Wait until no background operation of the application is running."""
        desk = application.desk
        assert desk is not None
        self.qtbot.waitUntil(lambda: not desk.ops.is_busy(), timeout=WAIT_MS)  # type: ignore[attr-defined]
        self.qtbot.wait(50)  # type: ignore[attr-defined]

    def stop(self, application: Application) -> None:
        """Quit as a person would, then let Qt delete the window now (not in the next test)."""
        if application.stopped:
            return
        application.window.close()
        application.close()
        application.window.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QApplication.processEvents()

    def close_all(self) -> None:
        for application in self.started:
            self.stop(application)


@pytest.fixture
def gui(
    qtbot: object,
    desk_app: QApplication,
    tmp_path: Path,
    fresh_database: Callable[[str], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gui]:
    # The log folder of the application under test is the test's own.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    database = fresh_database("sqlite")
    made = Gui(qtbot, tmp_path, desk_app, database.url, tmp_path / "settings.ini")
    yield made
    made.close_all()
    # The application handed every connection a password source; the next test starts clean.
    set_password_source(None)


@pytest.fixture
def demo_gui(gui: Gui, demo_template: Path) -> Gui:
    """The application on a copy of the demo database."""
    copy = gui.folder / "demo.sqlite3"
    shutil.copyfile(demo_template, copy)
    gui.db = str(copy)
    return gui


_LIGHT: list[QPalette] = []


def set_scheme(dark: bool) -> None:
    """The light or the dark scheme, as a desktop's theme would hand it to Qt. The offscreen
    platform has no theme, so the dark palette is the one a dark desktop gives Fusion; the
    application itself never sets a colour, which is what these screenshots check."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    if not _LIGHT:
        _LIGHT.append(QPalette(app.palette()))
    if not dark:
        app.setPalette(_LIGHT[0])
    else:
        palette = QPalette()
        roles = QPalette.ColorRole
        for role, colour in (
            (roles.Window, "#2b2b2b"),
            (roles.WindowText, "#e6e6e6"),
            (roles.Base, "#1f1f1f"),
            (roles.AlternateBase, "#262626"),
            (roles.Text, "#e6e6e6"),
            (roles.Button, "#353535"),
            (roles.ButtonText, "#e6e6e6"),
            (roles.BrightText, "#ff6b6b"),
            (roles.Highlight, "#2f65ca"),
            (roles.HighlightedText, "#ffffff"),
            (roles.ToolTipBase, "#353535"),
            (roles.ToolTipText, "#e6e6e6"),
            (roles.PlaceholderText, "#8c8c8c"),
            (roles.Link, "#6ea8fe"),
            (roles.Light, "#505050"),
            (roles.Midlight, "#404040"),
            (roles.Mid, "#303030"),
            (roles.Dark, "#191919"),
            (roles.Shadow, "#000000"),
        ):
            palette.setColor(role, QColor(colour))
        for role in (roles.WindowText, roles.Text, roles.ButtonText):
            palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
        app.setPalette(palette)
    QApplication.processEvents()


def screenshot(widget: QWidget, name: str, *, schemes: bool = True) -> list[Path]:
    """Save what `widget` shows now (in both schemes unless told otherwise); returns the
    files."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    for dark in (False, True) if schemes else (False,):
        set_scheme(dark)
        widget.repaint()
        QApplication.processEvents()
        path = SCREENSHOTS / f"{name}-{'dark' if dark else 'light'}.png"
        assert widget.grab().save(str(path)), f"could not save {path}"
        saved.append(path)
    set_scheme(False)
    return saved


def window_of(application: Application) -> MainWindow:
    return application.window


@pytest.fixture
def shared() -> Iterator[SharedDatabase]:
    """A shared database of this test's own, with its logins (tests/security/conftest.py)."""
    database = make_shared_database()
    yield database
    drop_shared_database(database)


@pytest.fixture
def log_in(shared: SharedDatabase) -> Iterator[Callable[[str], str]]:
    """`log_in(person)`: the person's password saved as the login dialog would save it (in a
    keyring of this test's own), and the address the application then opens without asking."""
    previous: KeyringBackend = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())

    def saved(person: str) -> str:
        url = shared.url(person, None)
        credentials.login(url, PASSWORD)
        return url

    yield saved
    keyring.set_keyring(previous)


def wait_for_trail(
    gui: Gui, application: Application, entity_type: str, entity_id: object | None = None
) -> AuditView:
    """After History: the Audit view in front, showing the whole trail of the entity (of
    `entity_type` and, given, `entity_id`) and nothing else."""

    def shown() -> bool:
        view = application.window.current_view()
        return (
            isinstance(view, AuditView)
            and view.model.rowCount() > 0
            and view.model.exhausted
            and all(
                r.entity_type == entity_type
                and (entity_id is None or r.entity_id == str(entity_id))
                for r in view.model.rows
            )
        )

    gui.wait(shown, f"the {entity_type}'s own history")
    view = application.window.current_view()
    assert isinstance(view, AuditView)
    return view
