"""What bench scripts share: throwaway databases, timed windows with 1..N client processes,
statement timing and profiles, and the result table "figure | ours | baseline | ratio".

A bench script is run as `python bench/NAME.py` (so this module imports as `_common`). Client
processes are started with multiprocessing's spawn method, so a script's client set-up functions
must be module-level functions and its entry point must be guarded by
`if __name__ == "__main__"`. Figures are printed, never asserted.
"""

from __future__ import annotations

import cProfile
import io
import multiprocessing
import os
import platform
import pstats
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

PG_ADMIN_URL = os.environ.get(
    "BILLING_DESK_BENCH_PG",
    os.environ.get("BILLING_DESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
)

# A client's set-up: (client index, script arguments) -> (operation taking a sequence number,
# close). Module-level in the bench script, so a spawned process can import it.
Operation = Callable[[int], object]
ClientSetup = Callable[[int, Any], tuple[Operation, Callable[[], None]]]


# -- databases ------------------------------------------------------------------------------


def exit_on_sigterm() -> None:
    """Let SIGTERM unwind like Ctrl-C does, so throwaway databases and files are removed."""
    signal.signal(signal.SIGTERM, lambda _signal, _frame: sys.exit(128 + signal.SIGTERM))


def pg_url(database: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}"


def _pg_admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        raise SystemExit(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({err}); `make bench` starts the "
            "local cluster, or set BILLING_DESK_BENCH_PG."
        ) from err


@contextmanager
def throwaway_pg_database(tag: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards (even on error)."""
    name = f"bench_{tag}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _pg_admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_url(name)
    finally:
        with _pg_admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def temp_sqlite_file(tag: str) -> Iterator[Path]:
    """A path for a new SQLite file in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench_{tag}_") as folder:
        yield Path(folder) / f"{tag}.sqlite3"


def pg_server_version() -> str:
    with _pg_admin() as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings = {
            name: value
            for name, value in conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                (["fsync", "synchronous_commit", "autovacuum"],),
            )
        }
    version = row[0] if row else "?"
    shown = ", ".join(f"{name}={value}" for name, value in settings.items())
    return f"PostgreSQL {version} ({shown})"


def machine_description() -> str:
    return (
        f"{platform.system()} {platform.machine()}, nproc={os.cpu_count()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def code_version() -> str:
    """The commit measured, and whether the working tree differs from it under src/."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit}" + (f" with {len(changed)} changed file(s) in src/" if changed else "")


def load_average() -> str:
    """The 1-minute load average beside the core count: other work on the machine skews every
    figure, the ratio less than the rates."""
    try:
        one, _five, _fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.1f} on {os.cpu_count()} cores"


# -- timed runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """Operations completed inside timed windows, summed over clients and rounds; the rate is
    operations per second of window."""

    operations: int
    seconds: float  # total window time: rounds x window length
    clients: int
    round_rates: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else 0.0


def _client_main(index: int, commands: Any, results: Any) -> None:
    """A client process: set up operations, run them in timed windows, close them; until told
    to stop. Every command is answered with (index, count, error)."""
    operations: dict[str, Operation] = {}
    seqs: dict[str, int] = {}
    closers: list[Callable[[], None]] = []

    def close_all() -> None:
        while closers:
            closers.pop()()
        operations.clear()

    results.put((index, 0, None))  # started: imports done
    while (command := commands.get()) is not None:
        try:
            kind, *rest = command
            done = 0
            if kind == "setup":
                setups, args, warmup = rest
                close_all()
                for name, setup in setups:
                    operation, close = setup(index, args)
                    closers.append(close)
                    for seq in range(warmup):
                        operation(seq)
                    operations[name], seqs[name] = operation, warmup
            elif kind == "run":
                name, start, end = rest
                operation, seq = operations[name], seqs[name]
                time.sleep(max(0.0, start - time.monotonic()))
                while True:
                    operation(seq)
                    seq += 1
                    if time.monotonic() > end:
                        break  # finished after the window closed: not counted
                    done += 1
                seqs[name] = seq
            elif kind == "close":
                close_all()
            results.put((index, done, None))
        except BaseException:
            results.put((index, 0, traceback.format_exc()))
    close_all()


class ClientPool:
    """Up to `size` client processes (multiprocessing, spawn), started once and reused by every
    measurement: a spawned interpreter takes seconds to import the application."""

    def __init__(self, size: int, *, timeout: float = 300.0) -> None:
        context = multiprocessing.get_context("spawn")
        self.timeout = timeout
        self._results = context.Queue()
        self._commands = [context.Queue() for _ in range(size)]
        self._processes = [
            context.Process(
                target=_client_main,
                args=(index, self._commands[index], self._results),
                daemon=True,
            )
            for index in range(size)
        ]
        started = time.monotonic()
        for process in self._processes:
            process.start()
        self._collect(size)
        self.startup_seconds = time.monotonic() - started

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for queue in self._commands:
            queue.put(None)
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()

    def _send(self, clients: int, command: tuple[Any, ...]) -> list[int]:
        for queue in self._commands[:clients]:
            queue.put(command)
        return self._collect(clients)

    def _collect(self, count: int) -> list[int]:
        outcomes = [self._results.get(timeout=self.timeout) for _ in range(count)]
        failures = [error for _, _, error in outcomes if error]
        if failures:
            raise RuntimeError(f"a bench client failed:\n{failures[0]}")
        return [done for _, done, _ in outcomes]

    def measure(
        self,
        setups: Sequence[tuple[str, ClientSetup]],
        args: Any,
        *,
        clients: int,
        seconds: float,
        rounds: int = 1,
        warmup: int = 10,
    ) -> dict[str, Measured]:
        """The first `clients` processes each set up every named operation, `setup(index,
        args)`, and warm it up with `warmup` operations. Then, `rounds` times, each operation
        in turn gets a window of `seconds` that all clients start and end together, counting
        the operations completed inside it (CLOCK_MONOTONIC is system-wide, so the window is
        shared). Alternating the operations round by round spreads drift in the machine's load
        over all of them."""
        if not 1 <= clients <= len(self._processes):
            raise ValueError(f"the pool has {len(self._processes)} clients, not {clients}")
        counts: dict[str, list[int]] = {name: [] for name, _ in setups}
        self._send(clients, ("setup", list(setups), args, warmup))
        try:
            for _round in range(rounds):
                for name, _setup in setups:
                    start = time.monotonic() + 0.1
                    done = self._send(clients, ("run", name, start, start + seconds))
                    counts[name].append(sum(done))
        finally:
            self._send(clients, ("close",))
        return {
            name: Measured(
                sum(per_round),
                seconds * len(per_round),
                clients,
                tuple(done / seconds for done in per_round),
            )
            for name, per_round in counts.items()
        }


# -- profiles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    operations: int
    seconds: float
    stats: pstats.Stats

    def top(self, pattern: str = "billing_desk|sqlalchemy", limit: int = 15) -> str:
        """The `limit` entries with the largest cumulative time whose file matches `pattern`."""
        out = io.StringIO()
        self.stats.stream = out  # type: ignore[attr-defined]
        self.stats.sort_stats("cumulative").print_stats(pattern, limit)
        lines = out.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        return "\n".join(_short_path(line) for line in lines[start:] if line.strip())

    def self_time_by_area(
        self, areas: Sequence[tuple[str, Sequence[str]]]
    ) -> list[tuple[str, float]]:
        """Own (exclusive) time summed per area; an entry belongs to the first area one of whose
        markers occurs in its file name or function name; the rest is "other"."""
        totals: dict[str, float] = {name: 0.0 for name, _ in areas}
        totals["other (stdlib, interpreter)"] = 0.0
        raw: dict[Any, Any] = self.stats.stats  # type: ignore[attr-defined]
        for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in raw.items():
            where = f"{filename} {function}"
            for name, markers in areas:
                if any(marker in where for marker in markers):
                    totals[name] += own
                    break
            else:
                totals["other (stdlib, interpreter)"] += own
        return sorted(totals.items(), key=lambda item: -item[1])


def _short_path(line: str) -> str:
    """Profile lines name files from their package down (sqlalchemy/orm/session.py)."""
    return re.sub(r"\S*/(?:site-packages|src)/", "", line)


def profile_operations(operation: Operation, count: int, *, first_seq: int = 0) -> Profile:
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for seq in range(first_seq, first_seq + count):
        operation(seq)
    profiler.disable()
    seconds = time.perf_counter() - started
    return Profile(count, seconds, pstats.Stats(profiler))


@dataclass
class StatementTimes:
    """Time spent inside the driver's execute, per statement text, while `statement_timer` is
    active: the database's share of an operation, round trips included, without profiler
    overhead."""

    seconds: dict[str, float]
    calls: dict[str, int]

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def slowest(self, limit: int) -> list[tuple[str, float, int]]:
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])[:limit]
        return [(text, seconds, self.calls[text]) for text, seconds in ranked]


@contextmanager
def statement_timer(engine: Engine, width: int = 90) -> Iterator[StatementTimes]:
    """Time every statement `engine` executes inside the block, keyed by its first `width`
    characters (whitespace collapsed)."""
    times = StatementTimes({}, {})

    def before(connection: Any, *_args: Any) -> None:
        connection.info["bench_started"] = time.perf_counter()

    def after(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        elapsed = time.perf_counter() - connection.info.pop("bench_started", time.perf_counter())
        key = " ".join(statement.split())[:width]
        times.seconds[key] = times.seconds.get(key, 0.0) + elapsed
        times.calls[key] = times.calls.get(key, 0) + 1

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield times
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


@dataclass
class FlushCount:
    count: int = 0


@contextmanager
def flush_counter() -> Iterator[FlushCount]:
    """Count the ORM flushes that write something, in any session, inside the block."""
    counted = FlushCount()

    def after_flush(*_args: Any) -> None:
        counted.count += 1

    event.listen(Session, "after_flush", after_flush)
    try:
        yield counted
    finally:
        event.remove(Session, "after_flush", after_flush)


@dataclass(frozen=True)
class Timing:
    """`count` operations run back to back in this process: wall-clock seconds, and the CPU
    seconds this process used (its own Python and driver work, not the database server's; less
    disturbed than wall time by other load on the machine)."""

    count: int
    wall_seconds: float
    cpu_seconds: float


def time_operations(operation: Operation, count: int, *, first_seq: int = 0) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    for seq in range(first_seq, first_seq + count):
        operation(seq)
    return Timing(count, time.perf_counter() - wall, time.process_time() - cpu)


# -- output ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    figure: str
    ours: float
    baseline: float
    unit: str = "ops/s"

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


def format_table(rows: Sequence[Row]) -> str:
    header = ("figure", "ours", "baseline", "ratio")
    body = [
        (r.figure, f"{r.ours:,.1f} {r.unit}", f"{r.baseline:,.1f} {r.unit}", f"{r.ratio:.3f}")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]

    def render(cells: Sequence[str]) -> str:
        return " | ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(line) for line in body)])


def say(text: str = "") -> None:
    print(text, flush=True)


if __name__ == "__main__":
    # `make bench` runs every bench/*.py, this module included.
    say("bench/_common.py: helpers shared by the bench scripts; nothing to measure here.")
