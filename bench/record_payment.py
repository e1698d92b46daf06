"""Payments recorded per second through the whole guarded service path, against a bare
single-row INSERT transaction through the same driver and database.

ours:     `record_payment` as a clerk records a check: a new check number and a new idempotency
          key on every call, auto-allocated (oldest open invoice first). Every call therefore runs
          every guard: permission, idempotency claim, natural-key look-up and unique index,
          status history, invoice locks, allocation, invoice status, stored receipt, and whatever
          the unit of work adds to every write (audit entries, integrity hashes, sealing).
          Each facility has OPEN_INVOICES open invoices of TRIPS_PER_INVOICE trips, each
          invoice large enough for 2,000 payments, so every payment pays part of the oldest
          one and no run exhausts them: the path measured is the steady state, one allocation
          per payment. (Allocating nothing would skip the invoice locks and the allocation, the
          part of the path most exposed to contention, so it would flatter the figure.)
baseline: one INSERT of a payment-like row (with a unique index) in its own transaction, through
          the same engine: `make_engine` (SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE, a new
          connection per transaction; PostgreSQL: psycopg, pooled), SQLAlchemy Core
          `engine.begin()`.

Both run with 1 and 8 client processes (spawn, each with its own engine), in alternating
windows of the same length that every client starts and ends together; with 8 clients each
client records payments for its own facility, as clerks working through different facilities'
mail do. Then the 1-client paths are timed in this process with every statement timed, and
profiled with cProfile. `--quick` makes a short run; `--history N` first records N payments (on
another facility) so that the figures are taken on a database that is not new.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
    table,
)

from _common import (
    ClientPool,
    Measured,
    Row,
    code_version,
    exit_on_sigterm,
    flush_counter,
    format_table,
    load_average,
    machine_description,
    pg_server_version,
    profile_operations,
    say,
    statement_timer,
    temp_sqlite_file,
    throwaway_pg_database,
    time_operations,
)
from billing_desk.db.engine import make_engine, resolve_location
from billing_desk.db.models import Allocation, Facility, Payment
from billing_desk.domain.states import TripStatus
from billing_desk.domain.trips import TripRecord
from billing_desk.services.facilities import NewFacility, add_facility
from billing_desk.services.invoices import run_invoice
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.trips import import_trips
from billing_desk.services.unit_of_work import Workspace, open_workspace
from billing_desk.services.users import add_user

TARGET_RATIO = 1 / 3
CLIENT_COUNTS = (1, 8)
OPEN_INVOICES = 3
TRIPS_PER_INVOICE = 20
TRIP_FARE = "2500.00"  # invoices of 50,000.00: 2,000 payments each
PAYMENT_AMOUNT = "25.00"
ROUTING = "021000021"
ACCOUNT = "000123456789"
CLERK = "clerk"

# -- the two operations ---------------------------------------------------------------------

bare = MetaData()
bare_payment = Table(
    "bench_bare_payment",
    bare,
    Column("id", Integer, primary_key=True),
    Column("facility_id", Integer, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("check_number", String(32)),
    Column("natural_key", String(255)),
    Column("recorded_by", String(63), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("uq_bench_bare_payment_natural_key", "facility_id", "natural_key", unique=True),
)


@dataclass(frozen=True)
class ClientArgs:
    url: str
    phase: int  # makes check numbers and keys unique across runs on one database
    facilities: tuple[str, ...]  # one per client
    received: date


def check_number(args: ClientArgs, client: int, seq: int) -> str:
    return str(args.phase * 10**12 + client * 10**9 + seq)


def guarded_client(
    client: int, args: ClientArgs
) -> tuple[Callable[[int], object], Callable[[], None]]:
    workspace = open_workspace(args.url, CLERK, migrate=False)
    operation = guarded_operation(workspace, args, client)
    return operation, workspace.close


def guarded_operation(
    workspace: Workspace, args: ClientArgs, client: int
) -> Callable[[int], object]:
    facility = args.facilities[client]

    def record(seq: int) -> object:
        draft = PaymentDraft(
            facility=facility,
            method="check",
            amount=PAYMENT_AMOUNT,
            received=args.received,
            check_number=check_number(args, client, seq),
            routing_number=ROUTING,
            account_number=ACCOUNT,
            payer=f"{facility} Care Home",
            auto_allocate=True,
        )
        return record_payment(workspace, draft, f"bench-{args.phase}-{client}-{seq}")

    return record


def bare_client(
    client: int, args: ClientArgs
) -> tuple[Callable[[int], object], Callable[[], None]]:
    engine = make_engine(resolve_location(args.url))
    return bare_operation(engine, args, client), engine.dispose


def bare_operation(engine: Engine, args: ClientArgs, client: int) -> Callable[[int], object]:
    statement = bare_payment.insert()

    def insert(seq: int) -> object:
        number = check_number(args, client, seq)
        with engine.begin() as connection:
            connection.execute(
                statement,
                {
                    "facility_id": client + 1,
                    "amount_minor": 2500,
                    "check_number": number,
                    "natural_key": f"check:{ROUTING}:{number}",
                    "recorded_by": CLERK,
                    "recorded_at": datetime.now(UTC),
                },
            )
        return None

    return insert


# -- seeding --------------------------------------------------------------------------------


def seed(url: str, facility_codes: list[str], received: date) -> None:
    """Users, facilities and OPEN_INVOICES issued invoices per facility, all through the
    services; and the baseline's table."""
    admin = open_workspace(url, "admin")
    try:
        add_user(admin, "admin", "admin")
        add_user(admin, CLERK, "clerk")
        for code in facility_codes:
            add_facility(admin, NewFacility(code, f"{code.title()} Care Home", "USD", 30))
        bare.create_all(admin.engine)
    finally:
        admin.close()
    clerk = open_workspace(url, CLERK, migrate=False)
    try:
        first = date(received.year - 1, received.month, 1)
        months = [_add_months(first, n) for n in range(OPEN_INVOICES)]
        for code in facility_codes:
            import_trips(
                clerk,
                [
                    TripRecord(
                        line=n + 2,
                        external_trip_id=f"{code}-{month:%Y%m}-{n}",
                        facility_code=code,
                        client_name=f"Rider {n}",
                        client_ref=None,
                        service_date=month + timedelta(days=n),
                        pickup="12 Oak Rd",
                        dropoff="General Hospital",
                        status=TripStatus.COMPLETED,
                        fare=TRIP_FARE,
                        billable=True,
                    )
                    for month in months
                    for n in range(TRIPS_PER_INVOICE)
                ],
            )
            for month in months:
                run_invoice(clerk, code, f"{month:%Y-%m}", issue_date=_add_months(month, 1))
    finally:
        clerk.close()


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


