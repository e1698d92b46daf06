"""Attacks on a shared database by users with psql and their own credentials. Each test tries
one thing the application would not let them do and expects the database itself to refuse it
(or, for reads, to show nothing); a few positive controls prove the refusals are not simply
everything failing."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from tests.security.conftest import SharedDatabase

TENANT_READS = (
    "payment",
    "invoice",
    "invoice_line",
    "trip",
    "client",
    "allocation",
    "payment_status_change",
    "invoice_status_change",
    "idempotency_record",
)


def _count(conn: psycopg.Connection[tuple[object, ...]], query: str, *args: object) -> int:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


# -- reading and writing another facility's rows -----------------------------------------------


@pytest.mark.parametrize("table", TENANT_READS)
def test_a_clerk_reads_no_row_of_another_facility(shared: SharedDatabase, table: str) -> None:
    b = shared.facility_ids["FACB"]
    a = shared.facility_ids["FACA"]
    with shared.connect("clerk_a") as conn:
        assert _count(conn, f"SELECT count(*) FROM {table} WHERE facility_id = %s", b) == 0
        assert _count(conn, f"SELECT count(*) FROM {table} WHERE facility_id = %s", a) > 0


def test_a_clerk_sees_only_their_facility_and_its_audit_entries(shared: SharedDatabase) -> None:
    b = shared.facility_ids["FACB"]
    with shared.connect("clerk_a") as conn:
        codes = [r[0] for r in conn.execute("SELECT code FROM facility ORDER BY code")]
        assert codes == ["FACA"]
        assert _count(conn, "SELECT count(*) FROM audit_entry WHERE facility_id = %s", b) == 0


def test_a_clerk_cannot_record_a_payment_in_another_facility(shared: SharedDatabase) -> None:
    b = shared.facility_ids["FACB"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO payment (facility_id, method, status, amount_minor, currency, "
            "received_date, transfer_reference, natural_key, recorded_by, recorded_at) "
            "VALUES (%s, 'transfer', 'recorded', 100, 'USD', '2026-06-01', 'X', 'transfer:X', "
            "current_user, now())",
            (b,),
        )


def test_a_clerk_cannot_change_another_facilitys_invoice(shared: SharedDatabase) -> None:
    number = shared.invoice_numbers["b"]
    with shared.connect("clerk_a") as conn:
        changed = conn.execute(
            "UPDATE invoice SET status = 'paid' WHERE number = %s", (number,)
        ).rowcount
    assert changed == 0
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute("SELECT status FROM invoice WHERE number = %s", (number,)).fetchone()
    assert row is not None and row[0] != "paid"


def test_a_clerk_cannot_point_an_allocation_at_another_facilitys_invoice(
    shared: SharedDatabase,
) -> None:
    a = shared.facility_ids["FACA"]
    with shared.connect("clerk_a") as conn:
        invoice_b = _admin_scalar(
            shared, "SELECT id FROM invoice WHERE number = %s", shared.invoice_numbers["b"]
        )
        with pytest.raises(errors.ForeignKeyViolation) as refused:
            conn.execute(
                "INSERT INTO allocation (facility_id, payment_id, invoice_id, amount_minor, "
                "via_credit, created_at, created_by, released) "
                "VALUES (%s, %s, %s, 1, false, now(), current_user, false)",
                (a, shared.payment_ids["a"], invoice_b),
            )
    # The refusal names only what the clerk typed, nothing of facility B's invoice.
    assert "FACB" not in str(refused.value)


# -- history -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entry SET action = 'x'",
        "DELETE FROM audit_entry",
        "TRUNCATE audit_entry",
        "UPDATE audit_link SET entry_hash = 'x'",
        "DELETE FROM audit_link",
        "TRUNCATE audit_link CASCADE",
        "INSERT INTO audit_link (sequence, entry_id, hash_version, prev_hash, entry_hash, "
        "sealed_at) VALUES (999999, 1, 2, 'x', 'y', now())",
        "UPDATE audit_chain_head SET last_sequence = 0",
        "DELETE FROM audit_pending",
        "UPDATE payment_status_change SET reason = 'x'",
        "DELETE FROM payment_status_change",
        "TRUNCATE payment_status_change",
        "UPDATE invoice_status_change SET reason = 'x'",
        "DELETE FROM invoice_status_change",
        "TRUNCATE invoice_status_change",
        "DELETE FROM invoice_line",
        "UPDATE invoice_line SET amount_minor = 1",
        "DELETE FROM payment",
        "DELETE FROM invoice",
    ],
)
@pytest.mark.parametrize("person", ["clerk_a", "manager_a", "auditor"])
def test_history_cannot_be_rewritten(shared: SharedDatabase, person: str, statement: str) -> None:
    with shared.connect(person) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_an_audit_entry_cannot_claim_another_author(shared: SharedDatabase) -> None:
    a = shared.facility_ids["FACA"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
            "entity_type, entity_id, request_id) VALUES (now(), %s, 'manager', %s, 'x', 'x', "
            "'1', 'r')",
            (shared.login("manager_a"), a),
        )


def test_an_audit_entry_cannot_claim_another_role(shared: SharedDatabase) -> None:
    a = shared.facility_ids["FACA"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
            "entity_type, entity_id, request_id) VALUES (now(), current_user, 'manager', %s, "
            "'x', 'x', '1', 'r')",
            (a,),
        )


# -- issued invoices and invoiced trips --------------------------------------------------------


def test_an_issued_invoice_total_cannot_change(shared: SharedDatabase) -> None:
    with shared.connect("manager_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "UPDATE invoice SET total_minor = 1 WHERE number = %s", (shared.invoice_numbers["a"],)
        )


def test_an_invoice_cannot_be_marked_paid_without_payments(shared: SharedDatabase) -> None:
    number = shared.invoice_numbers["a"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.CheckViolation):
        conn.execute("UPDATE invoice SET status = 'paid' WHERE number = %s", (number,))


def test_a_clerk_cannot_void_an_invoice(shared: SharedDatabase) -> None:
    number = shared.invoice_numbers["a"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "UPDATE invoice SET status = 'void', void_reason = 'x', voided_by = current_user "
            "WHERE number = %s",
            (number,),
        )


def test_an_invoiced_trip_fare_is_frozen(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.CheckViolation):
        conn.execute(
            "UPDATE trip SET fare_minor = fare_minor + 100 WHERE id IN "
            "(SELECT trip_id FROM invoice_line WHERE NOT released)"
        )


def test_an_issued_invoice_line_cannot_be_released_while_the_invoice_stands(
    shared: SharedDatabase,
) -> None:
    with shared.connect("manager_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("UPDATE invoice_line SET released = true")


# -- escaping one's role -------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["billing_desk_owner", "postgres", "manager", "auditor"])
def test_set_role_to_another_role_is_refused(shared: SharedDatabase, target: str) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f'SET ROLE "{target}"')


def test_set_role_to_ones_own_group_gains_nothing(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn:
        conn.execute("SET ROLE clerk")
        assert _count(conn, "SELECT count(*) FROM payment") == 0
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO client (facility_id, name) VALUES (%s, 'x')",
                (shared.facility_ids["FACA"],),
            )


def test_session_authorization_cannot_be_changed(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"SET SESSION AUTHORIZATION {shared.login('manager_a')}")


@pytest.mark.parametrize(
    "setting",
    [
        "billing_desk.user",
        "billing_desk.facility_id",
        "app.user",
        "app.facility",
        "app.role",
        "request.jwt.claim.sub",
        "application_name",
    ],
)
def test_session_variables_change_nothing(shared: SharedDatabase, setting: str) -> None:
    b = shared.facility_ids["FACB"]
    with shared.connect("clerk_a") as conn:
        for value in (shared.login("manager_b"), str(b), "auditor", "admin"):
            conn.execute("SELECT set_config(%s, %s, false)", (setting, value))
            assert _count(conn, "SELECT count(*) FROM payment WHERE facility_id = %s", b) == 0


def test_temporary_objects_cannot_hijack_the_search_path(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE facility_access (user_name text, facility_id int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "CREATE FUNCTION pg_temp.pg_has_role(name, text, text) RETURNS boolean "
                "LANGUAGE sql AS 'SELECT true'"
            )
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.facility_access_copy (x int)")


def test_security_definer_functions_leak_nothing_across_facilities(
    shared: SharedDatabase,
) -> None:
    """Every SECURITY DEFINER function a clerk may execute, called as that clerk: none shows or
    changes a row of facility B."""
    b = shared.facility_ids["FACB"]
    with psycopg.connect(shared.admin_url) as admin_conn:
        definers = admin_conn.execute(
            "SELECT p.oid::regprocedure::text, pg_get_function_identity_arguments(p.oid) "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.prosecdef"
        ).fetchall()
    assert definers, "the sealer is expected to be a SECURITY DEFINER function"
    with shared.connect("clerk_a") as conn:
        for signature, arguments in definers:
            name = str(signature).split("(")[0]
            allowed = _count(
                conn, "SELECT has_function_privilege(%s, 'EXECUTE')::int", str(signature)
            )
            if not allowed:
                continue
            # Every integer argument gets facility B's id; booleans get false.
            values = [
                "%s" if "integer" in part or "bigint" in part else "false"
                for part in str(arguments).split(",")
                if part.strip()
            ]
            params = [b for v in values if v == "%s"]
            conn.execute(f"SELECT {name}({', '.join(values)})", params)
            assert _count(conn, "SELECT count(*) FROM payment WHERE facility_id = %s", b) == 0


# -- probing through constraints -------------------------------------------------------------


def test_another_facilitys_check_cannot_be_probed_through_the_unique_index(
    shared: SharedDatabase,
) -> None:
    """Facility B's check 5002 exists. Inserting its natural key as facility B is refused by
    row security before the unique index is consulted; as facility A it simply succeeds in the
    transaction (the index is per facility), so neither answer tells anything about B."""
    b = shared.facility_ids["FACB"]
    key = _admin_scalar(
        shared, "SELECT natural_key FROM payment WHERE id = %s", shared.payment_ids["b"]
    )
    with shared.connect("clerk_a") as conn:
        with pytest.raises(errors.InsufficientPrivilege) as refused:
            conn.execute(
                "INSERT INTO payment (facility_id, method, status, amount_minor, currency, "
                "received_date, check_number, natural_key, recorded_by, recorded_at) "
                "VALUES (%s, 'check', 'recorded', 100, 'USD', '2026-06-01', '5002', %s, "
                "current_user, now())",
                (b, key),
            )
        assert "row-level security" in str(refused.value)
        with conn.transaction(force_rollback=True):
            conn.execute(
                "INSERT INTO payment (facility_id, method, status, amount_minor, currency, "
                "received_date, check_number, natural_key, recorded_by, recorded_at) "
                "VALUES (%s, 'check', 'recorded', 100, 'USD', '2026-06-01', '5002', %s, "
                "current_user, now())",
                (shared.facility_ids["FACA"], key),
            )


# -- segregation of duties -----------------------------------------------------------------------


def test_a_clerk_cannot_void_their_own_payment_in_sql(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "UPDATE payment SET status = 'voided' WHERE id = %s", (shared.payment_ids["a"],)
        )


def test_a_forged_void_in_the_history_is_refused(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO payment_status_change (payment_id, facility_id, from_status, to_status, "
            "changed_at, changed_by, reason) VALUES (%s, %s, 'recorded', 'voided', now(), "
            "current_user, 'x')",
            (shared.payment_ids["a"], shared.facility_ids["FACA"]),
        )


def test_a_clerk_cannot_claim_a_payment_was_recorded_by_someone_else(
    shared: SharedDatabase,
) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO payment (facility_id, method, status, amount_minor, currency, "
            "received_date, transfer_reference, natural_key, recorded_by, recorded_at) "
            "VALUES (%s, 'transfer', 'recorded', 100, 'USD', '2026-06-01', 'Y', 'transfer:Y', "
            "%s, now())",
            (shared.facility_ids["FACA"], shared.login("manager_a")),
        )


def test_a_payment_amount_never_changes(shared: SharedDatabase) -> None:
    with shared.connect("manager_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "UPDATE payment SET amount_minor = 1 WHERE id = %s", (shared.payment_ids["a"],)
        )


def test_a_manager_cannot_approve_by_naming_someone_else(shared: SharedDatabase) -> None:
    with shared.connect("manager_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "UPDATE payment SET approved_by = %s WHERE id = %s",
            (shared.login("clerk_a"), shared.payment_ids["a"]),
        )


def test_the_auditor_reads_everything_and_writes_nothing(shared: SharedDatabase) -> None:
    with shared.connect("auditor") as conn:
        facilities = _count(conn, "SELECT count(DISTINCT facility_id) FROM payment")
        assert facilities == 2
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO client (facility_id, name) VALUES (%s, 'x')",
                (shared.facility_ids["FACA"],),
            )
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT value FROM database_secret")


def _admin_scalar(shared: SharedDatabase, query: str, *args: object) -> object:
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]
