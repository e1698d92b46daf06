"""Starting the desktop application: the display check, the Qt application (locale, scheme,
settings, logging), which database to open and who is working, and the single-instance lock of
an embedded database. Opening a database (migrating it, registering the first person) runs in
the background like every other database call."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from PySide6.QtCore import QLocale, QSettings, Qt
from PySide6.QtGui import QFontDatabase, QIcon
from PySide6.QtWidgets import QApplication, QFileDialog

from billing_desk.domain.errors import Refused
from billing_desk.domain.roles import Role
from billing_desk.resources import fonts_folder, resource_path
from billing_desk.services.credentials import account_name, shared_location, use_saved_passwords
from billing_desk.services.monitoring import watch
from billing_desk.services.overview import Overview, overview
from billing_desk.services.unit_of_work import (
    Workspace,
    locate_database,
    open_workspace,
    whoami,
)
from billing_desk.services.users import UserInfo, add_user, who_may_work
from billing_desk.ui.collector import GuiThreadCollector
from billing_desk.ui.desk import Desk, Person
from billing_desk.ui.errors import ErrorPresenter, install_excepthook, setup_logging
from billing_desk.ui.formatting import Formats
from billing_desk.ui.instance import InstanceLock
from billing_desk.ui.login import LoginDialog, PersonDialog, SharedLogin
from billing_desk.ui.operations import background
from billing_desk.ui.window import MainWindow

if TYPE_CHECKING:
    from billing_desk.ui.live import LiveFeed

log = logging.getLogger(__name__)

EXIT_NO_DISPLAY = 4
NO_DISPLAY = (
    "billing-desk needs a graphical display to open its window and none was found (DISPLAY "
    "and WAYLAND_DISPLAY are unset); on a server use the command line instead, for example "
    "`billing-desk invoice list` (`billing-desk --help` lists the commands)."
)
RECENT_KEPT = 8
ORGANIZATION = "billing-desk"


def display_missing(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """On Linux and the BSDs a window needs X11 or Wayland, unless Qt was told to draw
    elsewhere (QT_QPA_PLATFORM, as the tests do with offscreen)."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return False
    if environ.get("QT_QPA_PLATFORM"):
        return False
    return not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def make_application(argv: Sequence[str] = ()) -> QApplication:
    """The Qt application, with the person's locale (or US English under the C locale, where
    Qt would write dates as "31 03 2026") and their light or dark scheme."""
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(["billing-desk", *argv])
    app.setApplicationName("billing-desk")
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationDisplayName("billing-desk")
    # Names are not always Latin: the fonts the reports embed also cover the window (Japanese,
    # Korean, Arabic) on machines that lack them.
    for font in sorted(fonts_folder().glob("*.ttf")):
        QFontDatabase.addApplicationFont(str(font))
    app.setWindowIcon(QIcon(str(resource_path("icons", "billing-desk.png"))))
    locale = QLocale.system()
    if locale.language() in (QLocale.Language.C, QLocale.Language.AnyLanguage):
        locale = QLocale(QLocale.Language.English, QLocale.Country.UnitedStates)
    QLocale.setDefault(locale)
    return app


@dataclass(frozen=True)
class Opened:
    """A database opened in the background, and who is (or could be) working in it."""

    workspace: Workspace
    person: Person
    overview: Overview | None
    # When the wanted person is not a user here: the people to choose from.
    choose_among: tuple[UserInfo, ...] = ()


