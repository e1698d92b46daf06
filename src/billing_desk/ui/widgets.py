"""Small widgets the views share: a labelled form with an error line under each field, a
month picker, a facility chooser, and a dialog that asks for a reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from billing_desk.domain.periods import Period
from billing_desk.services.facilities import FacilityInfo
from billing_desk.ui.errors import MessageBar


class Form(QFormLayout):
    """Rows of label + field + (hidden) error line. Labels carry `&` mnemonics and are the
    fields' buddies, so Alt+letter reaches each field; the error line is the field's accessible
    description when shown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.errors: dict[str, QLabel] = {}
        self.captions: dict[int, QLabel] = {}

    def add(self, label: str, field: QWidget, *, error_key: str | None = None) -> QLabel:
        caption = QLabel(label)
        caption.setBuddy(field)
        plain = label.replace("&", "")
        field.setAccessibleName(plain.rstrip(":"))
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(field)
        error = QLabel(holder)
        error.setWordWrap(True)
        error.setObjectName("fieldError")
        error.setForegroundRole(error.foregroundRole())
        font = error.font()
        font.setItalic(True)
        error.setFont(font)
        error.hide()
        column.addWidget(error)
        self.addRow(caption, holder)
        self.errors[error_key or plain.rstrip(":").lower()] = error
        self.captions[id(field)] = caption
        return error

    def show_row(self, field: QWidget, shown: bool) -> None:
        """Show or hide a field with its caption and error line (and disable it when hidden)."""
        caption = self.captions.get(id(field))
        field.setEnabled(shown)
        if caption is not None:
            self.setRowVisible(caption, shown)

    def set_label(self, field: QWidget, label: str) -> None:
        """Rename a field's caption (and its accessible name) when its meaning changes."""
        caption = self.captions.get(id(field))
        if caption is not None and caption.text() != label:
            caption.setText(label)
            field.setAccessibleName(label.replace("&", "").rstrip(":"))

    def clear_errors(self) -> None:
        for label in self.errors.values():
            label.clear()
            label.hide()


class MonthEdit(QDateEdit):
    """A billing month: shows "May 2026", steps by month, gives a `Period`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Month")
        self.setDisplayFormat("MMMM yyyy")
        self.setCalendarPopup(False)
        self.setCurrentSection(QDateEdit.Section.MonthSection)

    def period(self) -> Period:
        day = self.date()
        return Period(day.year(), day.month())

    def set_period(self, period: Period) -> None:
        self.setDate(QDate(period.year, period.month, 1))


class FacilityBox(QComboBox):
    """Choose a facility by typing any part of its code or name; optionally "All facilities"."""

    ALL = ""

    def __init__(self, parent: QWidget | None = None, *, allow_all: bool = False) -> None:
        super().__init__(parent)
        self.allow_all = allow_all
        self.setAccessibleName("Facility")
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        # "valley" finds "RIVER — River Valley Care": any part of the code or name.
        completer = QCompleter(self.model(), self)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.setCompleter(completer)
        self._wanted: str | None = None
        self.set_facilities(())

    def set_facilities(self, facilities: Sequence[FacilityInfo]) -> None:
        # A code chosen before the list arrived is chosen once it has.
        current = self.code() or self._wanted
        self.blockSignals(True)
        self.clear()
        if self.allow_all:
            self.addItem("All facilities", self.ALL)
        for facility in facilities:
            self.addItem(f"{facility.code} — {facility.name}", facility.code)
        self.blockSignals(False)
        self.set_code(current)

    def code(self) -> str | None:
        """The chosen facility's code; None for "All facilities" or nothing chosen. What was
        typed counts when it is a code, or part of exactly one facility's code or name."""
        text = self.currentText().strip()
        index = self.findText(text, Qt.MatchFlag.MatchExactly)
        if index < 0 and text:
            lowered = text.lower()
            codes = [self.itemData(i) for i in range(self.count()) if self.itemData(i)]
            exact = [c for c in codes if str(c).lower() == lowered]
            partial = [
                self.itemData(i)
                for i in range(self.count())
                if self.itemData(i) and lowered in self.itemText(i).lower()
            ]
            found = exact or (partial if len(partial) == 1 else [])
            index = self.findData(found[0]) if found else -1
        if index < 0:
            return None
        value = self.itemData(index)
        return str(value) if value else None

    def when_chosen(self, slot: Callable[[], None]) -> None:
        """Call `slot` when a facility is picked from the list, or typed and confirmed (Enter,
        or leaving the field)."""
        self.activated.connect(lambda _: slot())
        editor = self.lineEdit()
        if editor is not None:
            editor.editingFinished.connect(slot)

    def set_code(self, code: str | None) -> None:
        """Choose the facility `code`; None chooses "All facilities", or nothing (an empty
        field, ready for typing) where there is no such choice."""
        index = self.findData(code if code else self.ALL)
        self._wanted = code if index < 0 else None
        self.setCurrentIndex(index if index >= 0 or not self.allow_all else 0)
        if index < 0 and not self.allow_all:
            self.setEditText("")


def make_primary(buttons: QDialogButtonBox, primary: QPushButton) -> None:
    """Enter means `primary`, whichever button has the focus: the others never become the
    default (Cancel taking the focus while a busy button is disabled once made Enter cancel)."""
    for button in buttons.buttons():
        if isinstance(button, QPushButton):
            button.setAutoDefault(button is primary)
            button.setDefault(button is primary)


def qdate(day: date) -> QDate:
    return QDate(day.year, day.month, day.day)


def pydate(day: QDate) -> date:
    return date(day.year(), day.month(), day.day())


class ReasonDialog(QDialog):
    """Asks why, for actions that keep their reason (a void). The action button stays disabled
    until a reason is typed, and while the action runs (a double click acts once); `submitted`
    carries the reason to the view, which closes the dialog when the action succeeded. A
    refusal is shown in the dialog, keeping the text."""

    submitted = Signal(str)

    def __init__(
        self, parent: QWidget | None, title: str, question: str, action_label: str
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.message_bar = MessageBar(self)
        prompt = QLabel(question, self)
        prompt.setWordWrap(True)
        self.reason = QPlainTextEdit(self)
        self.reason.setTabChangesFocus(True)
        self.reason.setAccessibleName("Reason")
        self.reason.setPlaceholderText("The reason is kept with the record and in the audit trail.")
        prompt.setBuddy(self.reason)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText(action_label)
        make_primary(self.buttons, self.ok)
        self.ok.setEnabled(False)
        self.reason.textChanged.connect(
            lambda: self.ok.setEnabled(bool(self.reason.toPlainText().strip()))
        )
        self.buttons.accepted.connect(self._submit)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addWidget(prompt)
        layout.addWidget(self.reason)
        layout.addWidget(self.buttons)
        self.resize(440, 220)

    def text(self) -> str:
        return self.reason.toPlainText().strip()

    def _submit(self) -> None:
        if not self.ok.isEnabled():
            return
        self.ok.setEnabled(False)
        self.message_bar.hide()
        self.submitted.emit(self.text())

    def failed(self, error: BaseException, present: Callable[..., None]) -> None:
        """The action was refused or failed: say so here and let the person try again."""
        self.ok.setEnabled(bool(self.text()))
        present(self, error, None)
