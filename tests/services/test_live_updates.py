"""Live updates on PostgreSQL: a payment recorded anywhere reaches a subscriber at once, the
notification itself names nothing but an audit entry, what row security hides is dropped, and a
dropped connection comes back and reports what was missed."""

from __future__ import annotations

import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from billing_desk.db.live_updates import CHANNEL, install_live_updates, live_updates_installed
from billing_desk.domain.errors import BadInput
from billing_desk.services.invoices import run_invoice
from billing_desk.services.live import (
    ConnectionLost,
    LiveEvent,
    LiveUpdate,
    Reconnected,
    Subscription,
    parse_kinds,
    subscribe,
)
from billing_desk.services.payments import PaymentDraft, PaymentReceipt, record_payment
from billing_desk.services.unit_of_work import UnitOfWork, Workspace
from tests.conftest import PG_ADMIN_URL, Database, pg_admin_connection
from tests.support import load_trips, seed_facility, seed_users, trip

RECEIVED = date(2026, 6, 2)


@pytest.fixture
def pg(fresh_database: Callable[[str], Database]) -> Database:
    """A migrated PostgreSQL database with users, STMARY and OAKVIEW, and live updates set up
    as the shared-mode setup will set them up."""
    database = fresh_database("postgresql")
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin, "STMARY")
    seed_facility(admin, "OAKVIEW")
    with admin.engine.begin() as connection:
        assert install_live_updates(connection)
        assert install_live_updates(connection)  # idempotent
        assert live_updates_installed(connection)
    return database


def cash(facility: str = "STMARY", amount: str = "25.00", *, auto: bool = False) -> PaymentDraft:
    return PaymentDraft(
        facility=facility, method="cash", amount=amount, received=RECEIVED, auto_allocate=auto
    )


def pay(workspace: Workspace, facility: str = "STMARY", **kwargs: Any) -> PaymentReceipt:
    return record_payment(workspace, cash(facility, **kwargs), f"live-{uuid.uuid4().hex}")


