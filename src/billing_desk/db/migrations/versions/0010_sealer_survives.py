"""Idempotency keys of no facility belong to their author (unique per user, not across the
database), so one user's keys can be neither probed nor claimed by another.

The PostgreSQL sealer survives a poisoned or held queue: entries already linked are taken out
of the queue and reported (never sealed twice, never failing every later seal), and a sealer
that waits for the chain head gives up after a few seconds instead of waiting forever behind a
transaction that holds it.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-05 07:30:00.000000
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

from billing_desk.domain.integrity import SEAL_FUNCTION

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

# How long a sealer waits for the chain head before leaving the entries to the next one.
HEAD_WAIT = "5s"

# (Run through op.execute/text(), where "\:" is a literal colon, not a bind parameter.)
_SEAL_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {SEAL_FUNCTION}(max_entries integer, wait_for_head boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET lock_timeout = '{HEAD_WAIT}' AS $$
DECLARE
    head_sequence bigint;
    head_hash text;
    link_hash text;
    sealed bigint[] := '{{}}';
    stale bigint;
    pending record;
BEGIN
    BEGIN
        IF wait_for_head THEN
            SELECT last_sequence, last_hash INTO head_sequence, head_hash
            FROM public.audit_chain_head WHERE id = 1 FOR UPDATE;
        ELSE
            -- Another sealer holds the head: it, or the next writer, seals what is waiting.
            SELECT last_sequence, last_hash INTO head_sequence, head_hash
            FROM public.audit_chain_head WHERE id = 1 FOR UPDATE SKIP LOCKED;
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        -- Held for longer than any seal takes: whoever holds it is not sealing. The entries
        -- stay queued for the next sealer; waiting on would stop this writer too.
        RAISE WARNING 'the audit chain head is held by another transaction; sealing left for later';
        RETURN 0;
    END;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF head_hash IS NULL OR head_hash !~ '^[0-9a-f]{{64}}$' THEN
        RAISE EXCEPTION 'the audit chain head hash is not 64 lower-case hex digits'
            USING ERRCODE = 'data_exception';
    END IF;
    -- An entry queued again after it was sealed has its link already: out of the queue.
    DELETE FROM public.audit_pending AS q
    WHERE EXISTS (SELECT 1 FROM public.audit_link AS l WHERE l.entry_id = q.entry_id);
    GET DIAGNOSTICS stale = ROW_COUNT;
    IF stale > 0 THEN
        RAISE WARNING '% queued audit entries were already sealed and were taken out of the queue',
            stale;
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
    with op.batch_alter_table("idempotency_record") as batch:
        batch.drop_index("uq_idempotency_record_global_key")
        batch.create_index(
            "uq_idempotency_record_user_key",
            ["created_by", "key"],
            unique=True,
            sqlite_where=sa.text("facility_id IS NULL"),
            postgresql_where=sa.text("facility_id IS NULL"),
        )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_SEAL_FUNCTION_SQL)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_record") as batch:
        batch.drop_index("uq_idempotency_record_user_key")
        batch.create_index(
            "uq_idempotency_record_global_key",
            ["key"],
            unique=True,
            sqlite_where=sa.text("facility_id IS NULL"),
            postgresql_where=sa.text("facility_id IS NULL"),
        )
    if op.get_bind().dialect.name != "postgresql":
        return
    previous = importlib.import_module("billing_desk.db.migrations.versions.0004_audit_v2")
    op.execute(
        previous._SEAL_FUNCTION_SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    )
    # Replacing keeps the function's owner and grants but not its settings: the old one had
    # no lock_timeout, and CREATE OR REPLACE without SET drops it.
