"""The audit browser on a long log (default 1,000,000 entries; `--entries N`, `--quick` =
100,000): how long until the Audit view shows rows, against the bare keyset query fetching the
same rows through the same driver (sqlite3), on the same machine, in the same run.

The log is loaded with the driver (tests/audit_bulk.py: payment entries of a few clerks, one
invoice entry in a thousand, sealed into links with placeholder hashes); nothing here verifies
it.

Figures (each the median of `--rounds` rounds, ours and the baseline back to
back):
    first rows      ours: `AuditView.refresh()` until the model holds the first page (the
                    background read, the read of the log recorded as the design requires, the
                    rows handed to the GUI thread and inserted into the model); baseline: the
                    SELECT of the same columns, newest first, LIMIT 200.
    jump to last    ours: "Jump to the first entry" (the far end of a newest-first list) until the
                    window holds it; baseline: the same columns, oldest first, LIMIT 200.
    first rows      ours: the entity filter "invoice" applied until its first page is shown;
    after a filter  baseline: the same SELECT with the filter, newest first, LIMIT 200.
Targets (issue 20): first rows and the jump within 2x of the bare query, and under 100 ms and
200 ms on this machine; reported as measured, never asserted. Where ours goes (measured on 1M
entries, a loaded 2-core machine): about 2 ms opening the read transaction, 5-8 ms reading and
building the page's rows through the ORM (and the facility codes), and 6-12 ms recording the read
of the log (a write transaction sealed into the chain, synchronous=FULL) before the rows are
returned; the bare query does none of that, so the ratio for an unfiltered page is above 2x
while the absolute times stay well under the targets.

Both backends: embedded SQLite, then PostgreSQL (loaded with COPY; `--sqlite-only` skips it).
Run: `python bench/audit_browser.py [--entries N] [--rounds 5] [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.audit_bulk

import psycopg
from PySide6.QtCore import QLocale, QSettings
from PySide6.QtWidgets import QApplication
from tests.audit_bulk import fill_postgresql, fill_sqlite
from tests.support import seed_users

from _common import (
    Row,
    format_table,
    load_average,
    machine_description,
    pg_server_version,
    say,
    temp_sqlite_file,
    throwaway_pg_database,
)
from billing_desk.domain.roles import Role
from billing_desk.services.audit_browser import PAGE_SIZE
from billing_desk.services.unit_of_work import open_workspace, whoami
from billing_desk.services.users import add_user
from billing_desk.ui.desk import Desk, Person
from billing_desk.ui.errors import ErrorPresenter
from billing_desk.ui.formatting import Formats
from billing_desk.ui.views.audit import AuditView

COLUMNS = (
    "e.id, l.sequence, e.recorded_at, e.user_name, e.user_role, e.facility_id, e.action, "
    "e.entity_type, e.entity_id, e.request_id"
)
BASE = f"SELECT {COLUMNS} FROM audit_entry e LEFT JOIN audit_link l ON l.entry_id = e.id"
BASELINES = {
    "first rows": f"{BASE} ORDER BY e.id DESC LIMIT {PAGE_SIZE}",
    "jump to last": f"{BASE} ORDER BY e.id ASC LIMIT {PAGE_SIZE}",
    "first rows after a filter": (
        f"{BASE} WHERE e.entity_type = 'invoice' ORDER BY e.id DESC LIMIT {PAGE_SIZE}"
    ),
}


def _until(app: QApplication, done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > deadline:
            raise SystemExit("the Audit view did not show its rows in time")
        app.processEvents()
        time.sleep(0.0005)


def _settle(app: QApplication, view: AuditView) -> None:
    _until(app, lambda: not view.desk.ops.is_busy())
    app.processEvents()


def ours(app: QApplication, view: AuditView, figure: str) -> float:
    """Milliseconds from the person's action until the rows are in the model."""
    _settle(app, view)
    model = view.model
    if figure == "first rows":
        view.entity_type.clear()
        start = time.perf_counter()
        view.refresh()
        _until(app, lambda: model.rowCount() > 0)
    elif figure == "jump to last":
        view.entity_type.clear()
        start = time.perf_counter()
        view.jump(oldest=True)
        _until(app, lambda: model.rowCount() > 0 and model.rows[-1].entry_id == 1)
    else:
        view.entity_type.setText("invoice")
        start = time.perf_counter()
        view.refresh()
        _until(
            app,
            lambda: model.rowCount() > 0 and model.rows[0].entity_type == "invoice",
        )
    elapsed = (time.perf_counter() - start) * 1000
    _settle(app, view)
    return elapsed


