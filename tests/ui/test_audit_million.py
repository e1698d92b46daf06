"""The audit browser on a log of a million entries: the first rows, a jump to the far end, a
sequence in the middle and a filter each read a page or two, never the log. Asserted on the rows
the browser fetched and the statements it ran, never on timings (bench/audit_browser.py times
them). The million-entry database is built once per session with the driver (tests/audit_bulk.py,
about 25 s), not through the services."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QLocale, QSettings
from PySide6.QtWidgets import QApplication
from pytestqt.modeltest import ModelTester
from sqlalchemy import event

from billing_desk.domain.roles import Role
from billing_desk.services import audit_browser
from billing_desk.services.audit_browser import PAGE_SIZE, AuditRow
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.desk import Desk, Person
from billing_desk.ui.errors import ErrorPresenter
from billing_desk.ui.formatting import Formats
from billing_desk.ui.views.audit import AuditView
from tests.audit_bulk import INVOICE_EVERY, fill_sqlite
from tests.support import seed_users

ENTRIES = 1_000_000
# The selected entry's detail reads it and the entries of its request (one each, here).
DETAIL = 2
WAIT_MS = 60_000


@pytest.fixture(scope="session")
def million_db(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    path = tmp_path_factory.mktemp("million") / "million.sqlite3"
    shutil.copyfile(sqlite_template, path)
    admin = open_workspace(str(path), "admin", migrate=False)
    try:
        seed_users(admin)
    finally:
        admin.close()
    fill_sqlite(path, ENTRIES)
    return path


@dataclass
class Reads:
    """What the browser read: rows handed back by the page queries, and statements run."""

    rows: int = 0
    statements: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.rows = 0
        self.statements.clear()

    def unbounded(self) -> list[str]:
        """Reads of the log that neither have a LIMIT nor name one entry by its key."""
        return [
            s
            for s in self.on_audit_entry()
            if "LIMIT" not in s and not s.rstrip().endswith("WHERE audit_entry.id = ?")
        ]

    def on_audit_entry(self) -> list[str]:
        return [s for s in self.statements if "FROM audit_entry" in s and s.startswith("SELECT")]


@pytest.fixture
def browser(
    million_db: Path,
    desk_app: QApplication,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qtbot: Any,
) -> Iterator[tuple[AuditView, Reads]]:
    copy = tmp_path / "million.sqlite3"
    shutil.copyfile(million_db, copy)
    workspace = open_workspace(str(copy), "auditor", migrate=False)
    reads = Reads()

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        reads.statements.append(text.strip())

    event.listen(workspace.engine, "before_cursor_execute", statement)
    real_rows = audit_browser._rows

    def counted(unit: Any, query: Any) -> list[AuditRow]:
        found = real_rows(unit, query)
        reads.rows += len(found)
        return found

    monkeypatch.setattr(audit_browser, "_rows", counted)
    desk = Desk(
        workspace,
        Person("auditor", Role.AUDITOR),
        formats=Formats(QLocale()),
        presenter=ErrorPresenter(tmp_path / "log.txt"),
        settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
    )
    view = AuditView(desk)
    view.resize(1000, 700)
    view.show()
    qtbot.addWidget(view)
    yield view, reads
    desk.close()


def _settled(qtbot: Any, view: AuditView) -> None:
    qtbot.waitUntil(lambda: not view.desk.ops.is_busy(), timeout=WAIT_MS)


def test_a_million_entries_are_browsed_a_page_at_a_time(
    browser: tuple[AuditView, Reads], qtbot: Any, pytestconfig: pytest.Config
) -> None:
    view, reads = browser
    # First rows: one page, the newest first.
    view.refresh()
    qtbot.waitUntil(lambda: view.model.rowCount() > 0, timeout=WAIT_MS)
    _settled(qtbot, view)
    assert view.model.rowCount() == PAGE_SIZE
    assert view.model.rows[0].sequence is not None and view.model.rows[0].sequence > ENTRIES
    assert reads.rows <= PAGE_SIZE + DETAIL
    assert reads.unbounded() == []
    tester = ModelTester(pytestconfig)
    tester.check(view.model, force_py=True)  # asks for one more page, as a scrolling view would
    tester._cleanup()
    _settled(qtbot, view)
    assert view.model.rowCount() <= 2 * PAGE_SIZE

    # The far end: the first entry of the log, at the bottom of a newest-first list.
    reads.reset()
    view.jump(oldest=True)
    qtbot.waitUntil(
        lambda: bool(view.model.rows) and view.model.rows[-1].entry_id == 1, timeout=WAIT_MS
    )
    _settled(qtbot, view)
    assert view.model.rowCount() == PAGE_SIZE and view.model.more_before
    assert reads.rows <= PAGE_SIZE + DETAIL
    assert len(reads.on_audit_entry()) <= 1 + 3  # the page; the entry shown, its request

    # A sequence in the middle: half a page before it, a page from it.
    reads.reset()
    view.go_to_sequence(ENTRIES // 2)
    qtbot.waitUntil(
        lambda: any(r.sequence == ENTRIES // 2 for r in view.model.rows), timeout=WAIT_MS
    )
    _settled(qtbot, view)
    assert reads.rows <= PAGE_SIZE + PAGE_SIZE // 2 + DETAIL
    assert view.model.more_before and not view.model.exhausted

    # A filter: invoices only, one entry in a thousand; still one page.
    reads.reset()
    view.entity_type.setText("invoice")
    view.refresh()
    qtbot.waitUntil(
        lambda: (
            view.model.rowCount() > 0 and all(r.entity_type == "invoice" for r in view.model.rows)
        ),
        timeout=WAIT_MS,
    )
    _settled(qtbot, view)
    assert view.model.rowCount() == PAGE_SIZE
    assert reads.rows <= PAGE_SIZE + DETAIL
    assert all(r.entry_id % INVOICE_EVERY == 0 for r in view.model.rows)
    assert reads.unbounded() == []
