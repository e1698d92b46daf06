"""Concurrent writers from several processes produce one gap-free chain.

Six processes, released together, each record ~40 cash payments and import (then re-import,
changed) a few trips, every operation its own transaction. Afterwards, sealed once more: the
links are numbered 1..N with no gap or duplicate, each link follows the one before it, every entry
is linked exactly once and none waits unsealed, and the verifier agrees. The chain's order is a
commit order: one process's transactions appear in the order it made them, and a transaction
that finished before another began comes before it in the chain.
"""

from __future__ import annotations

import bisect
import json
import multiprocessing
import queue
import time
import traceback
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import func, select

from billing_desk.db.models import AuditChainHead, AuditEntry, AuditLink, AuditPending
from billing_desk.domain.integrity import ZERO_HASH
from billing_desk.domain.states import TripStatus
from billing_desk.domain.trips import TripRecord
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.trips import import_trips
from billing_desk.services.unit_of_work import open_workspace
from billing_desk.services.users import add_user
from billing_desk.services.verification import verify_session
from tests.conftest import Database
from tests.support import seed_facility

pytestmark = pytest.mark.slow

WRITERS = 6
PAYMENTS_PER_WRITER = 40
# After every this many payments a writer imports trips: new ones, then the same ones changed.
IMPORT_EVERY = 8
TRIPS_PER_IMPORT = 2
FACILITY = "STMARY"
RECEIVED = date(2026, 6, 2)
SERVICE_DAY = date(2026, 5, 4)
# How long the writers may take in all, from start to their last report, before they are killed.
RUN_TIMEOUT_SECONDS = 120.0
READY_TIMEOUT_SECONDS = 60.0


def test_concurrent_writers_make_one_gap_free_chain(database: Database) -> None:
    admin = database.workspace("admin")
    add_user(admin, "admin", "admin")
    for number in range(WRITERS):
        add_user(admin, _user(number), "clerk")
    seed_facility(admin, FACILITY)
    seeded = _chain(database)

    started = time.monotonic()
    with Writers(database.url) as writers:
        reports = writers.run()
    elapsed = time.monotonic() - started
    admin.seal()

    chain = _chain(database)
    n = len(chain.links)
    transactions = [t for report in reports for t in report]
    interleaved = _interleavings(transactions)
    print(
        f"\n{database.backend}: {len(transactions)} transactions from {WRITERS} processes in "
        f"{elapsed:.1f} s, {n} links, {interleaved} overlapping pairs"
    )
    assert len(transactions) == WRITERS * (
        PAYMENTS_PER_WRITER + PAYMENTS_PER_WRITER // IMPORT_EVERY
    )
    assert interleaved > 0, "the writer processes never overlapped"

    # One chain: 1..N, each link on the one before, every entry linked once, nothing pending.
    sequences = [link.sequence for link in chain.links]
    assert sequences == list(range(1, n + 1)), _gaps(sequences)
    broken = [
        link.sequence
        for previous, link in zip([None, *chain.links], chain.links, strict=False)
        if link.prev_hash != (previous.entry_hash if previous is not None else ZERO_HASH)
    ]
    assert broken == [], f"links that do not follow the one before: {broken[:10]}"
    linked = [link.entry_id for link in chain.links]
    assert len(set(linked)) == len(linked), "an entry is linked twice"
    assert set(linked) == set(chain.entries), (
        f"entries never linked: {sorted(set(chain.entries) - set(linked))[:10]}; "
        f"links to no entry: {sorted(set(linked) - set(chain.entries))[:10]}"
    )
    assert chain.pending == 0, f"{chain.pending} entries still wait in audit_pending"
    assert (chain.head_sequence, chain.head_hash) == (n, chain.links[-1].entry_hash)
    report = admin.read(lambda unit: verify_session(unit.session))
    assert report.ok, report.findings
    assert report.entries_checked == n
    assert report.unsealed.count == 0

    # Every transaction the writers made is in the chain, whole, under its writer's name.
    by_marker = _transactions_by_marker(chain, seeded)
    placed: list[Placed] = []
    for transaction in transactions:
        request_id = by_marker.get(transaction.marker)
        assert request_id is not None, f"no audit entry of {transaction}"
        entries = chain.by_request[request_id]
        assert {e.user_name for e in entries} == {_user(transaction.writer)}, transaction
        assert {e.action for e in entries} == {transaction.action}, transaction
        placed.append(Placed(transaction, [e.sequence for e in entries]))
    assert sum(len(p.sequences) for p in placed) == n - len(seeded.links), (
        "the chain holds entries that none of the writers' transactions made"
    )

    # Each transaction's entries are sealed in the order they were written.
    for p in placed:
        assert p.sequences == sorted(p.sequences), p.transaction
    # Per process: successive transactions appear in increasing sequence.
    by_writer: dict[int, list[Placed]] = defaultdict(list)
    for p in placed:
        by_writer[p.transaction.writer].append(p)
    for writer, mine in by_writer.items():
        mine.sort(key=lambda p: p.transaction.step)
        for earlier, later in pairwise(mine):
            assert max(earlier.sequences) < min(later.sequences), (
                f"{database.backend}: writer {writer}'s step {later.transaction.step} was sealed "
                f"before its step {earlier.transaction.step}: {earlier.sequences} then "
                f"{later.sequences}"
            )
    # Across processes: a transaction finished before another began comes first in the chain.
    finished = sorted(placed, key=lambda p: p.transaction.ended)
    ends = [p.transaction.ended for p in finished]
    highest_before: list[int] = []
    for p in finished:
        highest_before.append(max(highest_before[-1] if highest_before else 0, max(p.sequences)))
    for p in placed:
        done_before = bisect.bisect_left(ends, p.transaction.started)
        if done_before:
            assert highest_before[done_before - 1] < min(p.sequences), (
                f"{database.backend}: {p.transaction} began after transactions that finished "
                f"before it, yet is sealed before one of them (sequence {min(p.sequences)} < "
                f"{highest_before[done_before - 1]})"
            )


