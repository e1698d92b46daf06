"""EXPLAIN ANALYZE on the tables with rows of no facility (audit entries, idempotency keys,
reconciliation findings): their reading policy let those rows through with an OR, which is no
index condition, so an index scan on a prober's own condition fetched another facility's rows
(or another user's rows of no facility) for the policy to remove, and EXPLAIN ANALYZE counted
them ("Rows Removed by Filter"). Each row now has a scope (its facility, or its author, or for
a finding of no facility the provider's 0) that the policy compares with the reader's scopes,
and every index of these tables leads with it, so the plan of a value someone else has is the
plan of a value nobody has. The application's own look-ups still go through an index."""

from __future__ import annotations

import psycopg
import pytest

from tests.security.conftest import SharedDatabase, force_scan, masked

_TABLES = ("audit_entry", "idempotency_record", "discrepancy")

# (query with %s for the probed value, the value someone else has, a value nobody has); the
# values in capitals are looked up in _hidden.
_PROBES = {
    "audit-request-id": (
        "SELECT 1 FROM audit_entry WHERE request_id = %s",
        "B-REQUEST",
        "no-such-request",
    ),
    "audit-entity": (
        "SELECT 1 FROM audit_entry WHERE entity_type = 'payment' AND entity_id = %s",
        "B-PAYMENT",
        "999999999",
    ),
    "audit-facility-time": (
        "SELECT 1 FROM audit_entry WHERE facility_id = %s AND recorded_at > '2000-01-01'",
        "B-FACILITY",
        "999999",
    ),
    "audit-of-no-facility": (
        "SELECT 1 FROM audit_entry WHERE entity_type = 'export' AND entity_id = %s",
        "B-EXPORT",
        "NO-SUCH-EXPORT",
    ),
    "key-of-a-facility": (
        "SELECT 1 FROM idempotency_record WHERE facility_id = B-FACILITY AND key = %s",
        "seed-b",
        "no-such-key",
    ),
    "key-of-an-author": (
        "SELECT 1 FROM idempotency_record WHERE facility_id IS NULL AND created_by = 'B-LOGIN' "
        "AND key = %s",
        "B-DEPOSIT-KEY",
        "no-such-key",
    ),
    "key-created-at": (
        "SELECT 1 FROM idempotency_record WHERE created_at = %s",
        "B-KEY-TIME",
        "2099-01-01 00:00:00.000001+00",
    ),
    "finding-run": ("SELECT 1 FROM discrepancy WHERE run_id = %s", "B-RUN", "999999"),
}


@pytest.fixture(scope="module")
def hidden(shared: SharedDatabase) -> dict[str, str]:
    """Rows of clerk B's (facility B's, and B's own of no facility) to probe for."""
    b = shared.facility_ids["FACB"]
    clerk_b = shared.login("clerk_b")
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
            "entity_type, entity_id, before, after, request_id) VALUES (now(), %s, 'clerk', "
            "NULL, 'export.run', 'export', 'B-EXPORT', NULL, '{}', 'b-export-request')",
            (clerk_b,),
        )
        conn.execute(
            "INSERT INTO idempotency_record (facility_id, key, operation, fingerprint, request, "
            "result, created_at, created_by) VALUES (NULL, 'b-deposit-key', 'deposit.create', "
            "'', '{}', '{}', now(), %s)",
            (clerk_b,),
        )
        run = conn.execute(
            "INSERT INTO reconciliation_run (date_from, date_to, status, started_at, "
            "started_by) VALUES ('2026-06-01', '2026-06-30', 'open', now(), %s) RETURNING id",
            (clerk_b,),
        ).fetchone()
        assert run is not None
        conn.execute(
            "INSERT INTO discrepancy (run_id, kind, facility_id, detail, status) "
            "VALUES (%s, 'unmatched payment', %s, '{}', 'open')",
            (run[0], b),
        )
        row = conn.execute(
            "SELECT (SELECT request_id FROM audit_entry WHERE facility_id = %s LIMIT 1), "
            # As EXPLAIN prints it (no trailing zeros), in the clerk's time zone.
            "(SELECT (created_at AT TIME ZONE current_setting('TimeZone'))::text "
            "|| to_char(now(), 'OF') FROM idempotency_record WHERE key = 'b-deposit-key')",
            (b,),
        ).fetchone()
        # Rows other tests' refused inserts left dead are the prober's own: vacuumed away, so
        # that only what someone else has could tell the two plans apart.
        for table in _TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
    assert row is not None
    return {
        "B-REQUEST": str(row[0]),
        "B-PAYMENT": str(shared.payment_ids["b"]),
        "B-FACILITY": str(b),
        "B-EXPORT": "B-EXPORT",
        "B-LOGIN": clerk_b,
        "B-DEPOSIT-KEY": "b-deposit-key",
        "B-KEY-TIME": str(row[1]),
        "B-RUN": str(run[0]),
    }


