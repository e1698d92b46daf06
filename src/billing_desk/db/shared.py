"""Shared PostgreSQL mode: the roles, grants, row-level security and triggers that make the
database itself decide who reads and writes what (DESIGN.md, promise 5).

Applied by `billing-desk admin init` with a superuser connection, after the migrations, and
safe to apply again: every statement either checks first or replaces what it made. Nothing here
runs on SQLite, nor on a PostgreSQL database that was never set up for sharing.

The model:
- Tables, sequences and functions belong to OWNER_ROLE, a role nobody logs in as and nobody is
  a member of. Login roles belong to one of the four group roles (clerk, manager, auditor,
  admin) and get what the grants below give that group, nothing else.
- Every table holding facility data has row-level security enabled and forced. Policies key on
  `current_user` and the facility_access table (never on a session setting a user could change):
  a user reads and writes the rows of the facilities they work for; auditors and administrators
  read every row; nobody but the owner's own functions goes further.
- Child rows reference their parents together with the facility (composite foreign keys), so a
  row of one facility can never point at another facility's invoice, payment or trip, and the
  foreign-key check cannot be used to probe another facility's rows.
- Columns a group may change are granted column by column; what the grants allow is further
  held by triggers: payment status moves follow the lifecycle, voids, refunds and approvals
  need a manager who did not record the payment, allocations never exceed the payment or the
  invoice, an invoice's status always matches its allocations, history is append-only.
- The acting-user columns (recorded_by, changed_by, created_by, user_name ...) must name
  `current_user`, so the audit trail and the status history say who really acted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from billing_desk.domain.payments import FIRST_STATUS, MANAGER_MOVES, PAYMENT_STATES
from billing_desk.domain.roles import Role

OWNER_ROLE = "billing_desk_owner"
GROUP_ROLES: tuple[str, ...] = tuple(role.value for role in Role)
WRITERS = (Role.CLERK.value, Role.MANAGER.value)

# Tables whose rows belong to one facility, and the column naming it.
TENANT_TABLES: dict[str, str] = {
    "facility": "id",
    "client": "facility_id",
    "trip": "facility_id",
    "invoice_counter": "facility_id",
    "invoice": "facility_id",
    "invoice_line": "facility_id",
    "invoice_status_change": "facility_id",
    "payment": "facility_id",
    "payment_status_change": "facility_id",
    "allocation": "facility_id",
    "refund": "facility_id",
    "deposit_item": "facility_id",
    "idempotency_record": "facility_id",
    "audit_entry": "facility_id",
    "facility_access": "facility_id",
    "discrepancy": "facility_id",
    "anomaly_alert": "facility_id",
}
# Tenant tables whose rows of no facility (NULL) are the provider's own, open to every billing
# role: a reconciliation finding about a bank line nobody has matched yet.
PROVIDER_ROWS = frozenset({"discrepancy"})
# Tables that hold no facility's rows but get row-level security all the same.
OTHER_SECURED_TABLES = ("deposit",)

# Who the acting-user column of each table must name on INSERT.
ACTOR_COLUMNS: dict[str, str] = {
    "invoice": "created_by",
    "invoice_status_change": "changed_by",
    "payment": "recorded_by",
    "payment_status_change": "changed_by",
    "allocation": "created_by",
    "refund": "created_by",
    "deposit": "created_by",
    "idempotency_record": "created_by",
    "audit_entry": "user_name",
    "signing_key": "registered_by",
    "checkpoint": "signed_by",
    "maintenance_run": "ran_by",
    "anomaly_alert": "raised_by",
}

# (child table, child column, parent table): children carry their parent's facility.
FACILITY_REFERENCES: tuple[tuple[str, str, str], ...] = (
    ("trip", "client_id", "client"),
    ("invoice_line", "invoice_id", "invoice"),
    ("invoice_line", "trip_id", "trip"),
    ("invoice_status_change", "invoice_id", "invoice"),
    ("payment", "duplicate_of_id", "payment"),
    ("payment_status_change", "payment_id", "payment"),
    ("allocation", "payment_id", "payment"),
    ("allocation", "invoice_id", "invoice"),
    ("refund", "payment_id", "payment"),
    ("deposit_item", "payment_id", "payment"),
)

# Unique constraints that do not start with the facility, replaced by ones that do.
FACILITY_FIRST_UNIQUES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "invoice_line",
        "uq_invoice_line_invoice_id_line_no",
        ("facility_id", "invoice_id", "line_no"),
    ),
)

# Idempotency keys younger than this are never removed, even by an administrator's purge.
MIN_KEY_AGE_DAYS = 1
# How far (seconds) a login's stated time of a write may be off the database's clock: desktop
# clocks kept by NTP are seconds apart; a payment dated further off is refused.
DEFAULT_MAX_CLOCK_SKEW = 300

_ALL = ("SELECT",)
# What each group may do, table by table: privileges, or UPDATE with its columns.
GRANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "clerk": {
        "facility": _ALL,
        "client": ("SELECT", "INSERT", "UPDATE(name)"),
        "trip": (
            "SELECT",
            "INSERT",
            "UPDATE(service_date, pickup, dropoff, status, fare_minor, currency, billable, "
            "updated_at, client_id)",
        ),
        "invoice_counter": ("SELECT", "INSERT", "UPDATE(last_number)"),
        "invoice": ("SELECT", "INSERT", "UPDATE(status, content_hash)"),
        "invoice_line": ("SELECT", "INSERT"),
        "invoice_status_change": ("SELECT", "INSERT"),
        "payment": ("SELECT", "INSERT", "UPDATE(status, content_hash)"),
        "payment_status_change": ("SELECT", "INSERT"),
        "allocation": ("SELECT", "INSERT", "UPDATE(released, released_at, released_by)"),
        "refund": _ALL,
        "deposit": ("SELECT", "INSERT"),
        "deposit_item": ("SELECT", "INSERT"),
        "idempotency_record": ("SELECT", "INSERT", "UPDATE(result)"),
        "database_secret": _ALL,
        "statement_file": ("SELECT", "INSERT"),
        "statement_file_content": ("SELECT", "INSERT"),
        "bank_statement": ("SELECT", "INSERT"),
        "bank_line": ("SELECT", "INSERT"),
        "csv_mapping": ("SELECT", "INSERT", "UPDATE(record, saved_at, saved_by)"),
        "bank_match": (
            "SELECT",
            "INSERT",
            "UPDATE(active, unmatched_at, unmatched_by, unmatch_reason)",
        ),
        "reconciliation_run": ("SELECT", "INSERT"),
        "discrepancy": ("SELECT", "INSERT"),
        "anomaly_alert": ("SELECT", "INSERT"),
        "operation_failure": ("SELECT", "INSERT"),
    },
    "manager": {
        "facility": (
            "SELECT",
            "UPDATE(name, billing_contact_name, billing_contact_email, "
            "billing_address, payment_terms_days)",
        ),
        "client": ("SELECT", "INSERT", "UPDATE(name)"),
        "trip": (
            "SELECT",
            "INSERT",
            "UPDATE(service_date, pickup, dropoff, status, fare_minor, currency, billable, "
            "updated_at, client_id)",
        ),
        "invoice_counter": ("SELECT", "INSERT", "UPDATE(last_number)"),
        "invoice": (
            "SELECT",
            "INSERT",
            "UPDATE(status, content_hash, void_reason, voided_by, voided_at)",
        ),
        "invoice_line": ("SELECT", "INSERT", "UPDATE(released)"),
        "invoice_status_change": ("SELECT", "INSERT"),
        "payment": (
            "SELECT",
            "INSERT",
            "UPDATE(status, content_hash, natural_key, approved_by, approved_at)",
        ),
        "payment_status_change": ("SELECT", "INSERT"),
        "allocation": ("SELECT", "INSERT", "UPDATE(released, released_at, released_by)"),
        "refund": ("SELECT", "INSERT"),
        "deposit": ("SELECT", "INSERT"),
        "deposit_item": ("SELECT", "INSERT"),
        "idempotency_record": ("SELECT", "INSERT", "UPDATE(result)"),
        "database_secret": _ALL,
        "signing_key": ("SELECT", "INSERT"),
        "checkpoint": ("SELECT", "INSERT"),
        "statement_file": ("SELECT", "INSERT"),
        "statement_file_content": ("SELECT", "INSERT"),
        "bank_statement": ("SELECT", "INSERT"),
        "bank_line": ("SELECT", "INSERT"),
        "csv_mapping": ("SELECT", "INSERT", "UPDATE(record, saved_at, saved_by)"),
        "bank_match": (
            "SELECT",
            "INSERT",
            "UPDATE(active, unmatched_at, unmatched_by, unmatch_reason)",
        ),
        "reconciliation_run": (
            "SELECT",
            "INSERT",
            "UPDATE(status, closed_at, closed_by, content_hash)",
        ),
        "discrepancy": ("SELECT", "INSERT", "UPDATE(status, resolved_at, resolved_by, note)"),
        "anomaly_alert": ("SELECT", "INSERT", "UPDATE(status, closed_at, closed_by, note)"),
        "operation_failure": ("SELECT", "INSERT"),
        "provider_setting": (
            "SELECT",
            "INSERT",
            "UPDATE(name, address, phone, email, bank_name, account_number, routing_number, "
            "lockbox_address, updated_at, updated_by)",
        ),
    },
    "auditor": {"operation_failure": ("INSERT",)},
    "admin": {
        "facility": (
            "SELECT",
            "INSERT",
            "UPDATE(name, billing_contact_name, "
            "billing_contact_email, billing_address, payment_terms_days)",
        ),
        "invoice_counter": ("SELECT", "INSERT"),
        "idempotency_record": ("SELECT", "DELETE"),
        "maintenance_run": ("SELECT", "INSERT"),
        "signing_key": ("SELECT", "INSERT"),
        "checkpoint": ("SELECT", "INSERT"),
        "operation_failure": ("INSERT",),
        "provider_setting": (
            "SELECT",
            "INSERT",
            "UPDATE(name, address, phone, email, bank_name, account_number, routing_number, "
            "lockbox_address, updated_at, updated_by)",
        ),
    },
}
# Everybody reads these (auditors read every table but the account-hash key).
READ_BY_ALL = (
    "app_user",
    "facility_access",
    "database_identity",
    "signing_key",
    "checkpoint",
    "audit_link",
    "audit_chain_head",
    "audit_pending",
    "audit_entry",
    "alembic_version",
    "provider_setting",
)
# Tables whose UPDATE policy decides which rows may be touched, not only what they become.
OWN_UPDATE_USING = ("facility", "idempotency_record", *PROVIDER_ROWS)
# Everybody appends to the audit trail (the sealer function does the rest).
APPEND_BY_ALL = ("audit_entry", "audit_pending")


@dataclass(frozen=True)
class SharedSetup:
    """What `apply` found and did, for the administrator's report."""

    created_roles: tuple[str, ...]
    tables: int
    policies: int


