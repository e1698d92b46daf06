"""Starting the desktop application: from process start to the main window shown with the
Invoices view populated, against a bare PySide6 program that shows an empty QMainWindow, on the
same machine (whole processes, wall time).

1. The demo database (12 facilities, six months), opened as its clerk on the Invoices view.
2. A database with a long history (`--entries`, default 1,000,000 audit entries, which clone
   about 140,000 payments: bench/verify_chain.py builds it), the same way. The start must not
   grow with the history: the integrity badge's check of the whole chain runs in the
   background and is not waited for (it is timed separately, from the same start, below).

Both programs end with os._exit(0) as soon as they are ready, so neither pays for tear-down.
Run: `python bench/gui_start.py [--entries 1000000] [--rounds 5] [--quick]` (`--quick`:
100,000 entries, 3 rounds). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from _common import Row, format_table, load_average, machine_description, say
from billing_desk.services.demo import load_demo_data
from billing_desk.services.unit_of_work import open_workspace
from record_payment import seed
from verify_chain import BULK, SEAL, build_chain

BASELINE = textwrap.dedent(
    """
    import os
    from PySide6.QtWidgets import QApplication, QMainWindow
    app = QApplication([])
    window = QMainWindow()
    window.resize(1180, 760)
    window.show()
    app.processEvents()
    os._exit(0)
    """
)

# Starts billing-desk's window on argv[1] as argv[2], with its settings in argv[3], and ends
# when the Invoices view shows rows (or, with argv[4] == "badge", when the badge has checked).
OURS = textwrap.dedent(
    """
    import os, sys, time
    from PySide6.QtCore import QSettings, QTimer
    from billing_desk.ui.app import Application, make_application
    db, person, settings_file, wait_for = sys.argv[1:5]
    app = make_application()
    settings = QSettings(settings_file, QSettings.Format.IniFormat)
    settings.setValue("window/view", "Invoices")
    application = Application(app, settings)
    application.start(db, person)

    def ready():
        window = application.window
        if wait_for == "badge":
            badge = getattr(getattr(window, "status", None), "badge", None)
            return badge is not None and badge.result is not None
        view = window.views.get("Invoices")
        return view is not None and window.isVisible() and view.model.rowCount() > 0

    last, gaps = [time.perf_counter()], [0.0]

    def poll():
        now = time.perf_counter()
        gaps[0] = max(gaps[0], now - last[0])
        last[0] = now
        if ready():
            # The longest the GUI thread went without running its timer: how usable the
            # window stayed while the badge checked the chain beside it.
            print(f"longest-gap-ms {gaps[0] * 1000:.0f}", flush=True)
            os._exit(0)

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(1)
    app.exec()
    """
)


LAST_GAP: list[str] = []


def run_once(code: str, *args: str) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the program failed ({done.returncode}):\n{done.stderr[-2000:]}")
    LAST_GAP[:] = [line.split()[1] for line in done.stdout.splitlines() if "longest-gap" in line]
    return elapsed


def median_ms(rounds: int, code: str, *args: str) -> float:
    return statistics.median(run_once(code, *args) for _ in range(rounds)) * 1000


def demo_database(folder: Path) -> str:
    path = folder / "demo.sqlite3"
    workspace = open_workspace(str(path), "newcomer")
    try:
        load_demo_data(workspace, as_of=date(2026, 5, 20))
    finally:
        workspace.close()
    return str(path)


def history_database(folder: Path, entries: int) -> tuple[str, int]:
    """Users, two facilities with their invoices (record_payment.seed), then payments cloned
    until the chain holds `entries` entries (verify_chain.build_chain)."""
    path = str(folder / "history.sqlite3")
    seed(path, [BULK, SEAL], (datetime.now(UTC) - timedelta(days=1)).date())
    return path, build_chain(path, True, entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.quick:
        options.entries, options.rounds = 100_000, 3
    say(f"gui_start: {machine_description()}; {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench_gui_start_") as name:
        folder = Path(name)
        demo = demo_database(folder)
        say(f"  demo database ready: {demo}")
        history, length = history_database(folder, options.entries)
        say(f"  history database ready: {length:,} audit entries")
        baseline = median_ms(options.rounds, BASELINE)
        rows = []
        for label, db, person in (
            ("demo database, as clerk", demo, "clerk"),
            (f"{length:,} audit entries, as admin", history, "admin"),
        ):
            settings = str(folder / f"settings-{person}.ini")
            ours = median_ms(options.rounds, OURS, db, person, settings, "invoices")
            rows.append(Row(f"start to Invoices shown: {label}", ours, baseline, "ms"))
        badge = median_ms(1, OURS, history, "admin", str(folder / "settings-b.ini"), "badge")
        say(format_table(rows))
        say(
            f"(the integrity badge's first check of all {length:,} entries, in the background, "
            f"is done {badge / 1000:.1f} s after the process started; meanwhile the GUI thread "
            f"went at most {LAST_GAP[0] if LAST_GAP else '?'} ms without running its timer)"
        )


if __name__ == "__main__":
    main()
