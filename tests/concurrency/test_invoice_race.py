"""Promise 1 under fire: eight processes run overlapping invoice runs at the same moment, round
after round, and no trip ever lands on two live invoices; every loser is told which trips were
taken and writes nothing, and invoice numbers stay gap-free."""

from __future__ import annotations

import multiprocessing
import queue
import random
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError

from billing_desk.domain.errors import DoubleBilling
from billing_desk.services.invoices import run_invoice, void_invoice
from billing_desk.services.unit_of_work import Workspace, open_workspace
from tests.conftest import Database
from tests.support import load_trips, seed_facility, seed_users, trip

PERIOD = "2026-05"
ISSUE_DATE = date(2026, 6, 1)
FACILITIES = ("STMARY", "OAKVIEW")
TRIPS_PER_FACILITY = 30
RUNS_PER_ROUND = 8
ROUNDS = 6
# A run names this many of its facility's trips, or (sometimes) bills the whole period.
CHOSEN_TRIPS = (4, 12)
WHOLE_PERIOD_CHANCE = 0.2
# How long one round's processes may take in all before they are killed and the test fails.
ROUND_TIMEOUT_SECONDS = 120.0
# The unique index that holds promise 1, as each backend names it in a violation.
BILLED_TRIP_INDEX = (
    "uq_invoice_line_trip_billed",
    "invoice_line.facility_id, invoice_line.trip_id",
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Plan:
    """One invoice run of a round: a facility and the trips it names (None: the whole period)."""

    facility: str
    trip_ids: tuple[str, ...] | None


def test_overlapping_invoice_runs_never_bill_a_trip_twice(database: Database) -> None:
    fares = _seed(database)
    rounds = [_plan_round(random.Random(f"invoice race {n}"), fares) for n in range(ROUNDS)]
    manager = database.workspace("manager")
    refusals = caught_by_index = 0
    try:
        with InvoiceClerks(database.url, rounds) as clerks:
            for round_no, plans in enumerate(rounds):
                outcomes = clerks.run_round(round_no)
                winners = _check_round(database, round_no, plans, outcomes, fares)
                losers = [o for o in outcomes if o["outcome"] == "double billing"]
                refusals += len(losers)
                caught_by_index += sum(bool(o["integrity_errors"]) for o in losers)
                for number in winners:
                    void_invoice(
                        manager, number, "concurrency test: free the trips for a new round"
                    )
    finally:
        manager.close()
    print(
        f"\n{database.backend}: {ROUNDS} rounds of {RUNS_PER_ROUND} runs, {refusals} refused as "
        f"double billing, {caught_by_index} of them caught by the unique index mid-race"
    )
    assert refusals > 0, "no run was ever refused: the runs did not overlap"
    if database.backend == "postgresql":
        # Some losers passed their own check before the winner committed: a real race, which
        # only the unique index could stop. (SQLite's BEGIN IMMEDIATE serialises the runs.)
        assert caught_by_index > 0, "no run reached the unique index: the race never happened"


def _seed(database: Database) -> dict[tuple[str, str], int]:
    """Users, two facilities, TRIPS_PER_FACILITY completed billable trips each in PERIOD; returns
    each trip's fare in cents by (facility, trip id)."""
    admin = database.workspace("admin")
    clerk = database.workspace("clerk")
    try:
        seed_users(admin)
        fares: dict[tuple[str, str], int] = {}
        records = []
        for facility in FACILITIES:
            seed_facility(admin, facility)
            for n in range(1, TRIPS_PER_FACILITY + 1):
                trip_id = f"{facility[:2]}{n:03d}"
                cents = 1_000 + 137 * n
                fares[(facility, trip_id)] = cents
                records.append(
                    trip(
                        trip_id,
                        facility=facility,
                        day=date(2026, 5, 1) + timedelta(days=n % 31),
                        fare=f"{cents // 100}.{cents % 100:02d}",
                        client=f"Rider {n % 7}",
                        line=n + 1,
                    )
                )
        load_trips(clerk, records)
    finally:
        admin.close()
        clerk.close()
    return fares


def _plan_round(rng: random.Random, fares: dict[tuple[str, str], int]) -> list[Plan]:
    plans = []
    for run in range(RUNS_PER_ROUND):
        facility = FACILITIES[run % len(FACILITIES)]
        if rng.random() < WHOLE_PERIOD_CHANCE:
            plans.append(Plan(facility, None))
            continue
        trips = sorted(trip_id for code, trip_id in fares if code == facility)
        chosen = rng.sample(trips, rng.randint(*CHOSEN_TRIPS))
        plans.append(Plan(facility, tuple(chosen)))
    return plans


def _check_round(
    database: Database,
    round_no: int,
    plans: Sequence[Plan],
    outcomes: Sequence[dict[str, Any]],
    fares: dict[tuple[str, str], int],
) -> list[str]:
    """Assert the round kept every promise; return the winners' invoice numbers."""
    where = f"{database.backend} round {round_no}"
    failures = [o for o in outcomes if o["outcome"] not in ("billed", "double billing")]
    assert not failures, f"{where}: a run failed other than by double billing:\n" + "\n".join(
        f"{o['type']}: {o['message']}\n{o['traceback']}" for o in failures
    )
    for outcome in outcomes:
        for error in outcome["integrity_errors"]:
            assert any(name in error for name in BILLED_TRIP_INDEX), (
                f"{where}: a run hit an integrity error other than the billed-trip index: {error}"
            )

    ledger = _read_ledger(database)
    # No trip on two live invoices.
    live = Counter((line["facility"], line["trip_id"]) for line in ledger.lines if line["live"])
    assert [key for key, count in live.items() if count > 1] == [], f"{where}: billed twice"
    # Invoice numbers per facility are 1..N without gaps, and the counter agrees.
    for facility in FACILITIES:
        mine = sorted(
            (i for i in ledger.invoices.values() if i["facility"] == facility),
            key=lambda i: i["sequence"],
        )
        assert [i["sequence"] for i in mine] == list(range(1, len(mine) + 1)), (
            f"{where}: gap in {facility}'s invoice numbers: {[i['number'] for i in mine]}"
        )
        assert [i["number"] for i in mine] == [f"{facility}-{i['sequence']:06d}" for i in mine]
        assert ledger.counters[facility] == len(mine), f"{where}: {facility}'s counter is off"
    # Every invoice's total is the sum of its lines, and each line bills its trip's fare.
    lines_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in ledger.lines:
        lines_of[line["number"]].append(line)
    for number, invoice in ledger.invoices.items():
        lines = lines_of[number]
        assert invoice["total_minor"] == sum(line["amount_minor"] for line in lines), number
        assert sorted(line["line_no"] for line in lines) == list(range(1, len(lines) + 1))
        for line in lines:
            assert line["amount_minor"] == fares[(line["facility"], line["trip_id"])], number

    # The invoices issued this round are exactly the winners': losers wrote nothing.
    winners = {
        o["number"]: (plan, o)
        for plan, o in zip(plans, outcomes, strict=True)
        if o["outcome"] == "billed"
    }
    issued = {n for n, i in ledger.invoices.items() if i["status"] == "issued"}
    assert issued == set(winners), f"{where}: issued {sorted(issued)}, winners {sorted(winners)}"
    assert ledger.issued_status_changes == len(ledger.invoices), f"{where}: stray history rows"
    for number, (plan, outcome) in winners.items():
        billed = {line["trip_id"] for line in lines_of[number]}
        assert ledger.invoices[number]["facility"] == plan.facility
        assert len(billed) == outcome["trip_count"] == len(lines_of[number]), number
        assert ledger.invoices[number]["total_minor"] == outcome["total_minor"], number
        if plan.trip_ids is not None:
            assert billed == set(plan.trip_ids), f"{where}: {number} billed other trips"
    # The winners' trips are the live billed set; the losers' taken trips are among them.
    billed_by_winners = Counter(
        (line["facility"], line["trip_id"]) for n in winners for line in lines_of[n]
    )
    assert set(billed_by_winners) == set(live), f"{where}: live lines outside the winners"
    assert max(billed_by_winners.values(), default=1) == 1
    for plan, outcome in zip(plans, outcomes, strict=True):
        if outcome["outcome"] != "double billing":
            continue
        taken = set(outcome["taken"])
        assert taken, f"{where}: a refusal named no taken trip: {outcome['message']}"
        assert {(plan.facility, t) for t in taken} <= set(live), (
            f"{where}: refusal names trips no winner billed: {outcome['message']}"
        )
        if plan.trip_ids is not None:
            assert taken <= set(plan.trip_ids), f"{where}: refusal names trips it did not ask for"
    for facility in {plan.facility for plan in plans}:
        assert any(plan.facility == facility for plan, _ in winners.values()), (
            f"{where}: every run for {facility} lost"
        )
    return sorted(winners)


@dataclass(frozen=True)
class Ledger:
    invoices: dict[str, dict[str, Any]]
    lines: list[dict[str, Any]]
    counters: dict[str, int]
    issued_status_changes: int


def _read_ledger(database: Database) -> Ledger:
    workspace = database.workspace("auditor")
    try:
        with workspace.engine.connect() as conn:
            return Ledger(
                {row["number"]: row for row in _rows(conn, _INVOICES)},
                _rows(conn, _LINES),
                {row["facility"]: row["last_number"] for row in _rows(conn, _COUNTERS)},
                int(conn.execute(text(_ISSUED_CHANGES)).scalar_one()),
            )
    finally:
        workspace.close()


def _rows(conn: Connection, sql: str) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(text(sql)).mappings()]


