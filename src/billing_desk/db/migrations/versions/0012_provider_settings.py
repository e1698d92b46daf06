"""The provider's details and remittance settings live in the database (one row), so every
statement printed from a shared database names the same payee and bank details, and a change is
audited; they used to come from each workstation's environment.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_setting",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("bank_name", sa.String(length=200), nullable=True),
        sa.Column("account_number", sa.String(length=34), nullable=True),
        sa.Column("routing_number", sa.String(length=9), nullable=True),
        sa.Column("lockbox_address", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=63), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_provider_setting_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_setting")),
    )


def downgrade() -> None:
    op.drop_table("provider_setting")