def apply(
    connection: Connection,
    *,
    seal_function: str | None,
    max_clock_skew: int = DEFAULT_MAX_CLOCK_SKEW,
) -> SharedSetup:
    """Set the database up for sharing, in the caller's transaction (a superuser's).
    `max_clock_skew`: how many seconds a login's stated time of a write (a payment's
    recorded_at) may be off the database's own clock."""
    created = tuple(_ensure_roles(connection))
    database = connection.execute(text("SELECT current_database()")).scalar_one()
    tables = [
        row[0]
        for row in connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        )
    ]
    _lock_down_database(connection, database)
    _own_everything(connection)
    _facility_first_uniques(connection)
    _facility_references(connection)
    _facility_first_indexes(connection)
    _scope_first_indexes(connection)
    _grant(connection, tables, seal_function)
    _functions(connection)
    policies = _policies(connection)
    _line_matches(connection)
    _triggers(connection)
    _insert_guards(connection, max_clock_skew)
    _no_statistics_on_sensitive_columns(connection)
    return SharedSetup(created, len(tables), policies)


# -- roles and ownership ----------------------------------------------------------------------


def _ensure_roles(connection: Connection) -> Iterable[str]:
    """Create the owner and group roles, or put back their attributes. Roles are shared by the
    whole server, so another database's setup may be creating them at this very moment: a
    collision rolls back to a savepoint and looks again."""
    for name in (OWNER_ROLE, *GROUP_ROLES):
        for attempt in range(5):
            row = connection.execute(
                text(
                    "SELECT rolcanlogin OR rolsuper OR rolcreatedb OR rolcreaterole "
                    "OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = :name"
                ),
                {"name": name},
            ).first()
            if row is not None and not row[0]:
                break
            statement = "ALTER" if row is not None else "CREATE"
            try:
                with connection.begin_nested():
                    _execute(
                        connection,
                        f'{statement} ROLE "{name}" NOLOGIN NOSUPERUSER NOCREATEDB '
                        "NOCREATEROLE NOBYPASSRLS",
                    )
            except DBAPIError:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
            if statement == "CREATE":
                yield name
            break


def _lock_down_database(connection: Connection, database: str) -> None:
    quoted = _quote(database)
    # No temporary objects (no search_path games), no connecting without a billing role.
    _execute(connection, f"REVOKE ALL ON DATABASE {quoted} FROM PUBLIC")
    _execute(connection, "REVOKE ALL ON SCHEMA public FROM PUBLIC")
    for group in GROUP_ROLES:
        _execute(connection, f'GRANT CONNECT ON DATABASE {quoted} TO "{group}"')
        _execute(connection, f'GRANT USAGE ON SCHEMA public TO "{group}"')