_INVOICES = """
    SELECT i.number, f.code AS facility, i.sequence, i.status, i.total_minor
    FROM invoice i JOIN facility f ON f.id = i.facility_id
"""
_LINES = """
    SELECT i.number, f.code AS facility, t.external_trip_id AS trip_id, l.line_no,
           l.amount_minor, CASE WHEN l.released THEN 0 ELSE 1 END AS live
    FROM invoice_line l
    JOIN invoice i ON i.id = l.invoice_id
    JOIN facility f ON f.id = l.facility_id
    JOIN trip t ON t.id = l.trip_id
"""
_COUNTERS = """
    SELECT f.code AS facility, c.last_number
    FROM invoice_counter c JOIN facility f ON f.id = c.facility_id
"""
_ISSUED_CHANGES = "SELECT count(*) FROM invoice_status_change WHERE to_status = 'issued'"


# -- the clerks: one process each, released together every round ----------------------------


class InvoiceClerks:
    """RUNS_PER_ROUND spawned processes, each a clerk with its own workspace. Every round, all
    connect, report ready, and start their invoice run together when the parent says go. Leaving
    the block leaves no process behind; a clerk that raises, dies or overruns fails the test."""

    def __init__(self, url: str, rounds: Sequence[Sequence[Plan]]) -> None:
        context = multiprocessing.get_context("spawn")
        self._messages = context.Queue()
        self._go = [context.Event() for _ in rounds]
        self._rounds_left = len(rounds)
        self._inbox: dict[tuple[str, int], dict[int, Any]] = {}
        self._processes = [
            context.Process(
                target=_clerk,
                args=(url, number, [plans[number] for plans in rounds], self._messages, self._go),
                name=f"invoice-clerk-{number}",
                daemon=True,
            )
            for number in range(RUNS_PER_ROUND)
        ]

    def __enter__(self) -> InvoiceClerks:
        for process in self._processes:
            process.start()
        return self

    def run_round(self, round_no: int) -> list[dict[str, Any]]:
        """Release every clerk's run of `round_no` at once; their outcomes, in clerk order."""
        deadline = time.monotonic() + ROUND_TIMEOUT_SECONDS
        self._await("ready", round_no, deadline)
        self._go[round_no].set()
        outcomes = self._await("done", round_no, deadline)
        self._rounds_left -= 1
        return [outcomes[number] for number in range(len(self._processes))]

    def _await(self, wanted: str, round_no: int, deadline: float) -> dict[int, Any]:
        # A quick clerk may report ready for the next round before the others are done.
        payloads = self._inbox.setdefault((wanted, round_no), {})
        while len(payloads) < len(self._processes):
            try:
                kind, number, when, payload = self._messages.get(timeout=0.5)
            except queue.Empty:
                missing = [p for n, p in enumerate(self._processes) if n not in payloads]
                dead = [p for p in missing if not p.is_alive()]
                if dead and self._messages.empty():
                    codes = ", ".join(f"{p.name} (exit code {p.exitcode})" for p in dead)
                    pytest.fail(f"round {round_no}: clerk died before it was {wanted}: {codes}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"round {round_no}: clerks overran {ROUND_TIMEOUT_SECONDS:.0f} s "
                        f"waiting for '{wanted}' ({len(payloads)} of {len(self._processes)})"
                    )
                continue
            if kind == "crashed":
                pytest.fail(f"clerk {number} failed:\n{payload}")
            self._inbox.setdefault((kind, when), {})[number] = payload
        return self._inbox.pop((wanted, round_no))

    def __exit__(self, *exc_info: object) -> None:
        # Clerks that ran every round exit by themselves; otherwise do not wait for them.
        patience = 10.0 if self._rounds_left == 0 else 0.0
        for process in self._processes:
            if process.pid is not None:
                process.join(timeout=patience)
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
        self._messages.close()


