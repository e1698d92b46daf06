"""The database side of live updates (PostgreSQL): a trigger on `audit_entry` that announces each
payment recorded, statement imported and alert raised on one LISTEN/NOTIFY channel.

NOTIFY reaches every listener whatever row-level security says, so a payload carries only the
event's kind and its audit entry id ("payment:1234"); a listener reads the entry through its own
connection, where row-level security decides whether it may see it. The DDL is idempotent, so the
shared-mode setup (and a subscriber finding it missing) can run it again at any time.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

CHANNEL = "billing_desk_live"
FUNCTION = "audit_entry_live_notify"
TRIGGER = "audit_entry_live_notify"

# Event kinds announced once per request that writes them, keyed by the audit action.
EVENT_ACTIONS: dict[str, str] = {
    "statement.import": "statement",
    "alert.raise": "alert",
}
# A payment is announced by the entry of its inserted row: one per payment, however many rows
# (allocations, history, keys) the request wrote beside it.
PAYMENT_KIND = "payment"
KINDS = (PAYMENT_KIND, *EVENT_ACTIONS.values())

# Transaction-local marker: the (action, request) already announced in this transaction.
_ANNOUNCED_SETTING = "billing_desk.live_announced"
# Advisory lock key held while installing (an arbitrary constant of ours).
_INSTALL_LOCK = 0x6264_6C69_7665


def _function_body() -> str:
    actions = "\n".join(
        f"        WHEN '{action}' THEN '{kind}'" for action, kind in EVENT_ACTIONS.items()
    )
    return f"""
DECLARE
    kind text;
    mark text;
BEGIN
    IF NEW.entity_type = '{PAYMENT_KIND}' AND NEW.before IS NULL THEN
        kind := '{PAYMENT_KIND}';
    ELSE
        kind := CASE NEW.action
{actions}
        END;
        IF kind IS NULL THEN
            RETURN NULL;
        END IF;
        -- One announcement per request: its first entry of the action (the lowest id).
        mark := NEW.action || ' ' || NEW.request_id;
        IF current_setting('{_ANNOUNCED_SETTING}', true) IS NOT DISTINCT FROM mark THEN
            RETURN NULL;
        END IF;
        PERFORM set_config('{_ANNOUNCED_SETTING}', mark, true);
    END IF;
    PERFORM pg_notify('{CHANNEL}', kind || ':' || NEW.id::text);
    RETURN NULL;
END;
"""


FUNCTION_BODY = _function_body()


def install_live_updates(connection: Connection) -> bool:
    """Create (or replace) the notifying trigger on `audit_entry`, in the caller's transaction.
    Needs the right to create triggers on the table (its owner). On SQLite there is nothing to
    announce to: it does nothing and returns False."""
    if connection.dialect.name != "postgresql":
        return False
    # Two installers at once would collide on the function's catalog row: they take turns.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INSTALL_LOCK})
    connection.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger "
            "LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp "
            f"AS $live${FUNCTION_BODY}$live$"
        )
    )
    connection.execute(text(f"REVOKE EXECUTE ON FUNCTION {FUNCTION}() FROM PUBLIC"))
    connection.execute(text(f"DROP TRIGGER IF EXISTS {TRIGGER} ON audit_entry"))
    connection.execute(
        text(
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON audit_entry "
            f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()"
        )
    )
    return True


def live_updates_installed(connection: Connection) -> bool:
    """Whether this database announces events with the trigger of this version of the code."""
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(
        text(
            "SELECT p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE t.tgrelid = to_regclass('audit_entry') AND t.tgname = :trigger "
            "AND NOT t.tgisinternal AND t.tgenabled <> 'D'"
        ),
        {"trigger": TRIGGER},
    ).scalar_one_or_none()
    return found == FUNCTION_BODY


__all__ = [
    "CHANNEL",
    "EVENT_ACTIONS",
    "KINDS",
    "PAYMENT_KIND",
    "install_live_updates",
    "live_updates_installed",
]
