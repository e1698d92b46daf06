"""Which bank lines are matched, whoever matched them: the view `bank_line_match` (line, part,
direction of every active match) without the payment or deposit slip, the rule, the detail or
the notes. The bank account is the provider's, so whether a line is matched is everyone's to
know; to what is the matching facility's. On a shared database (`billing-desk admin init`)
`bank_match` is then read only by those who can see its payment or slip, and this view is the
one way to learn that a line is taken.

A later migration that rebuilds `bank_match` on SQLite (a batch) drops this view first and
creates it again afterwards: SQLite refuses to rename a table a view reads.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 21:50:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LINE_MATCH_VIEW = (
    "CREATE VIEW bank_line_match AS SELECT line_id, part, direction FROM bank_match WHERE active"
)


def upgrade() -> None:
    op.execute(LINE_MATCH_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS bank_line_match")