class Application:
    """Owns the main window and which database it shows; opens databases and switches people."""

    def __init__(self, app: QApplication, settings: QSettings | None = None) -> None:
        self.app = app
        self.settings = settings or QSettings()
        log_folder = Path(platformdirs.user_log_dir("billing-desk", appauthor=False))
        self.presenter = ErrorPresenter(setup_logging(log_folder))
        install_excepthook(self.presenter)
        self.formats = Formats(QLocale())
        self.window = MainWindow(self.settings)
        self.window.open_file_wanted.connect(self.choose_file)
        self.window.connect_wanted.connect(self.connect_shared)
        self.window.archive_wanted.connect(self.choose_archive)
        self.window.recent_wanted.connect(lambda target: self.open(target))
        self.window.person_wanted.connect(self.choose_person)
        self.desk: Desk | None = None
        self.feed: LiveFeed | None = None  # shared databases only
        self.lock: InstanceLock | None = None
        self.target: str | None = None
        self.stopped = False
        # Passwords typed this session (never written anywhere): account -> password.
        self._passwords: dict[str, str] = {}
        use_saved_passwords(self._password_for)

    # -- opening a database -------------------------------------------------------------------

    def start(self, db: str | None = None, user: str | None = None) -> bool:
        """Show the window and open `db` (the database used last, else the data folder's
        file). False when another billing-desk holds the database (it was asked to come
        forward)."""
        target = db if db is not None else self._last_database()
        refusal = self._lock_for(target)
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return False
        self.window.show()
        self.open(target, user, locked=True)
        return True

    def _last_database(self) -> str | None:
        last = self.settings.value("databases/last")
        return str(last) if last else None

    def _lock_for(self, target: str | None) -> str | None:
        """Hold `target` for this window (an embedded file only); None when held, else the
        sentence saying who holds it."""
        location = locate_database(target)
        path = location.sqlite_path
        if self.lock is not None and self.lock.database == path:
            return None
        if path is None or location.read_only:
            self._release_lock()
            return None
        lock = InstanceLock(path)
        if lock.acquire():
            self._release_lock()
            lock.listen(self._come_forward)
            self.lock = lock
            return None
        if lock.ask_holder_to_come_forward():
            return (
                f"billing-desk is already open on {path} ({lock.holder()}); its window was "
                "brought forward."
            )
        return f"The database {path} is in use by {lock.holder()}; close it there first."

    def _release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _come_forward(self) -> None:
        self.window.setWindowState(
            (self.window.windowState() & ~Qt.WindowState.WindowMinimized)
            | Qt.WindowState.WindowActive
        )
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def open(self, target: str | None, user: str | None = None, *, locked: bool = False) -> None:
        """Open `target` in the background; the window shows it when it is ready."""
        refusal = None if locked else self._lock_for(target)
        if refusal is not None:
            self.presenter.present(self.window, Refused(refusal), None)
            return
        self.window.take_down()
        self._stop_feed()
        if self.desk is not None:
            old, self.desk = self.desk, None
            old.close()
        wanted = user or self._last_person(target)
        background(
            self.window,
            lambda: _open(target, wanted),
            lambda opened: self._opened(target, opened),
            lambda error: self._failed(target, user, error),
        )

    def _last_person(self, target: str | None) -> str | None:
        value = self.settings.value(f"people/{_settings_key(target)}")
        return str(value) if value else None

    def _opened(self, target: str | None, opened: Opened) -> None:
        if opened.choose_among:
            opened.workspace.close()
            self._ask_person(target, list(opened.choose_among), None)
            return
        self.target = target
        desk = Desk(
            opened.workspace,
            opened.person,
            formats=self.formats,
            presenter=self.presenter,
            settings=self.settings,
        )
        self.desk = desk
        if not desk.read_only:
            # The anomaly rules run after each payment this window records, off its thread.
            watch(opened.workspace, background=True)
        self._remember(target, opened)
        empty = opened.overview is not None and opened.overview.is_empty
        self.window.set_desk(desk, empty=empty)
        if desk.is_shared:
            # Imported for shared databases only: an embedded one never listens.
            from billing_desk.ui.live import LiveFeed

            self.feed = LiveFeed(desk)
            self.feed.state.connect(self.window.status.set_live, Qt.ConnectionType.QueuedConnection)
            self.window.status.set_live("Connecting live updates…")
            self.feed.start()

    def _failed(self, target: str | None, user: str | None, error: BaseException) -> None:
        self.window.opening.setText(
            f"{target or 'The database'} could not be opened. Use the File menu to open another."
        )
        self.presenter.present(self.window, error, lambda: self.open(target, user))

    def _remember(self, target: str | None, opened: Opened) -> None:
        self.settings.setValue("databases/last", target or "")
        if not opened.workspace.location.is_postgresql:
            self.settings.setValue(f"people/{_settings_key(target)}", opened.person.name)
        described = target or str(opened.workspace.location.describe())
        recent = self.settings.value("databases/recent", [])
        entries = [str(r) for r in (recent if isinstance(recent, list) else [recent]) if r]
        entries = [described, *(e for e in entries if e != described)][:RECENT_KEPT]
        self.settings.setValue("databases/recent", entries)

    # -- File menu ----------------------------------------------------------------------------

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window,
            "Open a billing database",
            str(Path.home()),
            "billing-desk databases (*.sqlite3 *.sqlite *.db);;All files (*)",
        )
        if path:
            self.open(path)

    def choose_archive(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window,
            "Open an auditor's archive",
            str(Path.home()),
            "Audit archives (*.sqlite3 *.sqlite *.db *.archive);;All files (*)",
        )
        if path:
            self.open(path)

    def connect_shared(self) -> LoginDialog:
        dialog = LoginDialog(self.presenter, self.window)
        dialog.logged_in.connect(self._logged_in)
        dialog.open()
        return dialog

    def _logged_in(self, login: SharedLogin) -> None:
        self._passwords[account_name(shared_location(login.url).url)] = login.password
        if login.note:
            self.window.message_bar.show_message(login.note)
        self.open(login.url)

    def _password_for(self, account: str) -> str | None:
        # Called on worker threads when a connection needs a password the keyring lacks.
        return self._passwords.get(account)

    def choose_person(self) -> None:
        desk = self.desk
        if desk is None or desk.is_shared:
            return
        target = self.target
        current = desk.person.name
        background(
            self.window,
            lambda: who_may_work(desk.workspace),
            lambda people: self._ask_person(target, people, current),
            lambda error: self.presenter.present(self.window, error, None),
        )

    def _ask_person(self, target: str | None, people: list[UserInfo], current: str | None) -> None:
        dialog = PersonDialog(people, current, self.window)
        dialog.chosen.connect(lambda name: self.open(target, name, locked=True))
        dialog.open()

    def _stop_feed(self) -> None:
        if self.feed is not None:
            self.feed.stop()
            self.feed = None

    def close(self) -> None:
        self.stopped = True
        self._stop_feed()
        if self.desk is not None:
            self.desk.close()
            self.desk = None
        self._release_lock()


