"""The one migration path: from an empty database to head, on both backends, agreeing with the
models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from billing_desk.db.migrate import current_revision, head_revision, upgrade_to_head
from billing_desk.db.models import Base
from billing_desk.services.unit_of_work import open_workspace
from tests.conftest import BACKENDS, Database, pg_admin_connection, pg_url


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A database with no schema at all."""
    if request.param == "sqlite":
        return str(tmp_path / "empty.sqlite3")
    import uuid

    name = f"bd_empty_{uuid.uuid4().hex[:12]}"
    with pg_admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: _drop(name))
    return pg_url(name)


def _drop(name: str) -> None:
    with pg_admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_from_empty_reaches_head_and_is_idempotent(empty_database: str) -> None:
    workspace = open_workspace(empty_database, "admin", migrate=False)
    try:
        assert current_revision(workspace.engine) is None
        assert upgrade_to_head(workspace.engine) is True
        assert current_revision(workspace.engine) == head_revision()
        assert upgrade_to_head(workspace.engine) is False
        tables = set(inspect(workspace.engine).get_table_names())
        assert {"facility", "trip", "invoice", "invoice_line", "app_user"} <= tables
    finally:
        workspace.close()


def test_models_and_migrations_agree(database: Database) -> None:
    workspace = database.workspace()
    try:
        with workspace.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        workspace.close()


def test_the_application_migrates_on_open(empty_database: str) -> None:
    open_workspace(empty_database, "admin").close()
    engine = create_engine(
        empty_database.replace("postgresql://", "postgresql+psycopg://")
        if "://" in empty_database
        else f"sqlite:///{empty_database}"
    )
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_connections_use_the_writer_discipline(
    fresh_database: Callable[[str], Database],
) -> None:
    workspace = fresh_database("sqlite").workspace()
    try:
        with workspace.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        workspace.close()
