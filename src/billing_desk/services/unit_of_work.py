"""Running one business operation as one database transaction, on either backend.

Only `Workspace.write` and `Workspace.read` open sessions and commit. An operation is a function
of a `UnitOfWork`; it returns plain data (never ORM objects) and everything it wrote commits
together or not at all. On PostgreSQL a serialization failure or deadlock is retried with a
bounded, jittered back-off; a lost server or a locked SQLite file becomes an `EnvironmentFault`
saying what to do.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from billing_desk.db.engine import SQLITE_BEGIN, DatabaseLocation, make_engine, resolve_location
from billing_desk.db.migrate import (
    current_revision,
    head_revision,
    known_revisions,
    upgrade_to_head,
)
from billing_desk.db.models import User
from billing_desk.domain.errors import BadInput, EnvironmentFault, PermissionDenied, Refused
from billing_desk.domain.roles import Permission, Role, role_allows
from billing_desk.services.archive import is_archive
from billing_desk.services.audit_trail import (
    SEAL_BATCH,
    AuditContext,
    SealResult,
    capture,
    chain_head,
    record_event,
    seal_committed,
    seal_pending,
    seal_written,
    tail_exceeds,
    write_waiting,
)
from billing_desk.services.clock import Clock, system_clock
from billing_desk.services.credentials import connection_failure
from billing_desk.services.integrity import restamp

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATEs after which the whole transaction may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
INSUFFICIENT_PRIVILEGE = "42501"
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 0.02
BACKOFF_CAP_SECONDS = 1.0
# Past this many unsealed audit entries, writes stop until the chain is sealed (PostgreSQL).
MAX_UNSEALED = 50_000
READ_ONLY_MESSAGE = (
    "This is an audit archive, opened read-only; export again from the live database to add to it."
)


@dataclass(frozen=True)
class Actor:
    """The person on whose behalf an operation runs."""

    name: str
    role: Role | None  # None: not (yet) a registered user of this database


@dataclass
class UnitOfWork:
    """What an operation may touch: the session of its transaction, who acts, and when. Every
    row it changes is audited under `audit.action` (services.audit_trail)."""

    session: Session
    actor: Actor
    now: datetime
    request_id: str
    audit: AuditContext
    # Where "today" is reckoned: the person's time zone (None: this machine's).
    zone: tzinfo | None = None

    def record_event(
        self,
        action: str,
        entity_type: str,
        entity_id: str,
        *,
        facility_id: int | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> None:
        """Audit something that changes no row: an export, a report, a verification run."""
        record_event(
            self.session,
            self.audit,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            facility_id=facility_id,
            detail=detail,
        )

    @property
    def today(self) -> date:
        """The acting person's date: a payment received today in Kiritimati is not refused as
        "in the future" while it is still yesterday in UTC."""
        return self.now.astimezone(self.zone).date()

    def require(self, permission: Permission) -> Actor:
        """Refuse unless the acting user holds `permission`."""
        if self.actor.role is None:
            raise PermissionDenied(
                f"'{self.actor.name}' is not a user of this database; an administrator adds them "
                f"with `billing-desk user add {self.actor.name} --role clerk`."
            )
        if not role_allows(self.actor.role, permission):
            role = self.actor.role.value
            article = "an" if role[0] in "aeiou" else "a"
            raise PermissionDenied(
                f"{self.actor.name} is {article} {role}, and {article} {role} may not "
                f"{permission.value}."
            )
        return self.actor


class Workspace:
    """One open billing database and the user working in it: the front ends' handle on services."""

    def __init__(
        self,
        location: DatabaseLocation,
        user: str | None = None,
        *,
        clock: Clock = system_clock,
        zone: tzinfo | None = None,
    ) -> None:
        self.location = location
        # What every operation of this workspace takes as "now" (`UnitOfWork.now`), and the
        # time zone its "today" is reckoned in (None: this machine's).
        self.clock: Clock = clock
        self.zone = zone
        self.engine: Engine = make_engine(location)
        # On a shared database you act as the role you log in as (row-level security and the
        # audit trail both name it); elsewhere, as the local user.
        login = location.url.username if location.is_postgresql else None
        self.user_name = user or login or getpass.getuser()
        # An auditor's archive: every write is refused.
        self.read_only = location.read_only
        # Set by open_workspace for an exported archive: whoever opens it reads it as an
        # auditor (its users are the source's, and nobody can be added to a read-only file).
        self.archive_reader = False
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Where long read-only work (verification, exports, the log) goes: a read replica
        # given with --report-db, or this database itself.
        self.reports: Workspace = self
        # Told after each write commits (action, result) or fails (action, error): where the
        # anomaly rules and the failure log hang (services.monitoring.watch).
        self.after_commit: list[Callable[[str, Any], None]] = []
        self.after_failure: list[Callable[[str, Exception], None]] = []
        self._hooks_running = threading.local()
        # Called before every transaction this workspace opens: a front end hangs a check here
        # (the desktop application refuses to open one on its GUI thread).
        self.unit_checks: list[Callable[[], None]] = []
        # Called by `close` before the engine goes: work still running on this workspace's own
        # threads (the anomaly rules) finishes first, so no connection is handed back to a
        # disposed pool and left for the garbage collector to close at some later moment.
        self.before_close: list[Callable[[], object]] = []
        # Whether this workspace's last seal after commit left the queue short (it sealed
        # something, and less than a batch): then the next write need not count the tail.
        self._tail_short = False

    # -- schema ---------------------------------------------------------------------------

    def upgrade(self) -> bool:
        """Migrate the schema to head; True when anything changed."""
        if self.read_only:
            raise Refused(READ_ONLY_MESSAGE)

        def upgrade() -> bool:
            current = current_revision(self.engine)
            if current is not None and current not in known_revisions():
                raise Refused(
                    f"This database was upgraded by a newer billing-desk (schema {current}); "
                    "install that version to use it."
                )
            try:
                return upgrade_to_head(self.engine)
            except ProgrammingError as err:
                if _sqlstate(err) != INSUFFICIENT_PRIVILEGE:
                    raise
                # A shared database's users have no rights to change its schema.
                raise Refused(
                    "This database's schema is older than this billing-desk, and only an "
                    "administrator may upgrade it, with `billing-desk admin init --admin-url "
                    "URL`."
                ) from err

        return self._guard(upgrade)

    def schema_is_current(self) -> bool:
        return self._guard(lambda: current_revision(self.engine) == head_revision())

    # -- running operations ---------------------------------------------------------------

    def write(self, operation: Callable[[UnitOfWork], T], *, action: str) -> T:
        """Run `operation` in one write transaction, retried when the database asks for it;
        its changes are audited under `action` and sealed into the chain. Then the
        `after_commit` hooks hear of it (or the `after_failure` hooks of its error)."""
        try:
            result = self._write(operation, action=action)
        except Exception as err:
            self._tell(self.after_failure, action, err)
            raise
        self._tell(self.after_commit, action, result)
        return result

    def _tell(self, hooks: Sequence[Callable[[str, Any], None]], action: str, what: Any) -> None:
        """Run each hook once, never from inside another (a hook's own writes are not told),
        and never let one change the operation's outcome: a failing hook is logged."""
        if not hooks or getattr(self._hooks_running, "on", False):
            return
        self._hooks_running.on = True
        try:
            for hook in list(hooks):
                try:
                    hook(action, what)
                except Exception:
                    log.warning("a hook after %s failed", action, exc_info=True)
        finally:
            self._hooks_running.on = False

    def _write(self, operation: Callable[[UnitOfWork], T], *, action: str) -> T:
        if self.read_only:
            raise Refused(READ_ONLY_MESSAGE)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._run(operation, write=True, action=action)
                if not self.location.is_sqlite:
                    self._seal_after_commit()
                return result
            except DBAPIError as err:
                if attempt < MAX_ATTEMPTS and _sqlstate(err) in RETRYABLE_SQLSTATES:
                    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
                    time.sleep(delay * random.uniform(0.5, 1.0))
                    continue
                raise

    def read(self, operation: Callable[[UnitOfWork], T]) -> T:
        """Run `operation` in a read-only transaction."""
        return self._run(operation, write=False, action="read")

    def _run(self, operation: Callable[[UnitOfWork], T], *, write: bool, action: str) -> T:
        def attempt() -> T:
            bind = self.engine
            if self.location.is_sqlite and not write:
                bind = self.engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            with Session(bind=bind, expire_on_commit=False) as session, session.begin():
                actor = self._actor(session)
                now = self.clock()
                request_id = str(uuid.uuid4())
                context = AuditContext(
                    actor.name,
                    actor.role.value if actor.role else None,
                    request_id,
                    action,
                    now,
                    sealed_by_unit=self.location.is_sqlite,
                )
                if write:
                    capture(session, context)
                else:
                    context.closed = True
                unit = UnitOfWork(session, actor, now, request_id, context, self.zone)
                result = operation(unit)
                if write:
                    self._finish(unit)
                return result

        return self._guard(attempt)

    def _finish(self, unit: UnitOfWork) -> None:
        """Restamp integrity hashes of what the operation touched and write its audit entries;
        on SQLite, whose writers already take turns, seal them in the same transaction."""
        session = unit.session
        session.flush()
        touched = unit.audit.touched
        if touched.get("payment") or touched.get("invoice"):
            restamp(session, touched.get("payment", ()), touched.get("invoice", ()))
        write_waiting(session.connection(), unit.audit)
        unit.audit.closed = True
        if self.location.is_sqlite:
            if unit.audit.written:
                seal_written(session, unit.audit)
        elif not self._tail_short and tail_exceeds(session, MAX_UNSEALED):
            raise EnvironmentFault(
                f"The audit trail has more than {MAX_UNSEALED} unsealed entries; run "
                "`billing-desk audit seal`, then try again.",
                retryable=True,
            )

    def _seal_after_commit(self) -> None:
        """Seal what has committed (PostgreSQL). A failure leaves the tail for the next sealer."""
        self._tail_short = False
        try:
            with Session(bind=self.engine) as session, session.begin():
                # Writers do not queue behind one another's sealing: a busy head means another
                # sealer is at work, and the next write (or `audit seal`) takes what it missed.
                sealed = seal_committed(session, skip_busy=True)
        except DBAPIError:
            log.warning("sealing the audit trail failed; the next write retries", exc_info=True)
            return
        self._tail_short = 0 < sealed < SEAL_BATCH

    def seal(self) -> SealResult:
        """Seal every committed entry now (PostgreSQL). On SQLite each writer sealed its own
        entries before committing, so anything still queued came from outside the application:
        it is left out of the chain for the verifier to name, never sealed."""
        if self.read_only:
            raise Refused(READ_ONLY_MESSAGE)

        def run() -> SealResult:
            if self.location.is_sqlite:
                with Session(bind=self.engine) as session, session.begin():
                    return chain_head(session)
            total = 0
            while True:
                with Session(bind=self.engine) as session, session.begin():
                    done = seal_pending(session, now=self.clock())
                total += done.sealed
                if done.sealed == 0:
                    return SealResult(total, done.head_sequence, done.head_hash)

        return self._guard(run)

    def _actor(self, session: Session) -> Actor:
        if self.archive_reader:
            return Actor(self.user_name, Role.AUDITOR)
        row = session.execute(
            select(User.role, User.active).where(User.name == self.user_name)
        ).one_or_none()
        if row is None or not row.active:
            return Actor(self.user_name, None)
        return Actor(self.user_name, Role(row.role))

    def _guard(self, work: Callable[[], T]) -> T:
        """Turn the database's environment failures into one sentence for the user."""
        for check in self.unit_checks:
            check()
        try:
            return work()
        except OperationalError as err:
            if _sqlstate(err) in RETRYABLE_SQLSTATES:
                raise
            raise self._environment_fault(err) from err
        except DBAPIError as err:
            if _sqlstate(err) != INSUFFICIENT_PRIVILEGE:
                raise
            # A shared database's own rules (grants, row security, its triggers) said no.
            lines = str(err.orig if err.orig is not None else err).strip().splitlines()
            why = lines[0] if lines else "permission denied"
            raise PermissionDenied(
                f"The database refused this for {self.user_name}: {why}."
            ) from err

    def _environment_fault(self, err: OperationalError) -> EnvironmentFault:
        where = self.location.describe()
        lines = str(err.orig if err.orig is not None else err).strip().splitlines()
        text = lines[0] if lines else type(err.orig).__name__
        if self.location.is_sqlite:
            if "locked" in text or "busy" in text:
                return EnvironmentFault(
                    f"The database {where} is locked by another program; try again in a moment.",
                    retryable=True,
                )
            return EnvironmentFault(
                f"Cannot open the database {where} ({text}); check the path and its permissions."
            )
        if err.connection_invalidated:
            # Lost mid-work (a restart, a killed backend): the transaction rolled back, unless
            # the loss came between COMMIT and its answer; a retry with the same key settles it.
            return EnvironmentFault(
                f"The connection to the database at {where} was lost before the work was "
                f"confirmed ({text}); try again, and a request retried with its idempotency key "
                "is carried out once, never twice.",
                retryable=True,
            )
        # Refused at the door: a wrong or missing password, an expired or disabled login.
        return connection_failure(self.location, err)

    def close(self) -> None:
        for finish in self.before_close:
            finish()
        if self.reports is not self:
            self.reports.close()
        self.engine.dispose()


