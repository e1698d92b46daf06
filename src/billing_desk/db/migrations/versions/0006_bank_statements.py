"""Bank statements (files, statements, lines), CSV mappings, matches, reconciliation runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 13:05:46.081716
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_payment_amount_minor_received_date",
        "payment",
        ["amount_minor", "received_date"],
        unique=False,
    )
    op.create_index(
        "ix_payment_transfer_reference", "payment", ["transfer_reference"], unique=False
    )
    op.create_index(
        "ix_deposit_total_minor_deposit_date",
        "deposit",
        ["total_minor", "deposit_date"],
        unique=False,
    )
    op.create_table(
        "csv_mapping",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("saved_by", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csv_mapping")),
        sa.UniqueConstraint("name", name=op.f("uq_csv_mapping_name")),
    )
    op.create_table(
        "reconciliation_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("date_from", sa.Date(), nullable=False),
        sa.Column("date_to", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=63), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=63), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_reconciliation_run_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_run")),
    )
    op.create_table(
        "statement_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement_file")),
        sa.UniqueConstraint("sha256", name=op.f("uq_statement_file_sha256")),
    )
    op.create_table(
        "bank_statement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("statement_ref", sa.Text(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("opening_minor", sa.BigInteger(), nullable=True),
        sa.Column("closing_minor", sa.BigInteger(), nullable=True),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["statement_file.id"],
            name=op.f("fk_bank_statement_file_id_statement_file"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_statement")),
    )
    with op.batch_alter_table("bank_statement", schema=None) as batch_op:
        batch_op.create_index("ix_bank_statement_file_id", ["file_id"], unique=False)

    op.create_table(
        "bank_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("statement_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("booked", sa.Date(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("bank_id", sa.Text(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("counterparty", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("line_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["bank_statement.id"],
            name=op.f("fk_bank_line_statement_id_bank_statement"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_line")),
        sa.UniqueConstraint(
            "account", "fingerprint", name=op.f("uq_bank_line_account_fingerprint")
        ),
        sa.UniqueConstraint("line_key", name=op.f("uq_bank_line_line_key")),
    )
    with op.batch_alter_table("bank_line", schema=None) as batch_op:
        batch_op.create_index("ix_bank_line_booked", ["booked"], unique=False)
        batch_op.create_index(
            "ix_bank_line_currency_amount_minor_booked",
            ["currency", "amount_minor", "booked"],
            unique=False,
        )
        batch_op.create_index("ix_bank_line_reference", ["reference"], unique=False)

    op.create_table(
        "bank_match",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("deposit_id", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("matched_by", sa.String(length=63), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("unmatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unmatched_by", sa.String(length=63), nullable=True),
        sa.Column("unmatch_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(payment_id IS NULL) <> (deposit_id IS NULL)", name=op.f("ck_bank_match_one_target")
        ),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_bank_match_deposit_id_deposit")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["bank_line.id"], name=op.f("fk_bank_match_line_id_bank_line")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_bank_match_payment_id_payment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_match")),
    )
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.create_index(
            "uq_bank_match_deposit_active",
            ["deposit_id"],
            unique=True,
            sqlite_where=sa.text("active AND deposit_id IS NOT NULL"),
            postgresql_where=sa.text("active AND deposit_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_bank_match_line_active",
            ["line_id"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )
        batch_op.create_index(
            "uq_bank_match_payment_active",
            ["payment_id"],
            unique=True,
            sqlite_where=sa.text("active AND payment_id IS NOT NULL"),
            postgresql_where=sa.text("active AND payment_id IS NOT NULL"),
        )

    op.create_table(
        "discrepancy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=True),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("deposit_id", sa.Integer(), nullable=True),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("trip_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("expected_minor", sa.BigInteger(), nullable=True),
        sa.Column("actual_minor", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=63), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f("ck_discrepancy_status")),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_discrepancy_deposit_id_deposit")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_discrepancy_facility_id_facility")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoice.id"], name=op.f("fk_discrepancy_invoice_id_invoice")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["bank_line.id"], name=op.f("fk_discrepancy_line_id_bank_line")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_discrepancy_payment_id_payment")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_run.id"],
            name=op.f("fk_discrepancy_run_id_reconciliation_run"),
        ),
        sa.ForeignKeyConstraint(["trip_id"], ["trip.id"], name=op.f("fk_discrepancy_trip_id_trip")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discrepancy")),
    )
    with op.batch_alter_table("discrepancy", schema=None) as batch_op:
        batch_op.create_index("ix_discrepancy_run_id", ["run_id"], unique=False)

    op.create_table(
        "statement_file_content",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["statement_file.id"],
            name=op.f("fk_statement_file_content_file_id_statement_file"),
        ),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_statement_file_content")),
    )


def downgrade() -> None:
    op.drop_table("statement_file_content")
    op.drop_index("ix_deposit_total_minor_deposit_date", table_name="deposit")
    op.drop_index("ix_payment_transfer_reference", table_name="payment")
    op.drop_index("ix_payment_amount_minor_received_date", table_name="payment")
    with op.batch_alter_table("discrepancy", schema=None) as batch_op:
        batch_op.drop_index("ix_discrepancy_run_id")

    op.drop_table("discrepancy")
    with op.batch_alter_table("bank_match", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_bank_match_payment_active",
            sqlite_where=sa.text("active AND payment_id IS NOT NULL"),
            postgresql_where=sa.text("active AND payment_id IS NOT NULL"),
        )
        batch_op.drop_index(
            "uq_bank_match_line_active",
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )
        batch_op.drop_index(
            "uq_bank_match_deposit_active",
            sqlite_where=sa.text("active AND deposit_id IS NOT NULL"),
            postgresql_where=sa.text("active AND deposit_id IS NOT NULL"),
        )

    op.drop_table("bank_match")
    with op.batch_alter_table("bank_line", schema=None) as batch_op:
        batch_op.drop_index("ix_bank_line_reference")
        batch_op.drop_index("ix_bank_line_currency_amount_minor_booked")
        batch_op.drop_index("ix_bank_line_booked")

    op.drop_table("bank_line")
    with op.batch_alter_table("bank_statement", schema=None) as batch_op:
        batch_op.drop_index("ix_bank_statement_file_id")

    op.drop_table("bank_statement")
    op.drop_table("statement_file")
    op.drop_table("reconciliation_run")
    op.drop_table("csv_mapping")