# -- reading the chain ----------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    sequence: int
    entry_id: int
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class ChainEntry:
    id: int
    sequence: int | None
    user_name: str
    action: str
    entity_type: str
    after: str | None
    request_id: str


@dataclass
class Chain:
    links: list[Link]
    entries: dict[int, ChainEntry]
    by_request: dict[str, list[ChainEntry]]
    pending: int
    head_sequence: int
    head_hash: str


def _chain(database: Database) -> Chain:
    workspace = database.workspace("auditor")

    def read(unit: Any) -> Chain:
        session = unit.session
        links = [
            Link(*row)
            for row in session.execute(
                select(
                    AuditLink.sequence,
                    AuditLink.entry_id,
                    AuditLink.prev_hash,
                    AuditLink.entry_hash,
                ).order_by(AuditLink.sequence)
            )
        ]
        sequence_of = {link.entry_id: link.sequence for link in links}
        entries = {
            row.id: ChainEntry(
                row.id,
                sequence_of.get(row.id),
                row.user_name,
                row.action,
                row.entity_type,
                row.after,
                row.request_id,
            )
            for row in session.execute(
                select(
                    AuditEntry.id,
                    AuditEntry.user_name,
                    AuditEntry.action,
                    AuditEntry.entity_type,
                    AuditEntry.after,
                    AuditEntry.request_id,
                ).order_by(AuditEntry.id)
            )
        }
        by_request: dict[str, list[ChainEntry]] = defaultdict(list)
        for entry in entries.values():
            by_request[entry.request_id].append(entry)
        pending = session.scalar(select(func.count()).select_from(AuditPending)) or 0
        head = session.scalars(select(AuditChainHead)).one()
        return Chain(links, entries, by_request, pending, head.last_sequence, head.last_hash)

    try:
        return workspace.read(read)
    finally:
        workspace.close()


def _transactions_by_marker(chain: Chain, seeded: Chain) -> dict[str, str]:
    """Each writer transaction's marker (a payment's memo, an imported trip's pickup) -> the
    request id of the entries that wrote it."""
    found: dict[str, str] = {}
    for entry in chain.entries.values():
        if entry.id in seeded.entries or entry.after is None:
            continue
        values = json.loads(entry.after)
        marker = (
            values.get("memo")
            if entry.entity_type == "payment"
            else values.get("pickup")
            if entry.entity_type == "trip"
            else None
        )
        if isinstance(marker, str) and marker.startswith("w"):
            found.setdefault(marker, entry.request_id)
    return found


def _gaps(sequences: Sequence[int]) -> str:
    seen = set(sequences)
    missing = [n for n in range(1, max(seen, default=0) + 1) if n not in seen]
    duplicated = sorted({n for n in sequences if sequences.count(n) > 1})
    return f"missing sequences {missing[:10]}, repeated {duplicated[:10]}"


# -- the writers: one process each, started together -----------------------------------------


@dataclass(frozen=True)
class Transaction:
    """One write a writer made: which, in what order, and when it ran (monotonic clock, which
    all processes of the machine share)."""

    writer: int
    step: int
    action: str
    marker: str
    started: float
    ended: float


@dataclass(frozen=True)
class Placed:
    transaction: Transaction
    sequences: list[int]


def _interleavings(transactions: Sequence[Transaction]) -> int:
    """Pairs of transactions of different writers that ran at the same time."""
    ordered = sorted(transactions, key=lambda t: t.started)
    count = 0
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            if second.started >= first.ended:
                break
            count += second.writer != first.writer
    return count