def _plan(conn: psycopg.Connection[tuple[object, ...]], query: str, analyze: bool = True) -> str:
    options = "ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF" if analyze else "COSTS OFF"
    return "\n".join(str(line[0]) for line in conn.execute(f"EXPLAIN ({options}) {query}"))


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@pytest.mark.parametrize("planner", ["index", "bitmap", "sequential"])
@pytest.mark.parametrize("probe", sorted(_PROBES))
def test_explain_analyze_tells_nothing_of_rows_of_another_scope(
    shared: SharedDatabase, hidden: dict[str, str], probe: str, planner: str
) -> None:
    query, theirs, nobodys = _PROBES[probe]
    for name, value in hidden.items():
        query = query.replace(name, value)
    plans = []
    with shared.connect("clerk_a") as conn:
        force_scan(conn, planner)
        for value in (hidden.get(theirs, theirs), nobodys):
            plans.append(masked(_plan(conn, query.replace("%s", _quoted(value))), value))
    assert plans[0] == plans[1], plans


# The application's look-ups (services.idempotency, services.audit_trail, the audit and
# reconciliation views), as a clerk: each is an index scan whose condition holds the policy
# and the look-up's own columns.
_LOOKUPS = {
    "key-by-facility": (
        "SELECT * FROM idempotency_record WHERE key = 'k' AND facility_id = A-FACILITY",
        ("facility_id", "key"),
    ),
    "key-by-author": (
        "SELECT * FROM idempotency_record WHERE key = 'k' AND facility_id IS NULL "
        "AND created_by = current_user",
        ("created_by", "key"),
    ),
    "audit-by-facility-and-time": (
        "SELECT * FROM audit_entry WHERE facility_id = A-FACILITY "
        "AND recorded_at >= '2026-06-01' AND recorded_at < '2026-07-01' ORDER BY recorded_at",
        ("facility_id", "recorded_at"),
    ),
    "audit-by-entity": (
        "SELECT * FROM audit_entry WHERE entity_type = 'payment' AND entity_id = '1'",
        ("entity_type", "entity_id"),
    ),
    "audit-by-request": (
        "SELECT * FROM audit_entry WHERE request_id = 'r'",
        ("request_id",),
    ),
    "findings-by-run": ("SELECT * FROM discrepancy WHERE run_id = 1", ("run_id",)),
}


@pytest.mark.parametrize("lookup", sorted(_LOOKUPS))
def test_the_applications_look_ups_use_an_index_with_the_policy(
    shared: SharedDatabase, lookup: str
) -> None:
    query, columns = _LOOKUPS[lookup]
    query = query.replace("A-FACILITY", str(shared.facility_ids["FACA"]))
    with shared.connect("clerk_a") as conn:
        conn.execute("SET enable_seqscan = off")
        plan = _plan(conn, query, analyze=False)
    assert "Index Cond" in plan and "Seq Scan" not in plan, plan
    condition = next(line for line in plan.splitlines() if "Index Cond" in line)
    assert "COALESCE(" in condition, plan
    for column in columns:
        assert column in condition, plan


def test_a_sequential_scan_does_not_tell_whether_another_facility_has_a_value(
    shared: SharedDatabase,
) -> None:
    b = shared.facility_ids["FACB"]
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute(
            "SELECT amount_minor FROM payment WHERE id = %s", (shared.payment_ids["b"],)
        ).fetchone()
    assert row is not None
    plans = []
    with shared.connect("clerk_a") as conn:
        force_scan(conn, "sequential")
        for amount in (int(row[0]), 987654321):  # type: ignore[call-overload]
            query = f"SELECT 1 FROM payment WHERE facility_id = {b} AND amount_minor = {amount}"
            plans.append(masked(_plan(conn, query), str(amount)))
    assert plans[0] == plans[1], plans
