"""Importing and matching a 10,000-line bank statement against payment histories of 10,000,
100,000 and 1,000,000 payments; and import throughput against the bare parser library.

Per history size (SQLite, a fresh file each):
    history   N transfer payments of one facility, bulk-loaded with the driver (the bench
              measures matching, not recording; see bench/record_payment.py): 8,000 in the
              statement's month, the rest over the three years before, so every size has the
              same matches to make and only the history around them grows
    statement 10,000 credits: 5,000 carry the reference of a payment of the month, 3,000 only
              equal one's amount, 2,000 match nothing
    import    the MT940 file parsed by our importer and saved by `import_statements` (--commit)
    match     `auto_match` over the 10,000 new lines
The figure is the time at each size and the growth per 10x of history (target: well under 10x,
i.e. no comparison of every line with every payment).

Throughput: our MT940 importer's lines per second against the mt-940 library's own parse of the
same file (`mt940.models.Transactions().parse`), as a ratio.

    .venv/bin/python bench/reconcile.py [--quick]   # --quick: 10,000 and 100,000
"""

from __future__ import annotations

import argparse
import itertools
import random
import sqlite3
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

import mt940
from tests.support import seed_facility

from _common import (
    Row,
    format_table,
    load_average,
    machine_description,
    say,
    temp_sqlite_file,
)
from billing_desk.importers.statements import registry
from billing_desk.importers.statements.writers import BankEntry, write_mt940
from billing_desk.services.matching import auto_match
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.services.users import add_user

LINES = 10_000
END = date(2026, 6, 30)


RECENT = 8_000  # payments of the statement's month: the same in every history


def load_history(path: Path, payments: int, rng: random.Random) -> list[tuple[str, int, date]]:
    """The facility's payments, bulk-loaded: RECENT of them in the statement's month, the rest
    spread over the three years before. Returns (reference, amount, day) of the recent ones."""
    setup = open_workspace(str(path), "admin")
    add_user(setup, "admin", "admin")
    add_user(setup, "clerk", "clerk")
    seed_facility(setup, "BULK")
    setup.close()
    now = datetime.now(UTC).isoformat(sep=" ")
    rows = []
    recent = []
    for i in range(payments):
        if i < RECENT:
            day = END - timedelta(days=rng.randrange(30))
        else:
            day = END - timedelta(days=31 + rng.randrange(3 * 365))
        amount = rng.randrange(1_000, 500_000)
        reference = f"ACH-{i:08d}"
        if i < RECENT:
            recent.append((reference, amount, day))
        rows.append(("transfer", "recorded", amount, day.isoformat(), reference, now))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO payment (facility_id, method, status, amount_minor, currency, "
            "received_date, transfer_reference, recorded_by, recorded_at) "
            "VALUES (1, ?, ?, ?, 'USD', ?, ?, 'clerk', ?)",
            rows,
        )
    return recent


def statement(recent: list[tuple[str, int, date]]) -> list[BankEntry]:
    """5,000 lines with a recent payment's reference, 3,000 with only its amount, 2,000 that
    match nothing."""
    entries = []
    for n, (reference, amount, day) in enumerate(recent):
        entries.append(BankEntry(day, amount, f"B{n}", reference if n < 5_000 else None, "Payer"))
    while len(entries) < LINES:
        n = len(entries)
        entries.append(BankEntry(END, 900_000 + n, f"B{n}", None, "Stranger"))
    return sorted(entries, key=lambda e: e.booked)


def measure(payments: int) -> tuple[float, float, int]:
    rng = random.Random(payments)
    with temp_sqlite_file("reconcile") as path:
        recent = load_history(path, payments, rng)
        data = write_mt940("BENCH-1", "USD", statement(recent))
        workspace = open_workspace(str(path), "clerk")
        try:
            started = time.perf_counter()
            parsed = registry.parse(data, "mt940")
            import_statements(workspace, "bench.sta", data, "mt940", parsed, commit=True)
            imported = time.perf_counter() - started
            started = time.perf_counter()
            summary = auto_match(workspace)
            matched = time.perf_counter() - started
        finally:
            workspace.close()
    return imported, matched, len(summary.matched)


def throughput(rng: random.Random) -> Row:
    history = [(f"ACH-{i:08d}", rng.randrange(1_000, 500_000), END) for i in range(LINES)]
    data = write_mt940(
        "BENCH-1",
        "USD",
        [BankEntry(d, a, f"B{i}", r, "Payer") for i, (r, a, d) in enumerate(history)],
    )
    started = time.perf_counter()
    ours = registry.parse(data, "mt940")
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    bare = mt940.models.Transactions()
    bare.parse(data.decode("ascii"))
    bare_s = time.perf_counter() - started
    lines = sum(len(s.lines) for s in ours)
    assert lines == len(bare) == LINES
    return Row("MT940 parse, lines/s", LINES / ours_s, LINES / bare_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    say(f"bench/reconcile.py on {machine_description()}; load {load_average()}")
    results = []
    for size in sizes:
        imported, matched, count = measure(size)
        say(
            f"history {size:>9,}: import {imported:6.2f} s, match {matched:6.2f} s "
            f"({count:,} of {LINES:,} lines matched); load {load_average()}"
        )
        results.append((size, imported, matched))
    for (small, _, m1), (big, _, m2) in itertools.pairwise(results):
        say(f"matching growth {small:,} -> {big:,} payments: x{m2 / m1:.2f} per 10x of history")
    say(format_table([throughput(random.Random(7))]))


if __name__ == "__main__":
    main()
