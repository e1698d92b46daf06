"""The anomaly rules over payment histories of 10,000, 100,000 and 1,000,000 payments; and what
running them after every payment adds to recording one.

Rules over a history (SQLite, a fresh file each):
    history   N payments of 100 facilities over three years, bulk-loaded with the driver (the
              bench measures the rules, not recording; see bench/record_payment.py): transfers
              and checks around each facility's usual amount, recorded in business hours, with
              monthly invoices, one void in 500, and a handful of planted anomalies
    run       `run_monitor` over the whole history: every rule, and the alerts it raises
The figure is the time at each size and the growth per 10x of history (target: about 10x, i.e.
linear: each payment is looked at a bounded number of times).

Cost per payment: `record_payment` (cash, one facility of the 100,000-payment history, so the
rules read a year of its history) timed back to back in one process, with the rules on
(`monitoring.watch`: they run after each commit, before the call returns) against the same with
them off; and with the rules in the background (`watch(..., background=True)`: the clerk's wait,
then including the time to settle them), on SQLite and PostgreSQL, as ratios.

    .venv/bin/python bench/monitoring.py [--quick]   # --quick: 10,000 and 100,000
"""

from __future__ import annotations

import argparse
import itertools
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

import psycopg
from tests.support import seed_facility

from _common import (
    Row,
    format_table,
    load_average,
    machine_description,
    say,
    temp_sqlite_file,
    throwaway_pg_database,
    time_operations,
)
from billing_desk.services.monitoring import MonitoringConfig, run_monitor, settle, watch
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.unit_of_work import Workspace, open_workspace
from billing_desk.services.users import add_user

FACILITIES = 100
END = date(2026, 6, 30)
DAYS = 3 * 365
RECORDS = 200  # payments recorded per timing of the per-payment cost
CONFIG = MonitoringConfig()
# Recording runs at whatever hour the bench does: business hours all day keep the after-hours
# rule from firing on every payment at night.
ALL_DAY = MonitoringConfig(
    business_start=time_of_day(0),
    business_end=time_of_day(23, 59, 59),
    business_days=frozenset(range(7)),
)

_PAYMENT_SQL = (
    "INSERT INTO payment (facility_id, method, status, amount_minor, currency, received_date, "
    "check_number, routing_number, account_hash, transfer_reference, recorded_by, recorded_at) "
    "VALUES ({})"
)
_INVOICE_SQL = (
    "INSERT INTO invoice (facility_id, number, sequence, period_start, period_end, issue_date, "
    "due_date, status, currency, total_minor, created_at, created_by) VALUES ({})"
)
_VOID_SQL = (
    "INSERT INTO payment_status_change (payment_id, facility_id, from_status, to_status, "
    "changed_at, changed_by, reason) VALUES ({})"
)


def set_up(workspace: Workspace) -> None:
    add_user(workspace, "admin", "admin")
    add_user(workspace, "clerk", "clerk")
    add_user(workspace, "manager", "manager")
    for n in range(FACILITIES):
        seed_facility(workspace, f"F{n:03d}")


def history(payments: int, rng: random.Random) -> tuple[list[tuple[Any, ...]], ...]:
    """Rows of payments, invoices and voids for `payments` payments over three years."""
    usual = [rng.randrange(50_000, 500_000) for _ in range(FACILITIES)]
    pay_rows: list[tuple[Any, ...]] = []
    billed: dict[tuple[int, int, int], int] = {}
    voids: list[tuple[Any, ...]] = []
    start = END - timedelta(days=DAYS)
    for i in range(payments):
        facility = i % FACILITIES
        day = start + timedelta(days=rng.randrange(DAYS))
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        amount = max(100, int(usual[facility] * rng.uniform(0.6, 1.4)))
        if i % 100_000 == 99_999:
            amount *= 10  # a planted extra zero
        moment = datetime(day.year, day.month, day.day, 9, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(8 * 3600)
        )
        voided = i % 500 == 250
        if i % 2:
            row = ("transfer", amount, None, None, None, f"ACH-{i:09d}")
        else:
            row = ("check", amount, str(100_000 + i), "021000021", f"{facility:064x}", None)
        method, amount, number, routing, account, reference = row
        status = "voided" if voided else "cleared"
        pay_rows.append(
            (
                facility + 1,
                method,
                status,
                amount,
                "USD",
                day.isoformat(),
                number,
                routing,
                account,
                reference,
                "clerk",
                moment,
            )
        )
        if voided:
            voids.append((i + 1, facility + 1, "recorded", "voided", moment, "manager", "error"))
        else:
            key = (facility + 1, day.year, day.month)
            billed[key] = billed.get(key, 0) + amount
    invoices = []
    for seq, ((facility, year, month), total) in enumerate(sorted(billed.items()), start=1):
        first = date(year, month, 1)
        issued = first.isoformat()
        invoices.append(
            (
                facility,
                f"F{facility:03d}-{seq:06d}",
                seq,
                issued,
                issued,
                issued,
                (first + timedelta(days=30)).isoformat(),
                "issued",
                "USD",
                total,
                datetime.now(UTC),
                "clerk",
            )
        )
    return pay_rows, invoices, voids


