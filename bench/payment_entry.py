"""The clerk's screen at scale: the payment register and form on a database of many payments.

1. Save: from the Enter key in a filled payment form (transfer, no invoices ticked) to the
   saved message shown, with the register open on every payment, against the same
   `record_payment` service call alone on the same database (ratio: what the GUI adds).
2. The register's first page (newest first) shown after a refresh, and the next page fetched
   when the view scrolls to its end, against the bare keyset query fetching the same rows
   through the same driver (`SELECT ... ORDER BY id DESC LIMIT 200`, then `WHERE id < last`).

Run: `python bench/payment_entry.py [--payments 100000] [--rounds 7] [--quick]` (`--quick`:
10,000 payments). In-process, offscreen, one QApplication. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from sqlalchemy import text

from _common import Row, format_table, load_average, machine_description, say
from billing_desk.services.payment_register import PAGE_SIZE
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.ui.app import Application, make_application
from billing_desk.ui.views.payments import PaymentsView
from record_payment import seed
from verify_chain import BULK, SEAL, build_chain

# The audit entries a cloned payment brings with it (bench/verify_chain.py), to size the chain.
ENTRIES_PER_PAYMENT = 7


def wait_until(app: QApplication, condition: Callable[[], bool], limit: float = 120.0) -> None:
    deadline = time.perf_counter() + limit
    while not condition():
        if time.perf_counter() > deadline:
            raise SystemExit("timed out waiting for the window")
        app.processEvents()
        time.sleep(0.0005)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.quick:
        options.payments = 10_000
    say(f"payment_entry: {machine_description()}; {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench_payment_entry_") as name:
        folder = Path(name)
        path = str(folder / "register.sqlite3")
        seed(path, [BULK, SEAL], (datetime.now(UTC) - timedelta(days=1)).date())
        build_chain(path, True, options.payments * ENTRIES_PER_PAYMENT)
        service = open_workspace(path, "clerk", migrate=False)
        count = service.read(lambda unit: unit.session.scalar(text("SELECT count(*) FROM payment")))
        say(f"  database ready: {count:,} payments")
        facility = service.read(
            lambda unit: unit.session.execute(
                text("SELECT code FROM facility ORDER BY id")
            ).scalar()
        )
        received = (datetime.now(UTC) - timedelta(days=1)).date()

        def draft(reference: str) -> PaymentDraft:
            return PaymentDraft(str(facility), "transfer", "12.34", received, reference=reference)

        alone = []
        for _ in range(options.rounds):
            started = time.perf_counter()
            record_payment(service, draft(f"BENCH-{uuid.uuid4().hex[:12]}"), str(uuid.uuid4()))
            alone.append(time.perf_counter() - started)

        bare_first, bare_next = [], []
        for _ in range(options.rounds):
            started = time.perf_counter()
            rows = service.read(
                lambda unit: unit.session.execute(
                    text("SELECT * FROM payment ORDER BY id DESC LIMIT :n"), {"n": PAGE_SIZE}
                ).all()
            )
            bare_first.append(time.perf_counter() - started)
            last = rows[-1].id
            started = time.perf_counter()
            service.read(
                lambda unit, last=last: unit.session.execute(
                    text("SELECT * FROM payment WHERE id < :last ORDER BY id DESC LIMIT :n"),
                    {"last": last, "n": PAGE_SIZE},
                ).all()
            )
            bare_next.append(time.perf_counter() - started)
        service.close()

        app = make_application()
        settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
        application = Application(app, settings)
        application.start(path, "clerk")
        wait_until(app, lambda: application.desk is not None)
        view = application.window.show_view("Payments")
        assert isinstance(view, PaymentsView) and view.entry is not None
        wait_until(app, lambda: view.model.rowCount() > 0 and bool(view.entry.facilities))
        # The steady state a clerk works in: the integrity badge's first walk of the whole chain
        # (a background thread sharing the interpreter's lock) has finished.
        badge = application.window.status.badge
        wait_until(app, lambda: badge.result is not None, limit=600.0)
        form = view.entry

        first, following, saves = [], [], []
        for _ in range(options.rounds):
            started = time.perf_counter()
            view.refresh()
            wait_until(app, lambda: view.model.rowCount() >= PAGE_SIZE)
            first.append(time.perf_counter() - started)
            started = time.perf_counter()
            view.table.scrollToBottom()
            wait_until(app, lambda: view.model.rowCount() >= 2 * PAGE_SIZE)
            following.append(time.perf_counter() - started)

        for _ in range(options.rounds):
            form.facility.set_code(str(facility))
            form.method.setCurrentIndex(form.method.findData("transfer"))
            form.reference.setText(f"BENCH-{uuid.uuid4().hex[:12]}")
            form.amount.setText("12.34")
            app.processEvents()
            before = view.message_bar.text.text()
            started = time.perf_counter()
            QTest.keyClick(form.amount, Qt.Key.Key_Return)
            wait_until(
                app,
                lambda before=before: (
                    view.message_bar.isVisible()
                    and "recorded" in view.message_bar.text.text()
                    and view.message_bar.text.text() != before
                ),
            )
            saves.append(time.perf_counter() - started)
        application.window.close()
        application.close()

        say(
            format_table(
                [
                    Row(
                        "Save to the message shown (register open)",
                        median_ms(saves),
                        median_ms(alone),
                        "ms",
                    ),
                    Row(
                        "register: first page shown", median_ms(first), median_ms(bare_first), "ms"
                    ),
                    Row(
                        "register: next page at the end",
                        median_ms(following),
                        median_ms(bare_next),
                        "ms",
                    ),
                ]
            )
        )
        say(
            f"(medians of {options.rounds}; baselines: record_payment alone, the bare keyset query)"
        )


if __name__ == "__main__":
    main()
