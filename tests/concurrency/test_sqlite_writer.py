"""SQLite writer discipline: read-then-write transactions from several processes never fail with
"database is locked" when they begin IMMEDIATE (the application's engine), and do when they begin
DEFERRED (the negative control, proving the first test can fail)."""

from __future__ import annotations

import multiprocessing
import queue
import sqlite3
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from billing_desk.db.engine import SQLITE_BEGIN, make_engine, resolve_location

WORKERS = 4
TRANSACTIONS_PER_WORKER = 200
# Between the read and the write, so that another writer can slip in: widens the race window.
PAUSE_BETWEEN_READ_AND_WRITE = 0.002
# After a commit, so that the writers take turns rather than one holding the lock throughout.
PAUSE_BETWEEN_TRANSACTIONS = 0.001
# The negative control stops at its first error; this only bounds a control that never fails.
CONTROL_TRANSACTIONS_PER_WORKER = 5_000
CONTROL_DEADLINE_SECONDS = 20.0
# How long a crew of processes may take in all before it is killed and the test fails.
CREW_TIMEOUT_SECONDS = 120.0

pytestmark = pytest.mark.slow


def test_immediate_writers_never_see_a_locked_database(tmp_path: Path) -> None:
    path = _counter_database(tmp_path)
    reports = _run_crew(
        _increment_counter,
        [
            (str(path), "IMMEDIATE", TRANSACTIONS_PER_WORKER, CREW_TIMEOUT_SECONDS)
            for _ in range(WORKERS)
        ],
    )
    locked = [error for report in reports for error in report["locked_errors"]]
    committed = sum(report["committed"] for report in reports)
    interleaved = sum(report["interleaved"] for report in reports)
    print(f"\nIMMEDIATE: {committed} commits, {len(locked)} locked, {interleaved} interleavings")

    assert locked == [], f"BEGIN IMMEDIATE writers saw 'database is locked': {locked[:5]}"
    assert committed == WORKERS * TRANSACTIONS_PER_WORKER
    assert _counter_value(path) == WORKERS * TRANSACTIONS_PER_WORKER, "an update was lost"
    # The writers really took turns, so the test above was not vacuous.
    assert interleaved > 0, "the worker processes never overlapped"


def test_deferred_writers_do_see_a_locked_database(tmp_path: Path) -> None:
    """Negative control: the same read-then-write with a plain deferred BEGIN."""
    path = _counter_database(tmp_path)
    reports = _run_crew(
        _increment_counter,
        [
            (str(path), "DEFERRED", CONTROL_TRANSACTIONS_PER_WORKER, CONTROL_DEADLINE_SECONDS)
            for _ in range(WORKERS)
        ],
    )
    locked = [error for report in reports for error in report["locked_errors"]]
    committed = sum(report["committed"] for report in reports)
    print(f"\nDEFERRED: {committed} commits, {len(locked)} locked: {sorted(set(locked))}")

    assert locked, (
        f"no 'database is locked' error in {committed} deferred read-then-write transactions "
        f"within {CONTROL_DEADLINE_SECONDS:.0f} s; the negative control failed to fail"
    )
    # SQLite refuses the stale writer rather than losing its update.
    assert _counter_value(path) == committed


def _counter_database(folder: Path) -> Path:
    path = folder / "writers.sqlite3"
    engine = make_engine(resolve_location(str(path)))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)"))
            conn.execute(text("INSERT INTO counter (id, value) VALUES (1, 0)"))
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        engine.dispose()
    return path


def _counter_value(path: Path) -> int:
    engine = make_engine(resolve_location(str(path)))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT value FROM counter WHERE id = 1")).scalar_one())
    finally:
        engine.dispose()


# -- in the worker processes ----------------------------------------------------------------


