"""The CSV mapping editor: the first time a bank's CSV export is imported, its first rows as a
table with the role guessed for each column (date, amount or debit and credit, reference,
counterparty, description, balance, currency), how the file is written (encoding, delimiter,
lines before the header, date format, decimal mark, a row filter), each editable, and the lines
as the mapping reads them updating below as anything changes. Saved under a name, the mapping
reads the bank's next files with no change.

The live reading is of the file's first rows only, a pure parse with no database: quick enough
for the GUI thread on every change, however long the file."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.csv_mappings import DATE_FORMATS, CsvMapping
from billing_desk.domain.errors import BadInput
from billing_desk.domain.statements import StatementLine, StatementRefused
from billing_desk.importers.statements import csv_statement
from billing_desk.services.csv_mappings import MappingInfo, save_mapping
from billing_desk.ui.desk import Desk
from billing_desk.ui.errors import WARNING, MessageBar
from billing_desk.ui.formatting import money_sort_key
from billing_desk.ui.models import RIGHT, Column, RowsModel
from billing_desk.ui.operations import changes
from billing_desk.ui.views.base import fit_columns, make_table
from billing_desk.ui.widgets import make_primary

# The rows read live as the mapping changes: enough to see the columns and catch a misread.
SAMPLE_LINES = 200
SHOWN_ROWS = 40

# (field of the mapping, what a person calls it)
ROLES: tuple[tuple[str, str], ...] = (
    ("date", "Date"),
    ("amount", "Amount (signed)"),
    ("debit", "Debit (money out)"),
    ("credit", "Credit (money in)"),
    ("reference", "Reference"),
    ("counterparty", "Counterparty"),
    ("description", "Description"),
    ("balance", "Balance"),
    ("currency_column", "Currency"),
    ("value_date", "Value date"),
    ("bank_id", "Bank's transaction id"),
)
DELIMITERS = ((";", "; semicolon"), (",", ", comma"), ("\t", "tab"), ("|", "| bar"))
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16")
THOUSANDS = (("", "none"), (".", ". dot"), (",", ", comma"), ("'", "' apostrophe"), (" ", "space"))


class MappingNeeded(BadInput):
    """A CSV file none of the saved mappings reads: the editor opens with the guessed record
    (or, when nothing could be guessed, the file's layout and the reason why not)."""

    def __init__(
        self, file_name: str, data: bytes, record: dict[str, Any], problem: str | None
    ) -> None:
        super().__init__(
            f"{file_name} is a CSV export that no saved mapping reads; check how to read it in "
            "the mapping editor."
        )
        self.data = data
        self.record = record
        self.problem = problem


def sample_of(data: bytes) -> bytes:
    """The file's first SAMPLE_LINES lines (the live reading's input)."""
    return b"".join(data.splitlines(keepends=True)[:SAMPLE_LINES])


class CsvMappingDialog(QDialog):
    """Check and correct how a bank's CSV export is read, then save it under a name."""

    saved = Signal(object)  # CsvMapping

    def __init__(
        self,
        desk: Desk,
        file_name: str,
        data: bytes,
        record: dict[str, Any],
        problem: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setWindowTitle(f"How to read {file_name}")
        self.data = sample_of(data)
        self.base = dict(record)
        self.mapping: CsvMapping | None = None
        self.header: list[str] | None = None
        self.names: list[str] = []
        self.message_bar = MessageBar(self)
        intro = QLabel(
            f"<b>{file_name}</b> is a CSV export. Check which column holds what; the lines below "
            "show how the file reads. Saved under a name, this mapping reads the bank's next "
            "files with no change.",
            self,
        )
        intro.setWordWrap(True)
        if problem:
            self.message_bar.show_message(
                f"The columns could not be guessed ({problem}); choose them below.", WARNING
            )

        self.name = QLineEdit(str(record.get("name") or ""), self)
        self.name.setAccessibleName("Mapping name")
        self.name.setPlaceholderText("the bank and account, e.g. Knab business")
        self.encoding = QComboBox(self)
        self.encoding.setEditable(True)
        self.encoding.addItems(ENCODINGS)
        self.encoding.setCurrentText(str(record.get("encoding", "utf-8")))
        self.delimiter = _choices(self, DELIMITERS, record.get("delimiter", ","))
        self.skip_lines = QSpinBox(self)
        self.skip_lines.setRange(0, 1000)
        self.skip_lines.setValue(int(record.get("skip_lines", 0)))
        self.has_header = QCheckBox("The first row read is a &header", self)
        self.has_header.setChecked(bool(record.get("has_header", True)))
        self.date_format = QComboBox(self)
        self.date_format.addItems(list(DATE_FORMATS))
        if record.get("date_format") in DATE_FORMATS:
            self.date_format.setCurrentText(str(record["date_format"]))
        self.decimal = _choices(
            self, ((False, ". point"), (True, ", comma")), bool(record.get("decimal_comma"))
        )
        self.thousands = _choices(self, THOUSANDS, record.get("thousands", ""))
        self.currency = QLineEdit(str(record.get("currency") or ""), self)
        self.currency.setMaxLength(3)
        self.currency.setAccessibleName("Currency of the account")
        self.currency.setPlaceholderText("EUR")
        self.keep_values = QLineEdit(", ".join(record.get("keep_values") or ()), self)
        self.keep_values.setAccessibleName("Rows to keep")
        self.keep_values.setPlaceholderText("values of the filter column, comma-separated")

        self.roles: dict[str, QComboBox] = {}
        columns_box = QGroupBox("&Columns", self)
        grid = QGridLayout(columns_box)
        for n, (field, label) in enumerate((*ROLES, ("keep_column", "Row filter"))):
            combo = QComboBox(columns_box)
            combo.setAccessibleName(f"{label} column")
            self.roles[field] = combo
            caption = QLabel(f"{label}:", columns_box)
            caption.setBuddy(combo)
            grid.addWidget(caption, n // 3, (n % 3) * 2)
            grid.addWidget(combo, n // 3, (n % 3) * 2 + 1)
        # The choices sit together at the top, however tall the box beside them.
        grid.setRowStretch(len(ROLES) // 3 + 1, 1)
        for column in (1, 3, 5):
            grid.setColumnStretch(column, 1)
        layout_box = QGroupBox("How the file is &written", self)
        form = QFormLayout(layout_box)
        form.addRow("&Name:", self.name)
        form.addRow("&Encoding:", self.encoding)
        form.addRow("&Delimiter:", self.delimiter)
        form.addRow("&Lines before the header:", self.skip_lines)
        form.addRow("", self.has_header)
        form.addRow("Date &format:", self.date_format)
        form.addRow("Decimal &mark:", self.decimal)
        form.addRow("&Thousands separator:", self.thousands)
        form.addRow("C&urrency (no column):", self.currency)
        form.addRow("Rows to &keep:", self.keep_values)

        self.raw = QTableWidget(self)
        self.raw.setAccessibleName("The file's first rows")
        self.raw.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.raw.setWordWrap(False)
        self.raw.verticalHeader().setDefaultSectionSize(self.raw.fontMetrics().height() + 6)
        f = desk.formats
        self.reading = QLabel(self)
        self.reading.setWordWrap(True)
        self.lines: RowsModel[StatementLine] = RowsModel(
            [
                Column("Booked", lambda r: f.date(r.booked), lambda r: r.booked),
                Column(
                    "Amount", lambda r: f.money(r.amount), lambda r: money_sort_key(r.amount), RIGHT
                ),
                Column("Reference", lambda r: r.reference or ""),
                Column("Counterparty", lambda r: r.counterparty or ""),
                Column("Description", lambda r: r.description or ""),
            ],
            key=lambda r: r.location,
            parent=self,
        )
        self.parsed = make_table(self, self.lines, "Lines as the mapping reads them", stretch=4)

        buttons = QDialogButtonBox(self)
        self.save_button = buttons.addButton(
            "&Save mapping and continue", QDialogButtonBox.ButtonRole.AcceptRole
        )
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        make_primary(buttons, self.save_button)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)

        top = QHBoxLayout()
        top.addWidget(layout_box)
        top.addWidget(columns_box, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addWidget(intro)
        layout.addLayout(top)
        # The file above and its reading below, the split movable.
        split = QSplitter(Qt.Orientation.Vertical, self)
        above = QWidget(split)
        above_layout = QVBoxLayout(above)
        above_layout.setContentsMargins(0, 0, 0, 0)
        above_layout.addWidget(QLabel("The file's first rows, each column with its role:", above))
        above_layout.addWidget(self.raw)
        below = QWidget(split)
        below_layout = QVBoxLayout(below)
        below_layout.setContentsMargins(0, 0, 0, 0)
        below_layout.addWidget(self.reading)
        below_layout.addWidget(self.parsed)
        split.addWidget(above)
        split.addWidget(below)
        split.setChildrenCollapsible(False)
        layout.addWidget(split, 1)
        layout.addWidget(buttons)
        self.resize(1180, 820)

        self._split()
        self._select_roles(record)
        for combo in (self.encoding, self.delimiter):
            combo.currentIndexChanged.connect(self._layout_changed)
        self.encoding.editTextChanged.connect(self._layout_changed)
        self.skip_lines.valueChanged.connect(self._layout_changed)
        self.has_header.toggled.connect(self._layout_changed)
        for combo in (self.date_format, self.decimal, self.thousands, *self.roles.values()):
            combo.currentIndexChanged.connect(self._read)
        for edit in (self.name, self.currency, self.keep_values):
            edit.textChanged.connect(self._read)
        self._read()

    # -- the file as split -------------------------------------------------------------------

    def _layout_changed(self) -> None:
        chosen = {field: combo.currentData() for field, combo in self.roles.items()}
        self._split()
        for field, combo in self.roles.items():
            index = combo.findData(chosen[field])
            combo.setCurrentIndex(max(index, 0))
        self._read()

    def _layout(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding.currentText().strip() or "utf-8",
            "delimiter": self.delimiter.currentData(),
            "skip_lines": self.skip_lines.value(),
            "has_header": self.has_header.isChecked(),
        }

    def _split(self) -> None:
        """Split the sample as the layout says, and offer its columns to every role."""
        try:
            probe = CsvMapping(
                name="",
                date=1,
                date_format="yyyy-mm-dd",
                amount=2,
                currency="EUR",
                **self._layout(),
            )
            header, rows = csv_statement.sample_rows(self.data, probe, SHOWN_ROWS)
        except (BadInput, StatementRefused) as err:
            header, rows = None, []
            self.message_bar.show_message(str(err), WARNING)
        self.header = header
        width = max([len(header or ())] + [len(r) for r in rows] + [0])
        names = [
            (header[i] if header and i < len(header) and header[i] else f"column {i + 1}")
            for i in range(width)
        ]
        self.names = names
        self.raw.clear()
        self.raw.setColumnCount(width)
        self.raw.setRowCount(len(rows))
        self.raw.setHorizontalHeaderLabels(names)
        for r, cells in enumerate(rows):
            for c, cell in enumerate(cells):
                self.raw.setItem(r, c, QTableWidgetItem(cell))

        for combo in self.roles.values():
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("(none)", None)
            for i, name in enumerate(names):
                combo.addItem(f"{i + 1}. {name}", i)
            combo.blockSignals(False)

    def _select_roles(self, record: dict[str, Any]) -> None:
        for field, combo in self.roles.items():
            ref = record.get(field)
            if field == "description":
                ref = (list(ref) or [None])[0] if isinstance(ref, list | tuple) else ref
            index = self._position_of(ref)
            combo.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(index), 0) if index is not None else 0)
            combo.blockSignals(False)

    def _position_of(self, ref: object) -> int | None:
        if isinstance(ref, bool) or ref is None:
            return None
        if isinstance(ref, int):
            return ref - 1
        wanted = str(ref).strip().casefold()
        for i, name in enumerate(self.header or ()):
            if name.casefold() == wanted:
                return i
        return None

    def _ref(self, position: int) -> int | str:
        """A column as the mapping names it: by its header name when that is unique, which
        survives a bank reordering its columns; else by its number."""
        header = self.header or []
        if position < len(header):
            name = header[position]
            if name and sum(1 for h in header if h.casefold() == name.casefold()) == 1:
                return name
        return position + 1

    # -- the mapping and its reading ---------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """The mapping as the widgets say, on top of what was guessed (debit and credit marks,
        rows to ignore and the like keep their guessed values)."""
        record = dict(self.base)
        record.update(self._layout())
        record["name"] = self.name.text().strip()
        record["date_format"] = self.date_format.currentText()
        record["decimal_comma"] = bool(self.decimal.currentData())
        record["thousands"] = self.thousands.currentData()
        for field, combo in self.roles.items():
            position = combo.currentData()
            value = None if position is None else self._ref(position)
            if field == "description":
                old = list(self.base.get("description") or [])
                first = self._position_of(old[0]) if old else None
                # The guessed description of several columns stays whole unless changed.
                record[field] = old if position == first and old else ([value] if value else [])
            else:
                record[field] = value
        currency = self.currency.text().strip().upper()
        record["currency"] = None if record.get("currency_column") else (currency or None)
        values = [v.strip() for v in self.keep_values.text().split(",") if v.strip()]
        record["keep_values"] = values if record.get("keep_column") else []
        if record.get("direction") is not None and record.get("amount") is None:
            record["direction"], record["debit_marks"], record["credit_marks"] = None, [], []
        record.setdefault("version", 1)
        return record

    def _label_columns(self) -> None:
        """Each column of the sample headed by its name and the role it is read as."""
        role_of: dict[int, list[str]] = {}
        for field, label in (*ROLES, ("keep_column", "Row filter")):
            position = self.roles[field].currentData()
            if position is not None:
                role_of.setdefault(position, []).append(label.split(" (")[0])
        for c, name in enumerate(self.names):
            roles = role_of.get(c)
            item = QTableWidgetItem(f"{name}\n→ {', '.join(roles)}" if roles else f"{name}\n")
            if roles:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.raw.setHorizontalHeaderItem(c, item)
        self.raw.resizeColumnsToContents()
        widest = self.raw.fontMetrics().averageCharWidth() * 26
        for c in range(len(self.names)):
            self.raw.setColumnWidth(c, min(self.raw.columnWidth(c) + 8, widest))

    def _read(self) -> None:
        self._label_columns()
        self.mapping = None
        try:
            mapping = CsvMapping.from_record(self.record())
            statements = csv_statement.parse_with(self.data, mapping)
        except (BadInput, StatementRefused) as err:
            self.lines.set_rows([])
            self.reading.setText(f"<b>Not read yet:</b> {escape(str(err))}")
            self._ready()
            return
        self.mapping = mapping
        lines = [line for s in statements for line in s.lines]
        self.lines.set_rows(lines)
        fit_columns(self.parsed, widest_chars=30)
        accounts = ", ".join(f"{s.account or 'no account'} in {s.currency}" for s in statements)
        self.reading.setText(
            f"Reads {len(lines)} line{'s' if len(lines) != 1 else ''} of the first "
            f"{SAMPLE_LINES} rows: {escape(accounts)}."
        )
        self._ready()

    def _ready(self) -> None:
        named = bool(self.name.text().strip())
        self.save_button.setEnabled(self.mapping is not None and named)
        self.save_button.setToolTip("" if named else "Give the mapping a name first.")

    def save(self) -> None:
        if not self.save_button.isEnabled() or self.mapping is None:
            return
        self.save_button.setEnabled(False)
        record = CsvMapping.from_record(self.record()).to_record()
        mapping = CsvMapping.from_record(record)

        def done(_: MappingInfo) -> None:
            self.saved.emit(mapping)
            self.accept()

        def refused(error: BaseException) -> None:
            self._ready()
            if isinstance(error, BadInput):
                self.message_bar.show_message(error.message, WARNING)
            else:
                self.desk.presenter.present(self, error, None)

        self.desk.change(
            self, lambda ws: save_mapping(ws, record), done, changes("statements"), failure=refused
        )


def _choices(parent: QWidget, items: tuple[tuple[Any, str], ...], current: Any) -> QComboBox:
    combo = QComboBox(parent)
    for value, label in items:
        combo.addItem(label, value)
    index = combo.findData(current)
    combo.setCurrentIndex(max(index, 0))
    return combo