# -- one backend ----------------------------------------------------------------------------


@dataclass
class BackendResult:
    name: str
    rows: list[Row]
    target_met: bool


def measure_backend(
    name: str, url: str, pool: ClientPool, options: argparse.Namespace
) -> BackendResult:
    received = datetime.now(UTC).date() - timedelta(days=1)
    phases = {clients: index + 1 for index, clients in enumerate(CLIENT_COUNTS)}
    codes = {
        clients: tuple(f"P{phase}C{c}" for c in range(clients)) for clients, phase in phases.items()
    }
    profile_phase = len(CLIENT_COUNTS) + 1
    history_phase = profile_phase + 1
    all_codes = [code for group in codes.values() for code in group] + ["PROFILE", "HISTORY"]
    started = time.perf_counter()
    seed(url, all_codes, received)
    say(
        f"  seeded {len(all_codes)} facilities x {OPEN_INVOICES} open invoices "
        f"in {time.perf_counter() - started:.1f}s"
    )
    if options.history:
        started = time.perf_counter()
        workspace = open_workspace(url, CLERK, migrate=False)
        try:
            history = ClientArgs(url, history_phase, ("HISTORY",), received)
            time_operations(guarded_operation(workspace, history, 0), options.history)
        finally:
            workspace.close()
        say(
            f"  recorded {options.history} earlier payments in {time.perf_counter() - started:.0f}s"
        )

    rows: list[Row] = []
    for clients, phase in phases.items():
        args = ClientArgs(url, phase, codes[clients], received)
        measured = pool.measure(
            [("ours", guarded_client), ("baseline", bare_client)],
            args,
            clients=clients,
            seconds=options.seconds,
            rounds=options.rounds,
            warmup=10 if clients == 1 else 3,
        )
        ours, baseline = measured["ours"], measured["baseline"]
        label = f"{name}, {clients} client{'s' if clients > 1 else ''}"
        rows.append(Row(label, ours.rate, baseline.rate))
        say(f"  {label} ({load_average()}):")
        say(f"    ours     {_describe(ours)}")
        say(f"    baseline {_describe(baseline)}")
    say()
    say(format_table(rows))
    one = rows[0]
    met = one.ratio >= TARGET_RATIO
    say(
        f"target at 1 client (ours >= 1/3 of baseline): {'met' if met else 'NOT met'} "
        f"({one.ratio:.3f})"
    )
    check_allocations(url, [c for group in codes.values() for c in group])
    profile_backend(url, ClientArgs(url, profile_phase, ("PROFILE",), received), options)
    return BackendResult(name, rows, met)