def _settings_key(target: str | None) -> str:
    return (target or "default").replace("/", "|").replace("\\", "|")


def _open(target: str | None, wanted: str | None) -> Opened:
    """Open (and migrate) the database and settle who is working. On an embedded database with
    nobody registered yet, this machine's person becomes its administrator."""
    os_user = getpass.getuser()
    # On a shared database you are the login you connect with, never a name chosen here.
    shared = locate_database(target).is_postgresql
    workspace = open_workspace(target, None if shared else wanted or os_user)
    try:
        if workspace.location.is_postgresql:
            actor = whoami(workspace)
            return Opened(workspace, Person(actor.name, actor.role), overview(workspace))
        if workspace.read_only:
            actor = whoami(workspace)
            role = actor.role or Role.AUDITOR
            return Opened(workspace, Person(actor.name, role), None)
        people = who_may_work(workspace)
        if not people:
            add_user(workspace, os_user, Role.ADMIN.value)
            workspace.close()
            workspace = open_workspace(target, os_user, migrate=False)
            people = who_may_work(workspace)
        actor = whoami(workspace)
        if actor.role is None:
            return Opened(workspace, Person(actor.name, None), None, tuple(people))
        return Opened(workspace, Person(actor.name, actor.role), overview(workspace))
    except BaseException:
        workspace.close()
        raise


def run(db: str | None = None, user: str | None = None) -> int:
    """`billing-desk` with no command, and `billing-desk gui`: open the main window."""
    if display_missing():
        print(NO_DISPLAY, file=sys.stderr)
        return EXIT_NO_DISPLAY
    app = make_application()
    collector = GuiThreadCollector(app)
    application = Application(app)
    try:
        if not application.start(db, user):
            return 0
        try:
            return app.exec()
        finally:
            application.close()
    finally:
        collector.stop()