def _user(number: int) -> str:
    return f"clerk{number}"


class Writers:
    """WRITERS spawned processes, each with its own workspace. All connect and report ready, then
    start together; leaving the block leaves no process behind, and a writer that raises, dies
    or overruns fails the test."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._messages = context.Queue()
        self._go = context.Event()
        self._finished = False
        self._processes = [
            context.Process(
                target=_writer,
                args=(url, number, self._messages, self._go),
                name=f"audit-writer-{number}",
                daemon=True,
            )
            for number in range(WRITERS)
        ]

    def __enter__(self) -> Writers:
        for process in self._processes:
            process.start()
        return self

    def run(self) -> list[list[Transaction]]:
        self._await("ready", time.monotonic() + READY_TIMEOUT_SECONDS)
        self._go.set()
        done = self._await("done", time.monotonic() + RUN_TIMEOUT_SECONDS)
        self._finished = True
        return [[Transaction(**t) for t in done[number]] for number in range(WRITERS)]

    def _await(self, wanted: str, deadline: float) -> dict[int, Any]:
        payloads: dict[int, Any] = {}
        while len(payloads) < len(self._processes):
            try:
                kind, number, payload = self._messages.get(timeout=0.5)
            except queue.Empty:
                missing = [p for n, p in enumerate(self._processes) if n not in payloads]
                dead = [p for p in missing if not p.is_alive()]
                if dead and self._messages.empty():
                    codes = ", ".join(f"{p.name} (exit code {p.exitcode})" for p in dead)
                    pytest.fail(f"a writer died before it was {wanted}: {codes}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"writers overran waiting for '{wanted}' "
                        f"({len(payloads)} of {len(self._processes)})"
                    )
                continue
            if kind == "crashed":
                pytest.fail(f"writer {number} failed:\n{payload}")
            assert kind == wanted, (kind, wanted)
            payloads[number] = payload
        return payloads

    def __exit__(self, *exc_info: object) -> None:
        patience = 10.0 if self._finished else 0.0
        for process in self._processes:
            if process.pid is not None:
                process.join(timeout=patience)
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
        self._messages.close()
        self._messages.join_thread()


def _writer(url: str, number: int, messages: Any, go: Any) -> None:
    """One writer process: get ready, wait for go, record payments and import trips, report."""
    try:
        workspace = open_workspace(url, _user(number), migrate=False)
        try:
            workspace.read(lambda unit: None)  # connected and warm before the start
            messages.put(("ready", number, None))
            if not go.wait(READY_TIMEOUT_SECONDS):
                raise TimeoutError("the writers were never started")
            done: list[dict[str, Any]] = []
            imported: list[str] = []  # the trips of the last import that added trips
            step = 0
            for payment in range(PAYMENTS_PER_WRITER):
                marker = f"w{number}-s{step}"
                started = time.monotonic()
                record_payment(
                    workspace,
                    PaymentDraft(
                        facility=FACILITY,
                        method="cash",
                        amount=f"{10 + number}.{payment:02d}",
                        received=RECEIVED,
                        memo=marker,
                    ),
                    f"chain-{number}-{payment}",
                )
                done.append(_done(number, step, "payment.record", marker, started))
                step += 1
                if (payment + 1) % IMPORT_EVERY == 0:
                    # Alternately new trips, and the same trips again with another pickup.
                    marker = f"w{number}-s{step}"
                    if (payment + 1) // IMPORT_EVERY % 2:
                        imported = [f"W{number}-{step}-{k}" for k in range(TRIPS_PER_IMPORT)]
                    started = time.monotonic()
                    import_trips(
                        workspace, [_trip(number, trip_id, marker) for trip_id in imported]
                    )
                    done.append(_done(number, step, "trip.import", marker, started))
                    step += 1
            messages.put(("done", number, done))
        finally:
            workspace.close()
    except BaseException:
        messages.put(("crashed", number, traceback.format_exc()))


def _done(number: int, step: int, action: str, marker: str, started: float) -> dict[str, Any]:
    return {
        "writer": number,
        "step": step,
        "action": action,
        "marker": marker,
        "started": started,
        "ended": time.monotonic(),
    }


def _trip(number: int, trip_id: str, pickup: str) -> TripRecord:
    return TripRecord(
        line=2,
        external_trip_id=trip_id,
        facility_code=FACILITY,
        client_name=f"Rider {number}",
        client_ref=None,
        service_date=SERVICE_DAY,
        pickup=pickup,
        dropoff="General Hospital",
        status=TripStatus.COMPLETED,
        fare="12.50",
        billable=True,
    )
