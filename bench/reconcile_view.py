"""The bookkeeper's screen at scale: the Reconciliation view on a database of many payments.

1. Import: a 10,000-line camt.053 statement, from the Import button of its preview to the
   split view listing its lines, against the same service calls alone on the same database
   (`import_statements` with commit, then `list_lines`) for a statement of the same size.
2. Candidates: the candidate list's update when the selection moves to another bank line,
   against the `candidates` service call alone for the same lines.

Run: `python bench/reconcile_view.py [--payments 100000] [--lines 10000] [--rounds 5] [--quick]`
(`--quick`: 10,000 payments, 2,000 lines). In-process, offscreen, one QApplication. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings
from sqlalchemy import text

from _common import Row, format_table, load_average, machine_description, say
from billing_desk.importers.statements.writers import BankEntry, write_camt053
from billing_desk.services.matching import candidates, list_lines
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.app import Application, make_application
from billing_desk.ui.views.reconciliation import ReconciliationView, preview_statement_file
from payment_entry import median_ms, wait_until
from record_payment import seed
from verify_chain import BULK, SEAL, build_chain

# The audit entries a cloned payment brings with it (bench/verify_chain.py), to size the chain.
ENTRIES_PER_PAYMENT = 7


def statement(folder: Path, tag: str, lines: int, booked: datetime) -> Path:
    """A statement of `lines` credits near the payments' date, each of its own bank id."""
    entries = [
        BankEntry(
            (booked + timedelta(days=i % 3)).date(),
            1000 + i,
            f"{tag}{i:06d}",
            f"REF-{tag}-{i}",
            "Payer of the bench",
        )
        for i in range(lines)
    ]
    path = folder / f"{tag}.xml"
    path.write_bytes(write_camt053(f"CH93007620116238{tag[:5]}", "USD", entries))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.quick:
        options.payments, options.lines = 10_000, 2_000
    say(f"reconcile_view: {machine_description()}; {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench_reconcile_view_") as name:
        folder = Path(name)
        path = str(folder / "books.sqlite3")
        received = datetime.now(UTC) - timedelta(days=1)
        seed(path, [BULK, SEAL], received.date())
        build_chain(path, True, options.payments * ENTRIES_PER_PAYMENT)
        service = open_workspace(path, "clerk", migrate=False)
        count = service.read(lambda unit: unit.session.scalar(text("SELECT count(*) FROM payment")))
        say(f"  database ready: {count:,} payments")

        # The service calls alone: import a statement and list the lines, then the candidates of
        # a few lines, one after the other.
        alone_import = []
        for n in range(2):
            file = statement(folder, f"ALONE{n}", options.lines, received)
            started = time.perf_counter()
            preview_statement_file(service, file, commit=True)
            list_lines(service)
            alone_import.append(time.perf_counter() - started)
        line_ids = [line.id for line in list_lines(service)][: options.rounds + 1]
        alone_candidates = []
        for line_id in line_ids[1:]:
            started = time.perf_counter()
            candidates(service, line_id)
            alone_candidates.append(time.perf_counter() - started)
        service.close()

        app = make_application()
        settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
        application = Application(app, settings)
        application.start(path, "clerk")
        wait_until(app, lambda: application.desk is not None)
        badge = application.window.status.badge
        wait_until(app, lambda: badge.result is not None, limit=600.0)
        view = application.window.show_view("Reconciliation")
        assert isinstance(view, ReconciliationView)
        wait_until(app, lambda: view.lines.rowCount() > 0)

        gui_import = []
        for n in range(2):
            file = statement(folder, f"GUI{n}", options.lines, received)
            before = view.lines.rowCount()
            dialog = view.import_file(file)
            wait_until(app, lambda dialog=dialog: dialog.import_button.isEnabled(), limit=600.0)
            started = time.perf_counter()
            dialog.import_button.click()
            wait_until(
                app,
                lambda before=before: view.lines.rowCount() >= before + options.lines,
                limit=600.0,
            )
            gui_import.append(time.perf_counter() - started)

        resets: list[int] = []
        view.found.modelReset.connect(lambda: resets.append(1))
        gui_candidates = []
        for row in range(1, options.rounds + 1):
            # Each line's candidates are asked for once the line is chosen: the list empties,
            # then fills when they arrive.
            seen = len(resets)
            started = time.perf_counter()
            view.lines_table.selectRow(row)
            wait_until(app, lambda seen=seen: len(resets) >= seen + 2)
            gui_candidates.append(time.perf_counter() - started)
        application.window.close()
        application.close()

        say(
            format_table(
                [
                    Row(
                        f"Import {options.lines:,} lines to the lines shown",
                        median_ms(gui_import),
                        median_ms(alone_import),
                        "ms",
                    ),
                    Row(
                        "candidates shown when the selection moves",
                        median_ms(gui_candidates),
                        median_ms(alone_candidates),
                        "ms",
                    ),
                ]
            )
        )
        say(
            f"(medians; baselines: import_statements + list_lines, and candidates, called alone; "
            f"{count:,} payments)"
        )


if __name__ == "__main__":
    main()
