"""Alerts raised by the anomaly rules, and refused or failed operations.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 13:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anomaly_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=48), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("entities", sa.Text(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raised_by", sa.String(length=63), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=63), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name=op.f("ck_anomaly_alert_severity")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'dismissed')", name=op.f("ck_anomaly_alert_status")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_anomaly_alert_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomaly_alert")),
        sa.UniqueConstraint(
            "facility_id", "fingerprint", name=op.f("uq_anomaly_alert_facility_id_fingerprint")
        ),
    )
    with op.batch_alter_table("anomaly_alert", schema=None) as batch_op:
        batch_op.create_index(
            "ix_anomaly_alert_status_raised_at", ["status", "raised_at"], unique=False
        )

    op.create_table(
        "operation_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(length=63), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation_failure")),
    )
    with op.batch_alter_table("operation_failure", schema=None) as batch_op:
        batch_op.create_index("ix_operation_failure_occurred_at", ["occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("operation_failure", schema=None) as batch_op:
        batch_op.drop_index("ix_operation_failure_occurred_at")
    op.drop_table("operation_failure")
    with op.batch_alter_table("anomaly_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_anomaly_alert_status_raised_at")
    op.drop_table("anomaly_alert")
