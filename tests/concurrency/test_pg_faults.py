"""Promise 3 against a lost server connection (PostgreSQL): a connection terminated in the middle
of recording a payment, or lost after COMMIT was sent but before its answer came back, gives the
user one clear, retryable sentence, and retrying with the same idempotency key leaves exactly one
payment. The server itself is never restarted (other test processes share it); its backend for
the writer is terminated with pg_terminate_backend, which is what a restart does to each one."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from billing_desk.cli.app import run
from billing_desk.domain.errors import EnvironmentFault
from billing_desk.services.faults import PAUSE_AT_VARIABLE, PAUSE_FILE_VARIABLE
from billing_desk.services.invoices import run_invoice
from billing_desk.services.payments import PaymentDraft, PaymentReceipt, record_payment
from billing_desk.services.unit_of_work import Workspace
from tests.conftest import Database, pg_admin_connection
from tests.support import load_trips, seed_facility, seed_users, trip

ROOT = Path(__file__).resolve().parents[2]
RECEIVED = date(2026, 6, 2)
DRAFT = PaymentDraft(
    facility="STMARY",
    method="check",
    amount="50.00",
    received=RECEIVED,
    check_number="7001",
    routing_number="021000021",
    account_number="000123456789",
    auto_allocate=True,
)
CLI_PAYMENT = [
    "payment",
    "record",
    "--facility",
    "STMARY",
    "--method",
    "check",
    "--amount",
    "50.00",
    "--received",
    "2026-06-02",
    "--check-number",
    "7001",
    "--routing",
    "021000021",
    "--account",
    "000123456789",
    "--auto",
    "--json",
]
WAIT_SECONDS = 30.0


@pytest.fixture
def pg(fresh_database: Callable[[str], Database]) -> Database:
    """Users, STMARY and one open invoice for the payment to pay."""
    database = fresh_database("postgresql")
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin)
    clerk = database.workspace("clerk")
    load_trips(clerk, [trip("T1", fare="80.00"), trip("T2", fare="20.00", line=3)])
    run_invoice(clerk, "STMARY", "2026-05", issue_date=date(2026, 6, 1))
    return database


# -- a connection terminated mid-transaction --------------------------------------------------


@pytest.mark.parametrize("point", ["payment.claimed", "payment.inserted", "payment.completed"])
def test_a_terminated_connection_mid_payment_is_retryable_and_the_retry_records_once(
    pg: Database, point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "paused"
    monkeypatch.setenv(PAUSE_AT_VARIABLE, point)
    monkeypatch.setenv(PAUSE_FILE_VARIABLE, str(marker))
    clerk = pg.workspace("clerk")
    outcome: list[PaymentReceipt | BaseException] = []

    def submit() -> None:
        try:
            outcome.append(record_payment(clerk, DRAFT, "fault-key-1"))
        except BaseException as err:
            outcome.append(err)

    writer = threading.Thread(target=submit, daemon=True)
    writer.start()
    _await(marker.exists, f"the writer never reached {point}")
    _terminate_open_transaction(pg)
    marker.unlink()
    writer.join(WAIT_SECONDS)
    assert not writer.is_alive()
    monkeypatch.delenv(PAUSE_AT_VARIABLE)

    [error] = outcome
    assert isinstance(error, EnvironmentFault), error
    assert error.retryable
    _assert_one_sentence(error.message)
    assert _payments(pg) == []

    first = record_payment(clerk, DRAFT, "fault-key-1")
    assert not first.replayed
    again = record_payment(clerk, DRAFT, "fault-key-1")
    assert again.replayed and again.payment_id == first.payment_id
    assert again.to_record() == first.to_record()
    assert _payments(pg) == [first.payment_id]


def test_the_cli_exits_4_with_one_sentence_when_its_connection_is_terminated(
    pg: Database, tmp_path: Path
) -> None:
    marker = tmp_path / "paused"
    environment = {
        **os.environ,
        "BILLING_DESK_DB": pg.url,
        "BILLING_DESK_USER": "clerk",
        PAUSE_AT_VARIABLE: "payment.inserted",
        PAUSE_FILE_VARIABLE: str(marker),
    }
    command = [sys.executable, "-m", "billing_desk.cli.app", *CLI_PAYMENT]
    with subprocess.Popen(
        [*command, "--idempotency-key", "cli-fault-1"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            _await(lambda: marker.exists() or process.poll() is not None, "no pause")
            assert process.poll() is None, process.communicate()
            _terminate_open_transaction(pg)
            marker.unlink()
            out, err = process.communicate(timeout=WAIT_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 4, (out, err)
    assert out == ""
    _assert_one_sentence(err.strip())
    assert "try again" in err
    assert _payments(pg) == []

    # The same command again, as the user is told to: recorded once, then only replayed.
    env_retry = {k: v for k, v in environment.items() if k != PAUSE_AT_VARIABLE}
    retry = subprocess.run(
        [*command, "--idempotency-key", "cli-fault-1"],
        cwd=ROOT,
        env=env_retry,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert retry.returncode == 0, retry.stderr
    recorded = json.loads(retry.stdout)
    assert recorded["replayed"] is False
    assert _payments(pg) == [recorded["payment_id"]]


# -- a commit whose answer never arrives --------------------------------------------------------


def test_a_commit_whose_answer_is_lost_is_replayed_by_the_retry_never_duplicated(
    pg: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """The COMMIT reaches the server and commits, but the connection dies before the client
    hears so: the client cannot know, says so retryably, and the retry returns the payment."""
    with CommitSwallower(pg.url) as proxy:
        clerk = workspace_over(proxy.url, pg)
        outcome: list[PaymentReceipt | BaseException] = []

        def submit() -> None:
            try:
                outcome.append(record_payment(clerk, DRAFT, "lost-commit-1"))
            except BaseException as err:
                outcome.append(err)

        writer = threading.Thread(target=submit, daemon=True)
        writer.start()
        assert proxy.withheld.wait(WAIT_SECONDS), "the payment's COMMIT never went through"
        # Committed on the server while the client still waits for the answer.
        [payment_id] = _payments(pg)
        _terminate_backend(proxy.backend_pid(pg))
        proxy.release.set()
        writer.join(WAIT_SECONDS)
        assert not writer.is_alive()

    [error] = outcome
    assert isinstance(error, EnvironmentFault), error
    assert error.retryable
    _assert_one_sentence(error.message)

    replay = record_payment(pg.workspace("clerk"), DRAFT, "lost-commit-1")
    assert replay.replayed and replay.payment_id == payment_id
    assert _payments(pg) == [payment_id]

    # The CLI's retry says the same.
    code = run(
        ["--db", pg.url, "--user", "clerk", *CLI_PAYMENT, "--idempotency-key", "lost-commit-1"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["replayed"] is True
    assert _payments(pg) == [payment_id]


class CommitSwallower:
    """A TCP proxy in front of the test server that lets the COMMIT of a transaction which
    inserted a payment through to the server, then withholds the server's answer: `withheld`
    is set once the answer (so the commit) has happened; after `release` the client's side of
    the connection is cut without it."""

    def __init__(self, url: str) -> None:
        target = make_url(url)
        self._target = (target.host or "127.0.0.1", target.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self.url = target.set(
            host="127.0.0.1", port=port, query={"sslmode": "disable", "gssencmode": "disable"}
        ).render_as_string(hide_password=False)
        self.withheld = threading.Event()
        self.release = threading.Event()
        self._swallowed: list[int] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closing = False

    def __enter__(self) -> CommitSwallower:
        self._spawn(self._accept)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closing = True
        self.release.set()
        self._listener.close()
        for sock in self._sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(5)

    def backend_pid(self, database: Database) -> int:
        """The backend serving the swallowed connection, found by its client port."""
        with pg_admin_connection() as admin:
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND client_port = ANY(%s)",
                [database.url.rsplit("/", 1)[1], self._swallowed],
            ).fetchone()
        assert row is not None, "the swallowed connection has no backend"
        return int(row[0])

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            state = {"inserted": False, "committing": False}
            self._spawn(self._upstream, client, server, state)
            self._spawn(self._downstream, server, client, state)

    def _upstream(
        self, client: socket.socket, server: socket.socket, state: dict[str, Any]
    ) -> None:
        tail = b""
        while chunk := _recv(client):
            seen = tail + chunk
            if b"INSERT INTO payment " in seen:
                state["inserted"] = True
            if state["inserted"] and not self.withheld.is_set() and b"COMMIT\x00" in seen:
                state["committing"] = True
                self._swallowed = [server.getsockname()[1]]
            tail = seen[-64:]
            server.sendall(chunk)
        _close(server)

    def _downstream(
        self, server: socket.socket, client: socket.socket, state: dict[str, Any]
    ) -> None:
        while chunk := _recv(server):
            if state["committing"]:
                self.withheld.set()  # the server answered: the commit is done
                self.release.wait(WAIT_SECONDS)
                break
            client.sendall(chunk)
        _close(client)
        _close(server)


def workspace_over(url: str, database: Database) -> Workspace:
    """A clerk's workspace reaching the database through `url`, closed with the test's."""
    workspace = Database(database.backend, url).workspace("clerk")
    database.opened.append(workspace)
    return workspace


# -- helpers ----------------------------------------------------------------------------------


def _await(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(failure)
        time.sleep(0.01)


def _terminate_open_transaction(database: Database) -> None:
    """Terminate the one backend of the test database holding a transaction open."""
    name = database.url.rsplit("/", 1)[1]
    with pg_admin_connection() as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()",
            [name],
        ).fetchall()
    assert len(rows) == 1, f"expected one open transaction, found {rows}"
    _terminate_backend(int(rows[0][0]))


def _terminate_backend(pid: int) -> None:
    with pg_admin_connection() as admin:
        done = admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()
    assert done == (True,)


def _payments(database: Database) -> list[int]:
    name = database.url.rsplit("/", 1)[1]
    url = make_url(database.url).set(drivername="postgresql", database=name)
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        return [int(r[0]) for r in conn.execute("SELECT id FROM payment ORDER BY id").fetchall()]


def _assert_one_sentence(message: str) -> None:
    assert message and "\n" not in message, message
    assert message.endswith("."), message
    body = message[:-1]
    assert ". " not in body.replace("e.g. ", ""), f"more than one sentence: {message}"
    assert "Traceback" not in message
    assert "was lost before the work was confirmed" in message


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