def _describe(measured: Measured) -> str:
    rounds = ", ".join(f"{rate:,.1f}" for rate in measured.round_rates)
    return (
        f"{measured.operations} ops in {measured.seconds:.1f}s = {measured.rate:,.1f}/s "
        f"(rounds: {rounds})"
    )


def check_allocations(url: str, codes: list[str]) -> None:
    """Confirm every measured payment paid part of an invoice (the whole path ran), and show
    how large the database had grown."""
    engine = make_engine(resolve_location(url))
    try:
        with engine.connect() as connection:
            facility_ids = select(Facility.id).where(Facility.code.in_(codes))
            payments = connection.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.facility_id.in_(facility_ids))
            )
            unallocated = connection.scalar(
                select(func.count())
                .select_from(Payment)
                .where(
                    Payment.facility_id.in_(facility_ids),
                    ~select(Allocation.id).where(Allocation.payment_id == Payment.id).exists(),
                )
            )
            sizes = {
                name: connection.scalar(select(func.count()).select_from(table(name)))
                for name in inspect(connection).get_table_names()
            }
    finally:
        engine.dispose()
    largest = sorted(sizes.items(), key=lambda item: -(item[1] or 0))[:5]
    say(
        f"  measured payments: {payments}, of which allocated nothing: {unallocated}; largest "
        "tables: " + ", ".join(f"{name} {rows}" for name, rows in largest)
    )


