"""The database's own guards on the audit history, reached with raw SQL behind the services."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import Database
from tests.support import seed_users


@pytest.fixture
def audited(database: Database) -> Database:
    seed_users(database.workspace("admin"))
    return database


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entry SET user_name = 'mallory'",
        "DELETE FROM audit_entry WHERE id = (SELECT max(entry_id) FROM audit_link)",
        "UPDATE audit_link SET entry_hash = prev_hash",
        "DELETE FROM audit_link",
    ],
)
def test_audit_rows_cannot_be_changed_or_deleted(audited: Database, statement: str) -> None:
    engine = audited.workspace().engine
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))


def test_audit_tables_cannot_be_truncated_on_postgresql(audited: Database) -> None:
    if audited.backend != "postgresql":
        return  # SQLite has no TRUNCATE; DELETE is covered above.
    engine = audited.workspace().engine
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_link, audit_entry CASCADE"))


def test_a_hash_version_never_goes_down(audited: Database) -> None:
    engine = audited.workspace().engine
    insert = (
        "INSERT INTO audit_link (sequence, entry_id, hash_version, prev_hash, entry_hash, "
        "sealed_at) SELECT max(sequence) + 1, (SELECT max(id) FROM audit_entry) - {back}, "
        "{v}, 'x', 'y', CURRENT_TIMESTAMP FROM audit_link"
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_entry (id, recorded_at, user_name, action, "
                "entity_type, entity_id, request_id) SELECT max(id) + 1, "
                "CURRENT_TIMESTAMP, 'x', 'x', 'x', 'x', 'x' FROM audit_entry"
            )
        )
        conn.execute(
            text(
                "INSERT INTO audit_entry (id, recorded_at, user_name, action, "
                "entity_type, entity_id, request_id) SELECT max(id) + 1, "
                "CURRENT_TIMESTAMP, 'x', 'x', 'x', 'x', 'x' FROM audit_entry"
            )
        )
        conn.execute(text(insert.format(back=1, v=2)))
    with pytest.raises(Exception, match="cannot go down"), engine.begin() as conn:
        conn.execute(text(insert.format(back=0, v=1)))
