"""Running one business operation as one database transaction, on either backend.

Only `Workspace.write` and `Workspace.read` open sessions and commit. An operation is a function
of a `UnitOfWork`; it returns plain data (never ORM objects) and everything it wrote commits
together or not at all. On PostgreSQL a serialization failure or deadlock is retried with a
bounded, jittered back-off; a lost server or a locked SQLite file becomes an `EnvironmentFault`
saying what to do.
"""

from __future__ import annotations

import getpass
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing_desk.db.engine import SQLITE_BEGIN, DatabaseLocation, make_engine, resolve_location
from billing_desk.db.migrate import current_revision, head_revision, upgrade_to_head
from billing_desk.db.models import User
from billing_desk.domain.errors import EnvironmentFault, PermissionDenied
from billing_desk.domain.roles import Permission, Role, role_allows

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATEs after which the whole transaction may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 0.02
BACKOFF_CAP_SECONDS = 1.0


@dataclass(frozen=True)
class Actor:
    """The person on whose behalf an operation runs."""

    name: str
    role: Role | None  # None: not (yet) a registered user of this database


@dataclass
class UnitOfWork:
    """What an operation may touch: the session of its transaction, who acts, and when."""

    session: Session
    actor: Actor
    now: datetime
    request_id: str

    @property
    def today(self) -> date:
        return self.now.date()

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

    def __init__(self, location: DatabaseLocation, user: str | None = None) -> None:
        self.location = location
        self.engine: Engine = make_engine(location)
        self.user_name = user or getpass.getuser()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- schema ---------------------------------------------------------------------------

    def upgrade(self) -> bool:
        """Migrate the schema to head; True when anything changed."""
        return self._guard(lambda: upgrade_to_head(self.engine))

    def schema_is_current(self) -> bool:
        return self._guard(lambda: current_revision(self.engine) == head_revision())

    # -- running operations ---------------------------------------------------------------

    def write(self, operation: Callable[[UnitOfWork], T]) -> T:
        """Run `operation` in one write transaction, retried when the database asks for it."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._run(operation, write=True)
            except DBAPIError as err:
                if attempt < MAX_ATTEMPTS and _sqlstate(err) in RETRYABLE_SQLSTATES:
                    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
                    time.sleep(delay * random.uniform(0.5, 1.0))
                    continue
                raise

    def read(self, operation: Callable[[UnitOfWork], T]) -> T:
        """Run `operation` in a read-only transaction."""
        return self._run(operation, write=False)

    def _run(self, operation: Callable[[UnitOfWork], T], *, write: bool) -> T:
        def attempt() -> T:
            bind = self.engine
            if self.location.is_sqlite and not write:
                bind = self.engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            with Session(bind=bind, expire_on_commit=False) as session, session.begin():
                unit = UnitOfWork(
                    session=session,
                    actor=self._actor(session),
                    now=datetime.now(UTC),
                    request_id=str(uuid.uuid4()),
                )
                return operation(unit)

        return self._guard(attempt)

    def _actor(self, session: Session) -> Actor:
        row = session.execute(
            select(User.role, User.active).where(User.name == self.user_name)
        ).one_or_none()
        if row is None or not row.active:
            return Actor(self.user_name, None)
        return Actor(self.user_name, Role(row.role))

    def _guard(self, work: Callable[[], T]) -> T:
        """Turn the database's environment failures into one sentence for the user."""
        try:
            return work()
        except OperationalError as err:
            if _sqlstate(err) in RETRYABLE_SQLSTATES:
                raise
            raise self._environment_fault(err) from err

    def _environment_fault(self, err: OperationalError) -> EnvironmentFault:
        where = self.location.describe()
        text = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        if self.location.is_sqlite:
            if "locked" in text or "busy" in text:
                return EnvironmentFault(
                    f"The database {where} is locked by another program; try again in a moment.",
                    retryable=True,
                )
            return EnvironmentFault(
                f"Cannot open the database {where} ({text}); check the path and its permissions."
            )
        return EnvironmentFault(
            f"Cannot use the database at {where} ({text}); check that the server is running "
            "and the URL is right, then try again.",
            retryable=True,
        )

    def close(self) -> None:
        self.engine.dispose()


def open_workspace(db: str | None, user: str | None = None, *, migrate: bool = True) -> Workspace:
    """Open the database named by `--db` (a path or URL; SQLite in the data folder when empty)."""
    workspace = Workspace(resolve_location(db), user)
    if migrate:
        workspace.upgrade()
    return workspace


def _sqlstate(err: DBAPIError) -> str | None:
    return getattr(err.orig, "sqlstate", None)
