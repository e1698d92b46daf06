"""Nothing only a mouse can reach: every control has a name a screen reader can say, every view
action has a shortcut shown in its menu, forms go field by field with Tab in reading order, and
the File menu lists the databases opened before."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QHeaderView,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)

from billing_desk.ui.views.facilities import FacilitiesView, FacilityDialog
from tests.ui.conftest import Gui

CONTROLS = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QPlainTextEdit)


def _unnamed(root: QWidget) -> list[str]:
    missing = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisibleTo(root):
            continue
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), (QComboBox,)):
            continue  # the combo box's own editor: the combo box carries the name
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), QAbstractSpinBox):
            continue
        if isinstance(widget, QHeaderView):
            continue  # a table's header is read through its table
        named = bool(widget.accessibleName().strip())
        if isinstance(widget, QAbstractButton):
            named = named or bool(widget.text().replace("&", "").strip())
        if isinstance(widget, (*CONTROLS, QAbstractItemView)) and not named:
            missing.append(f"{type(widget).__name__} {widget.objectName()!r}")
    return missing


def test_every_control_has_a_name_and_every_action_a_shortcut(demo_gui: Gui) -> None:
    application = demo_gui.start("manager")
    window = application.window
    for title, view in window.views.items():
        window.show_view(title)
        demo_gui.idle(application)
        assert _unnamed(view) == [], title
        for action in view.menu_actions():
            if action.isVisible():
                assert not action.shortcut().isEmpty(), f"{title}: {action.text()}"
                assert action in window._action_menu.actions()  # type: ignore[union-attr]
    view = window.show_view("Facilities")
    assert isinstance(view, FacilitiesView)
    view.add()
    dialog = window.findChildren(FacilityDialog)[-1]
    assert _unnamed(dialog) == []


def test_a_form_goes_field_by_field_with_tab(demo_gui: Gui) -> None:
    application = demo_gui.start("manager")
    view = application.window.show_view("Facilities")
    assert isinstance(view, FacilitiesView)
    view.add()
    dialog = application.window.findChildren(FacilityDialog)[-1]
    dialog.activateWindow()
    dialog.code.setFocus()
    order = [dialog.code, dialog.name, dialog.currency, dialog.terms, dialog.contact, dialog.email]
    order += [dialog.address, dialog.save_button]
    seen = []
    for _ in order:
        current = dialog.focusWidget()
        seen.append(current)
        demo_gui.qtbot.keyClick(current, Qt.Key.Key_Tab)  # type: ignore[attr-defined]
    # A spin box's focus is its inner editor; the spin box is what the person sees.
    resolved = [
        w.parentWidget() if isinstance(w.parentWidget(), QAbstractSpinBox) else w for w in seen
    ]
    assert resolved == order


def test_the_file_menu_lists_the_databases_opened_before(demo_gui: Gui) -> None:
    first = demo_gui.start("clerk")
    empty = str(demo_gui.folder / "second.sqlite3")
    first.open(empty)
    demo_gui.wait(
        lambda: first.desk is not None and empty in first.desk.describe_database(), "second"
    )
    demo_gui.idle(first)
    window = first.window
    window._fill_recent()
    listed = [a.text() for a in window.recent_menu.actions()]
    assert listed[:2] == [empty, demo_gui.db]
