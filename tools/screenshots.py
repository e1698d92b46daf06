"""`make screenshots`: the pictures of the README and the user guide, taken from the real
application on demo data (offscreen, 1280x800, the light scheme), into docs/images/. Run it
again after a view changes and the guide shows what a person will see.

Each picture is one task's screen: the step is driven the way a person would (the views' own
actions and fields), then the window or dialog is grabbed."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QWidget

from billing_desk.services.demo import load_demo_data
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.app import Application, make_application

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
AS_OF = date(2026, 5, 20)


def wait(app: QApplication, condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.perf_counter() + seconds
    while not condition():
        if time.perf_counter() > deadline:
            raise SystemExit("the window did not get there in time")
        app.processEvents()
        time.sleep(0.005)


def settle(app: QApplication, application: Application, seconds: float = 0.3) -> None:
    desk = application.desk
    wait(app, lambda: desk is not None and not desk.ops.is_busy())
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)


def grab(widget: QWidget, name: str) -> None:
    path = IMAGES / f"{name}.png"
    if not widget.grab().save(str(path)):
        raise SystemExit(f"could not write {path}")
    print(f"  {path.relative_to(ROOT)}")


def demo_database(folder: Path) -> str:
    path = folder / "demo.sqlite3"
    workspace = open_workspace(str(path), "newcomer")
    try:
        load_demo_data(workspace, as_of=AS_OF)
    finally:
        workspace.close()
    clerk = open_workspace(str(path), "clerk", migrate=False)
    try:
        # The morning's mail: three checks waiting for the deposit picture.
        for number, (facility, amount) in enumerate(
            (("STMARY", "1200.00"), ("OAKVIEW", "310.55"), ("KOWAL", "99.99")), start=7001
        ):
            draft = PaymentDraft(
                facility,
                "check",
                amount,
                date.today() - timedelta(days=1),
                check_number=str(number),
                routing_number="021000021",
                account_number="4455667788",
            )
            record_payment(clerk, draft, str(uuid.uuid4()))
    finally:
        clerk.close()
    return str(path)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    app = make_application()
    with tempfile.TemporaryDirectory(prefix="billing-desk-screenshots-") as name:
        folder = Path(name)
        os.environ["XDG_STATE_HOME"] = str(folder / "state")
        db = demo_database(folder)
        print(f"demo database ready; writing {IMAGES.relative_to(ROOT)}/")
        for person, shots in (
            ("clerk", clerk_shots),
            ("manager", manager_shots),
            ("auditor", auditor_shots),
        ):
            settings = QSettings(str(folder / f"{person}.ini"), QSettings.Format.IniFormat)
            application = Application(app, settings)
            application.start(db, person)
            wait(app, lambda application=application: application.desk is not None)
            application.window.resize(1280, 800)
            settle(app, application)
            shots(app, application)
            application.window.close()
            application.close()
    return 0


def clerk_shots(app: QApplication, application: Application) -> None:
    window = application.window
    payments = window.show_view("Payments")
    settle(app, application)
    grab(window, "main-window")
    form = payments.entry  # type: ignore[union-attr]
    form.facility.set_code("OAKVIEW")
    form.method.setCurrentIndex(form.method.findData("check"))
    form.check_number.setText("4821")
    form.routing.setText("021000021")
    form.account.setText("99887766")
    settle(app, application)
    form.amount.setFocus()
    form.amount.setText("2,500.00")
    form.amount.textEdited.emit("2,500.00")
    settle(app, application)
    grab(window, "receive-a-check")
    form.clear()
    window.show_view("Deposits")
    settle(app, application)
    deposits = window.views["Deposits"]
    deposits.table.selectAll()  # type: ignore[attr-defined]
    settle(app, application)
    grab(window, "deposit")
    window.show_view("Invoices")
    settle(app, application)
    invoices = window.views["Invoices"]
    invoices.owing.setCurrentIndex(invoices.owing.findData("overdue"))  # type: ignore[attr-defined]
    settle(app, application)
    invoices.table.selectRow(0)  # type: ignore[attr-defined]
    settle(app, application)
    grab(window, "invoices-overdue")


def manager_shots(app: QApplication, application: Application) -> None:
    window = application.window
    window.show_view("Reports")
    reports = window.views["Reports"]
    settle(app, application)
    reports.facility.set_code("STMARY")  # type: ignore[attr-defined]
    reports.generate()  # type: ignore[attr-defined]
    wait(app, lambda: reports.generated is not None)  # type: ignore[attr-defined]
    settle(app, application)
    grab(window, "statement-preview")


def auditor_shots(app: QApplication, application: Application) -> None:
    window = application.window
    window.show_view("Audit")
    audit = window.views["Audit"]
    settle(app, application)
    # The history of one payment, its first entry open: what was recorded, by whom, when.
    audit.show_entity("payment", "62")  # type: ignore[attr-defined]
    settle(app, application)
    audit.table.selectRow(audit.model.rowCount() - 1)  # type: ignore[attr-defined]
    settle(app, application)
    grab(window, "audit-browser")


if __name__ == "__main__":
    sys.exit(main())
