"""A bank match of a payment carries the payment's facility, so that on a shared database the
policy on `bank_match` can be an index condition like every other facility's rows' (a probe by
payment id never fetches another facility's match to remove it); a match of a deposit slip,
whose items may be several facilities', carries none. Existing matches take their payment's.

SQLite rebuilds the table for the new reference: the view `bank_line_match` (0014), which
SQLite would refuse to let it rename, is dropped first and created again, and the trigger that
keeps a match's direction its line's (0011) is put back as 0013 left it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 22:20:00.000000
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _earlier(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"billing_desk.db.migrations.versions.{name}")


def upgrade() -> None:
    _parts, _views = _earlier("0013_match_parts"), _earlier("0014_line_matches")
    op.execute("DROP VIEW IF EXISTS bank_line_match")
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.add_column(sa.Column("facility_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_bank_match_facility_id_facility"), "facility", ["facility_id"], ["id"]
        )
    op.execute(
        "UPDATE bank_match SET facility_id = "
        "(SELECT p.facility_id FROM payment p WHERE p.id = bank_match.payment_id) "
        "WHERE payment_id IS NOT NULL"
    )
    _parts._recreate_direction_trigger()
    op.execute(_views.LINE_MATCH_VIEW)


def downgrade() -> None:
    _parts, _views = _earlier("0013_match_parts"), _earlier("0014_line_matches")
    op.execute("DROP VIEW IF EXISTS bank_line_match")
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_bank_match_facility_id_facility"), type_="foreignkey")
        batch_op.drop_column("facility_id")
    _parts._recreate_direction_trigger()
    op.execute(_views.LINE_MATCH_VIEW)
