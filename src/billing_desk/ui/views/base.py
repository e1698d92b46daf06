"""What every view of the main window shares: its title, who may see it, what changes refresh
it, a message bar, and the table and filter pieces most views are built from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.roles import Permission
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import MessageBar
from billing_desk.ui.models import RowsModel
from billing_desk.ui.operations import Changes

R = TypeVar("R")


class View(QWidget):
    """One screen. A view fetches its data in the background when it is shown and when a change
    it listens to has committed (bursts coalesced); a hidden view only notes that it is stale."""

    title: ClassVar[str] = ""
    # The permission a role needs to see this view in the navigation.
    permission: ClassVar[Permission] = Permission.READ
    # Nouns (operations.NOUNS) whose changes make this view fetch again.
    listens: ClassVar[frozenset[str]] = frozenset()
    # A word or two under the title in the navigation, for screen readers and tooltips.
    summary: ClassVar[str] = ""

    def __init__(self, desk: Desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setObjectName(f"view{type(self).__name__}")
        self.setAccessibleName(f"{self.title} view")
        self.message_bar = MessageBar(self)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(8, 8, 8, 8)
        heading = QLabel(self.title, self)
        heading.setObjectName("viewTitle")
        font = heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        heading.setFont(font)
        heading.setAccessibleName(f"{self.title} (heading)")
        self.layout_.addWidget(heading)
        self.layout_.addWidget(self.message_bar)
        self._stale = True
        self._refresh_soon = QTimer(self)
        self._refresh_soon.setSingleShot(True)
        self._refresh_soon.setInterval(0)
        self._refresh_soon.timeout.connect(self.refresh)
        desk.changed.connect(self._changed)

    # -- what the main window calls ---------------------------------------------------------

    def menu_actions(self) -> Sequence[QAction]:
        """The view's own actions, for its menu and toolbar (with their shortcuts)."""
        return ()

    def activate(self) -> None:
        """Shown: fetch what is stale."""
        if self._stale:
            self._stale = False
            self._refresh_soon.start()

    def refresh(self) -> None:
        """Fetch the view's data again, in the background."""

    def dropped(self, files: list[Path]) -> None:
        """Files let go over the view; a view that imports files says so with setAcceptDrops
        and takes them here."""

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.acceptDrops() and dropped_files(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = dropped_files(event)
        if self.acceptDrops() and files:
            event.acceptProposedAction()
            self.dropped(files)

    def unsaved(self) -> bool:
        """Whether the view holds typed work that closing the window would lose."""
        return False

    def save_state(self) -> None:
        """Remember header and splitter states (QSettings)."""

    def restore_state(self) -> None:
        """Put back what save_state remembered."""

    # -- helpers -----------------------------------------------------------------------------

    def _changed(self, what: Changes) -> None:
        if not what.touches(*self.listens):
            return
        if self.isVisible():
            self._refresh_soon.start()
        else:
            self._stale = True

    def action(
        self,
        text: str,
        slot: Callable[[], None],
        *,
        shortcut: str | QKeySequence.StandardKey | None = None,
        tip: str | None = None,
    ) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        return act

    def open_history(
        self, entity_type: str, entity_id: str | None = None, *, text: str | None = None
    ) -> None:
        """Open the Audit view filtered to one row's history."""
        window = self.window()
        show_view = getattr(window, "show_view", None)
        audit = show_view("Audit") if show_view is not None else None
        show_entity = getattr(audit, "show_entity", None)
        if show_entity is not None:
            show_entity(entity_type, entity_id, text=text)

    def settings_key(self, name: str) -> str:
        return f"views/{type(self).__name__}/{name}"

    def save_header(self, table: QTableView) -> None:
        self.desk.settings.setValue(
            self.settings_key("header"), table.horizontalHeader().saveState()
        )

    def restore_header(self, table: QTableView) -> None:
        state = self.desk.settings.value(self.settings_key("header"))
        if isinstance(state, QByteArray):
            table.horizontalHeader().restoreState(state)


def make_table(
    parent: QWidget,
    model: RowsModel[R],
    name: str,
    *,
    stretch: int | None = None,
    sort: tuple[int, Qt.SortOrder] | None = None,
) -> QTableView:
    """A read-only, sortable table of whole rows, as every list of the application looks:
    column `stretch` takes the width left over (the last one without it), and the rows start
    sorted by `sort` (column, order)."""
    table = QTableView(parent)
    table.setModel(model)
    table.setObjectName(name.replace(" ", ""))
    table.setAccessibleName(name)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSortingEnabled(True)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setTabKeyNavigation(False)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(stretch is None)
    if stretch is not None:
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    header.setHighlightSections(False)
    header.setSortIndicatorShown(True)
    column, order = sort if sort is not None else (0, Qt.SortOrder.AscendingOrder)
    header.setSortIndicator(column, order)
    model.sort(column, order)
    return table


def fit_columns(table: QTableView, *, widest_chars: int = 40) -> None:
    """Size columns to their contents once data has arrived (not on every refill); none wider
    than `widest_chars` characters."""
    if table.property("fitted"):
        return
    header = table.horizontalHeader()
    empty = table.model().rowCount() == 0
    if not empty:
        table.resizeColumnsToContents()
    # A long address or description is cut, not allowed to push the amounts off screen.
    widest = table.fontMetrics().averageCharWidth() * widest_chars
    for column in range(header.count()):
        if header.sectionResizeMode(column) != QHeaderView.ResizeMode.Stretch:
            # Never narrower than its own title (with the sort arrow): a short value such as
            # "ACH-A" under "Reference", or no value yet, would otherwise cut the title.
            title = str(table.model().headerData(column, Qt.Orientation.Horizontal) or "")
            titled = header.fontMetrics().horizontalAdvance(title) + 28
            content = header.sectionSize(column) if empty else header.sectionSize(column) + 12
            header.resizeSection(column, max(min(content, widest), titled))
    # An empty table is fitted again when its rows arrive.
    table.setProperty("fitted", not empty)


def selected_row(table: QTableView, model: RowsModel[R]) -> R | None:
    indexes = table.selectionModel().selectedRows() if table.selectionModel() else []
    if not indexes:
        return None
    return model.row_at(indexes[0].row())


def select_key(table: QTableView, model: RowsModel[R], key: object) -> None:
    row = model.row_of(key)
    if row is not None:
        table.selectRow(row)
        table.scrollTo(model.index(row, 0))


def dropped_files(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    """The local files a person drags over or drops on a view, in the order given."""
    data = event.mimeData()
    if data is None or not data.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in data.urls() if url.isLocalFile()]
