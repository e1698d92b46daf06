"""A bank match knows its direction, so a payment can hold one active credit and one active
debit: the transfer's money coming in and the same transfer returned, a card settlement and its
chargeback. Before, one active match per payment left the returning debit unmatchable once the
credit was matched, and every run reported it as an unexplained debit.

The direction is the sign of the matched line; a trigger refuses a match whose direction the
line does not have (a match written as a debit to let a second credit through).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_MESSAGE = (
    "the direction of a bank match is that of its line: credit for money in, debit for money out"
)
_LINE_DIRECTION = (
    "(SELECT CASE WHEN l.amount_minor > 0 THEN 'credit' ELSE 'debit' END "
    "FROM bank_line l WHERE l.id = NEW.line_id)"
)


def upgrade() -> None:
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.add_column(sa.Column("direction", sa.String(length=6), nullable=True))
    op.execute(
        "UPDATE bank_match SET direction = (SELECT CASE WHEN l.amount_minor > 0 THEN 'credit' "
        "ELSE 'debit' END FROM bank_line l WHERE l.id = bank_match.line_id)"
    )
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.alter_column("direction", existing_type=sa.String(length=6), nullable=False)
        batch_op.create_check_constraint(
            op.f("ck_bank_match_direction"), "direction IN ('credit', 'debit')"
        )
        batch_op.drop_index("uq_bank_match_payment_active")
        batch_op.create_index(
            "uq_bank_match_payment_active",
            ["payment_id", "direction"],
            unique=True,
            sqlite_where=sa.text("active AND payment_id IS NOT NULL"),
            postgresql_where=sa.text("active AND payment_id IS NOT NULL"),
        )
    _direction_follows_the_line()


def _direction_follows_the_line() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER bank_match_direction BEFORE INSERT ON bank_match "
            f"WHEN NEW.direction IS NOT {_LINE_DIRECTION} "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        return
    op.execute(
        f"""
        CREATE FUNCTION bank_match_direction() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF NEW.direction IS DISTINCT FROM {_LINE_DIRECTION.replace("bank_line", "public.bank_line")} THEN
                RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER bank_match_direction BEFORE INSERT OR UPDATE OF direction, line_id "
        "ON bank_match FOR EACH ROW EXECUTE FUNCTION bank_match_direction()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS bank_match_direction")
    else:
        op.execute("DROP TRIGGER IF EXISTS bank_match_direction ON bank_match")
        op.execute("DROP FUNCTION IF EXISTS bank_match_direction()")
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.drop_index("uq_bank_match_payment_active")
        batch_op.drop_constraint(op.f("ck_bank_match_direction"), type_="check")
        batch_op.drop_column("direction")
        batch_op.create_index(
            "uq_bank_match_payment_active",
            ["payment_id"],
            unique=True,
            sqlite_where=sa.text("active AND payment_id IS NOT NULL"),
            postgresql_where=sa.text("active AND payment_id IS NOT NULL"),
        )
