"""A bank line may be explained by several payments or deposit slips together: a card
processor's payout of a day's card payments, or two slips the bank credited as one. Such a line
has one match per target, numbered by `part` (1, 2, ...); every match made before is part 1.
A match written without a part (an older client) is part 1. The unique index on the line's
active matches becomes (line, part), so two people matching the
same line at the same moment still collide on part 1.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 19:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_DIRECTION_MESSAGE = (
    "the direction of a bank match is that of its line: credit for money in, debit for money out"
)


def upgrade() -> None:
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("part", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_bank_match_part"), "part >= 1")
        batch_op.drop_index("uq_bank_match_line_active")
        batch_op.create_index(
            "uq_bank_match_line_active",
            ["line_id", "part"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )
    _recreate_direction_trigger()


def _recreate_direction_trigger() -> None:
    """SQLite rebuilds the table for the batch above, dropping its triggers: the one that
    keeps a match's direction its line's (migration 0011) is put back as it was."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS bank_match_direction")
    op.execute(
        "CREATE TRIGGER bank_match_direction BEFORE INSERT ON bank_match "
        "WHEN NEW.direction IS NOT (SELECT CASE WHEN l.amount_minor > 0 THEN 'credit' "
        "ELSE 'debit' END FROM bank_line l WHERE l.id = NEW.line_id) "
        f"BEGIN SELECT RAISE(ABORT, '{_DIRECTION_MESSAGE}'); END"
    )


def downgrade() -> None:
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.drop_index("uq_bank_match_line_active")
        batch_op.drop_constraint(op.f("ck_bank_match_part"), type_="check")
        batch_op.drop_column("part")
        batch_op.create_index(
            "uq_bank_match_line_active",
            ["line_id"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )
    _recreate_direction_trigger()