def _increment_counter(
    path: str,
    begin: str,
    transactions: int,
    deadline_seconds: float,
    *,
    stop: Event,
    ready: Callable[[], None],
) -> dict[str, Any]:
    """Add one to the counter `transactions` times, each a read then a write in one transaction.
    A deferred crew stops at its first "database is locked": one is all the control needs."""
    engine = make_engine(resolve_location(path))
    if begin != "IMMEDIATE":
        engine = engine.execution_options(**{SQLITE_BEGIN: begin})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        ready()
        deadline = time.monotonic() + deadline_seconds
        committed = interleaved = 0
        locked_errors: list[str] = []
        last_written: int | None = None
        for _ in range(transactions):
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                with engine.begin() as conn:
                    value = int(
                        conn.execute(text("SELECT value FROM counter WHERE id = 1")).scalar_one()
                    )
                    time.sleep(PAUSE_BETWEEN_READ_AND_WRITE)
                    conn.execute(
                        text("UPDATE counter SET value = :value WHERE id = 1"), {"value": value + 1}
                    )
            except OperationalError as err:
                if not _is_locked(err):
                    raise
                locked_errors.append(_describe(err))
                if begin != "IMMEDIATE":
                    stop.set()
                continue
            committed += 1
            time.sleep(PAUSE_BETWEEN_TRANSACTIONS)
            if last_written is not None and value != last_written:
                interleaved += 1  # another process wrote since this one's last commit
            last_written = value + 1
        return {"committed": committed, "interleaved": interleaved, "locked_errors": locked_errors}
    finally:
        engine.dispose()


def _is_locked(err: OperationalError) -> bool:
    return isinstance(err.orig, sqlite3.OperationalError) and "database is locked" in str(err.orig)


def _describe(err: OperationalError) -> str:
    name = getattr(err.orig, "sqlite_errorname", "?")
    return f"{type(err.orig).__name__}({name}): {err.orig}"


# -- running a crew of processes ------------------------------------------------------------


def _run_crew(
    work: Callable[..., dict[str, Any]], arguments: Sequence[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Run `work(*arguments[i], stop=..., ready=...)` in one spawned process per entry, released
    together once all are ready; return their reports. Fails the test, leaving no process behind,
    when a worker raises, dies or overruns CREW_TIMEOUT_SECONDS."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    start, stop = context.Event(), context.Event()
    processes = [
        context.Process(
            target=_crew_member,
            args=(work, number, args, messages, start, stop),
            name=f"sqlite-writer-{number}",
            daemon=True,
        )
        for number, args in enumerate(arguments)
    ]
    deadline = time.monotonic() + CREW_TIMEOUT_SECONDS
    reports: dict[int, dict[str, Any]] = {}
    finished = False
    try:
        for process in processes:
            process.start()
        _await(messages, processes, deadline, "ready", {})
        start.set()
        _await(messages, processes, deadline, "done", reports)
        finished = True
    finally:
        _reap(processes, patience=10.0 if finished else 0.0)
        messages.close()
    return [reports[number] for number in range(len(processes))]


def _crew_member(
    work: Callable[..., dict[str, Any]],
    number: int,
    args: tuple[Any, ...],
    messages: Any,
    start: Event,
    stop: Event,
) -> None:
    def ready() -> None:
        messages.put(("ready", number, None))
        if not start.wait(CREW_TIMEOUT_SECONDS):
            raise TimeoutError("never released by the parent")

    try:
        messages.put(("done", number, work(*args, stop=stop, ready=ready)))
    except BaseException:
        messages.put(("crashed", number, traceback.format_exc()))


def _await(
    messages: Any,
    processes: Sequence[multiprocessing.process.BaseProcess],
    deadline: float,
    wanted: str,
    payloads: dict[int, Any],
) -> None:
    seen: set[int] = set()
    while len(seen) < len(processes):
        try:
            kind, number, payload = messages.get(timeout=0.5)
        except queue.Empty:
            dead = [p for i, p in enumerate(processes) if i not in seen and not p.is_alive()]
            if dead and messages.empty():
                codes = ", ".join(f"{p.name} exit code {p.exitcode}" for p in dead)
                pytest.fail(f"worker died before it was {wanted}: {codes}")
            if time.monotonic() > deadline:
                pytest.fail(f"workers overran {CREW_TIMEOUT_SECONDS:.0f} s waiting for '{wanted}'")
            continue
        if kind == "crashed":
            pytest.fail(f"worker {number} failed:\n{payload}")
        if kind == wanted:
            seen.add(number)
            payloads[number] = payload


def _reap(processes: Sequence[multiprocessing.process.BaseProcess], *, patience: float) -> None:
    """Let finished workers exit; kill whatever is left (at once when the crew failed)."""
    for process in processes:
        if process.pid is not None:
            process.join(timeout=patience)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(timeout=10)
