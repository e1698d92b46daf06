"""Live updates for the front ends (PostgreSQL): payments recorded, statements imported and alerts
raised by anyone, as they commit.

A `Subscription` holds one dedicated connection (never one of the workspace's pooled ones) that
LISTENs on the channel of db.live_updates. A notification names only an audit entry; the entry is
then read through that same connection, so row-level security decides what this user learns, and
an event they may not see is dropped without a word. When the connection drops (a server restart,
a terminated backend) it is re-established with back-off, and the events committed meanwhile are
read back from the audit trail and delivered marked `missed`, after a `Reconnected` saying since
when. Iterate it on a worker thread; `stop()` may be called from any thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from billing_desk.db.live_updates import (
    CHANNEL,
    EVENT_ACTIONS,
    KINDS,
    PAYMENT_KIND,
    install_live_updates,
    live_updates_installed,
)
from billing_desk.domain.errors import BadInput, EnvironmentFault
from billing_desk.domain.roles import Permission
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0
# Entries older than this are taken to have committed (or never will): the subscription forgets
# which of them it delivered, so its memory stays bounded however long it runs.
SETTLED_SECONDS = 300
REBASE_EVERY_SECONDS = 60.0
MAX_MISSED = 10_000

_ENTRY_COLUMNS = (
    "e.id, e.action, e.entity_type, e.entity_id, e.before IS NULL, e.facility_id, f.code, "
    "e.recorded_at, e.user_name"
)
# Anyone may append an audit entry: a payment's entry counts only when the payment exists, as
# recorded by the entry's author in the entry's facility.
_REAL_PAYMENT_ENTRIES = (
    "SELECT e.id FROM audit_entry e JOIN payment p ON p.id::text = e.entity_id "
    "AND p.recorded_by = e.user_name AND p.facility_id IS NOT DISTINCT FROM e.facility_id "
    "WHERE e.id = ANY(%(ids)s)"
)


@dataclass(frozen=True)
class LiveEvent:
    """Something another client (or this one) committed: a payment recorded, a statement
    imported, an alert raised. `missed` when it committed while the connection was down."""

    kind: str
    entry_id: int
    facility_id: int | None
    facility: str | None
    entity_id: str
    recorded_at: datetime
    recorded_by: str
    missed: bool = False


@dataclass(frozen=True)
class ConnectionLost:
    """The connection dropped at `at`; the subscription is re-establishing it."""

    at: datetime
    reason: str


@dataclass(frozen=True)
class Reconnected:
    """Listening again after a drop at `since`; the `missed_count` events committed meanwhile
    follow, each marked `missed`."""

    since: datetime
    missed_count: int


LiveUpdate = LiveEvent | ConnectionLost | Reconnected


def parse_kinds(text: str | None) -> frozenset[str]:
    """'payment,alert' as a set of kinds; empty or None means every kind."""
    if not text or not text.strip():
        return frozenset(KINDS)
    wanted = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise BadInput(
            f"Unknown event kind {', '.join(unknown)}; choose from {', '.join(KINDS)}, "
            "separated by commas."
        )
    return frozenset(wanted)


def subscribe(
    workspace: Workspace,
    kinds: Collection[str] = KINDS,
    *,
    after_entry_id: int | None = None,
) -> Subscription:
    """Start listening now: every event of `kinds` that commits from here on is delivered by
    iterating the result (and, with `after_entry_id`, first those after that entry, as missed).
    Refused on SQLite, which has no other clients to hear from."""
    return Subscription(workspace, kinds, after_entry_id=after_entry_id)


class Subscription:
    """A live-updates feed: iterate it for `LiveUpdate`s; `stop()` ends the iteration from any
    thread within `POLL_SECONDS`. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        workspace: Workspace,
        kinds: Collection[str] = KINDS,
        *,
        after_entry_id: int | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if not workspace.location.is_postgresql:
            raise BadInput(
                "Live updates need a shared PostgreSQL database, and "
                f"{workspace.location.describe()} is an SQLite file; open a postgresql:// "
                "database with --db."
            )
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise BadInput(f"Unknown event kind {', '.join(sorted(unknown))}.")
        self._workspace = workspace
        self._kinds = frozenset(kinds)
        self._poll_seconds = poll_seconds
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._proxy: PoolProxiedConnection | None = None
        self._connection: psycopg.Connection[Any] | None = None
        self._pending: list[LiveEvent] = []
        self._seen: set[int] = set()
        self._payments_readable: bool | None = None
        self._rebased_at = 0.0
        _ensure_ready(workspace)
        self._connect_or_fault()
        try:
            if after_entry_id is not None:
                self._floor = after_entry_id
                self._pending = self._catch_up()
            else:
                self._floor = self._newest_visible()
        except BaseException as err:
            lost = isinstance(err, psycopg.Error) and self._lost(err)
            self.close()
            if lost:
                raise self._fault(err) from err
            raise

    # -- the front ends' side --------------------------------------------------------------

    def stop(self) -> None:
        """Ask the iteration to end; safe from any thread."""
        self._stopped.set()

    @property
    def backend_pid(self) -> int | None:
        """The server process listening for this subscription (None while reconnecting)."""
        connection = self._connection
        return connection.info.backend_pid if connection is not None else None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._disconnect()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[LiveUpdate]:
        try:
            yield from self._pending
            self._pending = []
            while not self._stopped.is_set():
                try:
                    events = self._next_events()
                except (psycopg.Error, DBAPIError) as err:
                    if not self._lost(err):
                        raise  # not the connection's fault: a bug or a refusal, never retried
                    lost_at = self._workspace.clock()
                    yield ConnectionLost(lost_at, _reason(err))
                    if not self._reconnect():
                        return
                    try:
                        missed = self._catch_up()
                    except (psycopg.Error, DBAPIError):
                        continue  # dropped again: the next round notices and starts over
                    yield Reconnected(lost_at, len(missed))
                    yield from missed
                    continue
                yield from events
        finally:
            self.close()

    # -- listening ----------------------------------------------------------------------------

    def _next_events(self) -> list[LiveEvent]:
        """The events announced within one poll interval, read under this user's own rights."""
        connection = self._live_connection()
        announced: list[int] = []
        # The generator holds the connection while it waits: collect, then leave it before
        # querying. Anything arriving meanwhile waits in psycopg's backlog for the next round.
        for notify in connection.notifies(timeout=self._poll_seconds, stop_after=1):
            announced += self._wanted(notify.payload)
        for notify in connection.notifies(timeout=0):
            announced += self._wanted(notify.payload)
        # Anyone may NOTIFY the channel: an announced entry at or below the floor is old (it
        # was there when the subscription started, or has settled since) and is never shown
        # as new, whoever replays it.
        fresh = [i for i in announced if i > self._floor and i not in self._seen]
        if not fresh:
            self._rebase_when_due()
            return []
        return self._read(
            f"SELECT {_ENTRY_COLUMNS} FROM audit_entry e "
            "LEFT JOIN facility f ON f.id = e.facility_id WHERE e.id = ANY(%(ids)s) ORDER BY e.id",
            {"ids": fresh},
            missed=False,
        )

    def _wanted(self, payload: str) -> list[int]:
        kind, _, entry = payload.partition(":")
        if kind not in self._kinds or not entry.isdigit():
            return []
        return [int(entry)]

    def _catch_up(self) -> list[LiveEvent]:
        """Events this user may see that committed after the floor and were never delivered."""
        actions = [action for action, kind in EVENT_ACTIONS.items() if kind in self._kinds]
        query = (
            f"SELECT {_ENTRY_COLUMNS} FROM audit_entry e "
            "LEFT JOIN facility f ON f.id = e.facility_id "
            "WHERE e.id > %(floor)s AND ("
            "(%(payments)s AND e.entity_type = %(payment)s AND e.before IS NULL) "
            "OR (e.action = ANY(%(actions)s) AND e.id = (SELECT min(x.id) FROM audit_entry x "
            "WHERE x.request_id = e.request_id AND x.action = e.action))"
            ") ORDER BY e.id LIMIT %(limit)s"
        )
        params = {
            "floor": self._floor,
            "payments": PAYMENT_KIND in self._kinds,
            "payment": PAYMENT_KIND,
            "actions": actions,
            "limit": MAX_MISSED,
        }
        return self._read(query, params, missed=True)

    def _read(self, query: str, params: dict[str, Any], *, missed: bool) -> list[LiveEvent]:
        connection = self._live_connection()
        rows = connection.execute(query, params).fetchall()
        events = []
        candidates = [event for row in rows if (event := _event(row, missed=missed))]
        claimed = [event.entry_id for event in candidates if event.kind == PAYMENT_KIND]
        real: set[int] = set()
        if claimed and self._reads_payments():
            real = {
                int(found[0])
                for found in connection.execute(_REAL_PAYMENT_ENTRIES, {"ids": claimed})
            }
        for event in candidates:
            if event.kind == PAYMENT_KIND and self._reads_payments() and event.entry_id not in real:
                continue  # a forged entry: no such payment by its author
            if event.kind not in self._kinds or event.entry_id in self._seen:
                continue
            self._seen.add(event.entry_id)
            events.append(event)
        return events

    def _reads_payments(self) -> bool:
        """Whether this role may read payments at all (every billing role of a shared
        database may; a role limited to the audit trail cannot confirm, and is not asked to)."""
        if self._payments_readable is None:
            found = (
                self._live_connection()
                .execute("SELECT has_table_privilege('payment', 'SELECT')")
                .fetchone()
            )
            self._payments_readable = bool(found and found[0])
        return self._payments_readable

    def _newest_visible(self) -> int:
        row = self._live_connection().execute("SELECT coalesce(max(id), 0) FROM audit_entry")
        found = row.fetchone()
        return int(found[0]) if found else 0

    def _rebase_when_due(self) -> None:
        """Raise the floor past entries old enough to have settled, forgetting their ids."""
        now = time.monotonic()
        if now - self._rebased_at < REBASE_EVERY_SECONDS:
            return
        self._rebased_at = now
        found = (
            self._live_connection()
            .execute(
                "SELECT max(id) FROM audit_entry WHERE id > %(floor)s "
                "AND recorded_at < now() - make_interval(secs => %(settled)s)",
                {"floor": self._floor, "settled": SETTLED_SECONDS},
            )
            .fetchone()
        )
        if found and found[0] is not None:
            self._floor = int(found[0])
            self._seen = {i for i in self._seen if i > self._floor}

    # -- the connection -------------------------------------------------------------------------

    def _live_connection(self) -> psycopg.Connection[Any]:
        if self._connection is None:
            raise psycopg.OperationalError("the live-updates connection is closed")
        return self._connection

    def _connect(self) -> None:
        """A connection of the workspace's engine (its credentials and settings), taken out of
        the pool for good, in autocommit, listening."""
        proxy = self._workspace.engine.raw_connection()
        try:
            connection = proxy.driver_connection
            if not isinstance(connection, psycopg.Connection):
                raise TypeError("live updates need the psycopg driver")
            proxy.detach()
            connection.rollback()
            connection.autocommit = True
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except BaseException:
            proxy.close()
            raise
        with self._lock:
            self._proxy, self._connection = proxy, connection

    def _connect_or_fault(self) -> None:
        try:
            self._connect()
        except (psycopg.Error, DBAPIError) as err:
            raise self._fault(err) from err

    def _fault(self, err: BaseException) -> EnvironmentFault:
        return EnvironmentFault(
            f"Cannot listen for live updates at {self._workspace.location.describe()} "
            f"({_reason(err)}); check that the server is running, then try again.",
            retryable=True,
        )

    def _lost(self, err: BaseException) -> bool:
        """Whether `err` means the connection is gone (rather than a refused query)."""
        if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        connection = self._connection
        return connection is None or connection.closed or connection.broken

    def _disconnect(self) -> None:
        proxy, connection = self._proxy, self._connection
        self._proxy, self._connection = None, None
        if proxy is not None:
            try:
                proxy.close()
            except Exception:  # a dead connection may fail to close; it is gone either way
                log.debug("closing the live-updates connection failed", exc_info=True)
        # Detached from the pool, the connection is ours to close: never left to the garbage
        # collector, which would close it at some later moment on whatever thread runs then.
        if connection is not None and not connection.closed:
            try:
                connection.close()
            except Exception:
                log.debug("closing the live-updates connection failed", exc_info=True)

    def _reconnect(self) -> bool:
        """Connect again, backing off, until connected (True) or stopped (False)."""
        with self._lock:
            self._disconnect()
        delay = BACKOFF_FIRST_SECONDS
        while not self._stopped.wait(delay * random.uniform(0.5, 1.0)):
            try:
                self._connect()
                return True
            except (psycopg.Error, DBAPIError) as err:
                log.info("live updates: reconnecting failed (%s)", _reason(err))
                delay = min(BACKOFF_CAP_SECONDS, delay * 2)
        return False


