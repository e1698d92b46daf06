"""The Reconciliation view as a bookkeeper uses it: a bank statement's lines beside the payments
that could explain them; an exact candidate matched with one press (and the payment cleared), a
line that differs matched only with a reason, Auto-match saying what it left, and Unmatch with a
reason putting the payment back."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services.matching import LineInfo
from billing_desk.services.payments import PaymentDraft, list_payments, record_payment
from billing_desk.services.reconciliation import DiscrepancyInfo
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import Workspace, open_workspace
from billing_desk.ui.app import Application
from billing_desk.ui.views.reconciliation import ReconciliationView
from billing_desk.ui.widgets import ReasonDialog
from tests.ui.conftest import Gui, screenshot, wait_for_trail
from tests.ui.test_models_and_screens import ModelCheck

DAY = date.today() - timedelta(days=2)


def _books(gui: Gui) -> tuple[int, int]:
    """Two transfers recorded, and the bank's statement: one line for each (the second a dollar
    short) and a fee."""
    clerk = open_workspace(gui.db, "clerk", migrate=False)
    try:
        paid = [
            record_payment(
                clerk,
                PaymentDraft("STMARY", "transfer", amount, DAY, reference=reference),
                str(uuid.uuid4()),
            ).payment_id
            for amount, reference in (("250.00", "ACH-RECON-1"), ("100.00", "ACH-RECON-2"))
        ]
        lines = (
            StatementLine(DAY, Money.from_minor(25000, "USD"), "line 1", bank_id="B1",
                          reference="ACH-RECON-1", counterparty="St. Mary's Hospital"),
            StatementLine(DAY, Money.from_minor(9900, "USD"), "line 2", bank_id="B2",
                          reference="ACH-RECON-2", counterparty="St. Mary's Hospital"),
            StatementLine(DAY, Money.from_minor(-2500, "USD"), "line 3", bank_id="B3",
                          reference="FEE", counterparty="Bank fee"),
        )  # fmt: skip
        statement = Statement("csv", "OPS-1", "USD", lines)
        import_statements(clerk, "bank.csv", b"bank file", "csv", [statement], commit=True)
    finally:
        clerk.close()
    return paid[0], paid[1]


def _bank(clerk: Workspace, account: str, *lines: StatementLine) -> None:
    """The bank's statement of `lines` (dollars), imported as a clerk would."""
    statement = Statement("csv", account, "USD", lines)
    import_statements(clerk, f"{account}.csv", account.encode(), "csv", [statement], commit=True)


def _start_on_line(demo_gui: Gui, bank_id: str) -> tuple[Application, ReconciliationView, LineInfo]:
    """The Reconciliation view of a clerk, with the bank's line `bank_id` selected."""
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    demo_gui.wait(lambda: any(r.bank_id == bank_id for r in view.lines.rows), "the bank's line")
    line = next(r for r in view.lines.rows if r.bank_id == bank_id)
    view.lines_table.selectRow(view.lines.row_of(line.id) or 0)
    return application, view, line


