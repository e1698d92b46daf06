"""`billing-desk --self-test`: prove an installation works, in a temporary folder, one line per
step: a new embedded database with demo data, a payment recorded and the history verified, a
statement rendered to PDF with its fonts embedded, and the main window opened and closed
(offscreen when there is no display). Exit 0 when every step passed, 1 at the first failure
with its sentence. Nothing outside the temporary folder is read or written."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from billing_desk import __version__


def _database(folder: Path) -> str:
    from billing_desk.services.demo import load_demo_data
    from billing_desk.services.unit_of_work import open_workspace

    path = folder / "self-test.sqlite3"
    workspace = open_workspace(str(path), "newcomer")
    try:
        summary = load_demo_data(workspace, facilities=3, months=2)
    finally:
        workspace.close()
    return f"{path.name} with {summary.facilities} facilities and {summary.invoices} invoices"


def _payment(folder: Path) -> str:
    from billing_desk.services.facilities import list_facilities
    from billing_desk.services.payments import PaymentDraft, record_payment
    from billing_desk.services.unit_of_work import open_workspace
    from billing_desk.services.verification import verify

    workspace = open_workspace(str(folder / "self-test.sqlite3"), "clerk", migrate=False)
    try:
        code = list_facilities(workspace)[0].code
        received = date.today() - timedelta(days=1)
        reference = f"SELF-TEST-{uuid.uuid4().hex[:8]}"
        draft = PaymentDraft(code, "transfer", "12.34", received, reference=reference)
        receipt = record_payment(workspace, draft, str(uuid.uuid4()))
        report = verify(workspace)
    finally:
        workspace.close()
    if not report.ok:
        raise RuntimeError(f"verification found {len(report.findings)} problems")
    return f"payment {receipt.payment_id} recorded; {report.entries_checked:,} entries verified"


def _statement(folder: Path) -> str:
    from pypdf import PdfReader

    from billing_desk.reports.statement import write_statement
    from billing_desk.services.facilities import list_facilities
    from billing_desk.services.provider import provider_details
    from billing_desk.services.report_data import statement_data
    from billing_desk.services.unit_of_work import open_workspace

    workspace = open_workspace(str(folder / "self-test.sqlite3"), "clerk", migrate=False)
    try:
        code = list_facilities(workspace)[0].code
        data = statement_data(workspace, code)
        pdf = folder / "statement.pdf"
        write_statement(pdf, data, provider_details(workspace), "self-test")
    finally:
        workspace.close()
    reader = PdfReader(str(pdf))
    fonts = set()
    for page in reader.pages:
        resources = page.get("/Resources") or {}
        for font in (resources.get("/Font") or {}).values():
            descriptor = font.get_object().get("/FontDescriptor")
            if descriptor is None:
                for child in font.get_object().get("/DescendantFonts") or []:
                    descriptor = child.get_object().get("/FontDescriptor")
            if descriptor is not None and any(
                k in descriptor.get_object() for k in ("/FontFile", "/FontFile2", "/FontFile3")
            ):
                fonts.add(str(font.get_object().get("/BaseFont")))
    if not fonts:
        raise RuntimeError("the statement's fonts are not embedded")
    text = "".join(page.extract_text() for page in reader.pages)
    if code not in text:
        raise RuntimeError("the statement does not read back")
    return f"{len(reader.pages)} page(s), {len(fonts)} embedded font(s)"


def _window(folder: Path) -> str:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from billing_desk.ui.app import Application, make_application

    app = make_application()
    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    application = Application(app, settings)
    started = time.perf_counter()
    application.start(str(folder / "self-test.sqlite3"), "clerk")
    deadline = started + 60
    while time.perf_counter() < deadline:
        app.processEvents()
        window = application.window
        view = window.views.get("Payments") if application.desk is not None else None
        model = getattr(view, "model", None)
        if window.isVisible() and model is not None and model.rowCount() > 0:
            break
        time.sleep(0.01)
    else:
        raise RuntimeError("the window did not show the payments within 60 s")
    shown = time.perf_counter() - started
    application.window.close()
    application.close()
    app.processEvents()
    return f"opened on Payments in {shown * 1000:.0f} ms and closed ({app.platformName()})"


STEPS: tuple[tuple[str, Callable[[Path], str]], ...] = (
    ("database", _database),
    ("payment", _payment),
    ("statement", _statement),
    ("window", _window),
)


def main() -> int:
    print(f"billing-desk {__version__} self-test (Python {sys.version.split()[0]})", flush=True)
    with tempfile.TemporaryDirectory(prefix="billing-desk-self-test-") as name:
        folder = Path(name)
        # The application's own folders (log, lock, settings) go to the temporary folder too.
        os.environ["XDG_STATE_HOME"] = str(folder / "state")
        os.environ["XDG_DATA_HOME"] = str(folder / "data")
        os.environ["XDG_CONFIG_HOME"] = str(folder / "config")
        for label, step in STEPS:
            try:
                said = step(folder)
            except Exception as err:  # the sentence and where, then stop
                print(f"FAILED {label}: {err}", flush=True)
                traceback.print_exc(file=sys.stderr)
                return 1
            print(f"ok     {label}: {said}", flush=True)
    print("self-test passed", flush=True)
    return 0
