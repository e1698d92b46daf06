"""Payments: allocations, refunds, deposits, idempotency records and the account-hash key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 08:32:43.591491
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "database_secret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_database_secret")),
    )
    op.create_table(
        "deposit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deposit_date", sa.Date(), nullable=False),
        sa.Column("bank_account", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit")),
    )
    op.create_table(
        "maintenance_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ran_by", sa.String(length=63), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_run")),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"],
            ["facility.id"],
            name=op.f("fk_idempotency_record_facility_id_facility"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_record")),
    )
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_record_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "uq_idempotency_record_facility_key",
            ["facility_id", "key"],
            unique=True,
            sqlite_where=sa.text("facility_id IS NOT NULL"),
            postgresql_where=sa.text("facility_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_idempotency_record_global_key",
            ["key"],
            unique=True,
            sqlite_where=sa.text("facility_id IS NULL"),
            postgresql_where=sa.text("facility_id IS NULL"),
        )

    op.create_table(
        "payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("received_date", sa.Date(), nullable=False),
        sa.Column("payer", sa.Text(), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("check_number", sa.String(length=32), nullable=True),
        sa.Column("routing_number", sa.String(length=16), nullable=True),
        sa.Column("account_last4", sa.String(length=4), nullable=True),
        sa.Column("account_hash", sa.String(length=64), nullable=True),
        sa.Column("transfer_reference", sa.String(length=140), nullable=True),
        sa.Column("card_brand", sa.String(length=32), nullable=True),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("processor_ref", sa.String(length=140), nullable=True),
        sa.Column("natural_key", sa.String(length=255), nullable=True),
        sa.Column("duplicate_of_id", sa.Integer(), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("approved_by", sa.String(length=63), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("allocation_request", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(length=63), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "method IN ('check', 'transfer', 'card', 'cash')", name=op.f("ck_payment_method")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payment_amount_positive")),
        sa.ForeignKeyConstraint(
            ["duplicate_of_id"], ["payment.id"], name=op.f("fk_payment_duplicate_of_id_payment")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_payment_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment")),
    )
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_facility_id_received_date", ["facility_id", "received_date"], unique=False
        )
        batch_op.create_index(
            "uq_payment_natural_key",
            ["facility_id", "natural_key"],
            unique=True,
            sqlite_where=sa.text("natural_key IS NOT NULL"),
            postgresql_where=sa.text("natural_key IS NOT NULL"),
        )

    op.create_table(
        "allocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("via_credit", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=63), nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_allocation_amount_positive")),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_allocation_facility_id_facility")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoice.id"], name=op.f("fk_allocation_invoice_id_invoice")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_allocation_payment_id_payment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation")),
    )
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.create_index("ix_allocation_invoice_id", ["invoice_id"], unique=False)
        batch_op.create_index("ix_allocation_payment_id", ["payment_id"], unique=False)

    op.create_table(
        "deposit_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deposit_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_deposit_item_deposit_id_deposit")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_deposit_item_facility_id_facility")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_deposit_item_payment_id_payment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_item")),
    )
    with op.batch_alter_table("deposit_item", schema=None) as batch_op:
        batch_op.create_index("ix_deposit_item_deposit_id", ["deposit_id"], unique=False)
        batch_op.create_index(
            "ix_deposit_item_facility_id_payment_id", ["facility_id", "payment_id"], unique=False
        )

    op.create_table(
        "payment_status_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=24), nullable=True),
        sa.Column("to_status", sa.String(length=24), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=63), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["facility_id"],
            ["facility.id"],
            name=op.f("fk_payment_status_change_facility_id_facility"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_payment_status_change_payment_id_payment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_status_change")),
    )
    with op.batch_alter_table("payment_status_change", schema=None) as batch_op:
        batch_op.create_index("ix_payment_status_change_payment_id", ["payment_id"], unique=False)

    op.create_table(
        "refund",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refunded_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_refund_amount_positive")),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_refund_facility_id_facility")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payment.id"], name=op.f("fk_refund_payment_id_payment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund")),
    )
    # The key that hashes bank account numbers is made once per database, here, and lives in
    # its own table rather than beside the hashes it protects.
    secret = sa.table(
        "database_secret",
        sa.column("name", sa.String),
        sa.column("value", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        secret,
        [
            {
                "name": "account_hash_key",
                "value": secrets.token_hex(32),
                "created_at": now
                if op.get_bind().dialect.name != "sqlite"
                else now.replace(tzinfo=None),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("refund")
    with op.batch_alter_table("payment_status_change", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_status_change_payment_id")

    op.drop_table("payment_status_change")
    with op.batch_alter_table("deposit_item", schema=None) as batch_op:
        batch_op.drop_index("ix_deposit_item_facility_id_payment_id")
        batch_op.drop_index("ix_deposit_item_deposit_id")

    op.drop_table("deposit_item")
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.drop_index("ix_allocation_payment_id")
        batch_op.drop_index("ix_allocation_invoice_id")

    op.drop_table("allocation")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_payment_natural_key",
            sqlite_where=sa.text("natural_key IS NOT NULL"),
            postgresql_where=sa.text("natural_key IS NOT NULL"),
        )
        batch_op.drop_index("ix_payment_facility_id_received_date")

    op.drop_table("payment")
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_idempotency_record_global_key",
            sqlite_where=sa.text("facility_id IS NULL"),
            postgresql_where=sa.text("facility_id IS NULL"),
        )
        batch_op.drop_index(
            "uq_idempotency_record_facility_key",
            sqlite_where=sa.text("facility_id IS NOT NULL"),
            postgresql_where=sa.text("facility_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_idempotency_record_created_at")

    op.drop_table("idempotency_record")
    op.drop_table("maintenance_run")
    op.drop_table("deposit")
    op.drop_table("database_secret")