def _open_finding(
    demo_gui: Gui, concerns: Callable[[DiscrepancyInfo], bool]
) -> tuple[Application, DiscrepancyInfo]:
    """A clerk's run over the demo's whole history, then Enter on the finding `concerns`
    picks: the dialog closes and what the finding names is shown."""
    from billing_desk.ui.widgets import qdate

    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    view.runs_action.trigger()
    dialog = view.run_dialog
    assert dialog is not None
    dialog.date_from.setDate(qdate(date(2025, 1, 1)))
    demo_gui.qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)  # type: ignore[attr-defined]
    demo_gui.wait(lambda: any(concerns(d) for d in dialog.rows.rows), "the finding")
    finding = next(d for d in dialog.rows.rows if concerns(d))
    dialog.table.setFocus()
    dialog.table.selectRow(dialog.rows.row_of(finding.id) or 0)
    demo_gui.qtbot.keyClick(dialog.table, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    return application, finding


def _status(gui: Gui, payment_id: int) -> str:
    reader = open_workspace(gui.db, "auditor", migrate=False)
    try:
        return next(p.status for p in list_payments(reader) if p.payment_id == payment_id)
    finally:
        reader.close()


def test_match_exact_and_with_a_difference_then_unmatch(demo_gui: Gui) -> None:
    exact, short = _books(demo_gui)
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    # Ours, and the two the demo's bank left for a person (an unidentified credit, a charge).
    demo_gui.wait(lambda: view.lines.rowCount() == 5, "the five unmatched lines")
    line = next(r for r in view.lines.rows if r.amount_minor == 25000)
    view.lines_table.selectRow(view.lines.row_of(line.id) or 0)
    demo_gui.wait(
        lambda: bool(view.found.rows) and view.found.rows[0].payment_id == exact,
        "the line's candidates",
    )
    assert "Difference $0.00" in view.difference.text()
    assert view.match_button.isEnabled() and view.match_button.text() == "&Match"
    screenshot(application.window, "reconciliation")  # type: ignore[attr-defined]
    demo_gui.qtbot.mouseClick(view.match_button, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: f"Line {line.id} matched" in view.message_bar.text.text(), "the match")
    demo_gui.wait(lambda: view.lines.row_of(line.id) is None, "the line off the unmatched list")
    assert _status(demo_gui, exact) == "cleared", "matching clears the payment"

    second = next(r for r in view.lines.rows if r.amount_minor == 9900)
    view.lines_table.selectRow(view.lines.row_of(second.id) or 0)
    demo_gui.wait(
        lambda: any(c.payment_id == short for c in view.found.rows), "the short line's candidate"
    )
    view.found_table.selectRow(
        next(i for i, c in enumerate(view.found.rows) if c.payment_id == short)
    )
    assert "Difference -$1.00" in view.difference.text() or "($1.00)" in view.difference.text()
    assert view.match_button.text() == "&Match with a difference…"
    view.match_button.click()
    dialog = application.window.findChildren(ReasonDialog)[-1]
    assert not dialog.ok.isEnabled(), "no match with a difference without a reason"
    demo_gui.qtbot.keyClicks(dialog.reason, "bank charged a dollar on the transfer")
    dialog.ok.click()
    demo_gui.wait(lambda: f"Line {second.id} matched" in view.message_bar.text.text(), "the match")
    view.which.setCurrentIndex(view.which.findData("difference"))
    # Ours, and the demo bank's slip credited short.
    demo_gui.wait(
        lambda: (
            second.id in {r.id for r in view.lines.rows}
            and all(r.rule == "manual with difference" for r in view.lines.rows)
            and line.id not in {r.id for r in view.lines.rows}
        ),
        "the lines matched with a difference",
    )
    view.which.setCurrentIndex(view.which.findData("matched"))
    demo_gui.wait(
        lambda: (
            {line.id, second.id} <= {r.id for r in view.lines.rows}
            and all(r.payment_id or r.deposit_id for r in view.lines.rows)
        ),
        "the matched lines",
    )
    view.which.setCurrentIndex(view.which.findData("unmatched"))

    view.auto_button.click()
    demo_gui.wait(lambda: "Auto-match matched" in view.message_bar.text.text(), "auto-match")
    assert "3 left for you" in view.message_bar.text.text()

    view.which.setCurrentIndex(view.which.findData("all"))
    demo_gui.wait(lambda: view.lines.rowCount() > 5, "all lines")
    view.lines_table.selectRow(view.lines.row_of(line.id) or 0)
    demo_gui.wait(lambda: view.unmatch_button.isEnabled(), "unmatch offered")
    view.unmatch_button.click()
    dialog = application.window.findChildren(ReasonDialog)[-1]
    demo_gui.qtbot.keyClicks(dialog.reason, "matched to the wrong transfer")
    dialog.ok.click()
    demo_gui.wait(lambda: f"Line {line.id} is unmatched" in view.message_bar.text.text(), "unmatch")
    demo_gui.idle(application)
    assert _status(demo_gui, exact) == "recorded", "unmatching takes the clearing back"


def test_an_auditor_does_not_reconcile(demo_gui: Gui) -> None:
    application = demo_gui.start("auditor")
    assert "Reconciliation" not in application.window.views


def test_a_statement_file_is_previewed_and_imported_once(
    demo_gui: Gui, pytestconfig: pytest.Config
) -> None:
    from billing_desk.importers.statements import registry
    from billing_desk.ui.views.reconciliation import StatementImportDialog
    from tests.corpus import CORPUS_ROOT as CORPUS

    path = CORPUS / "ofx" / "ofx102_sgml_tab_indented_checking.ofx"
    expected = sum(len(s.lines) for s in registry.parse(path.read_bytes(), "ofx"))
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    dialog = view.import_file(path)
    demo_gui.wait(lambda: dialog.rows.rowCount() == expected, "the preview of every line")
    assert all(str(r.status) == "new" for r in dialog.rows.rows)
    assert "Nothing is written until Import" in dialog.summary.text()
    ModelCheck(pytestconfig).check(dialog.rows)
    assert dialog.import_button.isEnabled(), dialog.summary.text()
    screenshot(dialog, "statement-import-preview")  # type: ignore[attr-defined]
    dialog.import_button.click()
    demo_gui.wait(lambda: "new lines imported" in view.message_bar.text.text(), "the import")
    demo_gui.wait(lambda: view.lines.rowCount() >= expected, "the new lines listed")

    again = view.import_file(path)
    demo_gui.wait(lambda: again.rows.rowCount() == expected, "the second preview")
    assert all(str(r.status) == "already imported" for r in again.rows.rows)
    assert not again.import_button.isEnabled(), "nothing new, nothing to import"
    again.reject()
    assert isinstance(again, StatementImportDialog)


def test_conflicting_lines_are_kept_only_with_what_the_bank_said(
    demo_gui: Gui, tmp_path: Path
) -> None:
    from billing_desk.ui.views.reconciliation import StatementImportDialog

    def mt940(name: str, day: str, line: str, closing: str) -> Path:
        path = tmp_path / name
        path.write_bytes(
            (
                f":20:STMT\r\n:25:NL00BANK0123456789\r\n:28C:1/1\r\n:60F:C{day}EUR1000,00\r\n"
                f":61:{line}\r\n:62F:C{day}EUR{closing}\r\n-\r\n"
            ).encode()
        )
        return path

    first = mt940("1.sta", "260601", "260601C20,00NTRFNONREF//BANK-7", "1020,00")
    # The bank gave the same id to another real transfer the next day.
    second = mt940("2.sta", "260602", "260602C45,00NTRFNONREF//BANK-7", "1045,00")
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    dialog = view.import_file(first)
    demo_gui.wait(lambda: dialog.import_button.isEnabled(), "the first file")
    assert not dialog.keep_button.isVisible()
    dialog.import_button.click()
    demo_gui.wait(lambda: "1 new lines imported" in view.message_bar.text.text(), "the import")

    again = view.import_file(second)
    assert isinstance(again, StatementImportDialog)
    demo_gui.wait(lambda: again.rows.rowCount() == 1, "the conflicting line")
    assert str(again.rows.rows[0].status) == "conflicting"
    assert "BANK-7 was imported before as 20.00" in (again.rows.rows[0].why or "")
    assert not again.import_button.isEnabled() and again.keep_button.isEnabled()
    screenshot(again, "statement-import-conflicting", schemes=False)  # type: ignore[attr-defined]
    again.keep_button.click()
    reason = again.findChildren(ReasonDialog)[-1]
    assert not reason.ok.isEnabled(), "nothing kept without what the bank said"
    demo_gui.qtbot.keyClicks(reason.reason, "bank confirmed two transfers, ticket 88")  # type: ignore[attr-defined]
    reason.ok.click()
    demo_gui.wait(lambda: "1 conflicting line kept" in view.message_bar.text.text(), "kept")
    view.which.setCurrentIndex(view.which.findData("all"))
    demo_gui.wait(
        lambda: sum(1 for line in view.lines.rows if line.bank_id == "BANK-7") == 2,
        "both lines of the bank's id",
    )


def test_statement_files_dropped_together_are_previewed_and_imported_one_by_one(
    demo_gui: Gui,
) -> None:
    """A BAI2, a camt.053 and an MT940 file dropped at once: each preview lists exactly the
    lines its importer reads, each is imported in turn, and the same files dropped again show
    every line as already imported."""
    from billing_desk.importers.statements import registry
    from billing_desk.ui.views.reconciliation import StatementImportDialog
    from tests.corpus import CORPUS_ROOT as CORPUS

    files = [
        (CORPUS / "bai2" / "bai2_spec_example_3_groups_funds_types.bai2", "bai2"),
        (CORPUS / "camt053" / "camt053v04_raiffeisen_ch_16_entries.xml", "camt053"),
        (CORPUS / "mt940" / "mt940_knab.sta", "mt940"),
    ]
    expected = [
        sum(len(s.lines) for s in registry.parse(path.read_bytes(), name)) for path, name in files
    ]
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView) and view.acceptDrops()

    def drop() -> None:
        data = QMimeData()
        data.setUrls([QUrl.fromLocalFile(str(path)) for path, _ in files])
        event = QDropEvent(
            QPointF(20, 20),
            Qt.DropAction.CopyAction,
            data,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        view.dropEvent(event)  # what Qt calls when the files are let go over the view

    def open_preview(seen: set[int]) -> StatementImportDialog:
        demo_gui.wait(
            lambda: any(
                d.isVisible() and id(d) not in seen
                for d in view.findChildren(StatementImportDialog)
            ),
            "the next file's preview",
        )
        dialog = next(
            d
            for d in view.findChildren(StatementImportDialog)
            if d.isVisible() and id(d) not in seen
        )
        seen.add(id(dialog))
        return dialog

    drop()
    seen: set[int] = set()
    for (path, _name), count in zip(files, expected, strict=True):
        dialog = open_preview(seen)
        assert dialog.path == path
        demo_gui.wait(lambda d=dialog, n=count: d.rows.rowCount() == n, f"{path.name} read")
        assert all(str(r.status) == "new" for r in dialog.rows.rows), path.name
        if dialog.seen_failure.isVisible():
            dialog.seen_failure.setChecked(True)
        demo_gui.wait(lambda d=dialog: d.import_button.isEnabled(), "Import offered")
        dialog.import_button.click()
        demo_gui.wait(lambda d=dialog: not d.isVisible(), f"{path.name} imported")

    drop()
    for (path, _name), count in zip(files, expected, strict=True):
        dialog = open_preview(seen)
        demo_gui.wait(lambda d=dialog, n=count: d.rows.rowCount() == n, f"{path.name} again")
        assert all(str(r.status) == "already imported" for r in dialog.rows.rows), path.name
        assert not dialog.import_button.isEnabled()
        dialog.reject()


PLANTED = {"amount mismatch", "unexplained bank debit", "unmatched bank credit"}


def _run_demo_period(demo_gui: Gui, role: str):  # type: ignore[no-untyped-def]
    from billing_desk.ui.widgets import qdate

    application = demo_gui.start(role)
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    view.runs_action.trigger()
    dialog = view.run_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.date_from.setDate(qdate(date(2025, 1, 1)))  # the demo's whole history
    demo_gui.qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    demo_gui.wait(lambda: dialog.rows.rowCount() == 3, "the run's discrepancies")
    assert {d.kind for d in dialog.rows.rows} == PLANTED
    return application, dialog


def test_a_clerk_runs_a_reconciliation_and_sees_what_it_found(
    demo_gui: Gui, pytestconfig: pytest.Config
) -> None:
    """The demo's bank left three things on purpose; the run lists them by kind, as money."""
    application, dialog = _run_demo_period(demo_gui, "clerk")
    ModelCheck(pytestconfig).check(dialog.rows)
    assert "3 discrepancies" in dialog.summary.text()
    assert "amount mismatch: 1" in dialog.summary.text()
    short = next(d for d in dialog.rows.rows if d.kind == "amount mismatch")
    row = dialog.rows.row_of(short.id)
    assert row is not None
    shown = [dialog.rows.index(row, c).data() for c in range(dialog.rows.columnCount())]
    assert shown[2].startswith("$") and shown[3].startswith("$"), shown
    assert "deposit" in shown[4] and "line" in shown[4]
    assert dialog.resolve_button.isHidden() and dialog.close_run_button.isHidden()
    screenshot(dialog, "reconciliation-run")  # type: ignore[attr-defined]

    # Enter on the unidentified credit opens its bank line among all the lines.
    stray = next(d for d in dialog.rows.rows if d.kind == "unmatched bank credit")
    dialog.table.setFocus()
    dialog.table.selectRow(dialog.rows.row_of(stray.id) or 0)
    demo_gui.qtbot.keyClick(dialog.table, Qt.Key.Key_Return)
    demo_gui.wait(lambda: not dialog.isVisible(), "the dialog closed")
    view = application.window.views["Reconciliation"]
    assert isinstance(view, ReconciliationView)
    demo_gui.wait(
        lambda: (
            view.which.currentData() == "all"
            and (chosen := view.lines_table.selectionModel().selectedRows()) != []
            and view.lines.rows[chosen[0].row()].id == stray.line_id
        ),
        "the line shown",
    )


def test_a_manager_resolves_every_discrepancy_and_seals_the_run(demo_gui: Gui) -> None:
    _application, dialog = _run_demo_period(demo_gui, "manager")
    assert not dialog.close_run_button.isEnabled(), "nothing is sealed while any is open"
    for finding in list(dialog.rows.rows):
        row = dialog.rows.row_of(finding.id)
        assert row is not None
        dialog.table.selectRow(row)
        assert dialog.resolve_button.isEnabled()
        dialog.resolve_button.click()
        asked = dialog.findChildren(ReasonDialog)[-1]
        demo_gui.qtbot.keyClicks(asked.reason, f"checked with the bank: {finding.kind}")
        asked.ok.click()
        demo_gui.wait(
            lambda f=finding: (
                next(d for d in dialog.rows.rows if d.id == f.id).status == "resolved"
            ),
            "the discrepancy resolved",
        )
    demo_gui.wait(lambda: dialog.close_run_button.isEnabled(), "Close offered")
    dialog.close_run_button.click()
    demo_gui.wait(lambda: "closed and sealed" in dialog.summary.text(), "the run sealed")
    assert not dialog.resolve_button.isEnabled() and not dialog.close_run_button.isEnabled()
    assert all(d.note for d in dialog.rows.rows)


def test_a_ten_thousand_line_statement_keeps_the_window_answering_and_cancel_writes_nothing(
    demo_gui: Gui, tmp_path: Path
) -> None:
    """While 10,000 lines are read and compared, a 50 ms timer keeps firing on the GUI thread
    and the progress reaches the line count; Cancel during the import leaves nothing written."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QProgressDialog, QPushButton

    from billing_desk.importers.statements.writers import BankEntry, write_camt053
    from billing_desk.services.matching import list_lines

    lines = 10_000
    entries = [
        BankEntry(date(2026, 6, 1) + timedelta(days=i % 28), 1000 + i, f"BIG{i:05d}", None, "Payer")
        for i in range(lines)
    ]
    path = tmp_path / "a-year-of-lines.xml"
    path.write_bytes(write_camt053("CH9300762011623852957", "USD", entries))
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)

    ticks: list[int] = []
    seen: list[tuple[int, int]] = []

    def tick() -> None:
        ticks.append(1)
        for shown in view.findChildren(QProgressDialog):
            seen.append((shown.value(), shown.maximum()))

    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(tick)
    timer.start()
    try:
        dialog = view.import_file(path)
        demo_gui.wait(lambda: dialog.rows.rowCount() == lines, "the preview", timeout=300_000)
        read_ticks = len(ticks)
        assert read_ticks >= 2, "the GUI thread answered while the file was read"
        assert (lines, lines) in seen, f"the progress reached the line count: {seen[-3:]}"

        # Import, and Cancel as soon as the import's progress shows.
        seen.clear()
        dialog.import_button.click()
        demo_gui.wait(lambda: any(v > 0 for v, _ in seen), "the import's progress")
        progress = dialog.findChildren(QProgressDialog)[-1]
        cancel = next(b for b in progress.findChildren(QPushButton) if "Cancel" in b.text())
        cancel.click()
        demo_gui.wait(
            lambda: "Cancelled: nothing was written" in dialog.message_bar.text.text(),
            "the cancellation",
            timeout=300_000,
        )
    finally:
        timer.stop()
    reader = open_workspace(demo_gui.db, "auditor", migrate=False)
    try:
        assert not [ln for ln in list_lines(reader) if (ln.bank_id or "").startswith("BIG")]
    finally:
        reader.close()
    assert dialog.import_button.isEnabled(), "the person may try again"
    dialog.reject()


def test_a_csv_is_read_through_the_mapping_editor_and_the_banks_next_file_with_no_change(
    demo_gui: Gui, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """A bank's CSV the first time: the editor shows the guessed columns and the lines as they
    read; one column corrected changes the reading at once; saved under a name. The bank's next
    export is read with that mapping with no question, and says so."""
    from billing_desk.ui.views.csv_mapping import CsvMappingDialog
    from tests.corpus import CORPUS_ROOT as CORPUS

    source = CORPUS / "csv" / "csv_nl_knab_title_row_creditdebet.csv"
    first = tmp_path / "knab-june.csv"
    first.write_bytes(source.read_bytes())
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    dialog = view.import_file(first)
    demo_gui.wait(lambda: dialog.mapping_editor is not None, "the mapping editor")
    editor = dialog.mapping_editor
    assert isinstance(editor, CsvMappingDialog)
    demo_gui.wait(lambda: editor.isVisible(), "the editor shown")
    assert "Boekdatum" in editor.roles["date"].currentText()
    assert "Bedrag" in editor.roles["amount"].currentText()
    assert editor.lines.rowCount() == 28, editor.reading.text()
    assert editor.raw.columnCount() >= 16 and editor.raw.rowCount() == 28
    assert all(not line.reference for line in editor.lines.rows)
    ModelCheck(pytestconfig).check(editor.lines)
    # The payer's text is where this bank puts the payment's reference.
    reference = editor.roles["reference"]
    reference.setFocus()
    reference.setCurrentIndex(reference.findText("Omschrijving", Qt.MatchFlag.MatchContains))
    demo_gui.wait(
        lambda: any(line.reference == "Tresorie" for line in editor.lines.rows), "the new reading"
    )
    editor.name.clear()
    assert not editor.save_button.isEnabled(), "a mapping is saved under a name"
    demo_gui.qtbot.keyClicks(editor.name, "Knab business")  # type: ignore[attr-defined]
    screenshot(editor, "csv-mapping-editor")  # type: ignore[attr-defined]
    editor.save_button.click()
    demo_gui.wait(lambda: dialog.rows.rowCount() == 28, "the file read with the saved mapping")
    assert "Knab business" in dialog.summary.text()
    assert dialog.import_button.isEnabled(), dialog.summary.text()
    dialog.import_button.click()
    demo_gui.wait(lambda: "28 new lines imported" in view.message_bar.text.text(), "the import")

    # The bank's next export: the same columns, other movements.
    text = source.read_bytes().decode()
    head, rows = text.split("\n")[:2], text.split("\n")[2:6]
    later = []
    for row in rows:
        cells = row.split(";")
        cells[14] = cells[14].replace('"', '"N', 1)  # the bank's own id of another movement
        later.append(";".join(cells))
    second = tmp_path / "knab-july.csv"
    second.write_bytes("\n".join(head + later).encode())
    again = view.import_file(second)
    demo_gui.wait(lambda: again.rows.rowCount() == 4, "the next file read at once")
    assert again.mapping_editor is None, "no question for a bank whose mapping is saved"
    assert "Read with the saved CSV mapping “Knab business”" in again.summary.text()
    assert {line.reference for line in again.rows.rows} >= {"Tresorie"}
    assert all(str(line.status) == "new" for line in again.rows.rows)
    again.reject()


def test_any_payment_is_found_by_hand_when_the_rules_do_not_offer_it(demo_gui: Gui) -> None:
    """A transfer recorded two months before the bank booked it, under another reference: the
    rules do not offer it; typed into the search, by reference or by amount, it is found and
    matched."""
    clerk = open_workspace(demo_gui.db, "clerk", migrate=False)
    try:
        late = record_payment(
            clerk,
            PaymentDraft(
                "STMARY", "transfer", "77.31", DAY - timedelta(days=60), reference="ACH-LATE-9"
            ),
            str(uuid.uuid4()),
        ).payment_id
        line = StatementLine(
            DAY, Money.from_minor(7731, "USD"), "line 1", bank_id="S1", reference="UNRELATED",
            counterparty="Someone Else",
        )  # fmt: skip
        _bank(clerk, "OPS-9", line)
    finally:
        clerk.close()
    application, view, ours = _start_on_line(demo_gui, "S1")
    demo_gui.idle(application)
    assert all(c.payment_id != late for c in view.found.rows), "the rules do not offer it"

    view.search.setFocus()
    demo_gui.qtbot.keyClicks(view.search, "late-9")  # type: ignore[attr-defined]
    demo_gui.qtbot.keyClick(view.search, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    demo_gui.wait(lambda: any(c.payment_id == late for c in view.found.rows), "found by hand")
    assert [c.payment_id for c in view.found.rows] == [late]
    view.search.clear()
    demo_gui.qtbot.keyClicks(view.search, "77.31")  # type: ignore[attr-defined]
    demo_gui.qtbot.keyClick(view.search, Qt.Key.Key_Return)  # type: ignore[attr-defined]
    demo_gui.wait(lambda: [c.payment_id for c in view.found.rows] == [late], "found by its amount")
    view.found_table.selectRow(0)
    assert "Difference $0.00" in view.difference.text()
    view.match_button.click()
    demo_gui.wait(lambda: f"Line {ours.id} matched" in view.message_bar.text.text(), "the match")
    assert _status(demo_gui, late) == "cleared"


def test_auto_match_shows_its_progress_and_cancel_matches_nothing(demo_gui: Gui) -> None:
    """Auto-match over 10,000 unmatched lines runs in the background with progress; Cancel
    leaves every line as it was, and the same run let finish matches the lines it can."""
    from PySide6.QtWidgets import QProgressDialog, QPushButton

    clerk = open_workspace(demo_gui.db, "clerk", migrate=False)
    try:
        paid = [
            record_payment(
                clerk,
                PaymentDraft("STMARY", "transfer", "61.00", DAY, reference=f"ACH-AUTO-{n}"),
                str(uuid.uuid4()),
            ).payment_id
            for n in range(3)
        ]
        noise = [
            StatementLine(DAY, Money.from_minor(1000 + i, "USD"), f"line {i}", bank_id=f"N{i}",
                          reference=f"NOISE{i}")
            for i in range(10_000)
        ]  # fmt: skip
        ours = [
            StatementLine(DAY, Money.from_minor(6100, "USD"), f"ours {n}", bank_id=f"A{n}",
                          reference=f"ACH-AUTO-{n}")
            for n in range(3)
        ]  # fmt: skip
        statement = Statement("csv", "OPS-AUTO", "USD", tuple(noise + ours))
        import_statements(clerk, "auto.csv", b"auto", "csv", [statement], commit=True)
    finally:
        clerk.close()
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    demo_gui.wait(lambda: view.lines.rowCount() > 10_000, "the unmatched lines")

    view.auto_button.click()
    demo_gui.wait(
        lambda: any(d.value() > 0 for d in application.window.findChildren(QProgressDialog)),
        "auto-match's progress",
    )
    progress = next(d for d in application.window.findChildren(QProgressDialog) if d.value() > 0)
    # Every unmatched line (ours and the demo bank's) weighed twice.
    assert "Auto-matching" in progress.labelText()
    assert progress.maximum() == 2 * view.lines.rowCount()
    cancel = next(b for b in progress.findChildren(QPushButton) if "Cancel" in b.text())
    cancel.click()
    demo_gui.wait(
        lambda: "Auto-match cancelled: nothing was matched" in view.message_bar.text.text(),
        "the cancellation",
        timeout=120_000,
    )
    assert [_status(demo_gui, p) for p in paid] == ["recorded"] * 3

    view.auto_button.click()
    demo_gui.wait(
        lambda: "Auto-match matched 3 lines" in view.message_bar.text.text(),
        "auto-match let finish",
        timeout=120_000,
    )
    assert [_status(demo_gui, p) for p in paid] == ["cleared"] * 3


def test_a_discrepancy_on_an_invoice_opens_the_invoice(demo_gui: Gui) -> None:
    """An invoice whose stored total no longer adds up (changed behind the application's
    back): its discrepancy, opened with Enter, selects the invoice in the Invoices view."""
    import sqlite3

    from billing_desk.ui.views.invoices import InvoicesView

    with sqlite3.connect(demo_gui.db) as conn:
        invoice_id, number = conn.execute(
            "SELECT id, number FROM invoice WHERE status <> 'void' ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE invoice SET total_minor = total_minor + 1 WHERE id = ?", (invoice_id,))
    application, finding = _open_finding(demo_gui, lambda d: d.invoice_id == invoice_id)
    assert finding.invoice_number == number
    demo_gui.wait(
        lambda: (
            isinstance(invoices := application.window.views.get("Invoices"), InvoicesView)
            and (chosen := invoices.table.selectionModel().selectedRows()) != []
            and invoices.model.rows[chosen[0].row()].number == number
        ),
        "the invoice selected",
    )


def test_a_line_is_matched_to_two_deposit_slips_chosen_together(demo_gui: Gui) -> None:
    """Two checks deposited on two slips, credited by the bank as one line: chosen together
    (Ctrl+click) the difference is 0.00 and Match takes both; one slip alone against a line it
    does not explain asks for a reason first."""
    from billing_desk.services.deposits import create_deposit

    clerk = open_workspace(demo_gui.db, "clerk", migrate=False)
    try:
        checks = [
            record_payment(
                clerk,
                PaymentDraft(
                    "STMARY",
                    "check",
                    amount,
                    DAY,
                    check_number=number,
                    routing_number="011000015",
                    account_number="4417001",
                ),
                str(uuid.uuid4()),
            ).payment_id
            for amount, number in (("25.00", "9101"), ("15.00", "9102"), ("20.00", "9103"))
        ]
        slips = [
            create_deposit(clerk, [check], DAY, idempotency_key=str(uuid.uuid4())).deposit_id
            for check in checks
        ]
        lines = (
            StatementLine(DAY, Money.from_minor(4000, "USD"), "line 1", bank_id="T1",
                          reference="DEPOSIT", counterparty="Branch 12"),
            StatementLine(DAY, Money.from_minor(2600, "USD"), "line 2", bank_id="T2",
                          reference="DEPOSIT", counterparty="Branch 12"),
        )  # fmt: skip
        _bank(clerk, "OPS-T", *lines)
    finally:
        clerk.close()
    application, view, both = _start_on_line(demo_gui, "T1")
    demo_gui.wait(
        lambda: {c.deposit_id for c in view.found.rows} >= set(slips[:2]), "the two slips offered"
    )

    def click(deposit_id: int, modifier: Qt.KeyboardModifier) -> None:
        row = next(i for i, c in enumerate(view.found.rows) if c.deposit_id == deposit_id)
        rect = view.found_table.visualRect(view.found.index(row, 0))
        demo_gui.qtbot.mouseClick(  # type: ignore[attr-defined]
            view.found_table.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center()
        )

    click(slips[0], Qt.KeyboardModifier.NoModifier)
    assert "Match with a difference" in view.match_button.text()
    click(slips[1], Qt.KeyboardModifier.ControlModifier)
    assert {c.deposit_id for c in view.chosen_candidates()} == set(slips[:2])
    assert "Difference $0.00" in view.difference.text(), view.difference.text()
    assert view.match_button.isEnabled() and view.match_button.text() == "&Match (2 together)"
    screenshot(application.window, "reconciliation-two-together")  # type: ignore[attr-defined]
    view.match_button.click()
    demo_gui.wait(
        lambda: (
            f"Line {both.id} matched" in view.message_bar.text.text()
            and "1 more together" in view.message_bar.text.text()
        ),
        "the match",
    )
    demo_gui.idle(application)
    assert [_status(demo_gui, c) for c in checks] == ["cleared", "cleared", "deposited"]

    # The third slip does not explain the other line: Match asks for a reason first.
    other = next(r for r in view.lines.rows if r.bank_id == "T2")
    view.lines_table.selectRow(view.lines.row_of(other.id) or 0)
    demo_gui.wait(lambda: any(c.deposit_id == slips[2] for c in view.found.rows), "the slip")
    click(slips[2], Qt.KeyboardModifier.NoModifier)
    assert view.match_button.text() == "&Match with a difference…"
    assert "Difference $6.00" in view.difference.text(), view.difference.text()
    view.match_button.click()
    dialog = application.window.findChildren(ReasonDialog)[-1]
    assert not dialog.ok.isEnabled(), "no match with a difference without a reason"
    demo_gui.qtbot.keyClicks(dialog.reason, "bank added 6.00 of interest")  # type: ignore[attr-defined]
    dialog.ok.click()
    demo_gui.wait(lambda: f"Line {other.id} matched" in view.message_bar.text.text(), "matched")
    assert "manual with difference" in view.message_bar.text.text()


def test_a_deposit_never_seen_at_the_bank_opens_its_slip(demo_gui: Gui) -> None:
    from billing_desk.services.deposits import create_deposit
    from billing_desk.ui.views.deposits import DepositsView

    clerk = open_workspace(demo_gui.db, "clerk", migrate=False)
    try:
        long_ago = DAY - timedelta(days=20)
        check = record_payment(
            clerk,
            PaymentDraft(
                "STMARY", "check", "31.00", long_ago, check_number="9201",
                routing_number="011000015", account_number="4417001",
            ),
            str(uuid.uuid4()),
        ).payment_id  # fmt: skip
        slip = create_deposit(clerk, [check], long_ago, idempotency_key=str(uuid.uuid4()))
        later = StatementLine(DAY, Money.from_minor(100, "USD"), "line 1", bank_id="L1")
        _bank(clerk, "OPS-L", later)
    finally:
        clerk.close()
    application, _finding = _open_finding(demo_gui, lambda d: d.deposit_id == slip.deposit_id)
    demo_gui.wait(
        lambda: (
            isinstance(deposits := application.window.views.get("Deposits"), DepositsView)
            and (chosen := deposits.made_table.selectionModel().selectedRows()) != []
            and deposits.made.rows[chosen[0].row()].deposit_id == slip.deposit_id
        ),
        "the slip selected among the deposits",
    )


def test_history_of_a_bank_line_opens_its_trail(demo_gui: Gui) -> None:
    application = demo_gui.start("clerk")
    view = application.window.show_view("Reconciliation")
    assert isinstance(view, ReconciliationView)
    demo_gui.wait(lambda: view.lines.rowCount() > 0, "the unmatched lines")
    view.lines_table.selectRow(0)
    chosen = view.lines.row_at(view.lines_table.selectionModel().selectedRows()[0].row())
    assert chosen is not None
    view.history_action.trigger()
    wait_for_trail(demo_gui, application, "bank_line", chosen.id)
