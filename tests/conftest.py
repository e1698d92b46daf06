"""Fixtures shared by the whole suite: a fresh database per test on each backend.

PostgreSQL tests run against the local server in throwaway databases cloned from a migrated
template made once per test process. A missing server is an error, never a skip: `make test`
starts it, and CI must prove both backends.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

# Qt draws offscreen in the tests (set before anything imports it), on one 1600 x 1000 screen
# at 96 dpi, so that window sizes and screenshots do not depend on the machine.
os.environ.setdefault(
    "QT_QPA_PLATFORM",
    f"offscreen:configfile={Path(__file__).parent / 'data' / 'qt' / 'offscreen.json'}",
)

import psycopg
import pytest
import time_machine
from psycopg import sql

from billing_desk.services.clock import Clock, system_clock
from billing_desk.services.unit_of_work import Workspace, open_workspace

PG_ADMIN_URL = os.environ.get(
    "BILLING_DESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]
# The clock guard: with BILLING_DESK_TEST_CLOCK set, this process's wall clock (datetime.now,
# date.today, time.time) is moved to that moment and runs on from there, so that a test which
# silently depends on the hour or the day fails whenever the suite runs. `weekend-night` is the
# latest Saturday 23:30 UTC before now; an ISO moment with its offset is taken as given.
# `make test` runs the tests marked `clock` so, after the main run.
TEST_CLOCK = os.environ.get("BILLING_DESK_TEST_CLOCK", "").strip()
# Tests run the application's clock at moments they choose (tests/clocks.py), months from the
# database server's, and the clock guard above moves it by up to a week: the shared databases
# they set up accept a login's stated time of a payment that far off the server's clock (20
# years). The production default (5 minutes) is tested by tests/security/test_insider.py on a
# database set up with it.
os.environ.setdefault("BILLING_DESK_MAX_CLOCK_SKEW", str(20 * 366 * 24 * 3600))


def moved_wall_clock(spec: str, now: datetime) -> datetime:
    """The moment a BILLING_DESK_TEST_CLOCK value names, seen from `now`."""
    if spec == "weekend-night":
        night = now.astimezone(UTC).replace(hour=23, minute=30, second=0, microsecond=0)
        night -= timedelta(days=(night.weekday() - 5) % 7)
        return night if night <= now else night - timedelta(days=7)
    moment = datetime.fromisoformat(spec)
    if moment.tzinfo is None:
        raise ValueError(f"BILLING_DESK_TEST_CLOCK={spec!r} needs a UTC offset")
    return moment


@pytest.fixture(scope="session", autouse=True)
def _wall_clock_guard() -> Iterator[None]:
    if not TEST_CLOCK:
        yield
        return
    with time_machine.travel(moved_wall_clock(TEST_CLOCK, datetime.now(UTC)), tick=True):
        yield


def pg_admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({err}). The suite needs it: "
            "`make test` starts the local cluster; or set BILLING_DESK_TEST_PG.",
            pytrace=False,
        )


def pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


def _worker_tag() -> str:
    return f"{os.getpid()}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    open_workspace(str(path), "nobody").close()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"bd_template_{_worker_tag()}"
    with pg_admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    open_workspace(pg_url(name), "nobody").close()
    yield name
    with pg_admin_connection() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@dataclass
class Database:
    """A fresh, migrated, empty billing database for one test."""

    backend: str
    url: str
    opened: list[Workspace] = field(default_factory=list)

    def workspace(
        self,
        user: str | None = "admin",
        *,
        clock: Clock = system_clock,
        zone: tzinfo | None = None,
    ) -> Workspace:
        """A workspace acting as `user` (at the moments `clock` gives, its today reckoned in
        `zone`, by default this machine's), closed when the test ends."""
        workspace = open_workspace(self.url, user, migrate=False, clock=clock, zone=zone)
        self.opened.append(workspace)
        return workspace

    def close(self) -> None:
        for workspace in self.opened:
            workspace.close()
        self.opened.clear()


def _fresh_sqlite(template: Path, folder: Path) -> Database:
    path = folder / f"billing-{uuid.uuid4().hex[:8]}.sqlite3"
    shutil.copyfile(template, path)
    return Database("sqlite", str(path))


@pytest.fixture
def fresh_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], Database]]:
    """Make empty databases on demand: `fresh_database("postgresql")`."""
    made: list[str] = []
    databases: list[Database] = []

    def make(backend: str) -> Database:
        database = _make(backend)
        databases.append(database)
        return database

    def _make(backend: str) -> Database:
        if backend == "sqlite":
            return _fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
        template = request.getfixturevalue("pg_template")
        name = f"bd_test_{uuid.uuid4().hex[:12]}"
        with pg_admin_connection() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        made.append(name)
        return Database("postgresql", pg_url(name))

    yield make
    for database in databases:
        database.close()
    if made:
        _fail_on_connections_left_open(made)
        with pg_admin_connection() as conn:
            for name in made:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _fail_on_connections_left_open(databases: list[str]) -> None:
    """A connection a test leaves open is closed by the garbage collector during some later
    test, whose ResourceWarning then fails that test instead: name the test that leaked."""
    deadline = time.monotonic() + 3.0
    while True:
        with pg_admin_connection() as conn:
            left = conn.execute(
                "SELECT datname, usename, application_name, state, left(query, 200) "
                "FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                (databases,),
            ).fetchall()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        pytest.fail(f"the test left connections open to its database: {left}", pytrace=False)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, fresh_database: Callable[[str], Database]) -> Database:
    """An empty migrated database, once per backend."""
    return fresh_database(request.param)
