"""Audit chain hash version 2: a per-entry digest computed by the writer, and on PostgreSQL a
sealing function that chains those digests without reading any entry's content.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_desk.domain.integrity import SEAL_FUNCTION, entry_digest

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ENTRY_FIELDS = (
    "recorded_at",
    "user_name",
    "user_role",
    "facility_id",
    "action",
    "entity_type",
    "entity_id",
    "before",
    "after",
    "request_id",
)

# Version-2 link bytes are plain ASCII (keys sorted, compact JSON, hex strings and an integer),
# so the function builds them by concatenation; it refuses anything that is not 64 lower-case
# hex digits rather than escape it. SECURITY DEFINER with a fixed search_path and qualified
# names: whoever may EXECUTE it seals every facility's entries without reading any of them.
# (Run through text(), where "\:" is a literal colon, not a bind parameter.)
_SEAL_FUNCTION_SQL = f"""
CREATE FUNCTION {SEAL_FUNCTION}(max_entries integer, wait_for_head boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head_sequence bigint;
    head_hash text;
    link_hash text;
    sealed bigint[] := '{{}}';
    pending record;
BEGIN
    IF wait_for_head THEN
        SELECT last_sequence, last_hash INTO head_sequence, head_hash
        FROM public.audit_chain_head WHERE id = 1 FOR UPDATE;
    ELSE
        -- Another sealer holds the head: it, or the next writer, seals what is waiting.
        SELECT last_sequence, last_hash INTO head_sequence, head_hash
        FROM public.audit_chain_head WHERE id = 1 FOR UPDATE SKIP LOCKED;
    END IF;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF head_hash IS NULL OR head_hash !~ '^[0-9a-f]{{64}}$' THEN
        RAISE EXCEPTION 'the audit chain head hash is not 64 lower-case hex digits'
            USING ERRCODE = 'data_exception';
    END IF;
    FOR pending IN
        SELECT q.entry_id, e.entry_digest
        FROM public.audit_pending AS q
        JOIN public.audit_entry AS e ON e.id = q.entry_id
        ORDER BY q.entry_id
        LIMIT greatest(max_entries, 0)
    LOOP
        IF pending.entry_digest IS NULL OR pending.entry_digest !~ '^[0-9a-f]{{64}}$' THEN
            RAISE EXCEPTION 'audit entry % has no valid entry digest and cannot be sealed',
                pending.entry_id USING ERRCODE = 'data_exception';
        END IF;
        head_sequence := head_sequence + 1;
        link_hash := encode(sha256(convert_to(
            '{{"entry_digest":"' || pending.entry_digest
            || '","prev_hash":"' || head_hash
            || '","sequence":' || head_sequence::text
            || ',"v"\\:2}}', 'UTF8')), 'hex');
        INSERT INTO public.audit_link
            (sequence, entry_id, hash_version, prev_hash, entry_hash, sealed_at)
        VALUES (head_sequence, pending.entry_id, 2, head_hash, link_hash, now());
        head_hash := link_hash;
        sealed := sealed || pending.entry_id;
    END LOOP;
    IF cardinality(sealed) > 0 THEN
        DELETE FROM public.audit_pending WHERE entry_id = ANY (sealed);
        UPDATE public.audit_chain_head
        SET last_sequence = head_sequence, last_hash = head_hash,
            hash_version = greatest(hash_version, 2)
        WHERE id = 1;
    END IF;
    RETURN cardinality(sealed);
END
$$
"""


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy) so SQLite keeps the append-only triggers.
    op.add_column("audit_entry", sa.Column("entry_digest", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite seals each entry in the transaction that wrote it: nothing legitimate waits.
        return
    _digest_waiting_entries()
    op.execute(_SEAL_FUNCTION_SQL)
    op.execute(f"REVOKE ALL ON FUNCTION {SEAL_FUNCTION}(integer, boolean) FROM PUBLIC")


def _digest_waiting_entries() -> None:
    """Entries committed but not yet sealed will be sealed as version 2: give them their digest
    (they have no link yet, so no hash covers this column). The append-only trigger is set aside
    for this one statement, inside the migration's transaction."""
    bind = op.get_bind()
    entry = sa.table(
        "audit_entry",
        sa.column("id", sa.BigInteger),
        sa.column("recorded_at", sa.DateTime(timezone=True)),
        *(sa.column(name, sa.Text) for name in _ENTRY_FIELDS[1:] if name != "facility_id"),
        sa.column("facility_id", sa.Integer),
        sa.column("entry_digest", sa.Text),
    )
    pending = sa.table("audit_pending", sa.column("entry_id", sa.BigInteger))
    rows = bind.execute(
        sa.select(entry).where(entry.c.id.in_(sa.select(pending.c.entry_id)))
    ).mappings()
    digests = []
    for row in rows:
        record = {name: row[name] for name in _ENTRY_FIELDS}
        digests.append({"entry": row["id"], "digest": entry_digest(record)})
    if not digests:
        return
    op.execute("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only")
    bind.execute(
        sa.update(entry)
        .where(entry.c.id == sa.bindparam("entry"))
        .values(entry_digest=sa.bindparam("digest")),
        digests,
    )
    op.execute("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM audit_link WHERE hash_version >= 2")).scalar():
        raise RuntimeError(
            "the audit chain has version-2 links, which the previous version cannot verify; "
            "restore a backup taken before the upgrade instead"
        )
    if bind.dialect.name == "sqlite":
        # ALTER TABLE DROP COLUMN (SQLite 3.35+) keeps the table, and so its triggers.
        op.execute("ALTER TABLE audit_entry DROP COLUMN entry_digest")
        return
    op.execute(f"DROP FUNCTION IF EXISTS {SEAL_FUNCTION}(integer, boolean)")
    op.drop_column("audit_entry", "entry_digest")