def _ensure_ready(workspace: Workspace) -> None:
    """Refuse users who may not read; set the trigger up on a database that lacks it (the
    owner's single-user database), or say who can."""

    def check(unit: UnitOfWork) -> bool:
        unit.require(Permission.READ)
        return live_updates_installed(unit.session.connection())

    if workspace.read(check):
        return

    def install(unit: UnitOfWork) -> None:
        if live_updates_installed(unit.session.connection()):
            return
        install_live_updates(unit.session.connection())
        unit.record_event("live_updates.install", "live_updates", CHANNEL)

    try:
        workspace.write(install, action="live_updates.install")
    except DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) != "42501":
            raise
        raise EnvironmentFault(
            "Live updates are not set up on this database, and only its owner may set them up; "
            "ask an administrator to run `billing-desk admin init`."
        ) from err


def _event(row: Sequence[Any], *, missed: bool) -> LiveEvent | None:
    entry_id, action, entity_type, entity_id, inserted, facility_id, code, at, user = row
    if entity_type == PAYMENT_KIND and inserted:
        kind = PAYMENT_KIND
    elif action in EVENT_ACTIONS:
        kind = EVENT_ACTIONS[action]
    else:
        return None
    return LiveEvent(
        kind,
        int(entry_id),
        facility_id,
        code,
        str(entity_id),
        at.astimezone(UTC),
        str(user),
        missed,
    )


def _reason(err: BaseException) -> str:
    original = getattr(err, "orig", None) or err
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


__all__ = [
    "KINDS",
    "ConnectionLost",
    "LiveEvent",
    "LiveUpdate",
    "Reconnected",
    "Subscription",
    "parse_kinds",
    "subscribe",
]
