"""The main window: a dispatcher, not a god object. A navigation list of the views the person's
role may use, a stack holding each view (its own module under ui/views/), the menus built from
the views' own actions, and the status bar. Geometry, splitter, header states and the last view
persist between runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QSplitter,
    QStackedWidget,
    QStatusBar,
    QVBoxLayout,
    QWidget,
)

from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar
from billing_desk.ui.statusbar import StatusBar
from billing_desk.ui.views.alerts import AlertsView
from billing_desk.ui.views.approvals import ApprovalsView
from billing_desk.ui.views.audit import AuditView
from billing_desk.ui.views.base import View
from billing_desk.ui.views.deposits import DepositsView
from billing_desk.ui.views.facilities import FacilitiesView
from billing_desk.ui.views.health import HealthView
from billing_desk.ui.views.invoices import InvoicesView
from billing_desk.ui.views.payment_entry import confirm_discard
from billing_desk.ui.views.payments import PaymentsView
from billing_desk.ui.views.people import PeopleView
from billing_desk.ui.views.reconciliation import ReconciliationView
from billing_desk.ui.views.reports import ReportsView
from billing_desk.ui.views.trips import TripsView
from billing_desk.ui.welcome import WelcomePage

if TYPE_CHECKING:
    from billing_desk.services.demo import DemoSummary

# The navigation, in the order of a clerk's day; each shown only to roles that may use it.
VIEWS: tuple[type[View], ...] = (
    PaymentsView,
    ApprovalsView,
    DepositsView,
    ReconciliationView,
    InvoicesView,
    TripsView,
    AlertsView,
    AuditView,
    ReportsView,
    HealthView,
    FacilitiesView,
    PeopleView,
)
APP_TITLE = "billing-desk"


def _badge(item: QListWidgetItem, title: str, count: int) -> None:
    """A navigation entry with how many things wait there: "Alerts (3)"."""
    item.setText(f"{title} ({count})" if count else title)
    font = item.font()
    font.setBold(bool(count))
    item.setFont(font)


class MainWindow(QMainWindow):
    """Holds the views of one open database (a `Desk`); `set_desk` swaps them when another
    database is opened or another person starts working."""

    # File-menu wishes, carried out by the application (which owns opening databases).
    open_file_wanted = Signal()
    connect_wanted = Signal()
    archive_wanted = Signal()
    recent_wanted = Signal(str)
    person_wanted = Signal()

    def __init__(self, settings: QSettings) -> None:
        super().__init__()
        self._agreed = False
        self.settings = settings
        self.desk: Desk | None = None
        self.views: dict[str, View] = {}
        self.setWindowTitle(APP_TITLE)
        self.setObjectName("mainWindow")
        self.message_bar = MessageBar(self)
        self.navigation = QListWidget(self)
        self.navigation.setObjectName("navigation")
        self.navigation.setAccessibleName("Navigation")
        self.navigation.setUniformItemSizes(True)
        self.navigation.setSpacing(2)
        self.stack = QStackedWidget(self)
        self.opening = QLabel("Opening the database…", self)
        self.opening.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack.addWidget(self.opening)
        self.welcome: WelcomePage | None = None
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.navigation)
        self.splitter.addWidget(self.stack)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(1, False)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.navigation.currentRowChanged.connect(self._navigate)
        self._view_menu: QMenu | None = None
        self._action_menu: QMenu | None = None
        self._build_menus()
        self.resize(1180, 760)
        geometry = settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = settings.value("window/splitter")
        if isinstance(state, QByteArray):
            self.splitter.restoreState(state)
        else:
            self.splitter.setSizes([180, 1000])

    # -- menus --------------------------------------------------------------------------------

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._add(
            file, "&Open database file…", self.open_file_wanted.emit, QKeySequence.StandardKey.Open
        )
        self._add(file, "&Connect to a shared database…", self.connect_wanted.emit, "Ctrl+Shift+O")
        self._add(file, "Open an &auditor's archive…", self.archive_wanted.emit, "Ctrl+Alt+O")
        self.recent_menu = file.addMenu("&Recent databases")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file.addSeparator()
        self.person_action = self._add(
            file, "&Working as…", self.person_wanted.emit, "Ctrl+Shift+W"
        )
        file.addSeparator()
        self._add(file, "&Quit", self.quit, QKeySequence.StandardKey.Quit)
        self._view_menu = bar.addMenu("&View")
        self._action_menu = bar.addMenu("&Actions")
        help_menu = bar.addMenu("&Help")
        self._add(help_menu, "&About billing-desk", self._about, None)

    def _add(
        self,
        menu: QMenu,
        text: str,
        slot: Callable[[], object],
        shortcut: str | QKeySequence.StandardKey | None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda: slot())
        menu.addAction(action)
        return action

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.value("databases/recent", [])
        entries = [str(r) for r in (recent if isinstance(recent, list) else [recent]) if r]
        if not entries:
            empty = self.recent_menu.addAction("(none yet)")
            empty.setEnabled(False)
        for entry in entries:
            action = self.recent_menu.addAction(entry)
            action.triggered.connect(lambda _=False, e=entry: self.recent_wanted.emit(e))

    def _about(self) -> None:
        self.message_bar.show_message(
            "billing-desk: back-office billing for a facility transportation service. No trip "
            "billed twice, no payment recorded twice, exact money, and a history nobody rewrites "
            "unseen."
        )

    # -- the open database ------------------------------------------------------------------------

    def set_desk(self, desk: Desk, *, empty: bool) -> None:
        """Show the views of `desk`'s person; the welcome page first when the database is
        empty."""
        self.take_down()
        self.desk = desk
        self.views = {}
        for kind in VIEWS:
            if not desk.may(kind.permission):
                continue
            view = kind(desk, self.stack)
            view.restore_state()
            self.views[kind.title] = view
            self.stack.addWidget(view)
            item = QListWidgetItem(kind.title)
            item.setToolTip(kind.summary)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{kind.title}: {kind.summary}")
            self.navigation.addItem(item)
            if isinstance(view, AlertsView):
                view.open_count.connect(lambda n, i=item: _badge(i, "Alerts", n))
                view.count_open()
        self._fill_view_menu()
        status = StatusBar(desk, self)
        self.setStatusBar(status)
        self.status = status
        status.badge.check()
        title = f"{desk.describe_database()} — {APP_TITLE}"
        if desk.read_only:
            title = f"{desk.describe_database()} (auditor's archive, read-only) — {APP_TITLE}"
            # Of which database and when, once the archive has said (read in the background).
            status.archive_described.connect(
                lambda text: self.setWindowTitle(f"{text} — {APP_TITLE}")
            )
        self.setWindowTitle(title)
        self.person_action.setEnabled(not desk.is_shared)
        if empty and not desk.read_only:
            self.welcome = WelcomePage(desk, self.stack)
            self.welcome.demo_loaded.connect(self._demo_loaded)
            self.welcome.start_empty.connect(self._start_empty)
            self.welcome.connect_wanted.connect(self.connect_wanted)
            self.welcome.archive_wanted.connect(self.archive_wanted)
            self.stack.addWidget(self.welcome)
            self.stack.setCurrentWidget(self.welcome)
            self.navigation.clearSelection()
            return
        last = str(self.settings.value("window/view", PaymentsView.title))
        self.show_view(last if last in self.views else next(iter(self.views), ""))

    def _leave_welcome(self) -> None:
        if self.welcome is not None:
            self.stack.removeWidget(self.welcome)
            self.welcome.deleteLater()
            self.welcome = None

    def _demo_loaded(self, summary: DemoSummary) -> None:
        self._leave_welcome()
        self.show_view(PaymentsView.title)
        self.message_bar.show_message(
            f"Demo data loaded: {summary.facilities} facilities, {summary.invoices} invoices, "
            f"{summary.payments} payments. To try another role, use File ▸ Working as… "
            "(clerk, manager, auditor or admin)."
        )

    def _start_empty(self) -> None:
        self._leave_welcome()
        view = self.show_view(FacilitiesView.title)
        if isinstance(view, FacilitiesView) and view.add_action.isVisible():
            view.add()
        self.message_bar.show_message(
            "Add your first facility; then add the people who will work here in People "
            "(clerks record payments, managers approve and print statements)."
        )

    def take_down(self) -> None:
        """Remember the views' state and remove them (before another database opens)."""
        self.save_state()
        self.navigation.blockSignals(True)
        self.navigation.clear()
        self.navigation.blockSignals(False)
        for view in self.views.values():
            # Answers still on their way to a view that is going must not reach its signals.
            view.blockSignals(True)
            self.stack.removeWidget(view)
            view.deleteLater()
        self.views = {}
        if self.welcome is not None:
            self.stack.removeWidget(self.welcome)
            self.welcome.deleteLater()
            self.welcome = None
        self.stack.setCurrentWidget(self.opening)
        # Nothing of the database that was open stays on screen.
        self.setStatusBar(QStatusBar(self))
        self.setWindowTitle(APP_TITLE)
        if self._action_menu is not None:
            self._action_menu.clear()
            self._action_menu.menuAction().setVisible(False)

    def _fill_view_menu(self) -> None:
        assert self._view_menu is not None  # built in __init__
        self._view_menu.clear()
        for number, title in enumerate(self.views, start=1):
            action = self._view_menu.addAction(title)
            if number <= 9:
                action.setShortcut(QKeySequence(f"Ctrl+{number}"))
            action.triggered.connect(lambda _=False, t=title: self.show_view(t))

    def show_view(self, title: str) -> View | None:
        view = self.views.get(title)
        if view is None:
            return None
        row = list(self.views).index(title)
        if self.navigation.currentRow() != row:
            self.navigation.setCurrentRow(row)  # _navigate does the rest
        else:
            self._navigate(row)
        return view

    def current_view(self) -> View | None:
        widget = self.stack.currentWidget()
        return widget if isinstance(widget, View) else None

    def _navigate(self, row: int) -> None:
        titles = list(self.views)
        if not 0 <= row < len(titles):
            return
        view = self.views[titles[row]]
        self.stack.setCurrentWidget(view)
        self._fill_action_menu(view)
        view.activate()
        self.settings.setValue("window/view", view.title)

    def _fill_action_menu(self, view: View) -> None:
        assert self._action_menu is not None  # built in __init__
        # Shortcuts belong to the view on screen only: the others' actions leave the window.
        for other in self.views.values():
            for action in other.menu_actions():
                self.removeAction(action)
        self._action_menu.clear()
        self._action_menu.setTitle(f"&{view.title}")
        actions: Sequence[QAction] = view.menu_actions()
        for action in actions:
            self._action_menu.addAction(action)
            self.addAction(action)
        self._action_menu.menuAction().setVisible(any(a.isVisible() for a in actions))

    # -- closing ----------------------------------------------------------------------------------

    def save_state(self) -> None:
        for view in self.views.values():
            view.save_state()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/splitter", self.splitter.saveState())

    def may_close(self) -> bool:
        """Whether closing loses nothing, or the person agreed to lose the typed work."""
        return not any(view.unsaved() for view in self.views.values()) or confirm_discard(self)

    def quit(self) -> None:
        if self.may_close():
            self._agreed = True
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        # The person closing the window (its close button, or Quit) is asked about typed work;
        # the application closing it itself (another database opened, shutting down) is not.
        agreed, self._agreed = self._agreed, False
        if event.spontaneous() and not agreed and not self.may_close():
            event.ignore()
            return
        self.save_state()
        self.settings.sync()
        if self.desk is not None:
            self.desk.close()
        event.accept()
