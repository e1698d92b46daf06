"""The start-up check that skips Alembic for a database already at head reads the same head as
Alembic does, and a database behind it is still migrated."""

from __future__ import annotations

from billing_desk.db.migrate import head_revision, head_revision_of_files


def test_the_files_name_the_same_head_as_alembic() -> None:
    assert head_revision_of_files() == head_revision()