def load_sqlite(path: Path, payments: int) -> None:
    setup = open_workspace(str(path), "admin")
    set_up(setup)
    setup.close()
    pay_rows, invoices, voids = history(payments, random.Random(payments))
    with sqlite3.connect(path) as conn:
        conn.executemany(_PAYMENT_SQL.format(", ".join("?" * 12)), map(_plain, pay_rows))
        conn.executemany(_INVOICE_SQL.format(", ".join("?" * 12)), map(_plain, invoices))
        conn.executemany(_VOID_SQL.format(", ".join("?" * 7)), map(_plain, voids))


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Timestamps as SQLite's columns hold them: naive UTC text."""
    return tuple(
        v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
        for v in row
    )


def load_postgresql(url: str, payments: int) -> None:
    setup = open_workspace(url, "admin")
    set_up(setup)
    setup.close()
    pay_rows, invoices, voids = history(payments, random.Random(payments))
    target = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(target) as conn, conn.cursor() as cur:
        cur.executemany(_PAYMENT_SQL.format(", ".join(["%s"] * 12)), pay_rows)
        cur.executemany(_INVOICE_SQL.format(", ".join(["%s"] * 12)), invoices)
        cur.executemany(_VOID_SQL.format(", ".join(["%s"] * 7)), voids)


def measure_rules(payments: int) -> tuple[float, int, int]:
    with temp_sqlite_file("monitoring") as path:
        load_sqlite(path, payments)
        workspace = open_workspace(str(path), "clerk")
        try:
            started = time.perf_counter()
            result = run_monitor(workspace, config=CONFIG)
            took = time.perf_counter() - started
        finally:
            workspace.close()
    return took, result.payments_checked, len(result.raised)


def per_payment(open_database: Callable[[], Workspace], backend: str) -> list[Row]:
    """Recording RECORDS payments with the rules off, on (run before the call returns), and on
    in the background (the clerk's wait; then with the time to settle them), in alternating
    rounds; the median round of each."""
    plain, inline, behind = open_database(), open_database(), open_database()
    watch(inline, ALL_DAY)
    watch(behind, ALL_DAY, background=True)
    key = itertools.count()

    def recorder(workspace: Workspace) -> Callable[[int], object]:
        def record(seq: int) -> object:
            facility = f"F{seq % FACILITIES:03d}"
            draft = PaymentDraft(
                facility=facility,
                method="cash",
                amount=f"{2000 + seq % 900}.{seq % 100:02d}",
                received=END,
            )
            return record_payment(workspace, draft, f"bench-{next(key)}")

        return record

    times: dict[str, list[float]] = {"off": [], "inline": [], "behind": [], "settled": []}
    try:
        for round_ in range(3):
            first = round_ * RECORDS
            times["off"].append(
                time_operations(recorder(plain), RECORDS, first_seq=first).wall_seconds
            )
            times["inline"].append(
                time_operations(recorder(inline), RECORDS, first_seq=first).wall_seconds
            )
            started = time.perf_counter()
            times["behind"].append(
                time_operations(recorder(behind), RECORDS, first_seq=first).wall_seconds
            )
            settle(behind)
            times["settled"].append(time.perf_counter() - started)
    finally:
        for workspace in (plain, inline, behind):
            workspace.close()
    rate = {name: RECORDS / sorted(values)[1] for name, values in times.items()}
    return [
        Row(f"record_payment, rules on vs off ({backend})", rate["inline"], rate["off"]),
        Row(f"  rules in the background, clerk's wait ({backend})", rate["behind"], rate["off"]),
        Row(f"  rules in the background, settled ({backend})", rate["settled"], rate["off"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    say(f"bench/monitoring.py on {machine_description()}; load {load_average()}")
    results = []
    for size in sizes:
        took, checked, raised = measure_rules(size)
        say(
            f"history {size:>9,}: every rule in {took:6.2f} s ({checked:,} payments, "
            f"{raised:,} alerts raised); load {load_average()}"
        )
        results.append((size, took))
    for (small, t1), (big, t2) in itertools.pairwise(results):
        say(f"rules growth {small:,} -> {big:,} payments: x{t2 / t1:.2f} per 10x of history")

    rows = []
    with temp_sqlite_file("monitoring-record") as path:
        load_sqlite(path, 100_000)
        rows += per_payment(lambda: open_workspace(str(path), "clerk"), "SQLite")
    with throwaway_pg_database("monitoring") as url:
        load_postgresql(url, 100_000)
        rows += per_payment(lambda: open_workspace(url, "clerk"), "PostgreSQL")
    say(format_table(rows))
    say(f"load {load_average()}")


if __name__ == "__main__":
    main()