def profile_backend(url: str, args: ClientArgs, options: argparse.Namespace) -> None:
    """One client in this process: first timed with only statement timing (true figures), then
    under cProfile (inflated, for the split between code areas)."""
    count = options.profile_count
    workspace = open_workspace(url, CLERK, migrate=False)
    engine = make_engine(resolve_location(url))
    try:
        ours = guarded_operation(workspace, args, 0)
        bare_args = ClientArgs(url, args.phase, ("",), args.received)
        base = bare_operation(engine, bare_args, 99)
        time_operations(ours, 20)
        time_operations(base, 20)
        with statement_timer(workspace.engine) as ours_sql, flush_counter() as flushes:
            ours_time = time_operations(ours, count, first_seq=20)
        with statement_timer(engine) as base_sql:
            base_time = time_operations(base, count, first_seq=20)
        ours_profile = profile_operations(ours, count, first_seq=20 + count)
        base_profile = profile_operations(base, count, first_seq=20 + count)
    finally:
        workspace.close()
        engine.dispose()

    def ms(seconds: float) -> str:
        return f"{1000 * seconds / count:7.2f}"

    say()
    say(f"where the time goes (1 client, {count} operations each, ms per operation):")
    say("                                              guarded     bare")
    say(
        f"    wall time (no profiler)                   {ms(ours_time.wall_seconds)}  "
        f"{ms(base_time.wall_seconds)}"
    )
    say(
        f"    CPU time of this process                  {ms(ours_time.cpu_seconds)}  "
        f"{ms(base_time.cpu_seconds)}"
    )
    say(
        f"    inside the driver's execute               {ms(ours_sql.total_seconds)}  "
        f"{ms(base_sql.total_seconds)}"
    )
    say(
        f"    statements executed per operation         {ours_sql.total_calls / count:7.1f}  "
        f"{base_sql.total_calls / count:7.1f}"
    )
    say(f"    ORM flushes per operation                 {flushes.count / count:7.1f}")
    say("  slowest statements of the guarded path (ms per payment, executions per payment):")
    for statement, seconds, calls in ours_sql.slowest(options.top):
        say(f"    {ms(seconds)}  x{calls / count:<4.1f} {statement}")
    say("  own time by area under cProfile (ms per operation; the profiler inflates Python):")
    ours_areas = dict(ours_profile.self_time_by_area(AREAS))
    base_areas = dict(base_profile.self_time_by_area(AREAS))
    for area, seconds in sorted(ours_areas.items(), key=lambda item: -item[1]):
        if seconds or base_areas.get(area):
            say(f"    {area:<42}{ms(seconds)}  {ms(base_areas.get(area, 0.0))}")
    say(f"  top {options.top} cumulative entries in billing_desk and SQLAlchemy (guarded path):")
    say(ours_profile.top("billing_desk|sqlalchemy", options.top))


AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("sqlite3: SQL statements", ("'execute' of 'sqlite3.", "'executemany' of 'sqlite3.")),
    ("sqlite3: commit (WAL append + fsync)", ("'commit' of 'sqlite3.",)),
    ("sqlite3: connect, close (+WAL checkpoint)", ("_sqlite3.connect", "'close' of 'sqlite3.")),
    ("psycopg (round trips, server time)", ("psycopg",)),
    ("SQLAlchemy", ("sqlalchemy",)),
    ("billing_desk", ("billing_desk",)),
]


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short windows, small profile")
    parser.add_argument("--seconds", type=float, help="length of each timed window")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rounds", type=int, help="alternating ours/baseline windows")
    parser.add_argument("--profile-count", type=int, help="payments in the profile")
    parser.add_argument("--top", type=int, default=15, help="profile entries shown")
    parser.add_argument(
        "--history", type=int, default=0, help="payments recorded before measuring (slow)"
    )
    options = parser.parse_args(argv)
    exit_on_sigterm()
    if options.seconds is None:
        options.seconds = 1.5 if options.quick else 3.0
    if options.rounds is None:
        options.rounds = 1 if options.quick else 2
    if options.profile_count is None:
        options.profile_count = 40 if options.quick else 120

    say("record_payment: guarded service path vs bare single-row INSERT transaction")
    say(f"machine: {machine_description()}; {load_average()}")
    say(f"code: {code_version()}")
    results: list[BackendResult] = []
    with ClientPool(max(CLIENT_COUNTS)) as pool:
        say(f"started {max(CLIENT_COUNTS)} client processes in {pool.startup_seconds:.1f}s")
        if options.backend in ("sqlite", "both"):
            say("\n== SQLite (temp file; WAL, synchronous=FULL, BEGIN IMMEDIATE)")
            with temp_sqlite_file("record_payment") as path:
                results.append(measure_backend("SQLite", str(path), pool, options))
        if options.backend in ("postgresql", "both"):
            say(f"\n== {pg_server_version()} (throwaway database)")
            with throwaway_pg_database("record_payment") as url:
                results.append(measure_backend("PostgreSQL", url, pool, options))
    say("\n== summary")
    say(format_table([row for result in results for row in result.rows]))
    for result in results:
        say(
            f"{result.name}: 1-client target (>= {TARGET_RATIO:.3f}) "
            f"{'met' if result.target_met else 'NOT met'}"
        )
    # A figure is reported, never asserted: a missed target does not fail `make bench`.
    return 0


if __name__ == "__main__":
    sys.exit(main())
