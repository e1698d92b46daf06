"""The payment register as a clerk uses it: newest first, the next page fetched only when the
list is scrolled to its end, Ctrl+F to the text filter, filters applied on the server, and a
bad filter refused in a sentence without losing what was typed."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from billing_desk.ui.views.payments import PaymentsView
from tests.ui.conftest import Gui, screenshot

PAGE_SIZE = 25  # the demo's 61 payments make three pages


def test_the_register_pages_and_filters(demo_gui: Gui, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("billing_desk.ui.views.payments.PAGE_SIZE", PAGE_SIZE)
    application = demo_gui.start("clerk")
    view = application.window.show_view("Payments")
    assert isinstance(view, PaymentsView)
    demo_gui.wait(lambda: view.model.rowCount() > 0, "the first page")
    demo_gui.idle(application)
    assert view.model.rowCount() == PAGE_SIZE, "one page, however many payments there are"
    ids = [r.payment_id for r in view.model.rows]
    assert ids == sorted(ids, reverse=True), "newest first"
    assert "more as you scroll" in view.count.text()
    view.table.scrollToBottom()
    demo_gui.wait(lambda: view.model.rowCount() == 2 * PAGE_SIZE, "the second page")
    demo_gui.idle(application)
    assert view.model.rowCount() == 2 * PAGE_SIZE, "one more page, not the rest"
    view.table.scrollToBottom()
    demo_gui.wait(
        lambda: view.model.exhausted and view.model.rowCount() > 2 * PAGE_SIZE, "the rest"
    )
    every = [r.payment_id for r in view.model.rows]
    assert every == sorted(set(every), reverse=True)
    screenshot(application.window, "payment-register")  # type: ignore[attr-defined]

    # Ctrl+F reaches the text filter; Enter applies it.
    demo_gui.qtbot.keyClick(application.window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert application.window.focusWidget() is view.text
    demo_gui.qtbot.keyClicks(view.text, "OAKVIEW")
    demo_gui.qtbot.keyClick(view.text, Qt.Key.Key_Return)
    demo_gui.wait(
        lambda: (
            view.model.exhausted
            and 0 < view.model.rowCount() < len(every)
            and all(r.facility == "OAKVIEW" for r in view.model.rows)
        ),
        "payments whose reference or memo names OAKVIEW",
    )
    view.text.clear()
    view.method.setCurrentIndex(view.method.findData("check"))
    demo_gui.wait(
        lambda: view.model.rowCount() > 0 and all(r.method == "check" for r in view.model.rows),
        "only checks",
    )
    # A range that ends before it starts is refused in a sentence; what was typed stays.
    view.amount_from.setText("500")
    view.amount_to.setText("100")
    demo_gui.qtbot.keyClick(view.amount_to, Qt.Key.Key_Return)
    demo_gui.wait(lambda: "change the amounts" in view.message_bar.text.text(), "the refusal")
    assert view.amount_from.text() == "500" and view.amount_to.text() == "100"
