"""The Reports view as a manager uses it: a facility's statement generated in the background,
previewed with the PDF's own page count, saved (and the saved file passes the statement check),
printed to a PDF printer page for page, and a batch of statements cancelled halfway with the
finished files whole, the rest not started, and a summary that says so."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtPrintSupport import QPrinter

from billing_desk.reports.statement import read_printed_statements
from billing_desk.services import report_data
from billing_desk.services.audit_browser import AuditFilter, audit_page
from billing_desk.services.facilities import NewFacility, add_facility
from billing_desk.services.reconciliation import run_reconciliation
from billing_desk.services.report_data import check_statements
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.views.reports import (
    AUDIT,
    COMBINED,
    COMPLIANCE,
    DEPOSIT_SLIP,
    INTEGRITY,
    RECONCILIATION,
    STATEMENTS,
    ReportsView,
)
from tests.ui.conftest import Gui, screenshot


def _reports(gui: Gui, person: str) -> tuple[object, ReportsView]:
    application = gui.start(person)
    view = application.window.show_view("Reports")
    assert isinstance(view, ReportsView)
    gui.wait(lambda: view.facility.count() > 1, "the facilities")
    return application, view


def test_statement_preview_save_check_and_print(demo_gui: Gui, tmp_path: Path) -> None:
    application, view = _reports(demo_gui, "manager")
    assert not view.save_button.isEnabled() and not view.print_button.isEnabled()
    # Without a facility the form says which field to fill, and nothing is generated.
    view.facility.set_code(None)
    view.generate_button.click()
    assert view.facility_error.isVisible() and view.generated is None
    view.facility.set_code("STMARY")
    demo_gui.qtbot.keyClick(
        application.window,
        Qt.Key.Key_G,
        Qt.KeyboardModifier.ControlModifier,  # type: ignore[attr-defined]
    )
    demo_gui.wait(lambda: view.generated is not None, "the statement")
    assert view.generated is not None
    pages = len(pdfium.PdfDocument(view.generated.pdf))
    assert view.preview.page_count == pages
    assert f"of {pages}" in view.preview.where.text()
    assert view.save_button.isEnabled() and view.print_button.isEnabled()
    demo_gui.qtbot.wait(150)  # type: ignore[attr-defined]  # the page fits the preview
    screenshot(application.window, "reports-statement")  # type: ignore[attr-defined]

    saved = tmp_path / "stmary.pdf"
    view.save_to(saved)
    assert saved.exists() and "Saved" in view.message_bar.text.text()
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        checks = check_statements(reader, read_printed_statements(saved))
    finally:
        reader.close()
    assert checks and all(c.matches for c in checks)

    printer = QPrinter(QPrinter.PrinterMode.HighResolution)
    printer.setOutputFormat(QPrinter.OutputFormat.PdfFormat)
    printed = tmp_path / "printed.pdf"
    printer.setOutputFileName(str(printed))
    assert view.preview.print_to(printer) == pages
    assert len(pdfium.PdfDocument(printed)) == pages


def test_a_batch_cancelled_halfway_keeps_whole_files(
    demo_gui: Gui, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    application, view = _reports(demo_gui, "manager")
    folder = tmp_path / "statements"
    view.choose_folder = lambda: folder
    codes = [f.code for f in view._facilities]
    assert len(codes) >= 6
    real = report_data.statement_data
    made: list[str] = []

    def statement_then_cancel(workspace, code, **kwargs):  # type: ignore[no-untyped-def]
        made.append(code)
        if len(made) == 3:
            # The person presses Cancel while the third statement is being written.
            for op in list(application.desk.ops._running):  # type: ignore[attr-defined,union-attr]
                op.cancel()
        return real(workspace, code, **kwargs)

    monkeypatch.setattr("billing_desk.ui.views.reports.statement_data", statement_then_cancel)
    view.kind.setCurrentIndex(view.kind.findData(STATEMENTS))
    assert not view.facility.isEnabled()
    view.generate_button.click()
    demo_gui.wait(lambda: view.batch is not None, "the batch summary")
    summary = view.batch
    assert summary is not None and summary.cancelled
    assert summary.written == codes[:3], "the one being written when Cancel came is finished"
    assert summary.not_started == codes[3:]
    files = sorted(folder.iterdir())
    assert [p.suffix for p in files] == [".pdf"] * 3, "no half-written file is left"
    for path in files:
        assert len(pdfium.PdfDocument(path)) >= 1
    assert "3 statements written" in view.summary_label.text()
    assert "not started after Cancel" in view.summary_label.text()
    screenshot(application.window, "reports-batch-summary")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        (DEPOSIT_SLIP, "Deposit slip 1"),
        (RECONCILIATION, "Reconciliation run"),
        (AUDIT, "Audit trail"),
        (INTEGRITY, "Integrity of the history: no findings"),
        (COMPLIANCE, "Compliance score"),
    ],
)
def test_every_report_kind_generates_previews_and_saves(
    demo_gui: Gui, tmp_path: Path, kind: str, title: str
) -> None:
    if kind == RECONCILIATION:
        manager = open_workspace(demo_gui.db, "manager", migrate=False)
        try:
            run_id = run_reconciliation(manager, date(2026, 4, 1), date(2026, 4, 30)).run_id
        finally:
            manager.close()
    application, view = _reports(demo_gui, "manager")
    view.kind.setCurrentIndex(view.kind.findData(kind))
    assert view.number.isEnabled() == (kind in (DEPOSIT_SLIP, RECONCILIATION))
    assert view.first_day.isEnabled() == (kind == AUDIT)
    assert not view.facility.isEnabled()
    if kind == RECONCILIATION:
        view.number.setValue(run_id)
    if kind == AUDIT:
        view.first_day.setDate(QDate(2026, 5, 1))
        view.as_of.setDate(QDate(2026, 5, 20))
    view.generate_button.click()
    demo_gui.wait(lambda: view.generated is not None, title)
    assert view.generated is not None and view.generated.title.startswith(title)
    assert view.preview.page_count == len(pdfium.PdfDocument(view.generated.pdf)) >= 1
    assert view.save_csv_button.isEnabled()
    saved = tmp_path / "report.csv"
    view.save_to(saved, pdf=False)
    assert saved.read_text(encoding="utf-8").strip()
    if kind == INTEGRITY:
        demo_gui.qtbot.wait(150)  # type: ignore[attr-defined]
        screenshot(application.window, "reports-integrity")  # type: ignore[attr-defined]


def test_an_audit_period_that_ends_before_it_starts_is_refused_in_the_form(
    demo_gui: Gui,
) -> None:
    _application, view = _reports(demo_gui, "manager")
    view.kind.setCurrentIndex(view.kind.findData(AUDIT))
    view.first_day.setDate(QDate(2026, 5, 20))
    view.as_of.setDate(QDate(2026, 5, 1))
    view.generate_button.click()
    assert view.first_day_error.isVisible() and view.generated is None
    assert "first day is after the last" in view.first_day_error.text()


def test_every_facilitys_statement_in_one_combined_pdf(demo_gui: Gui) -> None:
    application, view = _reports(demo_gui, "manager")
    view.kind.setCurrentIndex(view.kind.findData(COMBINED))
    view.generate_button.click()
    demo_gui.wait(lambda: view.generated is not None, "the combined statements")
    assert view.generated is not None
    pages = len(pdfium.PdfDocument(view.generated.pdf))
    assert view.preview.page_count == pages
    statements = read_printed_statements(view.generated.pdf)
    assert len(statements) >= 6 and pages >= len(statements)
    assert view.generated.title.startswith(f"{len(statements)} statements")
    assert not list(view.generated.pdf.parent.glob("*.part"))
    screenshot(application.window, "reports-combined")  # type: ignore[attr-defined]


def test_a_batch_skips_a_facility_that_owes_nothing_and_says_so(
    demo_gui: Gui, tmp_path: Path
) -> None:
    admin = open_workspace(demo_gui.db, "admin", migrate=False)
    try:
        add_facility(admin, NewFacility("QUIETCARE", "Quiet Care Home"))
    finally:
        admin.close()
    application, view = _reports(demo_gui, "manager")
    folder = tmp_path / "all"
    view.choose_folder = lambda: folder
    codes = [f.code for f in view._facilities]
    assert "QUIETCARE" in codes
    view.kind.setCurrentIndex(view.kind.findData(STATEMENTS))
    view.generate_button.click()
    demo_gui.wait(lambda: view.batch is not None, "the batch summary")
    summary = view.batch
    assert summary is not None and not summary.cancelled and not summary.failed
    assert summary.skipped == ["QUIETCARE"]
    assert sorted(summary.written) == sorted(c for c in codes if c != "QUIETCARE")
    assert len(list(folder.glob("*.pdf"))) == len(codes) - 1
    assert "1 skipped, nothing owed and no activity (QUIETCARE)" in view.summary_label.text()
    screenshot(application.window, "reports-batch-skipped", schemes=False)  # type: ignore[attr-defined]


def test_cancel_while_a_report_is_read_writes_and_records_nothing(
    demo_gui: Gui, monkeypatch: pytest.MonkeyPatch
) -> None:
    application, view = _reports(demo_gui, "manager")
    real = report_data.integrity_report_data

    def read_then_cancel(workspace, *args, **kwargs):  # type: ignore[no-untyped-def]
        # The person presses Cancel while the history is being verified.
        for op in list(application.desk.ops._running):  # type: ignore[attr-defined,union-attr]
            op.cancel()
        return real(workspace, *args, **kwargs)

    monkeypatch.setattr("billing_desk.ui.views.reports.integrity_report_data", read_then_cancel)
    view.kind.setCurrentIndex(view.kind.findData(INTEGRITY))
    view.generate_button.click()
    demo_gui.wait(lambda: "Cancelled" in view.message_bar.text.text(), "the cancellation")
    assert view.generated is None and view.generate_button.isEnabled()
    assert not (Path(view._folder) / "integrity.pdf").exists()
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        printed = audit_page(reader, AuditFilter(action="report.print"), limit=10)
    finally:
        reader.close()
    assert printed == []