def _clerk(url: str, number: int, plans: Sequence[Plan], messages: Any, go: Sequence[Any]) -> None:
    """One clerk process: for each round, get ready, wait for go, run the invoice, report."""
    try:
        workspace = open_workspace(url, "clerk", migrate=False)
        integrity_errors: list[str] = []

        @event.listens_for(workspace.engine, "handle_error")
        def _note_integrity_error(context: ExceptionContext) -> None:
            if isinstance(context.sqlalchemy_exception, IntegrityError):
                integrity_errors.append(str(context.original_exception).strip())

        try:
            for round_no, plan in enumerate(plans):
                workspace.read(lambda unit: None)  # connected and warm before the start
                messages.put(("ready", number, round_no, None))
                if not go[round_no].wait(ROUND_TIMEOUT_SECONDS):
                    raise TimeoutError(f"round {round_no} was never started")
                integrity_errors.clear()
                outcome = _run_one_invoice(workspace, plan)
                outcome["integrity_errors"] = list(integrity_errors)
                messages.put(("done", number, round_no, outcome))
        finally:
            workspace.close()
    except BaseException:
        messages.put(("crashed", number, None, traceback.format_exc()))


def _run_one_invoice(workspace: Workspace, plan: Plan) -> dict[str, Any]:
    """What came of one invoice run, as plain data for the parent."""
    try:
        result = run_invoice(
            workspace,
            plan.facility,
            PERIOD,
            trip_ids=list(plan.trip_ids) if plan.trip_ids is not None else None,
            issue_date=ISSUE_DATE,
        )
    except DoubleBilling as refused:
        return {
            "outcome": "double billing",
            "taken": list(refused.taken_trips),
            "message": str(refused),
        }
    except Exception as err:
        return {
            "outcome": "error",
            "type": f"{type(err).__module__}.{type(err).__qualname__}",
            "message": str(err),
            "traceback": traceback.format_exc(),
        }
    return {
        "outcome": "billed",
        "number": result.invoice_number,
        "trip_count": result.trip_count,
        "total_minor": result.total.minor,
    }
