"""Initial schema: users, facilities, clients, trips, invoices and their history.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 08:18:13.661917
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=True),
        sa.CheckConstraint(
            "role IN ('clerk', 'manager', 'auditor', 'admin')", name=op.f("ck_app_user_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("name", name=op.f("uq_app_user_name")),
    )
    op.create_table(
        "facility",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("billing_contact_name", sa.Text(), nullable=True),
        sa.Column("billing_contact_email", sa.Text(), nullable=True),
        sa.Column("billing_address", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_facility_currency")),
        sa.CheckConstraint("payment_terms_days >= 0", name=op.f("ck_facility_payment_terms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facility")),
        sa.UniqueConstraint("code", name=op.f("uq_facility_code")),
    )
    op.create_table(
        "client",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("external_ref", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_client_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client")),
        sa.UniqueConstraint(
            "facility_id", "external_ref", name=op.f("uq_client_facility_id_external_ref")
        ),
    )
    op.create_table(
        "invoice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("voided_by", sa.String(length=63), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'issued', 'partially paid', 'paid', 'void')",
            name=op.f("ck_invoice_status"),
        ),
        sa.CheckConstraint("total_minor >= 0", name=op.f("ck_invoice_total_not_negative")),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_invoice_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice")),
        sa.UniqueConstraint("facility_id", "number", name=op.f("uq_invoice_facility_id_number")),
        sa.UniqueConstraint(
            "facility_id", "sequence", name=op.f("uq_invoice_facility_id_sequence")
        ),
    )
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_number", ["number"], unique=False)

    op.create_table(
        "invoice_counter",
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_invoice_counter_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("facility_id", name=op.f("pk_invoice_counter")),
    )
    op.create_table(
        "invoice_status_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=63), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["facility_id"],
            ["facility.id"],
            name=op.f("fk_invoice_status_change_facility_id_facility"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoice.id"], name=op.f("fk_invoice_status_change_invoice_id_invoice")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_status_change")),
    )
    with op.batch_alter_table("invoice_status_change", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_status_change_invoice_id", ["invoice_id"], unique=False)

    op.create_table(
        "trip",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("external_trip_id", sa.String(length=64), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("pickup", sa.Text(), nullable=False),
        sa.Column("dropoff", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fare_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('completed', 'cancelled', 'no-show')", name=op.f("ck_trip_status")
        ),
        sa.CheckConstraint("fare_minor >= 0", name=op.f("ck_trip_fare_not_negative")),
        sa.ForeignKeyConstraint(
            ["client_id"], ["client.id"], name=op.f("fk_trip_client_id_client")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_trip_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trip")),
        sa.UniqueConstraint(
            "facility_id", "external_trip_id", name=op.f("uq_trip_facility_id_external_trip_id")
        ),
    )
    with op.batch_alter_table("trip", schema=None) as batch_op:
        batch_op.create_index(
            "ix_trip_facility_id_service_date", ["facility_id", "service_date"], unique=False
        )

    op.create_table(
        "invoice_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("trip_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_invoice_line_facility_id_facility")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoice.id"], name=op.f("fk_invoice_line_invoice_id_invoice")
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"], ["trip.id"], name=op.f("fk_invoice_line_trip_id_trip")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_line")),
        sa.UniqueConstraint(
            "invoice_id", "line_no", name=op.f("uq_invoice_line_invoice_id_line_no")
        ),
    )
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_line_trip_id", ["trip_id"], unique=False)
        batch_op.create_index(
            "uq_invoice_line_trip_billed",
            ["facility_id", "trip_id"],
            unique=True,
            sqlite_where=sa.text("NOT released"),
            postgresql_where=sa.text("NOT released"),
        )

    _create_trip_freeze_trigger()


# The billed fields of a trip on a live invoice never change (promise 1). The service refuses
# first with a clear sentence; the trigger makes it hold for anything that reaches the database.
_FROZEN_TRIP_MESSAGE = "trip is on an invoice: its billed fields cannot change"


def _create_trip_freeze_trigger() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(
            f"""
            CREATE TRIGGER trip_billed_fields_frozen
            BEFORE UPDATE OF fare_minor, currency, service_date, facility_id, status, billable
            ON trip
            WHEN EXISTS (SELECT 1 FROM invoice_line WHERE trip_id = OLD.id AND NOT released)
             AND (NEW.fare_minor IS NOT OLD.fare_minor OR NEW.currency IS NOT OLD.currency
                  OR NEW.service_date IS NOT OLD.service_date
                  OR NEW.facility_id IS NOT OLD.facility_id
                  OR NEW.status IS NOT OLD.status OR NEW.billable IS NOT OLD.billable)
            BEGIN
                SELECT RAISE(ABORT, '{_FROZEN_TRIP_MESSAGE}');
            END
            """
        )
    else:
        op.execute(
            f"""
            CREATE FUNCTION trip_billed_fields_frozen() RETURNS trigger
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
            BEGIN
                IF (NEW.fare_minor, NEW.currency, NEW.service_date, NEW.facility_id,
                    NEW.status, NEW.billable)
                   IS DISTINCT FROM
                   (OLD.fare_minor, OLD.currency, OLD.service_date, OLD.facility_id,
                    OLD.status, OLD.billable)
                   AND EXISTS (SELECT 1 FROM public.invoice_line l
                               WHERE l.trip_id = OLD.id AND NOT l.released) THEN
                    RAISE EXCEPTION '{_FROZEN_TRIP_MESSAGE}' USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER trip_billed_fields_frozen BEFORE UPDATE ON trip "
            "FOR EACH ROW EXECUTE FUNCTION trip_billed_fields_frozen()"
        )


def downgrade() -> None:
    bind = op.get_bind()
    op.execute(
        "DROP TRIGGER IF EXISTS trip_billed_fields_frozen"
        + ("" if bind.dialect.name == "sqlite" else " ON trip")
    )
    if bind.dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS trip_billed_fields_frozen()")
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_invoice_line_trip_billed",
            sqlite_where=sa.text("NOT released"),
            postgresql_where=sa.text("NOT released"),
        )
        batch_op.drop_index("ix_invoice_line_trip_id")

    op.drop_table("invoice_line")
    with op.batch_alter_table("trip", schema=None) as batch_op:
        batch_op.drop_index("ix_trip_facility_id_service_date")

    op.drop_table("trip")
    with op.batch_alter_table("invoice_status_change", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_status_change_invoice_id")

    op.drop_table("invoice_status_change")
    op.drop_table("invoice_counter")
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_number")

    op.drop_table("invoice")
    op.drop_table("client")
    op.drop_table("facility")
    op.drop_table("app_user")
