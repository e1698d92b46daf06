"""The audit trail: entries, chain links, the chain head, database identity, signing keys,
checkpoints, and content hashes on payments and invoices.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 08:45:07.491999
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("hash_version", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(length=63), nullable=False),
        sa.Column("user_role", sa.String(length=16), nullable=True),
        sa.Column("facility_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entry")),
    )
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_entry_entity_type_entity_id", ["entity_type", "entity_id"], unique=False
        )
        batch_op.create_index(
            "ix_audit_entry_facility_id_recorded_at", ["facility_id", "recorded_at"], unique=False
        )
        batch_op.create_index("ix_audit_entry_request_id", ["request_id"], unique=False)

    op.create_table(
        "checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("key_name", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoint")),
    )
    op.create_table(
        "database_identity",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("database_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_database_identity_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_database_identity")),
    )
    op.create_table(
        "signing_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_name", sa.String(length=128), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=63), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_key")),
        sa.UniqueConstraint("key_name", name=op.f("uq_signing_key_key_name")),
    )
    op.create_table(
        "audit_pending",
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["audit_entry.id"], name=op.f("fk_audit_pending_entry_id_audit_entry")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_audit_pending")),
    )
    op.create_table(
        "audit_link",
        sa.Column(
            "sequence",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("hash_version", sa.Integer(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("hash_version >= 1", name=op.f("ck_audit_link_hash_version")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["audit_entry.id"], name=op.f("fk_audit_link_entry_id_audit_entry")
        ),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_audit_link")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_audit_link_entry_id")),
    )
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))

    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))

    # The chain starts empty: sequence 0 and an all-zero hash stand for "nothing yet".
    now = datetime.now(UTC)
    stamp = now if op.get_bind().dialect.name != "sqlite" else now.replace(tzinfo=None)
    op.bulk_insert(
        sa.table(
            "audit_chain_head",
            sa.column("id", sa.Integer),
            sa.column("last_sequence", sa.BigInteger),
            sa.column("last_hash", sa.String),
            sa.column("hash_version", sa.Integer),
        ),
        [{"id": 1, "last_sequence": 0, "last_hash": "0" * 64, "hash_version": 1}],
    )
    op.bulk_insert(
        sa.table(
            "database_identity",
            sa.column("id", sa.Integer),
            sa.column("database_id", sa.String),
            sa.column("created_at", sa.DateTime(timezone=True)),
        ),
        [{"id": 1, "database_id": str(uuid.uuid4()), "created_at": stamp}],
    )

    op.create_index("ix_audit_link_hash_version", "audit_link", ["hash_version"], unique=False)
    _make_append_only(["audit_entry", "audit_link"])
    _forbid_hash_version_downgrade()


def _forbid_hash_version_downgrade() -> None:
    """A link's hash version is never lower than any link before it."""
    message = "audit hash version cannot go down"
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_link_version_monotonic BEFORE INSERT ON audit_link "
            "WHEN NEW.hash_version < (SELECT coalesce(max(hash_version), 1) FROM audit_link) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
        return
    op.execute(
        f"""
        CREATE FUNCTION audit_link_version_monotonic() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF NEW.hash_version < (SELECT coalesce(max(hash_version), 1) FROM public.audit_link) THEN
                RAISE EXCEPTION '{message}' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_link_version_monotonic BEFORE INSERT ON audit_link "
        "FOR EACH ROW EXECUTE FUNCTION audit_link_version_monotonic()"
    )


_APPEND_ONLY_MESSAGE = "audit history is append-only"


def _make_append_only(tables: list[str]) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) of audit rows for everyone who
    reaches the database through SQL; only dropping the trigger, which the verifier still
    catches through the chain and the checkpoints, gets past it."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for table in tables:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
                )
        return
    op.execute(
        f"""
        CREATE FUNCTION audit_append_only() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    for table in tables:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
        )


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_index("ix_audit_link_hash_version", table_name="audit_link")
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_link_version_monotonic")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_link_version_monotonic ON audit_link")
        op.execute("DROP FUNCTION IF EXISTS audit_link_version_monotonic()")
    for table in ("audit_entry", "audit_link"):
        if bind.dialect.name == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    if bind.dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_column("content_hash")

    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_column("content_hash")

    op.drop_table("audit_link")
    op.drop_table("audit_pending")
    op.drop_table("signing_key")
    op.drop_table("database_identity")
    op.drop_table("checkpoint")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entry_request_id")
        batch_op.drop_index("ix_audit_entry_facility_id_recorded_at")
        batch_op.drop_index("ix_audit_entry_entity_type_entity_id")

    op.drop_table("audit_entry")
    op.drop_table("audit_chain_head")
