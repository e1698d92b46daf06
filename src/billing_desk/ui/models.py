"""Item models over the plain rows services return: a table of frozen dataclasses described by
its columns. The model never reaches the database; a view fills it from a background operation.
Sorting is by each column's own key (amounts as numbers within their currency, dates as dates),
never by the text shown."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QFont

R = TypeVar("R")
Index = QModelIndex | QPersistentModelIndex

LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
CENTER = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter


@dataclass(frozen=True)
class Column(Generic[R]):
    """One column: its title, the text of a row, and how it sorts (by `sort_key`, else by
    the text). `emphasis` marks a row's cell in bold (a past-due amount); `tooltip` explains."""

    title: str
    text: Callable[[R], str]
    sort_key: Callable[[R], Any] | None = None
    align: Qt.AlignmentFlag = LEFT
    emphasis: Callable[[R], bool] | None = None
    tooltip: Callable[[R], str | None] | None = None


class RowsModel(QAbstractTableModel, Generic[R]):
    """A table of `rows` shown through `columns`; `key` names a row across refills, so a view
    keeps the selection when the data is fetched again."""

    def __init__(
        self,
        columns: Sequence[Column[R]],
        key: Callable[[R], object],
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self.columns = list(columns)
        self.key = key
        self.rows: list[R] = []
        self._sorted_by: tuple[int, Qt.SortOrder] | None = None
        self._bold = QFont()
        self._bold.setBold(True)

    # -- Qt's model interface -------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self.rows)):
            return None
        if not (0 <= index.column() < len(self.columns)):
            return None
        row = self.rows[index.row()]
        column = self.columns[index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return column.text(row)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(column.align)
        if role == Qt.ItemDataRole.FontRole:
            if column.emphasis is not None and column.emphasis(row):
                return self._bold
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tooltip(row) if column.tooltip is not None else None
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not (0 <= section < len(self.columns)):
            return None
        column = self.columns[section]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return column.title
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(column.align)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not (0 <= column < len(self.columns)):
            return
        self._sorted_by = (column, order)
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        before = [(p, self.key(self.rows[p.row()]), p.column()) for p in persistent]
        self.rows = self._ordered(self.rows)
        where = {self.key(r): i for i, r in enumerate(self.rows)}
        for index, key, col in before:
            self.changePersistentIndex(index, self.index(where[key], col))
        self.layoutChanged.emit()

    # -- for views ----------------------------------------------------------------------------

    def set_rows(self, rows: Sequence[R]) -> None:
        """Replace every row (keeping the current sort order)."""
        self.beginResetModel()
        self.rows = self._ordered(list(rows))
        self.endResetModel()

    def row_at(self, row: int) -> R | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def row_of(self, key: object) -> int | None:
        for number, row in enumerate(self.rows):
            if self.key(row) == key:
                return number
        return None

    def _ordered(self, rows: list[R]) -> list[R]:
        if self._sorted_by is None:
            return rows
        column, order = self._sorted_by
        spec = self.columns[column]
        key = spec.sort_key or spec.text
        return sorted(rows, key=key, reverse=order == Qt.SortOrder.DescendingOrder)


class PagedModel(RowsModel[R]):
    """The rows fetched so far of a long list read page by page in the order the query gives
    (newest first, say): when the view scrolls near the end Qt asks `canFetchMore`, and
    `fetchMore` emits `more_wanted` for the view to fetch the next page in the background. It
    never sorts itself: sorting the part already fetched would show an order the list does not
    have."""

    more_wanted = Signal()

    def __init__(
        self,
        columns: Sequence[Column[R]],
        key: Callable[[R], object],
        page_size: int,
        parent: Any = None,
    ) -> None:
        super().__init__(columns, key, parent)
        self.page_size = page_size
        self.exhausted = True
        self.loading = False

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        return

    def canFetchMore(self, parent: Index) -> bool:
        return not parent.isValid() and not self.exhausted and not self.loading

    def fetchMore(self, parent: Index) -> None:
        if self.canFetchMore(parent):
            self.loading = True
            self.more_wanted.emit()

    def restart(self) -> None:
        """Empty, waiting for a first page."""
        self.beginResetModel()
        self.rows = []
        self.exhausted, self.loading = False, True
        self.endResetModel()

    def append(self, page: Sequence[R]) -> None:
        """The next page arrived; a short page is the last."""
        self.loading = False
        self.exhausted = len(page) < self.page_size
        if not page:
            return
        first = len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
        self.rows.extend(page)
        self.endInsertRows()

    def last_key(self) -> object | None:
        return self.key(self.rows[-1]) if self.rows else None
