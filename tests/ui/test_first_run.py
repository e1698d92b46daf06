"""Starting the application: an empty database greets the newcomer, demo data lands them on
Payments with data showing, and the next start finds the same view and window geometry."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt

from billing_desk.domain.roles import Role
from billing_desk.ui.views.payments import PaymentsView
from tests.ui.conftest import Gui, screenshot


def test_demo_data_from_the_welcome_page_then_the_same_view_and_geometry_again(gui: Gui) -> None:
    first = gui.start()
    window = first.window
    assert window.welcome is not None, "an empty database opens on the welcome page"
    # The first person on this machine became the database's administrator.
    assert first.desk is not None and first.desk.person.role is Role.ADMIN
    window.resize(1180, 760)
    screenshot(window, "welcome")

    gui.qtbot.mouseClick(window.welcome.demo, Qt.MouseButton.LeftButton)
    gui.wait(lambda: window.welcome is None, "the demo data to load", timeout=180_000)
    view = window.current_view()
    assert isinstance(view, PaymentsView)
    gui.wait(lambda: view.model.rowCount() > 20, "payments to show")
    assert "payments" in view.count.text()
    screenshot(window, "payments-after-demo")

    # Another view, another size and place; then quit and start again.
    window.show_view("Invoices")
    gui.idle(first)
    window.setGeometry(QRect(40, 50, 1100, 720))
    size = window.size()
    gui.stop(first)

    second = gui.start()
    assert second.window.welcome is None
    current = second.window.current_view()
    assert current is not None and current.title == "Invoices"
    assert second.window.size() == size
    gui.wait(lambda: current.model.rowCount() > 0, "invoices to show")  # type: ignore[attr-defined]