def whoami(workspace: Workspace) -> Actor:
    """Who this workspace acts as, with the role the database gives them (None: not a user)."""
    return workspace.read(lambda unit: unit.actor)


def locate_database(db: str | None) -> DatabaseLocation:
    """Where `--db` (a path, a URL, or nothing for the data folder's file) points, without
    opening it; an auditor's archive is marked read-only."""
    location = resolve_location(db)
    path = location.sqlite_path
    if path is not None and path.exists() and is_archive(path):
        location = dataclasses.replace(location, read_only=True)
    return location


def open_workspace(
    db: str | None,
    user: str | None = None,
    *,
    migrate: bool = True,
    report_db: str | None = None,
    clock: Clock = system_clock,
    zone: tzinfo | None = None,
) -> Workspace:
    """Open the database named by `--db` (a path or URL; SQLite in the data folder when empty).
    An auditor's archive opens read-only and is never migrated. `report_db` names a read
    replica of it for read-only work (`Workspace.reports`)."""
    location = resolve_location(db)
    path = location.sqlite_path
    archive = path is not None and is_archive(path)
    if archive:
        location = dataclasses.replace(location, read_only=True)
    workspace = Workspace(location, user, clock=clock, zone=zone)
    workspace.archive_reader = archive
    if workspace.read_only:
        if not workspace.schema_is_current():
            workspace.close()
            raise Refused(
                f"The archive {path} was written by another version of billing-desk; open it "
                "with that version, or export it again from the live database."
            )
    elif migrate:
        try:
            workspace.upgrade()
        except BaseException:
            workspace.close()
            raise
    if report_db:
        workspace.reports = _open_replica(workspace, report_db)
    return workspace


def _open_replica(primary: Workspace, report_db: str) -> Workspace:
    location = resolve_location(report_db)
    if not (location.is_postgresql and primary.location.is_postgresql):
        primary.close()
        raise BadInput(
            "--report-db names a PostgreSQL read replica of a PostgreSQL --db; leave it out "
            "for an SQLite database."
        )
    replica = Workspace(
        dataclasses.replace(location, read_only=True),
        primary.user_name,
        clock=primary.clock,
        zone=primary.zone,
    )
    if not replica.schema_is_current():
        replica.close()
        primary.close()
        raise Refused(
            "The report database's schema is not this version's; it should be a replica of "
            "--db, which replicates the schema once the primary is upgraded."
        )
    return replica


def _sqlstate(err: DBAPIError) -> str | None:
    return getattr(err.orig, "sqlstate", None)