def sqlite_baseline(path: Path) -> Callable[[str], float]:
    def measure(figure: str) -> float:
        """Milliseconds for the bare keyset query and its rows, on an open connection."""
        connection = sqlite3.connect(path)
        try:
            connection.execute("SELECT 1").fetchall()
            start = time.perf_counter()
            rows = connection.execute(BASELINES[figure]).fetchall()
            elapsed = (time.perf_counter() - start) * 1000
            assert rows
            return elapsed
        finally:
            connection.close()

    return measure


def pg_baseline(url: str) -> Callable[[str], float]:
    def measure(figure: str) -> float:
        with psycopg.connect(url) as connection:
            connection.execute("SELECT 1").fetchall()
            start = time.perf_counter()
            rows = connection.execute(BASELINES[figure]).fetchall()  # type: ignore[arg-type]
            elapsed = (time.perf_counter() - start) * 1000
            assert rows
            return elapsed

    return measure


def measure(
    app: QApplication,
    target: str,
    person: str | None,
    folder: Path,
    baseline: Callable[[str], float],
    label: str,
    rounds: int,
) -> list[Row]:
    workspace = open_workspace(target, person, migrate=False)
    desk = Desk(
        workspace,
        Person(whoami(workspace).name, Role.AUDITOR),
        formats=Formats(QLocale()),
        presenter=ErrorPresenter(folder / "log.txt"),
        settings=QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat),
    )
    view = AuditView(desk)
    view.resize(1100, 700)
    view.show()
    try:
        ours(app, view, "first rows")  # warm-up: caches, the first page's widgets
        measured: dict[str, list[tuple[float, float]]] = {f: [] for f in BASELINES}
        for number in range(rounds):
            for figure in BASELINES:
                if number % 2:
                    pair = (ours(app, view, figure), baseline(figure))
                else:
                    base = baseline(figure)
                    pair = (ours(app, view, figure), base)
                measured[figure].append(pair)
            say(f"  {label}: round {number + 1}/{rounds} done; {load_average()}")
        return [
            Row(
                f"{figure} ({label})",
                statistics.median(p[0] for p in pairs),
                statistics.median(p[1] for p in pairs),
                "ms",
            )
            for figure, pairs in measured.items()
        ]
    finally:
        view.close()
        desk.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100,000 entries, 3 rounds")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    entries, rounds = (100_000, 3) if args.quick else (args.entries, args.rounds)
    say(f"audit_browser: {machine_description()}; {load_average()}")
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    rows: list[Row] = []
    with temp_sqlite_file("audit_browser") as path:
        admin = open_workspace(str(path), "admin")
        try:
            seed_users(admin)
        finally:
            admin.close()
        started = time.perf_counter()
        fill_sqlite(path, entries)
        say(f"  SQLite: {entries:,} audit entries loaded in {time.perf_counter() - started:.1f} s")
        label = f"{entries:,} entries, SQLite"
        rows += measure(
            app, str(path), "auditor", path.parent, sqlite_baseline(path), label, rounds
        )
    if not args.sqlite_only:
        with throwaway_pg_database("audit_browser") as url, tempfile.TemporaryDirectory() as tmp:
            setup = open_workspace(url, None)
            try:
                add_user(setup, whoami(setup).name, "auditor")
            finally:
                setup.close()
            started = time.perf_counter()
            fill_postgresql(url, entries)
            say(
                f"  PostgreSQL {pg_server_version()}: {entries:,} audit entries loaded in "
                f"{time.perf_counter() - started:.1f} s"
            )
            label = f"{entries:,} entries, PostgreSQL"
            rows += measure(app, url, None, Path(tmp), pg_baseline(url), label, rounds)
    say(format_table(rows))
    say(
        "ratio = ours / baseline (time). Targets: first rows and the jump within 2x of the bare "
        "query, and under 100 ms and 200 ms."
    )


if __name__ == "__main__":
    main()