def _own_everything(connection: Connection) -> None:
    _execute(connection, f'ALTER SCHEMA public OWNER TO "{OWNER_ROLE}"')
    rows = connection.execute(
        text(
            """
            SELECT c.relname, c.relkind FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'v', 'p')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
            """
        )
    ).all()
    for name, kind in rows:
        what = {"r": "TABLE", "p": "TABLE", "S": "SEQUENCE", "v": "VIEW"}[kind]
        _execute(connection, f'ALTER {what} public."{name}" OWNER TO "{OWNER_ROLE}"')
    functions = connection.execute(
        text(
            """
            SELECT p.oid::regprocedure::text FROM pg_proc p
            JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public'
            """
        )
    ).scalars()
    for signature in list(functions):
        _execute(connection, f'ALTER FUNCTION {signature} OWNER TO "{OWNER_ROLE}"')
        _execute(connection, f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")


# -- constraints ------------------------------------------------------------------------------


def _constraint_exists(connection: Connection, table: str, name: str) -> bool:
    return (
        connection.execute(
            text(
                "SELECT 1 FROM pg_constraint WHERE conname = :name "
                "AND conrelid = (:table)::regclass"
            ),
            {"name": name, "table": f"public.{table}"},
        ).first()
        is not None
    )


def _facility_first_uniques(connection: Connection) -> None:
    for table, old, columns in FACILITY_FIRST_UNIQUES:
        new = f"uq_{table}_{'_'.join(columns)}"
        if not _constraint_exists(connection, table, new):
            _execute(
                connection,
                f"ALTER TABLE public.{table} ADD CONSTRAINT {new} UNIQUE ({', '.join(columns)})",
            )
        if _constraint_exists(connection, table, old):
            _execute(connection, f"ALTER TABLE public.{table} DROP CONSTRAINT {old}")


def _facility_references(connection: Connection) -> None:
    parents = sorted({parent for _child, _column, parent in FACILITY_REFERENCES})
    for parent in parents:
        name = f"uq_{parent}_facility_id_id"
        if not _constraint_exists(connection, parent, name):
            _execute(
                connection,
                f"ALTER TABLE public.{parent} ADD CONSTRAINT {name} UNIQUE (facility_id, id)",
            )
    for child, column, parent in FACILITY_REFERENCES:
        name = f"fk_{child}_facility_{column}"
        if not _constraint_exists(connection, child, name):
            _execute(
                connection,
                f"ALTER TABLE public.{child} ADD CONSTRAINT {name} "
                f"FOREIGN KEY (facility_id, {column}) REFERENCES public.{parent} (facility_id, id)",
            )
        # The single-column key the composite one covers goes: with both, a row of another
        # facility failed only the composite check and a missing row the other one first, so
        # the constraint named in the error told them apart.
        covered = connection.execute(
            text(
                """
                SELECT c.conname FROM pg_constraint c
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.contype = 'f' AND c.conrelid = (:child)::regclass
                  AND c.confrelid = (:parent)::regclass
                  AND cardinality(c.conkey) = 1 AND a.attname = :column
                """
            ),
            {"child": f"public.{child}", "parent": f"public.{parent}", "column": column},
        ).scalars()
        for constraint in list(covered):
            _execute(connection, f"ALTER TABLE public.{child} DROP CONSTRAINT {constraint}")


# Tenant tables whose reading policy is an index condition on the facility (`readable` in
# _policies): every index of theirs but the primary key leads with facility_id, so that the
# policy is part of every index scan's condition. (Those with rows of no facility do the same
# with a scope, see SCOPED_TABLES; facility and facility_access are not about facility data.)
INDEXED_BY_FACILITY = tuple(
    table
    for table in TENANT_TABLES
    if table not in ("facility", "facility_access", "audit_entry", "idempotency_record")
    and table not in PROVIDER_ROWS
)


def _indexes(connection: Connection, tables: Iterable[str]) -> list[Any]:
    """Every index of `tables` but the primary keys: table, index, unique, predicate, the key
    columns' names (an expression has none), the number of keys, the access method, and the
    first key's column number (0 for an expression)."""
    return list(
        connection.execute(
            text(
                """
                SELECT c.relname, i.relname, x.indisunique,
                       pg_get_expr(x.indpred, x.indrelid),
                       array(SELECT a.attname
                             FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, o)
                             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n
                             ORDER BY k.o)::text[],
                       cardinality(x.indkey::int2[]), am.amname, x.indkey[0]
                FROM pg_index x
                JOIN pg_class c ON c.oid = x.indrelid
                JOIN pg_class i ON i.oid = x.indexrelid
                JOIN pg_am am ON am.oid = i.relam
                WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (:tables)
                  AND NOT x.indisprimary
                ORDER BY 1, 2
                """
            ),
            {"tables": list(tables)},
        ).all()
    )


def _facility_first_indexes(connection: Connection) -> None:
    """Rebuild each index of INDEXED_BY_FACILITY tables that does not lead with facility_id
    under the same name with facility_id first (so migrations still find it by name). Only
    plain indexes: a unique one that does not lead with the facility is refused by the catalog
    test, not weakened here."""
    rows = [row for row in _indexes(connection, INDEXED_BY_FACILITY) if not row[2]]
    for table, index, _unique, predicate, columns, width, method, _first in rows:
        if not columns or columns[0] == "facility_id":
            continue
        if len(columns) != width or method != "btree":
            raise RuntimeError(f"index {index} on {table}: not a plain btree on columns")
        keys = ", ".join(_quote(column) for column in ("facility_id", *columns))
        where = f" WHERE {predicate}" if predicate else ""
        _execute(connection, f"DROP INDEX public.{_quote(index)}")
        _execute(
            connection,
            f"CREATE INDEX {_quote(index)} ON public.{_quote(table)} ({keys}){where}",
        )


# Tenant tables with rows of no facility: a finding about a bank line nobody has matched is
# everyone's; a key or audit entry of no facility (a deposit slip's key, a user change, an
# export) is its author's. An OR of "no facility" and "my facilities" cannot be an index
# condition, so each row gets a scope, computed from its columns, that the reading policy
# compares with the reader's scopes (`scope = ANY ((SELECT readable)::type[])`, an index
# condition), and every index of the table but the primary key leads with that scope. Then
# an index scan on a reader's own condition never fetches a row of another facility, or
# another user's row of no facility, for the policy to remove where EXPLAIN ANALYZE counts it.
# (table: scope expression, its type, the array of the scopes the reader reads, and the
# check of a row's scope made before a reader's conditions when the expression costs more
# than one operator, see _reads_own_scope)
SCOPED_TABLES: dict[str, tuple[str, str, str, str | None]] = {
    "discrepancy": (
        "COALESCE(facility_id, 0)",
        "integer",
        "array_append(public.billing_desk_readable_facilities(), 0)",
        None,
    ),
    "idempotency_record": (
        "COALESCE((facility_id)::text, ('@'::text || (created_by)::text))",
        "text",
        "public.billing_desk_readable_scopes()",
        "public.billing_desk_in_scope({readers}, facility_id, created_by)",
    ),
    "audit_entry": (
        "COALESCE((facility_id)::text, ('@'::text || (user_name)::text))",
        "text",
        "public.billing_desk_readable_scopes()",
        "public.billing_desk_in_scope({readers}, facility_id, user_name)",
    ),
}


# A bank match's scope: its payment's facility (migration 0015), or 0 for a deposit slip's,
# whose items may be several facilities' (its match, like the slip's bank line, is then every
# billing role's to read). Its indexes lead with the scope, as SCOPED_TABLES' do, but for the
# one on the line: which lines are taken is everyone's (the view bank_line_match), and that
# index keeps two people from matching one line twice, whatever their facilities.
MATCH_SCOPE = "COALESCE(facility_id, 0)"
LINE_INDEXES = frozenset({"uq_bank_match_line_active"})


def _scope_first_indexes(connection: Connection) -> None:
    """Rebuild each index of SCOPED_TABLES and of bank_match (MATCH_SCOPE; but the line's,
    LINE_INDEXES) but the primary key under the same name, leading with the table's scope and
    then its columns as before, with the same predicate. A unique index
    stays as unique as it was: the scope is a function of its columns and predicate (the
    facility, or for rows of no facility the author, which the idempotency keys' indexes lead
    with). An index whose first key is an expression was rebuilt by an earlier run."""
    rows = _indexes(connection, [*SCOPED_TABLES, "bank_match"])
    for table, index, unique, predicate, columns, width, method, first in rows:
        if first == 0 or index in LINE_INDEXES:
            continue
        if len(columns) != width or method != "btree":
            raise RuntimeError(f"index {index} on {table}: not a plain btree on columns")
        scope = MATCH_SCOPE if table == "bank_match" else SCOPED_TABLES[table][0]
        keys = ", ".join((f"({scope})", *(_quote(column) for column in columns)))
        where = f" WHERE {predicate}" if predicate else ""
        kind = "UNIQUE INDEX" if unique else "INDEX"
        _execute(connection, f"DROP INDEX public.{_quote(index)}")
        _execute(
            connection,
            f"CREATE {kind} {_quote(index)} ON public.{_quote(table)} ({keys}){where}",
        )


# -- privileges -------------------------------------------------------------------------------


def _grant(connection: Connection, tables: list[str], seal_function: str | None) -> None:
    for group in GROUP_ROLES:
        for table in tables:
            _execute(connection, f'REVOKE ALL ON public."{table}" FROM "{group}"')
    for table in tables:
        _execute(connection, f'REVOKE ALL ON public."{table}" FROM PUBLIC')
    for group, table_grants in GRANTS.items():
        for table, privileges in table_grants.items():
            if table in tables:
                for privilege in privileges:
                    _execute(connection, f'GRANT {privilege} ON public."{table}" TO "{group}"')
    for group in GROUP_ROLES:
        for table in READ_BY_ALL:
            if table in tables:
                _execute(connection, f'GRANT SELECT ON public."{table}" TO "{group}"')
    for table in tables:
        if table != "database_secret":
            _execute(connection, f'GRANT SELECT ON public."{table}" TO "auditor"')
            _execute(connection, f'GRANT SELECT ON public."{table}" TO "admin"')
    for group in GROUP_ROLES:
        # Auditors change no billing data, but their sensitive reads are audit entries too.
        for table in APPEND_BY_ALL:
            _execute(connection, f'GRANT INSERT ON public."{table}" TO "{group}"')
        _execute(connection, f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{group}"')
    if seal_function:
        # Every writer may seal; the function (SECURITY DEFINER) reads only entry digests.
        signatures = connection.execute(
            text(
                "SELECT p.oid::regprocedure::text FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' AND p.proname = :name"
            ),
            {"name": seal_function.rsplit(".", 1)[-1]},
        ).scalars()
        for signature in list(signatures):
            for group in GROUP_ROLES:
                _execute(connection, f'GRANT EXECUTE ON FUNCTION {signature} TO "{group}"')


# -- row-level security -----------------------------------------------------------------------

_READS_ALL = (
    f"(pg_catalog.pg_has_role(current_user, 'auditor', 'MEMBER') "
    f"OR pg_catalog.pg_has_role(current_user, 'admin', 'MEMBER') "
    f"OR current_user = '{OWNER_ROLE}')"
)


def _functions(connection: Connection) -> None:
    # SQL functions without SET clauses so the planner inlines them into the policies; they run
    # as the caller, so facility_access's own policy applies to what they read.
    _execute(
        connection,
        f"""
        CREATE OR REPLACE FUNCTION public.billing_desk_reads_all() RETURNS boolean
        LANGUAGE sql STABLE AS $$ SELECT {_READS_ALL} $$
        """,
    )
    _execute(
        connection,
        f"""
        CREATE OR REPLACE FUNCTION public.billing_desk_works_for(facility integer)
        RETURNS boolean LANGUAGE sql STABLE AS $$
            SELECT current_user = '{OWNER_ROLE}' OR EXISTS (
                SELECT 1 FROM public.facility_access a
                JOIN public.app_user u ON u.name = a.user_name AND u.active
                WHERE a.user_name = current_user AND current_user = session_user
                  AND (a.facility_id IS NULL OR a.facility_id = facility))
        $$
        """,
    )
    _execute(
        connection,
        f"""
        CREATE OR REPLACE FUNCTION public.billing_desk_works_for_all() RETURNS boolean
        LANGUAGE sql STABLE AS $$
            SELECT current_user = '{OWNER_ROLE}' OR EXISTS (
                SELECT 1 FROM public.facility_access a
                JOIN public.app_user u ON u.name = a.user_name AND u.active
                WHERE a.user_name = current_user AND current_user = session_user
                  AND a.facility_id IS NULL)
        $$
        """,
    )
    # The facilities whose rows the caller reads, as one array: a policy `facility_id = ANY
    # ((SELECT ...))` is an index condition (the array is computed once, by an InitPlan), so an
    # index scan never fetches another facility's row for the policy to remove afterwards,
    # which EXPLAIN ANALYZE counted ("Rows Removed by Filter") and timing would show.
    _execute(
        connection,
        """
        CREATE OR REPLACE FUNCTION public.billing_desk_readable_facilities() RETURNS integer[]
        LANGUAGE sql STABLE AS $$
            SELECT CASE WHEN public.billing_desk_reads_all()
                             OR public.billing_desk_works_for_all()
                        THEN (SELECT coalesce(array_agg(f.id), '{}') FROM public.facility f)
                        ELSE (SELECT coalesce(array_agg(a.facility_id), '{}')
                              FROM public.facility_access a
                              JOIN public.app_user u ON u.name = a.user_name AND u.active
                              WHERE a.user_name = current_user
                                AND current_user = session_user
                                AND a.facility_id IS NOT NULL) END
        $$
        """,
    )
    # The scopes of keys and audit entries the caller reads (SCOPED_TABLES): their facilities,
    # and their own rows of no facility.
    _execute(
        connection,
        """
        CREATE OR REPLACE FUNCTION public.billing_desk_readable_scopes() RETURNS text[]
        LANGUAGE sql STABLE AS $$
            SELECT coalesce((SELECT array_agg(f::text)
                             FROM unnest(public.billing_desk_readable_facilities()) f), '{}')
                   || CASE WHEN current_user = session_user THEN ARRAY['@' || current_user]
                           ELSE '{}'::text[] END
        $$
        """,
    )
    # Whether a row of a keys' or audit entries' scope is the reader's, checked on every row
    # a sequential scan reads before any condition of the reader's (see _reads_own_scope):
    # declared as cheap as it is, which the planner cannot see through PL/pgSQL, and given
    # the row's plain columns, whose scope expression would otherwise count towards its cost.
    _execute(
        connection,
        """
        CREATE OR REPLACE FUNCTION public.billing_desk_in_scope(
            scopes text[], facility integer, author text
        ) RETURNS boolean LANGUAGE plpgsql IMMUTABLE COST 0.0001 AS $$
        BEGIN
            RETURN coalesce(facility::text, '@' || author) = ANY (scopes);
        END
        $$
        """,
    )
    for name in (
        "billing_desk_reads_all()",
        "billing_desk_works_for(integer)",
        "billing_desk_works_for_all()",
        "billing_desk_readable_facilities()",
        "billing_desk_readable_scopes()",
        "billing_desk_in_scope(text[], integer, text)",
    ):
        _execute(connection, f'ALTER FUNCTION public.{name} OWNER TO "{OWNER_ROLE}"')
        _execute(connection, f"REVOKE ALL ON FUNCTION public.{name} FROM PUBLIC")
        for group in GROUP_ROLES:
            _execute(connection, f'GRANT EXECUTE ON FUNCTION public.{name} TO "{group}"')


def _policy(connection: Connection, table: str, name: str, clause: str) -> None:
    _execute(connection, f'DROP POLICY IF EXISTS {name} ON public."{table}"')
    _execute(connection, f'CREATE POLICY {name} ON public."{table}" {clause}')


def _reads_own_scope(scope: str, scopes: str, scope_type: str, check: str | None = None) -> str:
    """A reading policy that no scan can be made to talk about another facility's rows with.

    `scope = ANY ((SELECT scopes))` is an index condition: an index scan on a reader's own
    condition never fetches a row the policy would remove. On a sequential scan, though, the
    planner checks the cheapest conditions first, a reader's (leakproof) one before that
    policy, so the reader's scopes were computed only once some row, of any facility, met the
    reader's condition: EXPLAIN ANALYZE's "never executed" (and the time taken) told whether
    another facility has a value. So the policy also checks each row's scope in a way that
    costs no more than any condition a reader can write (one operator, or `check`, declared
    cheaper): the planner puts it first, and another facility's row never reaches the
    reader's condition."""
    readers = f"(SELECT {scopes})::{scope_type}[]"
    first = (check or "{readers} @> ARRAY[{scope}]").format(readers=readers, scope=scope)
    return f"{first} AND {scope} = ANY ({readers})"


def _policies(connection: Connection) -> int:
    count = 0
    reads_all = "public.billing_desk_reads_all()"
    for table, column in TENANT_TABLES.items():
        _execute(connection, f'ALTER TABLE public."{table}" ENABLE ROW LEVEL SECURITY')
        _execute(connection, f'ALTER TABLE public."{table}" FORCE ROW LEVEL SECURITY')
        works_for = f"public.billing_desk_works_for({column})"
        readable = _reads_own_scope(column, "public.billing_desk_readable_facilities()", "integer")
        actor = ACTOR_COLUMNS.get(table)
        pinned = f" AND {actor} = current_user" if actor else ""
        is_admin = "pg_catalog.pg_has_role(current_user, 'admin', 'MEMBER')"
        if table == "facility":
            read = f"{reads_all} OR {works_for}"
            insert = f"{is_admin} OR public.billing_desk_works_for_all()"
        elif table == "facility_access":
            read = f"{reads_all} OR user_name = current_user"
            insert = "false"
        elif table == "invoice_counter":
            read = readable
            insert = f"{works_for} OR {is_admin}"
        elif table in ("audit_entry", "idempotency_record"):
            # Rows of no facility (exports, user changes, deposits' keys) are their author's;
            # who reads them is the scope's (SCOPED_TABLES).
            read = ""
            insert = f"({column} IS NULL OR {works_for} OR {is_admin}){pinned}"
            if table == "audit_entry":
                # The role an entry names is the one the user holds.
                insert += (
                    " AND user_role IS NOT DISTINCT FROM (SELECT u.role FROM public.app_user u"
                    " WHERE u.name = current_user AND u.active)"
                )
        elif table in PROVIDER_ROWS:
            read = ""  # every billing role's: SCOPED_TABLES
            insert = f"{column} IS NULL OR {works_for}"
        else:
            read = readable
            insert = f"{works_for}{pinned}"
        if table in SCOPED_TABLES:
            # Two policies, so that neither needs an OR: the writing groups read their scopes
            # (an index condition, see SCOPED_TABLES), the readers of everything read all.
            scope, scope_type, scopes, check = SCOPED_TABLES[table]
            _policy(
                connection,
                table,
                "bd_read",
                f'FOR SELECT TO "{Role.CLERK.value}", "{Role.MANAGER.value}" '
                f"USING ({_reads_own_scope(scope, scopes, scope_type, check)})",
            )
            _policy(
                connection,
                table,
                "bd_read_all",
                f'FOR SELECT TO "{Role.AUDITOR.value}", "{Role.ADMIN.value}", "{OWNER_ROLE}" '
                "USING (true)",
            )
            count += 1
        else:
            _policy(connection, table, "bd_read", f"FOR SELECT USING ({read})")
        _policy(connection, table, "bd_insert", f"FOR INSERT WITH CHECK ({insert})")
        if table == "idempotency_record":
            # A claim's result is written by whoever claimed it; only expired keys are removed,
            # by an administrator's purge.
            update = f"({column} IS NULL OR {works_for}) AND created_by = current_user"
            _policy(
                connection,
                table,
                "bd_delete",
                # The application keeps keys at least a day; a fresh key removed would let a
                # retried write happen twice.
                "FOR DELETE USING (pg_catalog.pg_has_role(current_user, 'admin', 'MEMBER') "
                f"AND created_at < now() - interval '{MIN_KEY_AGE_DAYS} day')",
            )
            count += 1
        elif table == "facility":
            update = f"{works_for} OR {is_admin}"
        elif table in PROVIDER_ROWS:
            update = f"{column} IS NULL OR {works_for}"
        else:
            update = works_for
        _policy(
            connection,
            table,
            "bd_update",
            f"FOR UPDATE USING ({update if table in OWN_UPDATE_USING else works_for}) "
            f"WITH CHECK ({update})",
        )
        count += 3
    # Deposits span facilities: one sees a deposit one made, or one with an item one can see.
    _execute(connection, 'ALTER TABLE public."deposit" ENABLE ROW LEVEL SECURITY')
    _execute(connection, 'ALTER TABLE public."deposit" FORCE ROW LEVEL SECURITY')
    _policy(
        connection,
        "deposit",
        "bd_read",
        f"FOR SELECT USING ({reads_all} OR created_by = current_user OR EXISTS "
        "(SELECT 1 FROM public.deposit_item i WHERE i.deposit_id = deposit.id))",
    )
    _policy(connection, "deposit", "bd_insert", "FOR INSERT WITH CHECK (created_by = current_user)")
    count += 2
    # A failure belongs to no facility but may name one's payment and quote its refusal: one
    # reads one's own, and those naming a payment one can see (row security on payment
    # decides); auditors and administrators read them all. The insert guard
    # (billing_desk_new_row_guard) decides what a new row may say.
    _execute(connection, 'ALTER TABLE public."operation_failure" ENABLE ROW LEVEL SECURITY')
    _execute(connection, 'ALTER TABLE public."operation_failure" FORCE ROW LEVEL SECURITY')
    _policy(
        connection,
        "operation_failure",
        "bd_read",
        f"FOR SELECT USING ({reads_all} OR user_name = current_user OR "
        "(payment_id IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM public.payment p WHERE p.id = operation_failure.payment_id)))",
    )
    _policy(connection, "operation_failure", "bd_insert", "FOR INSERT WITH CHECK (true)")
    count += 2
    # A bank match of a payment is read by those who work for the payment's facility: its
    # detail quotes the payment's amount, date and the matcher's notes. A deposit slip's match
    # (a slip may hold several facilities' checks) is read by every billing role, like the
    # slip's bank line. Either is unmatched and written only by those who can see its payment
    # or slip (row security on those decides). Readers of everything, and the owner (whose
    # view bank_line_match tells everyone which lines are taken, see _line_matches), read them
    # all under a policy of their own, so that no one's policy asks per row who is reading.
    sees_target = (
        "(payment_id IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM public.payment p WHERE p.id = bank_match.payment_id)) "
        "OR (deposit_id IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM public.deposit d WHERE d.id = bank_match.deposit_id))"
    )
    # Read by scope (MATCH_SCOPE), an index condition, so that a probe by payment id never
    # fetches another facility's match for the policy to remove; written with the payment's
    # own facility, which only a match of a payment one sees can name.
    readable = _reads_own_scope(
        MATCH_SCOPE, "array_append(public.billing_desk_readable_facilities(), 0)", "integer"
    )
    honest_facility = (
        "facility_id IS NOT DISTINCT FROM "
        "(SELECT p.facility_id FROM public.payment p WHERE p.id = bank_match.payment_id)"
    )
    writers = f'"{Role.CLERK.value}", "{Role.MANAGER.value}"'
    _execute(connection, 'ALTER TABLE public."bank_match" ENABLE ROW LEVEL SECURITY')
    _execute(connection, 'ALTER TABLE public."bank_match" FORCE ROW LEVEL SECURITY')
    _policy(connection, "bank_match", "bd_read", f"FOR SELECT TO {writers} USING ({readable})")
    _policy(
        connection,
        "bank_match",
        "bd_read_all",
        f'FOR SELECT TO "{Role.AUDITOR.value}", "{Role.ADMIN.value}", "{OWNER_ROLE}" USING (true)',
    )
    _policy(
        connection,
        "bank_match",
        "bd_insert",
        f"FOR INSERT TO {writers} WITH CHECK (({sees_target}) AND {honest_facility})",
    )
    _policy(
        connection,
        "bank_match",
        "bd_update",
        f"FOR UPDATE TO {writers} USING ({sees_target}) WITH CHECK ({sees_target})",
    )
    count += 4
    return count


# Which bank lines are matched, whoever matched them (migration 0014's view): the bank account
# is the provider's, so a reconciliation that could not see another facility's match would
# offer that facility's matched credits for matching again. The view reads bank_match as its
# owner (not security_invoker), whose policy reads every row, and shows only the line, part
# and direction of the active matches. A security barrier, so that a reader's own condition
# on the view (other than a leakproof one, which may use the index) is applied only to what
# the view shows. Being a plain view, "is this line matched" is an index look-up.
LINE_MATCHES_VIEW = "bank_line_match"


def _line_matches(connection: Connection) -> None:
    _execute(
        connection,
        f"CREATE OR REPLACE VIEW public.{LINE_MATCHES_VIEW} "
        "WITH (security_invoker = false, security_barrier = true) AS "
        "SELECT m.line_id, m.part, m.direction FROM public.bank_match m WHERE m.active",
    )
    _execute(connection, f'ALTER VIEW public.{LINE_MATCHES_VIEW} OWNER TO "{OWNER_ROLE}"')
    _execute(connection, f"REVOKE ALL ON public.{LINE_MATCHES_VIEW} FROM PUBLIC")
    for group in GROUP_ROLES:
        _execute(connection, f'REVOKE ALL ON public.{LINE_MATCHES_VIEW} FROM "{group}"')
        _execute(connection, f'GRANT SELECT ON public.{LINE_MATCHES_VIEW} TO "{group}"')


# -- triggers ---------------------------------------------------------------------------------


def _payment_moves_sql() -> str:
    rows = []
    for method, machine in PAYMENT_STATES.items():
        for current, target in sorted(machine.transitions):
            rows.append(f"('{method.value}', '{current.value}', '{target.value}')")
    return ",\n                ".join(rows)


def _triggers(connection: Connection) -> None:
    manager_moves = ", ".join(f"'{s.value}'" for s in sorted(MANAGER_MOVES))
    owner_or_super = (
        f"(current_user = '{OWNER_ROLE}' OR (SELECT rolsuper FROM pg_catalog.pg_roles "
        "WHERE rolname = current_user))"
    )
    statements = [
        # Payment: the lifecycle, segregation of duties, and fields that never change.
        f"""
        CREATE OR REPLACE FUNCTION public.billing_desk_payment_guard() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF (NEW.facility_id, NEW.method, NEW.amount_minor, NEW.currency, NEW.received_date,
                NEW.payer, NEW.memo, NEW.check_number, NEW.routing_number, NEW.account_last4,
                NEW.account_hash, NEW.transfer_reference, NEW.card_brand, NEW.card_last4,
                NEW.processor_ref, NEW.duplicate_of_id, NEW.override_reason,
                NEW.allocation_request, NEW.recorded_by, NEW.recorded_at)
               IS DISTINCT FROM
               (OLD.facility_id, OLD.method, OLD.amount_minor, OLD.currency, OLD.received_date,
                OLD.payer, OLD.memo, OLD.check_number, OLD.routing_number, OLD.account_last4,
                OLD.account_hash, OLD.transfer_reference, OLD.card_brand, OLD.card_last4,
                OLD.processor_ref, OLD.duplicate_of_id, OLD.override_reason,
                OLD.allocation_request, OLD.recorded_by, OLD.recorded_at) THEN
                RAISE EXCEPTION 'payment %: what was received never changes', OLD.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.natural_key IS DISTINCT FROM OLD.natural_key AND NEW.natural_key IS NOT NULL
            THEN
                RAISE EXCEPTION 'payment %: its duplicate key can only be cleared', OLD.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.status IS DISTINCT FROM OLD.status THEN
                IF NOT EXISTS (SELECT 1 FROM (VALUES
                    {_payment_moves_sql()}
                    ) AS m(method, from_status, to_status)
                    WHERE m.method = OLD.method AND m.from_status = OLD.status
                      AND m.to_status = NEW.status) THEN
                    RAISE EXCEPTION 'payment % cannot go from % to %', OLD.id, OLD.status,
                        NEW.status USING ERRCODE = 'check_violation';
                END IF;
                IF (NEW.status IN ({manager_moves}) OR OLD.status = 'awaiting approval')
                   AND NOT {owner_or_super} THEN
                    IF NOT pg_has_role(current_user, 'manager', 'MEMBER') THEN
                        RAISE EXCEPTION 'payment %: only a manager may void, refund or approve '
                            'it', OLD.id USING ERRCODE = 'insufficient_privilege';
                    END IF;
                    IF OLD.recorded_by = current_user THEN
                        RAISE EXCEPTION 'payment %: whoever recorded a payment cannot void, '
                            'refund or approve it', OLD.id
                            USING ERRCODE = 'insufficient_privilege';
                    END IF;
                END IF;
            END IF;
            IF NEW.approved_by IS DISTINCT FROM OLD.approved_by AND NOT {owner_or_super}
               AND (NEW.approved_by IS DISTINCT FROM current_user
                    OR OLD.recorded_by = current_user) THEN
                RAISE EXCEPTION 'payment %: an approval names the manager giving it, who did '
                    'not record the payment', OLD.id USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """,
        "DROP TRIGGER IF EXISTS billing_desk_payment_guard ON public.payment",
        "CREATE TRIGGER billing_desk_payment_guard BEFORE UPDATE ON public.payment "
        "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_payment_guard()",
        # History rows that claim a manager's move must come from a manager who did not record
        # the payment (a forged 'voided' row is refused as firmly as the void itself).
        f"""
        CREATE OR REPLACE FUNCTION public.billing_desk_payment_history_guard() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            recorder text;
        BEGIN
            IF {owner_or_super} THEN
                RETURN NEW;
            END IF;
            SELECT p.recorded_by INTO recorder FROM public.payment p
                WHERE p.id = NEW.payment_id;
            IF TG_TABLE_NAME = 'refund' OR NEW.to_status IN ({manager_moves})
               OR NEW.from_status = 'awaiting approval' THEN
                IF NOT pg_has_role(current_user, 'manager', 'MEMBER')
                   OR recorder = current_user THEN
                    RAISE EXCEPTION 'payment %: only a manager who did not record it may void, '
                        'refund or approve it', NEW.payment_id
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
            END IF;
            RETURN NEW;
        END
        $$
        """,
        "DROP TRIGGER IF EXISTS billing_desk_payment_history_guard ON public.payment_status_change",
        "CREATE TRIGGER billing_desk_payment_history_guard BEFORE INSERT "
        "ON public.payment_status_change "
        "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_payment_history_guard()",
        "DROP TRIGGER IF EXISTS billing_desk_refund_guard ON public.refund",
        "CREATE TRIGGER billing_desk_refund_guard BEFORE INSERT ON public.refund "
        "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_payment_history_guard()",
        # Money adds up, checked at commit when every row of the transaction is in place.
        """
        CREATE OR REPLACE FUNCTION public.billing_desk_allocation_check() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            paid bigint;
            limit_minor bigint;
            inv record;
            expected text;
        BEGIN
            -- A row lock alone would not do: at REPEATABLE READ the sums below read this
            -- transaction's snapshot. Writing the parents makes a concurrent allocation's
            -- transaction wait for this one and then either fail to serialize (REPEATABLE READ,
            -- SERIALIZABLE) or, at READ COMMITTED, read the sums after this one committed.
            UPDATE public.payment SET amount_minor = amount_minor WHERE id = NEW.payment_id;
            UPDATE public.invoice SET total_minor = total_minor WHERE id = NEW.invoice_id;
            SELECT coalesce(sum(a.amount_minor), 0), min(p.amount_minor) INTO paid, limit_minor
                FROM public.payment p LEFT JOIN public.allocation a
                  ON a.payment_id = p.id AND NOT a.released
                WHERE p.id = NEW.payment_id;
            IF paid > limit_minor THEN
                RAISE EXCEPTION 'payment %: allocations exceed its amount', NEW.payment_id
                    USING ERRCODE = 'check_violation';
            END IF;
            SELECT coalesce(sum(a.amount_minor), 0), min(i.total_minor) INTO paid, limit_minor
                FROM public.invoice i LEFT JOIN public.allocation a
                  ON a.invoice_id = i.id AND NOT a.released
                WHERE i.id = NEW.invoice_id;
            IF paid > limit_minor THEN
                RAISE EXCEPTION 'invoice %: allocations exceed its total', NEW.invoice_id
                    USING ERRCODE = 'check_violation';
            END IF;
            -- An allocation moves its invoice: the status must say what is now paid.
            SELECT i.number, i.status, i.total_minor INTO inv FROM public.invoice i
                WHERE i.id = NEW.invoice_id;
            IF inv.status NOT IN ('void', 'draft') THEN
                expected := CASE WHEN paid <= 0 THEN 'issued'
                                 WHEN paid >= inv.total_minor THEN 'paid'
                                 ELSE 'partially paid' END;
                IF inv.status IS DISTINCT FROM expected THEN
                    RAISE EXCEPTION 'invoice %: status % does not match its payments (%)',
                        inv.number, inv.status, expected USING ERRCODE = 'check_violation';
                END IF;
            END IF;
            RETURN NULL;
        END
        $$
        """,
        f"""
        CREATE OR REPLACE FUNCTION public.billing_desk_allocation_guard() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF (NEW.facility_id, NEW.payment_id, NEW.invoice_id, NEW.amount_minor,
                NEW.via_credit, NEW.created_at, NEW.created_by)
               IS DISTINCT FROM
               (OLD.facility_id, OLD.payment_id, OLD.invoice_id, OLD.amount_minor,
                OLD.via_credit, OLD.created_at, OLD.created_by)
               OR (OLD.released AND NOT NEW.released) THEN
                RAISE EXCEPTION 'allocation %: only releasing it may change it', OLD.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.released_by IS DISTINCT FROM OLD.released_by AND NOT {owner_or_super}
               AND NEW.released_by IS DISTINCT FROM current_user THEN
                RAISE EXCEPTION 'allocation %: a release names who releases it', OLD.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """,
        "DROP TRIGGER IF EXISTS billing_desk_allocation_guard ON public.allocation",
        "CREATE TRIGGER billing_desk_allocation_guard BEFORE UPDATE ON public.allocation "
        "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_allocation_guard()",
        "DROP TRIGGER IF EXISTS billing_desk_allocation_check ON public.allocation",
        "CREATE CONSTRAINT TRIGGER billing_desk_allocation_check "
        "AFTER INSERT OR UPDATE ON public.allocation DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_allocation_check()",
        # An invoice's status is what its allocations say, and only a manager voids one.
        f"""
        CREATE OR REPLACE FUNCTION public.billing_desk_invoice_guard() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF NEW.status = 'void' AND OLD.status IS DISTINCT FROM 'void'
               AND NOT {owner_or_super}
               AND NOT pg_has_role(current_user, 'manager', 'MEMBER') THEN
                RAISE EXCEPTION 'invoice %: only a manager may void it', OLD.number
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.voided_by IS DISTINCT FROM OLD.voided_by AND NOT {owner_or_super}
               AND NEW.voided_by IS DISTINCT FROM current_user THEN
                RAISE EXCEPTION 'invoice %: a void names the manager voiding it', OLD.number
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.status = 'draft' AND OLD.status IS DISTINCT FROM 'draft' THEN
                RAISE EXCEPTION 'invoice %: an issued invoice never goes back to draft',
                    OLD.number USING ERRCODE = 'check_violation';
            END IF;
            IF OLD.status = 'void' AND NEW.status IS DISTINCT FROM 'void' THEN
                RAISE EXCEPTION 'invoice %: a void invoice stays void', OLD.number
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """,
        "DROP TRIGGER IF EXISTS billing_desk_invoice_guard ON public.invoice",
        "CREATE TRIGGER billing_desk_invoice_guard BEFORE UPDATE ON public.invoice "
        "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_invoice_guard()",
        """
        CREATE OR REPLACE FUNCTION public.billing_desk_invoice_status_check() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            inv record;
            paid bigint;
            expected text;
        BEGIN
            SELECT i.id, i.number, i.status, i.total_minor INTO inv
                FROM public.invoice i WHERE i.id = NEW.id;
            IF inv.status IN ('void', 'draft') THEN
                RETURN NULL;
            END IF;
            SELECT coalesce(sum(a.amount_minor), 0) INTO paid FROM public.allocation a
                WHERE a.invoice_id = inv.id AND NOT a.released;
            expected := CASE WHEN paid <= 0 THEN 'issued'
                             WHEN paid >= inv.total_minor THEN 'paid'
                             ELSE 'partially paid' END;
            IF inv.status IS DISTINCT FROM expected THEN
                RAISE EXCEPTION 'invoice %: status % does not match its payments (%)',
                    inv.number, inv.status, expected USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END
        $$
        """,
        "DROP TRIGGER IF EXISTS billing_desk_invoice_status_check ON public.invoice",
        "CREATE CONSTRAINT TRIGGER billing_desk_invoice_status_check "
        "AFTER UPDATE OF status ON public.invoice DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_invoice_status_check()",
        # Status history is history: append-only for everyone, like the audit trail.
        """
        CREATE OR REPLACE FUNCTION public.billing_desk_history_append_only() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            RAISE EXCEPTION '% is history and is append-only', TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """,
    ]
    for table in ("invoice_status_change", "payment_status_change", "refund"):
        statements += [
            f"DROP TRIGGER IF EXISTS billing_desk_{table}_append_only ON public.{table}",
            f"CREATE TRIGGER billing_desk_{table}_append_only BEFORE UPDATE OR DELETE "
            f"ON public.{table} FOR EACH ROW "
            "EXECUTE FUNCTION public.billing_desk_history_append_only()",
            f"DROP TRIGGER IF EXISTS billing_desk_{table}_no_truncate ON public.{table}",
            f"CREATE TRIGGER billing_desk_{table}_no_truncate BEFORE TRUNCATE "
            f"ON public.{table} FOR EACH STATEMENT "
            "EXECUTE FUNCTION public.billing_desk_history_append_only()",
        ]
    # An issued invoice's lines never change, except being released when the invoice is void.
    statements += [
        """
        CREATE OR REPLACE FUNCTION public.billing_desk_invoice_line_guard() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'invoice lines are never deleted'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF (NEW.invoice_id, NEW.facility_id, NEW.trip_id, NEW.line_no, NEW.service_date,
                NEW.description, NEW.amount_minor)
               IS DISTINCT FROM
               (OLD.invoice_id, OLD.facility_id, OLD.trip_id, OLD.line_no, OLD.service_date,
                OLD.description, OLD.amount_minor)
               OR (OLD.released AND NOT NEW.released) THEN
                RAISE EXCEPTION 'invoice line %: an issued line never changes', OLD.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NEW.released AND NOT OLD.released AND NOT EXISTS (
                SELECT 1 FROM public.invoice i WHERE i.id = NEW.invoice_id
                AND i.status = 'void') THEN
                RAISE EXCEPTION 'invoice line %: released only with its invoice void', OLD.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """,
        "DROP TRIGGER IF EXISTS billing_desk_invoice_line_guard ON public.invoice_line",
        "CREATE TRIGGER billing_desk_invoice_line_guard BEFORE UPDATE OR DELETE "
        "ON public.invoice_line FOR EACH ROW "
        "EXECUTE FUNCTION public.billing_desk_invoice_line_guard()",
    ]
    for statement in statements:
        _execute(connection, statement)
    for name in (
        "billing_desk_payment_guard()",
        "billing_desk_payment_history_guard()",
        "billing_desk_allocation_check()",
        "billing_desk_allocation_guard()",
        "billing_desk_invoice_guard()",
        "billing_desk_invoice_status_check()",
        "billing_desk_history_append_only()",
        "billing_desk_invoice_line_guard()",
    ):
        _execute(connection, f'ALTER FUNCTION public.{name} OWNER TO "{OWNER_ROLE}"')
        _execute(connection, f"REVOKE ALL ON FUNCTION public.{name} FROM PUBLIC")


# -- insert guards ----------------------------------------------------------------------------

# What a new row may be: initial states only, nobody's approval, references the writer can see.
_INSERT_GUARDS: tuple[str, ...] = (
    # A full card number (13 to 19 digits, single spaces or dashes between, passing the Luhn
    # check), as the application refuses it in free text.
    # Whether a row version was written by this transaction (or one of its savepoints): a row
    # one can see whose writer is still in progress can only be one's own. The epoch is this
    # transaction's, which is right for any row written since.
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_written_here(writer xid) RETURNS boolean
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
        SELECT pg_xact_status((((pg_current_xact_id()::text::bigint >> 32) << 32)
                               | writer::text::bigint)::text::xid8) = 'in progress'
    $$
    """,
    r"""
    CREATE OR REPLACE FUNCTION public.billing_desk_has_card_number(value text) RETURNS boolean
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
        SELECT coalesce(bool_or(luhn), false) FROM (
            SELECT (SELECT sum(CASE WHEN d.n % 2 = 0 THEN d.digit
                                    WHEN d.digit * 2 > 9 THEN d.digit * 2 - 9
                                    ELSE d.digit * 2 END) % 10 = 0
                    FROM (SELECT x.n - 1 AS n, x.c::int AS digit
                          FROM unnest(string_to_array(reverse(
                              regexp_replace(m[1], '[ -]', '', 'g')), NULL))
                              WITH ORDINALITY AS x(c, n)) d) AS luhn
            FROM regexp_matches(coalesce(value, ''),
                '(?<![0-9])(?<![0-9][ -])([0-9](?:[ -]?[0-9]){12,18})(?![ -]?[0-9])', 'g') AS m
        ) runs
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_payment_insert_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        IF NEW.status IS DISTINCT FROM (CASE WHEN NEW.override_reason IS NOT NULL
                                             THEN 'awaiting approval'
                                             ELSE {first_status} END)
           AND NOT (NEW.override_reason IS NOT NULL AND NEW.duplicate_of_id IS NULL
                    AND NEW.status = {first_status}) THEN
            RAISE EXCEPTION 'a new % payment starts as %, or awaiting approval with an '
                'override reason', NEW.method, {first_status}
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.duplicate_of_id IS NOT NULL AND NEW.status <> 'awaiting approval' THEN
            RAISE EXCEPTION 'a payment recorded as a duplicate waits for a manager''s approval'
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.approved_by IS NOT NULL OR NEW.approved_at IS NOT NULL THEN
            RAISE EXCEPTION 'a new payment carries no approval; a manager approves it later'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.recorded_by IS DISTINCT FROM session_user THEN
            RAISE EXCEPTION 'a payment names the login recording it'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- When it was recorded is the writer's word only within the clock skew allowed:
        -- a payment backdated (or dated ahead) past it would dodge the after-hours, velocity
        -- and closed-period rules.
        IF NEW.recorded_at IS NULL
           OR NEW.recorded_at < now() - interval '{max_clock_skew}'
           OR NEW.recorded_at > clock_timestamp() + interval '{max_clock_skew}' THEN
            RAISE EXCEPTION 'a payment is recorded at the database''s time, give or take '
                '{max_clock_skew}; % is not (is this computer''s clock right?)',
                NEW.recorded_at USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF public.billing_desk_has_card_number(NEW.payer)
           OR public.billing_desk_has_card_number(NEW.memo)
           OR public.billing_desk_has_card_number(NEW.override_reason) THEN
            RAISE EXCEPTION 'a payment''s free text never holds a full card number'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_payment_insert_guard ON public.payment",
    "CREATE TRIGGER billing_desk_payment_insert_guard BEFORE INSERT ON public.payment "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_payment_insert_guard()",
    # An invoice is born a draft or issued, unpaid, and its lines go in with it.
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_invoice_insert_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        IF NEW.status NOT IN ('draft', 'issued') OR NEW.voided_by IS NOT NULL
           OR NEW.voided_at IS NOT NULL OR NEW.void_reason IS NOT NULL THEN
            RAISE EXCEPTION 'a new invoice is a draft or issued, never %', NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_invoice_insert_guard ON public.invoice",
    "CREATE TRIGGER billing_desk_invoice_insert_guard BEFORE INSERT ON public.invoice "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_invoice_insert_guard()",
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_invoice_line_insert_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        -- Lines join an invoice only in the transaction that inserted it (its row version
        -- is this transaction's own insert), or while it is a draft.
        IF NOT EXISTS (SELECT 1 FROM public.invoice i WHERE i.id = NEW.invoice_id
                       AND (i.status = 'draft'
                            OR (public.billing_desk_written_here(i.xmin)
                                AND i.status = 'issued'))) THEN
            RAISE EXCEPTION 'invoice line: an issued invoice takes no new lines'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_invoice_line_insert_guard ON public.invoice_line",
    "CREATE TRIGGER billing_desk_invoice_line_insert_guard BEFORE INSERT ON public.invoice_line "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_invoice_line_insert_guard()",
    # At commit: an issued invoice's lines add up to its total.
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_invoice_total_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        inv record;
        lines bigint;
        counted bigint;
        invoice_id bigint;
    BEGIN
        IF TG_TABLE_NAME = 'invoice' THEN
            invoice_id := NEW.id;
        ELSE
            invoice_id := NEW.invoice_id;
        END IF;
        SELECT i.id, i.number, i.status, i.total_minor INTO inv FROM public.invoice i
            WHERE i.id = invoice_id;
        IF inv.status = 'draft' THEN
            RETURN NULL;
        END IF;
        SELECT coalesce(sum(l.amount_minor), 0), count(*) INTO lines, counted
            FROM public.invoice_line l WHERE l.invoice_id = inv.id;
        IF counted = 0 OR lines <> inv.total_minor THEN
            RAISE EXCEPTION 'invoice %: its lines do not add up to its total', inv.number
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_invoice_total_check ON public.invoice",
    "CREATE CONSTRAINT TRIGGER billing_desk_invoice_total_check AFTER INSERT ON public.invoice "
    "DEFERRABLE INITIALLY DEFERRED "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_invoice_total_check()",
    "DROP TRIGGER IF EXISTS billing_desk_invoice_total_check ON public.invoice_line",
    "CREATE CONSTRAINT TRIGGER billing_desk_invoice_total_check AFTER INSERT "
    "ON public.invoice_line DEFERRABLE INITIALLY DEFERRED "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_invoice_total_check()",
    # Invoice numbers are never given twice: the counter only goes forward.
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_invoice_counter_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF NEW.facility_id IS DISTINCT FROM OLD.facility_id
           OR NEW.last_number < OLD.last_number THEN
            RAISE EXCEPTION 'the invoice counter only goes forward'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_invoice_counter_guard ON public.invoice_counter",
    "CREATE TRIGGER billing_desk_invoice_counter_guard BEFORE UPDATE ON public.invoice_counter "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_invoice_counter_guard()",
    # The sealer's queue takes only the writer's own entries, not yet sealed nor queued.
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_audit_pending_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) THEN
            RETURN NEW;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM public.audit_entry e WHERE e.id = NEW.entry_id
                       AND e.user_name = session_user
                       AND public.billing_desk_written_here(e.xmin))
           OR EXISTS (SELECT 1 FROM public.audit_link l WHERE l.entry_id = NEW.entry_id) THEN
            RAISE EXCEPTION 'audit entry %: only the transaction that wrote it queues it',
                NEW.entry_id USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_audit_pending_guard ON public.audit_pending",
    "CREATE TRIGGER billing_desk_audit_pending_guard BEFORE INSERT ON public.audit_pending "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_audit_pending_guard()",
)
_INSERT_GUARDS += (
    # A deposit slip's items go in with the slip, by whoever wrote it, each for its payment's
    # amount; at commit they add up to the slip's total and count.
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_deposit_item_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM public.deposit d WHERE d.id = NEW.deposit_id
                       AND d.created_by = session_user
                       AND public.billing_desk_written_here(d.xmin)) THEN
            RAISE EXCEPTION 'deposit items go in only with their slip, by whoever writes it'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM public.payment p WHERE p.id = NEW.payment_id
                       AND p.amount_minor = NEW.amount_minor) THEN
            RAISE EXCEPTION 'a deposit item is for its payment''s amount'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_deposit_item_guard ON public.deposit_item",
    "CREATE TRIGGER billing_desk_deposit_item_guard BEFORE INSERT ON public.deposit_item "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_deposit_item_guard()",
    # A line matched to several together gets its parts in one transaction, each after the one
    # before: a later part added to a line matched earlier would count money the person who
    # matched it never chose (the line explained twice over).
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_bank_match_part_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF {owner_or_super} OR NEW.part = 1 THEN
            RETURN NEW;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM public.bank_match m WHERE m.line_id = NEW.line_id
                       AND m.active AND m.part = NEW.part - 1
                       AND public.billing_desk_written_here(m.xmin)) THEN
            RAISE EXCEPTION 'a bank line''s matches go in together, in one transaction'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_bank_match_part_guard ON public.bank_match",
    "CREATE TRIGGER billing_desk_bank_match_part_guard BEFORE INSERT ON public.bank_match "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_bank_match_part_guard()",
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_deposit_total_check() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        slip record;
        total bigint;
        counted bigint;
    BEGIN
        SELECT d.id, d.total_minor, d.item_count INTO slip FROM public.deposit d
            WHERE d.id = NEW.deposit_id;
        SELECT coalesce(sum(i.amount_minor), 0), count(*) INTO total, counted
            FROM public.deposit_item i WHERE i.deposit_id = slip.id;
        IF total <> slip.total_minor OR counted <> slip.item_count THEN
            RAISE EXCEPTION 'deposit %: its items do not add up to its total', slip.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_deposit_total_check ON public.deposit_item",
    "CREATE CONSTRAINT TRIGGER billing_desk_deposit_total_check AFTER INSERT "
    "ON public.deposit_item DEFERRABLE INITIALLY DEFERRED "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_deposit_total_check()",
)
# Audit entries of a row's change name a row the writer can see, in the entry's facility.
ENTRY_CHECKED_TABLES = (
    "payment",
    "invoice",
    "invoice_line",
    "allocation",
    "refund",
    "deposit_item",
    "client",
    "trip",
    "anomaly_alert",
)
_INSERT_GUARDS += (
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_audit_entry_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        found boolean;
        digest text;
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        -- The entry's digest is its content's (hash version 2, docs/integrity.md): the
        -- canonical JSON of the ten content fields, keys sorted, built here by concatenation
        -- (to_json escapes text exactly as domain.hashing does) and hashed. A writer's digest
        -- that differs is refused, a missing one is filled in: the sealer chains only what the
        -- content says, so no entry is born "altered" nor stops the sealer.
        digest := encode(sha256(convert_to(
            '{"action":' || coalesce(to_json(NEW.action)::text, 'null')
            || ',"after":' || coalesce(to_json(NEW.after)::text, 'null')
            || ',"before":' || coalesce(to_json(NEW.before)::text, 'null')
            || ',"entity_id":' || coalesce(to_json(NEW.entity_id)::text, 'null')
            || ',"entity_type":' || coalesce(to_json(NEW.entity_type)::text, 'null')
            || ',"facility_id":' || coalesce(NEW.facility_id::text, 'null')
            || ',"recorded_at":' || coalesce(to_json(to_char(
                   NEW.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text,
                   'null')
            || ',"request_id":' || coalesce(to_json(NEW.request_id)::text, 'null')
            || ',"user_name":' || coalesce(to_json(NEW.user_name)::text, 'null')
            || ',"user_role":' || coalesce(to_json(NEW.user_role)::text, 'null')
            || '}', 'UTF8')), 'hex');
        IF NEW.entry_digest IS NULL THEN
            NEW.entry_digest := digest;
        ELSIF NEW.entry_digest IS DISTINCT FROM digest THEN
            RAISE EXCEPTION 'an audit entry''s digest is that of its content'
                USING ERRCODE = 'check_violation';
        END IF;
        -- A deleted row is gone; every other change's row is there, visible to its writer
        -- (row security decides), in the facility the entry names.
        IF NEW.after IS NOT NULL AND NEW.entity_type = ANY (TG_ARGV) THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM public.%I WHERE id::text = $1 '
                           'AND facility_id IS NOT DISTINCT FROM $2)', NEW.entity_type)
                INTO found USING NEW.entity_id, NEW.facility_id;
            IF NOT found THEN
                RAISE EXCEPTION 'an audit entry names only a row its writer can see'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
        END IF;
        RETURN NEW;
    END
    $$
    """,
)
# Rows of tables whose actor and state columns are free text: (table, who the row names,
# status column and the state a new row takes, columns a new row leaves empty, a payment it
# references that the writer must be able to see).
NEW_ROW_RULES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("operation_failure", "user_name", "", "", ()),
    ("anomaly_alert", "raised_by", "status", "open", ("closed_at", "closed_by", "note")),
    ("reconciliation_run", "started_by", "status", "open", ("closed_at", "closed_by")),
    ("bank_match", "matched_by", "active", "true", ("unmatched_at", "unmatched_by")),
    ("csv_mapping", "saved_by", "", "", ()),
)
_INSERT_GUARDS += (
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_new_row_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        fresh jsonb := to_jsonb(NEW);
        empty text;
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        IF fresh ->> TG_ARGV[0] IS DISTINCT FROM session_user THEN
            RAISE EXCEPTION '%: a row names the login writing it in %', TG_TABLE_NAME,
                TG_ARGV[0] USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF TG_OP = 'INSERT' AND TG_ARGV[1] <> ''
           AND fresh ->> TG_ARGV[1] IS DISTINCT FROM TG_ARGV[2] THEN
            RAISE EXCEPTION '%: a new row starts with % %', TG_TABLE_NAME, TG_ARGV[1],
                TG_ARGV[2] USING ERRCODE = 'check_violation';
        END IF;
        IF TG_OP = 'INSERT' THEN
            FOREACH empty IN ARRAY TG_ARGV[3:] LOOP
                IF fresh ->> empty IS NOT NULL THEN
                    RAISE EXCEPTION '%: a new row has no %', TG_TABLE_NAME, empty
                        USING ERRCODE = 'check_violation';
                END IF;
            END LOOP;
        END IF;
        -- A payment named must be one the writer sees (row security decides).
        IF fresh ? 'payment_id' AND fresh ->> 'payment_id' IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM public.payment p
                           WHERE p.id = (fresh ->> 'payment_id')::bigint) THEN
            RAISE EXCEPTION '%: no such payment', TG_TABLE_NAME
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
)
# Idempotency keys: a key replays its stored result to every retry (and, for an import's
# derived key, to a colleague importing the same file), so a result must be what the request
# that claimed the key did. A claim starts without a result, with the fingerprint of its
# request; the result is written once, in the claiming transaction; and at commit it names
# what that transaction wrote (the payment recorded or moved, the deposit slip, the credit's
# allocation), so no key can be planted or rewritten to answer a retry with a wrong receipt.
_INSERT_GUARDS += (
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_idempotency_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        IF TG_OP = 'INSERT' THEN
            IF NEW.result IS DISTINCT FROM '' THEN
                RAISE EXCEPTION 'idempotency key %: a claim starts without a result', NEW.key
                    USING ERRCODE = 'check_violation';
            END IF;
            IF NEW.fingerprint IS DISTINCT FROM
               encode(sha256(convert_to(NEW.request, 'UTF8')), 'hex') THEN
                RAISE EXCEPTION 'idempotency key %: its fingerprint is that of its request',
                    NEW.key USING ERRCODE = 'check_violation';
            END IF;
        ELSIF NEW.result IS DISTINCT FROM OLD.result
              AND (OLD.result IS DISTINCT FROM ''
                   OR NOT public.billing_desk_written_here(OLD.xmin)) THEN
            RAISE EXCEPTION 'idempotency key %: its result is written once, by the request '
                'that claimed it', OLD.key USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_idempotency_guard ON public.idempotency_record",
    "CREATE TRIGGER billing_desk_idempotency_guard BEFORE INSERT OR UPDATE "
    "ON public.idempotency_record "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_idempotency_guard()",
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_idempotency_result_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        claimed record;
        result jsonb;
        found boolean;
    BEGIN
        IF {owner_or_super} THEN
            RETURN NULL;
        END IF;
        SELECT r.facility_id, r.key, r.operation, r.result INTO claimed
            FROM public.idempotency_record r WHERE r.id = NEW.id;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        BEGIN
            result := claimed.result::jsonb;
        EXCEPTION WHEN others THEN
            result := NULL;
        END;
        IF result IS NULL OR jsonb_typeof(result) IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'idempotency key %: a request commits its result with its key',
                claimed.key USING ERRCODE = 'check_violation';
        END IF;
        found := CASE claimed.operation
            WHEN 'payment.record' THEN EXISTS (
                SELECT 1 FROM public.payment p
                WHERE p.id::text = result ->> 'payment_id'
                  AND p.facility_id IS NOT DISTINCT FROM claimed.facility_id
                  AND p.recorded_by = session_user
                  AND public.billing_desk_written_here(p.xmin))
            WHEN 'payment.transition' THEN EXISTS (
                SELECT 1 FROM public.payment_status_change c
                WHERE c.payment_id::text = result ->> 'payment_id'
                  AND c.facility_id IS NOT DISTINCT FROM claimed.facility_id
                  AND c.to_status = result ->> 'status'
                  AND public.billing_desk_written_here(c.xmin))
            WHEN 'deposit.create' THEN EXISTS (
                SELECT 1 FROM public.deposit d
                WHERE d.id::text = result ->> 'deposit_id'
                  AND d.created_by = session_user
                  AND public.billing_desk_written_here(d.xmin))
            WHEN 'credit.apply' THEN EXISTS (
                SELECT 1 FROM public.allocation a JOIN public.invoice i ON i.id = a.invoice_id
                WHERE i.number = result ->> 'invoice_number' AND a.via_credit
                  AND a.facility_id IS NOT DISTINCT FROM claimed.facility_id
                  AND public.billing_desk_written_here(a.xmin))
            ELSE true END;
        IF NOT found THEN
            RAISE EXCEPTION 'idempotency key %: its result names what its request wrote',
                claimed.key USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS billing_desk_idempotency_result_check ON public.idempotency_record",
    "CREATE CONSTRAINT TRIGGER billing_desk_idempotency_result_check "
    "AFTER INSERT OR UPDATE ON public.idempotency_record DEFERRABLE INITIALLY DEFERRED "
    "FOR EACH ROW EXECUTE FUNCTION public.billing_desk_idempotency_result_check()",
)
# When a row was written is the database's to confirm, not the writer's to choose: each column
# that records the moment of a write (on INSERT, or on the UPDATE that sets it) must be the
# database's time, give or take the clock skew allowed, as a payment's recorded_at (whose own
# guard says so with its own sentence). A backdated audit entry, history row, allocation or
# alert would dodge the rules that read those times, and misdate the trail.
# table: (columns of an INSERT, columns an UPDATE sets)
WRITE_TIMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "audit_entry": (("recorded_at",), ()),
    "payment": ((), ("approved_at",)),
    "payment_status_change": (("changed_at",), ()),
    "invoice": (("created_at",), ("voided_at",)),
    "invoice_status_change": (("changed_at",), ()),
    "allocation": (("created_at",), ("released_at",)),
    "refund": (("created_at",), ()),
    "deposit": (("created_at",), ()),
    "idempotency_record": (("created_at",), ()),
    "trip": (("created_at", "updated_at"), ("updated_at",)),
    "statement_file": (("imported_at",), ()),
    "csv_mapping": (("saved_at",), ("saved_at",)),
    "bank_match": (("matched_at",), ("unmatched_at",)),
    "reconciliation_run": (("started_at",), ("closed_at",)),
    "discrepancy": ((), ("resolved_at",)),
    "anomaly_alert": (("raised_at",), ("closed_at",)),
    "operation_failure": (("occurred_at",), ()),
    "facility": (("created_at",), ()),
    "provider_setting": (("updated_at",), ("updated_at",)),
    "signing_key": (("registered_at",), ()),
    "checkpoint": (("created_at",), ()),
    "maintenance_run": (("ran_at",), ()),
}
_INSERT_GUARDS += (
    """
    CREATE OR REPLACE FUNCTION public.billing_desk_write_time_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        fresh jsonb := to_jsonb(NEW);
        column_name text;
        stated timestamptz;
    BEGIN
        IF {owner_or_super} THEN
            RETURN NEW;
        END IF;
        FOREACH column_name IN ARRAY TG_ARGV LOOP
            -- An UPDATE answers only for the times it changes.
            CONTINUE WHEN TG_OP = 'UPDATE'
                AND fresh -> column_name IS NOT DISTINCT FROM to_jsonb(OLD) -> column_name;
            stated := (fresh ->> column_name)::timestamptz;
            IF stated < now() - interval '{max_clock_skew}'
               OR stated > clock_timestamp() + interval '{max_clock_skew}' THEN
                RAISE EXCEPTION '%: % is written at the database''s time, give or take '
                    '{max_clock_skew}; % is not (is this computer''s clock right?)',
                    TG_TABLE_NAME, column_name, stated
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
        END LOOP;
        RETURN NEW;
    END
    $$
    """,
)
_INSERT_GUARD_FUNCTIONS = (
    "billing_desk_write_time_guard()",
    "billing_desk_idempotency_guard()",
    "billing_desk_idempotency_result_check()",
    "billing_desk_audit_entry_guard()",
    "billing_desk_deposit_item_guard()",
    "billing_desk_bank_match_part_guard()",
    "billing_desk_deposit_total_check()",
    "billing_desk_new_row_guard()",
    "billing_desk_written_here(xid)",
    "billing_desk_has_card_number(text)",
    "billing_desk_payment_insert_guard()",
    "billing_desk_invoice_insert_guard()",
    "billing_desk_invoice_line_insert_guard()",
    "billing_desk_invoice_total_check()",
    "billing_desk_invoice_counter_guard()",
    "billing_desk_audit_pending_guard()",
)


def _insert_guards(connection: Connection, max_clock_skew: int) -> None:
    if type(max_clock_skew) is not int or max_clock_skew < 0:
        raise ValueError(f"max_clock_skew {max_clock_skew!r} is not a number of seconds")
    owner_or_super = (
        f"(current_user = '{OWNER_ROLE}' OR (SELECT rolsuper FROM pg_catalog.pg_roles "
        "WHERE rolname = session_user))"
    )
    first_status = (
        "CASE NEW.method "
        + " ".join(f"WHEN '{m.value}' THEN '{s.value}'" for m, s in FIRST_STATUS.items())
        + " END"
    )
    for statement in _INSERT_GUARDS:
        _execute(
            connection,
            statement.replace("{owner_or_super}", owner_or_super)
            .replace("{first_status}", first_status)
            .replace("{max_clock_skew}", f"{max_clock_skew} seconds"),
        )
    checked = ", ".join(f"'{table}'" for table in ENTRY_CHECKED_TABLES)
    _execute(
        connection, "DROP TRIGGER IF EXISTS billing_desk_audit_entry_guard ON public.audit_entry"
    )
    _execute(
        connection,
        "CREATE TRIGGER billing_desk_audit_entry_guard BEFORE INSERT ON public.audit_entry "
        f"FOR EACH ROW EXECUTE FUNCTION public.billing_desk_audit_entry_guard({checked})",
    )
    for table, (inserted, updated) in WRITE_TIMES.items():
        # Named to run before the other guards of a row (triggers run in name order), so a
        # misdated row is refused for its date whatever else is wrong with it.
        for event, columns, name in (
            ("INSERT", inserted, "billing_desk_at_database_time"),
            ("UPDATE", updated, "billing_desk_at_database_time_on_update"),
        ):
            _execute(connection, f"DROP TRIGGER IF EXISTS {name} ON public.{table}")
            if not columns:
                continue
            listed = ", ".join(columns)
            when = f"UPDATE OF {listed}" if event == "UPDATE" else event
            arguments = ", ".join(f"'{column}'" for column in columns)
            _execute(
                connection,
                f"CREATE TRIGGER {name} BEFORE {when} ON public.{table} FOR EACH ROW "
                f"EXECUTE FUNCTION public.billing_desk_write_time_guard({arguments})",
            )
    for table, actor, status, first, empty in NEW_ROW_RULES:
        arguments = ", ".join(f"'{value}'" for value in (actor, status, first, *empty))
        events = "INSERT OR UPDATE" if table == "csv_mapping" else "INSERT"
        _execute(connection, f"DROP TRIGGER IF EXISTS billing_desk_new_row_guard ON public.{table}")
        _execute(
            connection,
            f"CREATE TRIGGER billing_desk_new_row_guard BEFORE {events} ON public.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION public.billing_desk_new_row_guard({arguments})",
        )
    for name in _INSERT_GUARD_FUNCTIONS:
        _execute(connection, f'ALTER FUNCTION public.{name} OWNER TO "{OWNER_ROLE}"')
        _execute(connection, f"REVOKE ALL ON FUNCTION public.{name} FROM PUBLIC")
    for group in GROUP_ROLES:
        for name in ("billing_desk_has_card_number(text)", "billing_desk_written_here(xid)"):
            _execute(connection, f'GRANT EXECUTE ON FUNCTION public.{name} TO "{group}"')


# -- planner statistics -----------------------------------------------------------------------

# Columns whose values must not be estimated from statistics: the planner uses them for any
# login's query whatever row security hides (for leakproof operators such as = and <), so an
# EXPLAIN's row estimate told how often another facility's payer, amount or reference occurs.
# Without statistics the estimates are the planner's defaults; these columns are filtered by
# facility first in every application query, so plans hardly change.
SENSITIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    "payment": (
        "payer",
        "memo",
        "amount_minor",
        "transfer_reference",
        "check_number",
        "routing_number",
        "account_last4",
        "account_hash",
        "card_last4",
        "processor_ref",
        "natural_key",
        "override_reason",
    ),
    "invoice": ("total_minor",),
    "client": ("name",),
    "trip": ("pickup", "dropoff", "fare_minor"),
    "allocation": ("amount_minor",),
    "deposit_item": ("amount_minor",),
    "idempotency_record": ("key",),
}


def _no_statistics_on_sensitive_columns(connection: Connection) -> None:
    for table, columns in SENSITIVE_COLUMNS.items():
        for column in columns:
            _execute(
                connection, f'ALTER TABLE public."{table}" ALTER COLUMN "{column}" SET STATISTICS 0'
            )
        # ANALYZE skips such columns from now on but keeps what it gathered before, so the
        # server's own catalog of statistics (no billing row, nothing audited) is cleared of
        # them; a DO block because the setup's connection refuses bare DELETEs, which are
        # meant for billing tables.
        names = ", ".join(f"'{column}'" for column in columns)
        _execute(
            connection,
            "DO $$ BEGIN DELETE FROM pg_catalog.pg_statistic s USING pg_catalog.pg_attribute a "
            f"WHERE s.starelid = 'public.{table}'::regclass AND a.attrelid = s.starelid "
            f"AND a.attnum = s.staattnum AND a.attname IN ({names}); END $$",
        )


def _execute(connection: Connection, statement: str) -> None:
    # The driver reads % as a placeholder even without parameters; plpgsql uses it in RAISE.
    connection.exec_driver_sql(statement.replace("%", "%%"))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
