"""Facility access: which facilities each user works for (shared PostgreSQL mode).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "facility_access",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=63), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_name"], ["app_user.name"], name=op.f("fk_facility_access_user_name_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_facility_access_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facility_access")),
        sa.UniqueConstraint(
            "user_name", "facility_id", name=op.f("uq_facility_access_user_name_facility_id")
        ),
    )
    op.create_index(
        "ix_facility_access_facility_id", "facility_access", ["facility_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_facility_access_facility_id", table_name="facility_access")
    op.drop_table("facility_access")
