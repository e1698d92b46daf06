"""What the catalog must say of a shared database: row security enabled and forced on every
tenant table, no application role with power it should not have, functions locked down."""

from __future__ import annotations

import psycopg

from billing_desk.db.shared import (
    GROUP_ROLES,
    INDEXED_BY_FACILITY,
    OWNER_ROLE,
    SCOPED_TABLES,
    TENANT_TABLES,
)
from tests.security.conftest import SharedDatabase

# Unique indexes allowed not to start with the facility: sequence-made primary keys (they
# name no facility's data), and keys of rows that belong to no facility.
NOT_FACILITY_SCOPED = {"uq_idempotency_record_user_key", "uq_facility_code"}


def _rows(shared: SharedDatabase, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(shared.admin_url) as conn:
        return conn.execute(query, args).fetchall()


def test_every_tenant_table_has_row_security_enabled_and_forced(shared: SharedDatabase) -> None:
    rows = dict(
        (str(name), (bool(on), bool(forced)))
        for name, on, forced in _rows(
            shared,
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
        )
    )
    for table in TENANT_TABLES:
        assert rows[table] == (True, True), table


def test_every_table_with_a_facility_column_is_a_tenant_table(shared: SharedDatabase) -> None:
    tables = {
        str(r[0])
        for r in _rows(
            shared,
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'facility_id'",
        )
    }
    # A bank match carries its payment's facility and is read by it (shared._policies), but
    # also holds slips' matches, of no facility, read by everyone: secured on its own.
    assert tables <= {*TENANT_TABLES, "bank_match"}


def test_no_application_role_is_superuser_bypassrls_or_owner(shared: SharedDatabase) -> None:
    app_roles = _rows(
        shared,
        "SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb "
        "FROM pg_roles r WHERE r.rolname = ANY(%s) OR EXISTS (SELECT 1 FROM pg_auth_members m "
        "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname = ANY(%s))",
        list(GROUP_ROLES),
        list(GROUP_ROLES),
    )
    assert len(app_roles) >= len(GROUP_ROLES) + 5
    for name, *powers in app_roles:
        assert not any(powers), name
    owners = {
        str(r[0])
        for r in _rows(
            shared, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        )
    }
    assert owners == {OWNER_ROLE}
    owner = _rows(shared, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", OWNER_ROLE)
    assert owner == [(False,)]
    members = _rows(
        shared,
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE g.rolname = %s",
        OWNER_ROLE,
    )
    assert members == [(0,)]


def test_security_definer_functions_have_a_fixed_search_path_and_no_public_execute(
    shared: SharedDatabase,
) -> None:
    definers = _rows(
        shared,
        "SELECT p.proname, p.proconfig, p.proacl::text FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef",
    )
    assert definers
    for name, config, acl in definers:
        assert any(str(c).startswith("search_path=") for c in config or []), name
        # An ACL entry "=X/owner" would be PUBLIC's execute right.
        assert acl is not None and "{=X" not in str(acl) and ",=X" not in str(acl), name


def test_no_function_in_the_schema_is_executable_by_public(shared: SharedDatabase) -> None:
    rows = _rows(
        shared,
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a "
        "WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))",
    )
    assert rows == []


def test_unique_indexes_on_tenant_tables_start_with_the_facility(shared: SharedDatabase) -> None:
    rows = _rows(
        shared,
        "SELECT t.relname, i.relname, a.attname FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0] "
        "WHERE x.indisunique AND NOT x.indisprimary "
        "AND t.relnamespace = 'public'::regnamespace",
    )
    for table, index, first in rows:
        if table in TENANT_TABLES and index not in NOT_FACILITY_SCOPED:
            assert first == TENANT_TABLES[str(table)] or (table, first) == (
                "facility_access",
                "user_name",
            ), (table, index, first)
    # Those leading with an expression lead with the scope (facility, else author): checked
    # by test_every_index_of_a_scoped_table_leads_with_its_scope.


def test_views_over_protected_tables_are_security_invoker(shared: SharedDatabase) -> None:
    views = _rows(
        shared,
        "SELECT c.relname, c.reloptions FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'",
    )
    for name, options in views:
        if name == "bank_line_match":
            # Which lines are matched is everyone's: this view reads bank_match as its owner,
            # behind a security barrier, and shows three columns (checked below).
            assert "security_barrier=true" in (options or []), options
            continue
        assert "security_invoker=true" in (options or []), name


def test_nobody_connects_or_makes_temporary_objects_without_a_billing_role(
    shared: SharedDatabase,
) -> None:
    acl = _rows(shared, "SELECT datacl::text FROM pg_database WHERE datname = %s", shared.name)
    text = str(acl[0][0])
    # PUBLIC's entry would read "=Tc/owner" (an empty grantee).
    assert "{=" not in text and ",=" not in text, text


def test_every_index_of_a_facilitys_table_leads_with_the_facility(shared: SharedDatabase) -> None:
    """The reading policy of these tables is an index condition on facility_id: an index that
    does not lead with it lets an index scan fetch another facility's rows on the reader's own
    condition, for the policy to remove where EXPLAIN ANALYZE counts them."""
    rows = _rows(
        shared,
        "SELECT c.relname, i.relname, a.attname FROM pg_index x "
        "JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
        "LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (%s) "
        "AND NOT x.indisprimary",
        list(INDEXED_BY_FACILITY),
    )
    assert len(rows) > len(INDEXED_BY_FACILITY)
    assert [(table, index) for table, index, first in rows if first != "facility_id"] == []


def test_every_table_naming_a_payment_or_deposit_slip_has_row_security(
    shared: SharedDatabase,
) -> None:
    """A row naming a payment or a slip tells something of it (a match's detail quotes its
    amount): such tables are read under a policy, bank_match included."""
    rows = _rows(
        shared,
        "SELECT DISTINCT c.relname, c.relrowsecurity, c.relforcerowsecurity "
        "FROM information_schema.columns k JOIN pg_class c ON c.relname = k.table_name "
        "AND c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' "
        "WHERE k.table_schema = 'public' AND k.column_name IN ('payment_id', 'deposit_id')",
    )
    assert "bank_match" in {str(row[0]) for row in rows}
    assert [row[0] for row in rows if not (row[1] and row[2])] == []


def test_the_line_matches_view_shows_only_line_part_and_direction(shared: SharedDatabase) -> None:
    """The view of which lines are matched reads every match (as the owner, whose policy reads
    them all): a view that showed more than the line, part and direction of the active ones
    would hand every role another facility's payment, detail and notes."""
    rows = _rows(
        shared,
        "SELECT pg_get_userbyid(c.relowner), c.reloptions, pg_get_viewdef(c.oid) "
        "FROM pg_class c WHERE c.oid = 'public.bank_line_match'::regclass",
    )
    owner, options, definition = rows[0]
    assert owner == OWNER_ROLE
    assert sorted(options or []) == ["security_barrier=true", "security_invoker=false"]
    assert " ".join(str(definition).split()) == (
        "SELECT m.line_id, m.part, m.direction FROM bank_match m WHERE m.active;"
    )
    policies = _rows(
        shared,
        "SELECT policyname, roles::text[], cmd, qual FROM pg_policies "
        "WHERE tablename = 'bank_match' AND 'billing_desk_owner' = ANY (roles)",
    )
    assert policies == [("bd_read_all", ["admin", "auditor", OWNER_ROLE], "SELECT", "true")]


def test_every_index_of_a_scoped_table_leads_with_its_scope(shared: SharedDatabase) -> None:
    """Audit entries, keys and findings have rows of no facility; their reading policy compares
    each row's scope (its facility, else its author or the provider) with the reader's, an
    index condition only on an index that leads with that scope. A unique index stays as
    unique: the scope is a function of the columns that follow it."""
    rows = _rows(
        shared,
        "SELECT c.relname, i.relname, x.indisunique, pg_get_indexdef(x.indexrelid, 1, false), "
        "pg_get_indexdef(x.indexrelid, 2, false) FROM pg_index x "
        "JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (%s) "
        "AND NOT x.indisprimary ORDER BY 1, 2",
        list(SCOPED_TABLES),
    )
    assert {str(row[1]) for row in rows} >= {
        "ix_audit_entry_facility_id_recorded_at",
        "ix_audit_entry_request_id",
        "ix_audit_entry_entity_type_entity_id",
        "ix_idempotency_record_created_at",
        "uq_idempotency_record_facility_key",
        "uq_idempotency_record_user_key",
        "ix_discrepancy_run_id",
    }
    for table, index, unique, first, second in rows:
        assert (
            f"({first})" == SCOPED_TABLES[str(table)][0] or first == SCOPED_TABLES[str(table)][0]
        ), (index, first)
        if unique:
            # What the unique index led with before: the facility, or the author.
            assert second in ("facility_id", "created_by"), (index, second)
