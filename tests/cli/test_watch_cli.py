"""`billing-desk watch`: events printed as they commit, a clean exit on Ctrl-C, and a plain
refusal on SQLite."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from billing_desk.cli.app import run
from billing_desk.cli.watch import _json_line, _line
from billing_desk.services.live import ConnectionLost, LiveEvent, Reconnected
from billing_desk.services.payments import PaymentDraft, record_payment
from tests.conftest import Database
from tests.support import seed_facility, seed_users

ROOT = Path(__file__).resolve().parents[2]
CASH = PaymentDraft(facility="STMARY", method="cash", amount="12.50", received=date(2026, 6, 2))


@pytest.fixture
def pg(fresh_database: Callable[[str], Database]) -> Database:
    database = fresh_database("postgresql")
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin)
    return database


def test_watch_prints_a_payment_as_it_is_recorded(
    pg: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    clerk = pg.workspace("clerk")
    done = threading.Event()
    recorded: list[int] = []

    def keep_paying() -> None:
        # The watch starts listening at some point after run() begins: pay until it has heard.
        while not done.wait(0.2):
            recorded.append(record_payment(clerk, CASH, f"w-{uuid.uuid4().hex}").payment_id)

    payer = threading.Thread(target=keep_paying, daemon=True)
    payer.start()
    try:
        code = run(
            ["--db", pg.url, "--user", "auditor", "watch", "--kinds", "payment", "--count", "1"]
        )
    finally:
        done.set()
        payer.join(10)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Watching payment events" in err
    lines = out.splitlines()
    assert len(lines) == 1
    assert "payment" in lines[0] and "STMARY" in lines[0] and "by clerk" in lines[0]
    assert any(f"payment {pid} " in lines[0] for pid in recorded)


def test_watch_runs_until_ctrl_c_printing_json_lines(pg: Database) -> None:
    environment = {**os.environ, "BILLING_DESK_DB": pg.url, "BILLING_DESK_USER": "auditor"}
    with subprocess.Popen(
        [sys.executable, "-m", "billing_desk.cli.app", "watch", "--json"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None and process.stdout is not None
            assert "Watching" in _line_within(process.stderr, 30.0)
            receipt = record_payment(pg.workspace("clerk"), CASH, "watch-json-1")
            event = json.loads(_line_within(process.stdout, 5.0))
            assert {k: event[k] for k in ("type", "kind", "entity_id", "facility", "missed")} == {
                "type": "event",
                "kind": "payment",
                "entity_id": str(receipt.payment_id),
                "facility": "STMARY",
                "missed": False,
            }
            process.send_signal(signal.SIGINT)
            assert process.wait(10) == 0
            assert process.stderr.read() == ""
        finally:
            if process.poll() is None:
                process.kill()


def test_watch_on_sqlite_says_it_needs_postgresql(
    fresh_database: Callable[[str], Database], capsys: pytest.CaptureFixture[str]
) -> None:
    database = fresh_database("sqlite")
    seed_users(database.workspace("admin"))
    code = run(["--db", database.url, "--user", "clerk", "watch"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.strip().count("\n") == 0
    assert "Live updates need a shared PostgreSQL database" in err


def test_watch_refuses_an_unknown_kind(pg: Database, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--db", pg.url, "--user", "clerk", "watch", "--kinds", "payments"])
    assert code == 2
    assert "choose from payment, statement, alert" in capsys.readouterr().err


def test_watch_says_when_it_lost_and_regained_the_connection() -> None:
    since = datetime(2026, 6, 2, 9, 30, 5, tzinfo=UTC)
    assert _line(ConnectionLost(since, "terminating connection")) == (
        "2026-06-02 09:30:05  connection lost (terminating connection); reconnecting"
    )
    assert _line(Reconnected(since, 1)) == (
        "reconnected; 1 event follows, committed since 2026-06-02 09:30:05"
    )
    missed = LiveEvent("payment", 9, 1, "STMARY", "4", since, "clerk", missed=True)
    assert _line(missed).endswith("(audit entry 9)  (missed)")
    assert json.loads(_json_line(Reconnected(since, 3))) == {
        "type": "reconnected",
        "since": "2026-06-02T09:30:05+00:00",
        "missed_count": 3,
    }


def _line_within(stream: object, seconds: float) -> str:
    """One line from a child's pipe, failing the test if none comes in time."""
    fileno = stream.fileno()  # type: ignore[attr-defined]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fileno], [], [], 0.1)
        if readable:
            line: str = stream.readline()  # type: ignore[attr-defined]
            return line
    pytest.fail(f"no line within {seconds} s")