class Feed:
    """A subscription iterated on a worker thread, as the GUI will; updates land in a queue."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.updates: queue.Queue[LiveUpdate] = queue.Queue()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for update in self.subscription:
                self.updates.put(update)
        except BaseException as err:
            self.errors.append(err)

    def next(self, seconds: float) -> LiveUpdate:
        try:
            return self.updates.get(timeout=seconds)
        except queue.Empty:
            pytest.fail(f"no live update within {seconds} s (errors: {self.errors})")

    def quiet_for(self, seconds: float) -> None:
        try:
            extra = self.updates.get(timeout=seconds)
        except queue.Empty:
            return
        pytest.fail(f"unexpected update {extra}")

    def stop(self) -> None:
        self.subscription.stop()
        self._thread.join(5)
        assert not self._thread.is_alive(), "stop() did not end the iteration"
        assert self.errors == []


@pytest.fixture
def feeds() -> Iterator[Callable[[Subscription], Feed]]:
    started: list[Feed] = []

    def start(subscription: Subscription) -> Feed:
        feed = Feed(subscription)
        started.append(feed)
        return feed

    yield start
    for feed in started:
        feed.subscription.stop()


def test_a_payment_reaches_a_subscriber_within_a_second(
    pg: Database, feeds: Callable[[Subscription], Feed]
) -> None:
    feed = feeds(subscribe(pg.workspace("auditor")))
    receipt = pay(pg.workspace("clerk"))
    recorded = time.monotonic()
    event = feed.next(1.0)
    assert time.monotonic() - recorded < 1.0
    assert isinstance(event, LiveEvent)
    assert (event.kind, event.entity_id, event.facility, event.recorded_by, event.missed) == (
        "payment",
        str(receipt.payment_id),
        "STMARY",
        "clerk",
        False,
    )
    # One event per payment, not one per row the request wrote.
    feed.quiet_for(0.5)
    feed.stop()


def test_one_notification_per_payment_carrying_only_its_kind_and_entry(pg: Database) -> None:
    """NOTIFY reaches every listener whatever row security says: the payload must say nothing
    of the facility, the amount or the payer; only which audit entry to read."""
    admin = pg.workspace("admin")
    clerk = pg.workspace("clerk")
    load_trips(clerk, [trip(f"OV{n}", facility="OAKVIEW", line=n + 2) for n in range(3)])
    run_invoice(clerk, "OAKVIEW", "2026-05", issue_date=date(2026, 6, 1))
    with psycopg.connect(_url(admin), autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        receipt = pay(clerk, "OAKVIEW", amount="60.00", auto=True)
        assert receipt.allocations  # the request wrote allocations, history, invoice moves
        payloads = [n.payload for n in listener.notifies(timeout=1.0)]
        entry = listener.execute(
            "SELECT id, facility_id FROM audit_entry "
            "WHERE entity_type = 'payment' AND entity_id = %s AND before IS NULL",
            [str(receipt.payment_id)],
        ).fetchone()
    assert entry is not None
    assert payloads == [f"payment:{entry[0]}"]
    assert re.fullmatch(r"payment:\d+", payloads[0])
    assert "OAKVIEW" not in payloads[0] and "60" not in payloads[0]


def test_statement_imports_and_alerts_are_announced_once_per_request(pg: Database) -> None:
    admin = pg.workspace("admin")

    def raise_two_alerts(unit: UnitOfWork) -> None:
        unit.record_event("alert.raise", "alert", "1", detail={"rule": "outlier"})
        unit.record_event("alert.raise", "alert", "2", detail={"rule": "velocity"})

    def import_statement(unit: UnitOfWork) -> None:
        unit.record_event("statement.import", "statement", "7", detail={"lines": 2})

    with psycopg.connect(_url(admin), autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        admin.write(raise_two_alerts, action="alert.raise")
        admin.write(import_statement, action="statement.import")
        admin.write(lambda unit: unit.record_event("report.print", "report", "1"), action="x")
        payloads = [n.payload for n in listener.notifies(timeout=1.0)]
    assert [p.split(":")[0] for p in payloads] == ["alert", "statement"]

    # A subscriber reads them back with what the entries say.
    subscription = subscribe(admin, parse_kinds("alert,statement"), after_entry_id=0)
    with subscription:
        caught = _take(subscription, 2)
    assert [(e.kind, e.entity_id, e.missed) for e in caught] == [
        ("alert", "1", True),
        ("statement", "7", True),
    ]


def test_what_row_security_hides_is_dropped_silently(
    pg: Database, feeds: Callable[[Subscription], Feed]
) -> None:
    """A listener whose database role may read only STMARY's entries hears of an OAKVIEW
    payment (NOTIFY goes to all) but never learns anything of it."""
    with RestrictedRole(pg, "STMARY") as url:
        clerk_in_stmary = workspace_as_role(url, pg)
        feed = feeds(subscribe(clerk_in_stmary))
        clerk = pg.workspace("clerk")
        pay(clerk, "OAKVIEW")
        feed.quiet_for(0.7)
        receipt = pay(clerk, "STMARY")
        event = feed.next(1.0)
        assert isinstance(event, LiveEvent)
        assert (event.facility, event.entity_id) == ("STMARY", str(receipt.payment_id))
        feed.stop()


def test_a_dropped_connection_comes_back_and_reports_what_was_missed(pg: Database) -> None:
    clerk = pg.workspace("clerk")
    subscription = subscribe(pg.workspace("auditor"))
    updates = iter(subscription)
    try:
        first = pay(clerk)
        event = next(updates)
        assert isinstance(event, LiveEvent) and event.entity_id == str(first.payment_id)

        # The listener's backend goes away (as in a server restart); while nobody listens, a
        # payment is recorded. The generator is suspended meanwhile, so it cannot hear it.
        with pg_admin_connection() as admin:
            gone = admin.execute(
                "SELECT pg_terminate_backend(%s, 5000)", [subscription.backend_pid]
            ).fetchone()
        assert gone == (True,)
        while_down = pay(clerk, "OAKVIEW")

        lost = next(updates)
        assert isinstance(lost, ConnectionLost)
        back = next(updates)
        assert isinstance(back, Reconnected)
        assert back.missed_count == 1 and back.since == lost.at
        missed = next(updates)
        assert isinstance(missed, LiveEvent)
        assert (missed.entity_id, missed.facility, missed.missed) == (
            str(while_down.payment_id),
            "OAKVIEW",
            True,
        )

        # Listening again: the next payment arrives live, and nothing comes twice.
        after = pay(clerk)
        event = next(updates)
        assert isinstance(event, LiveEvent)
        assert (event.entity_id, event.missed) == (str(after.payment_id), False)
    finally:
        subscription.close()


def test_stop_ends_a_quiet_subscription_from_another_thread(
    pg: Database, feeds: Callable[[Subscription], Feed]
) -> None:
    feed = feeds(subscribe(pg.workspace("auditor")))
    started = time.monotonic()
    feed.stop()
    assert time.monotonic() - started < 2.0


def test_a_database_without_the_trigger_gets_it_from_its_first_subscriber(
    fresh_database: Callable[[str], Database],
) -> None:
    database = fresh_database("postgresql")
    admin = database.workspace("admin")
    seed_users(admin)
    seed_facility(admin)
    with admin.engine.connect() as connection:
        assert not live_updates_installed(connection)
    with subscribe(database.workspace("auditor")) as subscription:
        receipt = pay(database.workspace("clerk"))
        event = next(iter(subscription))
    assert isinstance(event, LiveEvent) and event.entity_id == str(receipt.payment_id)
    with admin.engine.connect() as connection:
        assert live_updates_installed(connection)


def test_sqlite_says_live_updates_need_postgresql(
    fresh_database: Callable[[str], Database],
) -> None:
    database = fresh_database("sqlite")
    with pytest.raises(BadInput) as refused:
        subscribe(database.workspace("admin"))
    assert refused.value.message.count(". ") == 0
    assert "need a shared PostgreSQL database" in refused.value.message


def test_unknown_kinds_are_refused_naming_the_choices() -> None:
    assert parse_kinds(None) == {"payment", "statement", "alert"}
    assert parse_kinds(" Payment, alert ") == {"payment", "alert"}
    with pytest.raises(BadInput, match="choose from payment, statement, alert"):
        parse_kinds("payments")


# -- helpers ----------------------------------------------------------------------------------


def _take(subscription: Subscription, count: int) -> list[LiveEvent]:
    events: list[LiveEvent] = []
    for update in subscription:
        assert isinstance(update, LiveEvent), update
        events.append(update)
        if len(events) == count:
            break
    return events


def _url(workspace: Workspace) -> str:
    url = workspace.location.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def workspace_as_role(url: str, database: Database) -> Workspace:
    """A workspace on `url` (another login role), acting as the registered user 'clerk'."""
    other = Database(database.backend, url)
    workspace = other.workspace("clerk")
    database.opened.append(workspace)
    return workspace


class RestrictedRole:
    """A throwaway login role that row security lets read one facility's audit entries: the
    shape of shared mode's per-user roles, made here until shared mode exists."""

    def __init__(self, database: Database, facility: str) -> None:
        self.database = database
        self.facility = facility
        self.role = f"bd_live_{uuid.uuid4().hex[:10]}"
        self.db_name = database.url.rsplit("/", 1)[1]

    def _owner(self) -> psycopg.Connection[Any]:
        url = make_url(PG_ADMIN_URL).set(database=self.db_name)
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)

    def __enter__(self) -> str:
        role = sql.Identifier(self.role)
        with self._owner() as owner:
            owner.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            owner.execute(
                sql.SQL("GRANT SELECT ON app_user, facility, audit_entry TO {}").format(role)
            )
            owner.execute("ALTER TABLE audit_entry ENABLE ROW LEVEL SECURITY")
            owner.execute(
                sql.SQL(
                    "CREATE POLICY one_facility ON audit_entry FOR SELECT TO {} USING "
                    "(facility_id = (SELECT id FROM facility WHERE code = {}))"
                ).format(role, sql.Literal(self.facility))
            )
        url = make_url(PG_ADMIN_URL).set(username=self.role, password=None, database=self.db_name)
        return url.render_as_string(hide_password=False)

    def __exit__(self, *_exc: object) -> None:
        self.database.close()
        with self._owner() as owner:
            owner.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s",
                [self.role],
            )
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(self.role)))
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(self.role)))
