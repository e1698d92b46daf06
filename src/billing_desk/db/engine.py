"""Engines for the two backends: embedded SQLite with a strict writer discipline, shared PostgreSQL.

SQLite: WAL, synchronous=FULL, foreign keys on, a busy timeout, and every write transaction opened
with BEGIN IMMEDIATE, so a read-then-write transaction takes the write lock before it reads and can
never fail half-way with "database is locked". pysqlite's own implicit BEGIN is switched off and
SQLAlchemy's begin is taken over (the recipe from SQLAlchemy's pysqlite documentation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option naming how a SQLite transaction begins: "IMMEDIATE" (writes) or "DEFERRED".
SQLITE_BEGIN = "billing_desk_sqlite_begin"


@dataclass(frozen=True)
class DatabaseLocation:
    """Where the billing database lives, as the user named it; `read_only` for an auditor's
    archive (services.archive), which is opened with SQLite's mode=ro and never migrated."""

    url: URL
    read_only: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, when this names one (not :memory: nor a file: URI)."""
        database = self.url.database if self.is_sqlite else None
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database)

    def describe(self) -> str:
        if self.is_sqlite:
            return str(self.url.database)
        return self.url.render_as_string(hide_password=True)


def default_sqlite_path() -> Path:
    import platformdirs

    return (
        Path(platformdirs.user_data_dir("billing-desk", appauthor=False)) / "billing-desk.sqlite3"
    )


def resolve_location(db: str | None) -> DatabaseLocation:
    """`--db` may be a URL (postgresql://..., sqlite:///...) or a path to an SQLite file."""
    value = db or os.environ.get("BILLING_DESK_DB") or ""
    if not value:
        path = default_sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return DatabaseLocation(URL.create("sqlite+pysqlite", database=str(path)))
    if "://" not in value:
        path = Path(value).expanduser().resolve()
        return DatabaseLocation(URL.create("sqlite+pysqlite", database=str(path)))
    url = make_url(value)
    backend = url.get_backend_name()
    if backend == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        url = url.set(drivername="sqlite+pysqlite")
    else:
        raise ValueError(f"unsupported database backend {backend!r}")
    return DatabaseLocation(url)


# Where a PostgreSQL password comes from when the URL carries none (the OS keyring, or a prompt):
# set once by the front end. Kept out of the URL so it never shows in a repr, a log or a message.
PasswordSource = Callable[[URL], "str | None"]
_password_source: PasswordSource | None = None


def set_password_source(source: PasswordSource | None) -> None:
    global _password_source
    _password_source = source


def make_engine(location: DatabaseLocation, *, pool_size: int = 4) -> Engine:
    if location.is_sqlite:
        return _sqlite_engine(location.url, read_only=location.read_only)
    engine = create_engine(
        location.url,
        pool_size=pool_size,
        max_overflow=4,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "application_name": "billing-desk"},
    )
    url = location.url

    @event.listens_for(engine, "do_connect")
    def _password(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        if cparams.get("password") is None and _password_source is not None:
            password = _password_source(url)
            if password is not None:
                cparams["password"] = password

    return engine


def _sqlite_engine(url: URL, *, read_only: bool = False) -> Engine:
    if read_only:
        # SQLite's own read-only mode: nothing, not even a journal-mode change, touches the file.
        path = Path(url.database or "").resolve()
        url = URL.create(
            "sqlite+pysqlite", database=path.as_uri(), query={"mode": "ro", "uri": "true"}
        )
    engine = create_engine(
        url,
        # One connection per checkout: SQLite connections are cheap, and a pooled connection
        # must never carry an open transaction from one thread to another.
        poolclass=NullPool,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's begin event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if read_only:
                # Changing the journal mode writes the file, so an archive keeps its own.
                cursor.execute("PRAGMA query_only=ON")
            else:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        if read_only:
            mode = "DEFERRED"
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
