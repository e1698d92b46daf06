"""Promise 3 for payments: a process killed with SIGKILL at any step of recording a payment leaves
nothing of it behind (no payment, allocation, status history, invoice move, idempotency key or
audit entry), every payment in the database is whole, and retrying with the same key records the
payment exactly once."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from sqlalchemy import text

from billing_desk.services.faults import KILL_AT_VARIABLE
from billing_desk.services.invoices import run_invoice
from billing_desk.services.payments import PaymentDraft, PaymentReceipt, record_payment
from billing_desk.services.unit_of_work import Workspace
from tests.concurrency.payment_worker import (
    ACCOUNT,
    RECEIVED,
    ROUTING,
    draft_to_json,
    ledger_problems,
    read_ledger,
    verification_findings,
)
from tests.conftest import Database
from tests.support import load_trips, seed_facility, seed_users, trip

ROOT = Path(__file__).resolve().parents[2]
# The steps of record_payment, in order; a kill at the last is after every write, before commit.
KILL_POINTS = ("payment.claimed", "payment.inserted", "payment.allocated", "payment.completed")
KILLS_PER_POINT = 30
FACILITIES = ("STMARY", "OAKVIEW")
METHODS = ("check", "transfer", "cash", "card")
INVOICES_PER_FACILITY = 8
TRIPS_PER_INVOICE = 3
# How long one child may take to record (and die) before it is killed as overrunning.
CHILD_SECONDS = 30.0
# How long the crash server may take to answer one request.
ANSWER_SECONDS = CHILD_SECONDS + 10.0
# How long PostgreSQL may take to notice a killed client and end its backend.
BACKEND_GONE_SECONDS = 10.0

pytestmark = pytest.mark.slow


def test_a_killed_recording_leaves_nothing_and_its_key_then_records_once(
    database: Database,
) -> None:
    _seed(database)
    clerk = database.workspace("clerk")
    auditor = database.workspace("auditor")
    kills = 0
    started = time.monotonic()
    before = read_ledger(auditor)
    with CrashServer(database.url) as server:
        for n in range(KILLS_PER_POINT * len(KILL_POINTS)):
            point = KILL_POINTS[n % len(KILL_POINTS)]
            draft, key = crash_request(n)
            where = f"{database.backend} kill {n} at {point} ({draft.method}, key {key})"

            report = server.submit(draft, key, kill_at=point)
            _assert_killed(report, where)
            kills += 1
            _await_backend_gone(auditor, report["backend_pid"], where)
            after = read_ledger(auditor)
            assert after == before, f"{where}: the killed recording left rows behind"
            assert ledger_problems(after) == [], where

            receipt = record_payment(clerk, draft, key)
            assert not receipt.replayed, f"{where}: the retry replayed a payment nobody recorded"
            again = record_payment(clerk, draft, key)
            assert again == replace(receipt, replayed=True), where
            before = _assert_recorded_once(auditor, before, key, receipt, where)
    elapsed = time.monotonic() - started

    ledger = before
    assert len(ledger["payments"]) == kills
    assert verification_findings(auditor) == []
    statuses = sorted({i["status"] for i in ledger["invoices"]})
    allocated = sum(1 for p in ledger["payments"] if _live_allocations(ledger, p["id"]))
    print(
        f"\n{database.backend}: {kills} kills ({KILLS_PER_POINT} at each of {len(KILL_POINTS)} "
        f"points) and {kills} retries in {elapsed:.1f} s; {allocated} of the payments allocated "
        f"to invoices, invoices now {statuses}"
    )
    # The kills landed in the middle of real work: payments that paid invoices.
    assert allocated > kills // 2
    assert {"partially paid", "paid"} <= set(statuses)
    if database.backend == "sqlite":
        # Every killed recorder died holding the write lock, mid-transaction.
        check = auditor.read(lambda unit: unit.session.scalar(text("PRAGMA integrity_check")))
        assert check == "ok"


def test_a_recording_killed_just_before_commit_leaves_nothing(database: Database) -> None:
    """After the last write and before the commit: the payment, its allocations, the invoices'
    moves and the completed key are all written, and all must vanish with the process."""
    _seed(database)
    clerk = database.workspace("clerk")
    auditor = database.workspace("auditor")
    for n in range(4):  # some history first, so that the invoices are part paid
        record_payment(clerk, *crash_request(n))
    requests = [
        (
            PaymentDraft(
                facility="STMARY",
                method="check",
                amount="400.00",
                received=RECEIVED,
                check_number="77001",
                routing_number=ROUTING,
                account_number=ACCOUNT,
                allocations=(("STMARY-000001", "10.00"), ("STMARY-000003", "40.00")),
            ),
            "just-before-commit-explicit",
        ),
        (replace(crash_request(4)[0], amount="900.00"), "just-before-commit-auto"),
    ]
    with CrashServer(database.url) as server:
        for draft, key in requests:
            where = f"{database.backend} {key}"
            before = read_ledger(auditor)
            for attempt in range(5):
                report = server.submit(draft, key, kill_at="payment.completed")
                _assert_killed(report, f"{where} attempt {attempt}")
                _await_backend_gone(auditor, report["backend_pid"], where)
                after = read_ledger(auditor)
                assert after == before, f"{where}: rows of a payment killed before commit remain"
                assert key not in {r["key"] for r in after["keys"]}
            # Another process, not killed this time, records it; this one then only replays.
            report = server.submit(draft, key)
            assert report["exit_code"] == 0, f"{where}: {report}"
            outcome = report["outcome"]
            assert outcome["outcome"] == "receipt", outcome.get("traceback", outcome)
            assert not outcome["replayed"]
            assert outcome["allocations"], f"{where}: the payment paid no invoice"
            replay = record_payment(clerk, draft, key)
            assert replay.replayed
            assert replay.to_record() == {
                k: v for k, v in outcome.items() if k not in ("outcome", "replayed")
            }
            _assert_recorded_once(auditor, before, key, replay, where)
    assert verification_findings(auditor) == []


def test_the_ledger_check_sees_every_kind_of_half_written_payment(database: Database) -> None:
    """Negative control: the check the tests above rely on fails for each part of a payment
    that goes missing."""
    _seed(database)
    clerk = database.workspace("clerk")
    auditor = database.workspace("auditor")
    receipt = record_payment(clerk, *crash_request(0))
    ledger = read_ledger(auditor)
    assert ledger_problems(ledger) == []
    assert receipt.allocations

    def without(table: str, keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return {**ledger, table: [row for row in ledger[table] if keep(row)]}

    mine = str(receipt.payment_id)
    broken = {
        "payment": without("payments", lambda p: p["id"] != receipt.payment_id),
        "status history": without("history", lambda h: h["payment_id"] != receipt.payment_id),
        "allocations": without("allocations", lambda a: a["payment_id"] != receipt.payment_id),
        "key": without("keys", lambda r: r["key"] != "crash-0"),
        "key's result": {
            **ledger,
            "keys": [{**r, "result": ""} if r["key"] == "crash-0" else r for r in ledger["keys"]],
        },
        "invoice status": {
            **ledger,
            "invoices": [{**i, "status": "issued"} for i in ledger["invoices"]],
        },
        "audit entry": without(
            "audit", lambda e: (e["entity_type"], e["entity_id"]) != ("payment", mine)
        ),
    }
    for part, ledger_without in broken.items():
        assert ledger_problems(ledger_without), f"a payment without its {part} passed the check"


def crash_request(n: int) -> tuple[PaymentDraft, str]:
    """The n-th payment of the crash test: every kill point meets every method, and both
    facilities; small amounts, so that most pay part of an invoice and some span two."""
    method = METHODS[(n // len(KILL_POINTS)) % len(METHODS)]
    facility = FACILITIES[(n // (len(KILL_POINTS) * len(METHODS))) % len(FACILITIES)]
    cents = 500 + (n * 733) % 2_500
    instrument: dict[str, Any] = {
        "check": {
            "check_number": str(5_000 + n),
            "routing_number": ROUTING,
            "account_number": ACCOUNT,
        },
        "transfer": {"reference": f"WIRE-CRASH-{n}"},
        "cash": {},
        "card": {"card_brand": "VISA", "card_last4": "4242", "processor_ref": f"ch_crash_{n}"},
    }[method]
    draft = PaymentDraft(
        facility=facility,
        method=method,
        amount=f"{cents // 100}.{cents % 100:02d}",
        received=RECEIVED,
        payer=f"{facility.title()} accounts",
        memo=f"crash test payment {n}",
        auto_allocate=True,
        **instrument,
    )
    return draft, f"crash-{n}"


def _seed(database: Database) -> None:
    """Users, two facilities, and INVOICES_PER_FACILITY open invoices each."""
    admin = database.workspace("admin")
    seed_users(admin)
    for facility in FACILITIES:
        seed_facility(admin, facility)
    clerk = database.workspace("clerk")
    for facility in FACILITIES:
        trips = [
            trip(
                f"{facility[:2]}{n:03d}",
                facility=facility,
                day=date(2026, 5, 1 + n % 28),
                fare=f"{40 + n}.{(n * 17) % 100:02d}",
                line=n + 2,
            )
            for n in range(INVOICES_PER_FACILITY * TRIPS_PER_INVOICE)
        ]
        load_trips(clerk, trips)
        for start in range(0, len(trips), TRIPS_PER_INVOICE):
            run_invoice(
                clerk,
                facility,
                "2026-05",
                trip_ids=[t.external_trip_id for t in trips[start : start + TRIPS_PER_INVOICE]],
                issue_date=date(2026, 6, 1),
            )


def _assert_killed(report: dict[str, Any], where: str) -> None:
    if report["signal"] == signal.SIGKILL and not report["overran"]:
        return
    outcome = report.get("outcome") or {}
    pytest.fail(
        f"{where}: the recording process was not killed at its point: {report}\n"
        f"{outcome.get('traceback', '')}{report.get('crashed', '')}"
    )


def _await_backend_gone(auditor: Workspace, backend_pid: int | None, where: str) -> None:
    """PostgreSQL aborts a killed client's transaction when it sees the socket close; wait for
    that, so that nothing still open can hide a half-written payment."""
    if backend_pid is None:
        return
    deadline = time.monotonic() + BACKEND_GONE_SECONDS
    query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    while auditor.read(lambda unit: unit.session.scalar(query, {"pid": backend_pid})):
        if time.monotonic() > deadline:
            pytest.fail(f"{where}: backend {backend_pid} outlived its killed client")
        time.sleep(0.005)


def _assert_recorded_once(
    auditor: Workspace,
    before: dict[str, list[dict[str, Any]]],
    key: str,
    receipt: PaymentReceipt,
    where: str,
) -> dict[str, list[dict[str, Any]]]:
    """Assert `key` recorded exactly one new payment since `before`, whole; the ledger now."""
    ledger = read_ledger(auditor)
    assert ledger_problems(ledger) == [], where
    new = [p["id"] for p in ledger["payments"] if p not in before["payments"]]
    assert new == [receipt.payment_id], f"{where}: new payments {new}"
    records = [r for r in ledger["keys"] if r["key"] == key]
    assert len(records) == 1, where
    assert json.loads(records[0]["result"]) == receipt.to_record(), where
    assert sorted(
        (a.invoice_number, a.amount.minor) for a in receipt.allocations
    ) == _live_allocations(ledger, receipt.payment_id)
    return ledger


def _live_allocations(ledger: dict[str, list[dict[str, Any]]], payment_id: int) -> list[Any]:
    return sorted(
        (a["invoice_number"], a["amount_minor"])
        for a in ledger["allocations"]
        if a["payment_id"] == payment_id and not a["released"]
    )


# -- the crash server: a warm process that forks one child per recording ---------------------


class CrashServer:
    """`python -m tests.concurrency.payment_worker crash URL` for the length of a `with` block.
    Every answer is awaited at most ANSWER_SECONDS; leaving the block leaves no process."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._buffer = bytearray()
        # The server's stderr, shown if it dies; closed in __exit__.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CrashServer:
        environment = {k: v for k, v in os.environ.items() if k != KILL_AT_VARIABLE}
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.concurrency.payment_worker",
                "crash",
                self._url,
                str(CHILD_SECONDS),
            ],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            # Its own process group, so that a child it forked goes down with it on failure.
            start_new_session=True,
        )
        assert self._answer() == {"ready": True}
        return self

    def submit(
        self, draft: PaymentDraft, key: str, *, kill_at: str | None = None
    ) -> dict[str, Any]:
        """Record `draft` under `key` in a fresh child, dying at `kill_at`; how it ended."""
        assert self._process is not None and self._process.stdin is not None
        request = {"draft": draft_to_json(draft), "key": key, "kill_at": kill_at}
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        self._process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + ANSWER_SECONDS
        channel = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"the crash server gave no answer in {ANSWER_SECONDS:.0f} s")
            readable, _, _ = select.select([channel], [], [], min(left, 0.5))
            if not readable:
                continue
            chunk = os.read(channel, 65536)
            if not chunk:
                self._errors.seek(0)
                pytest.fail(
                    f"the crash server exited ({self._process.wait(5)}):\n"
                    + self._errors.read().decode(errors="replace")
                )
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        process = self._process
        if process is not None:
            assert process.stdin is not None
            process.stdin.close()  # end of input: the server exits once its child has
            try:
                process.wait(timeout=10 if kind is None else 0.5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # not yet reaped: the group is still ours
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        self._errors.close()
