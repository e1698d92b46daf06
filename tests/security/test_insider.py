"""A hostile insider with psql and their own login: writes the application would never make
(payments in any state, approvals in a manager's name, invoices set back or grown after issue,
allocations raced past what was paid, the sealer's queue poisoned, a group's name borrowed).
Each is refused by the database itself."""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from billing_desk.domain.errors import PermissionDenied
from billing_desk.domain.integrity import entry_digest
from billing_desk.services import admin
from billing_desk.services.audit_trail import ENTRY_FIELDS
from billing_desk.services.clock import clock_from
from billing_desk.services.idempotency import purge_keys
from billing_desk.services.payments import PaymentDraft, record_payment
from tests.security.conftest import SharedDatabase, force_scan, masked

Conn = psycopg.Connection[tuple[object, ...]]

_PAYMENT = (
    "INSERT INTO payment (facility_id, method, status, amount_minor, currency, received_date, "
    "transfer_reference, payer, memo, approved_by, approved_at, duplicate_of_id, "
    "override_reason, recorded_by, recorded_at) VALUES (%(facility)s, 'transfer', %(status)s, "
    "100, 'USD', '2026-06-01', %(ref)s, %(payer)s, %(memo)s, %(approved_by)s, "
    "%(approved_at)s, %(duplicate_of)s, %(override)s, %(recorded_by)s, now())"
)


def _payment(shared: SharedDatabase, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "facility": shared.facility_ids["FACA"],
        "status": "recorded",
        "ref": f"REF-{uuid.uuid4().hex[:10]}",
        "payer": "Acme",
        "memo": None,
        "approved_by": None,
        "approved_at": None,
        "duplicate_of": None,
        "override": None,
        "recorded_by": shared.login("clerk_a"),
    }
    values.update(changes)
    return values


def test_a_clerk_records_a_plain_payment_directly(shared: SharedDatabase) -> None:
    # The positive control: the refusals below are about what the row claims, not the INSERT.
    with shared.connect("clerk_a") as conn:
        conn.execute(_PAYMENT, _payment(shared))


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "cleared"},
        {"status": "voided"},
        {"status": "made up"},
        {"status": "awaiting approval"},
        {"approved_by": "MANAGER", "approved_at": "2026-06-01T10:00:00Z"},
        {"duplicate_of": "SEED", "override": "same check twice", "status": "recorded"},
        {"payer": "4111 1111 1111 1111"},
        {"memo": "card 4111-1111-1111-1111 exp 12/29"},
    ],
    ids=[
        "cleared",
        "voided",
        "made-up-status",
        "held-without-reason",
        "approved-by-a-manager",
        "duplicate-without-approval",
        "card-number-in-payer",
        "card-number-in-memo",
    ],
)
def test_a_clerk_cannot_insert_a_payment_the_application_would_not(
    shared: SharedDatabase, changes: dict[str, object]
) -> None:
    if changes.get("approved_by") == "MANAGER":
        changes = {**changes, "approved_by": shared.login("manager_a")}
    if changes.get("duplicate_of") == "SEED":
        changes = {**changes, "duplicate_of": shared.payment_ids["a"]}
    with (
        shared.connect("clerk_a") as conn,
        pytest.raises((errors.CheckViolation, errors.InsufficientPrivilege)),
    ):
        conn.execute(_PAYMENT, _payment(shared, **changes))


def test_a_clerk_cannot_record_a_payment_in_another_clerks_name(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(_PAYMENT, _payment(shared, recorded_by=shared.login("manager_a")))


# -- invoices --------------------------------------------------------------------------------------


def _invoice_id(shared: SharedDatabase, side: str = "a") -> int:
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute(
            "SELECT id FROM invoice WHERE number = %s", (shared.invoice_numbers[side],)
        ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def test_an_issued_invoice_never_goes_back_to_draft(shared: SharedDatabase) -> None:
    with shared.connect("clerk_a") as conn, pytest.raises(errors.CheckViolation):
        conn.execute("UPDATE invoice SET status = 'draft' WHERE id = %s", (_invoice_id(shared),))


def test_an_issued_invoice_takes_no_new_line(shared: SharedDatabase) -> None:
    a = shared.facility_ids["FACA"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO invoice_line (invoice_id, facility_id, line_no, service_date, "
            "description, amount_minor, released) "
            "VALUES (%s, %s, 99, '2026-05-03', 'extra', 5000, false)",
            (_invoice_id(shared), a),
        )


@pytest.mark.parametrize("status", ["paid", "issued"])
def test_an_invoice_is_never_inserted_paid_or_without_lines(
    shared: SharedDatabase, status: str
) -> None:
    a = shared.facility_ids["FACA"]
    with (
        shared.connect("clerk_a") as conn,
        pytest.raises((errors.CheckViolation, errors.InsufficientPrivilege)),
    ):
        conn.execute(
            "INSERT INTO invoice (facility_id, number, sequence, period_start, period_end, "
            "issue_date, due_date, status, currency, total_minor, created_at, created_by) "
            "VALUES (%s, %s, 900, '2026-04-01', '2026-04-30', '2026-05-01', '2026-05-31', "
            "%s, 'USD', 50000, now(), current_user)",
            (a, f"FACA-X{uuid.uuid4().hex[:6]}", status),
        )


def test_the_invoice_counter_is_never_rewound(shared: SharedDatabase) -> None:
    a = shared.facility_ids["FACA"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.CheckViolation):
        conn.execute("UPDATE invoice_counter SET last_number = 0 WHERE facility_id = %s", (a,))


# -- allocations under concurrency -----------------------------------------------------------------


def _seed_race(shared: SharedDatabase) -> tuple[int, list[int]]:
    """An invoice of 1,000.00 in facility A, partially paid (1.00 by a third payment), and two
    payments of 1,000.00 recorded by clerk A, written as the superuser with triggers set aside
    (the setup, not the attack)."""
    a = shared.facility_ids["FACA"]
    tag = uuid.uuid4().hex[:8]
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        row = conn.execute(
            "INSERT INTO invoice (facility_id, number, sequence, period_start, period_end, "
            "issue_date, due_date, status, currency, total_minor, created_at, created_by) "
            "VALUES (%s, %s, (SELECT coalesce(max(sequence), 0) + 1000 FROM invoice), "
            "'2026-03-01', '2026-03-31', '2026-04-01', '2026-04-30', 'partially paid', "
            "'USD', 100000, now(), %s) RETURNING id",
            (a, f"FACA-R{tag}", shared.login("clerk_a")),
        ).fetchone()
        assert row is not None
        invoice = int(row[0])  # type: ignore[call-overload]
        payments = []
        for n in range(3):
            got = conn.execute(
                "INSERT INTO payment (facility_id, method, status, amount_minor, currency, "
                "received_date, transfer_reference, recorded_by, recorded_at) "
                "VALUES (%s, 'transfer', 'recorded', 100000, 'USD', '2026-04-02', %s, %s, now()) "
                "RETURNING id",
                (a, f"RACE-{tag}-{n}", shared.login("clerk_a")),
            ).fetchone()
            assert got is not None
            payments.append(int(got[0]))  # type: ignore[call-overload]
        conn.execute(
            "INSERT INTO allocation (facility_id, payment_id, invoice_id, amount_minor, "
            "via_credit, created_at, created_by, released) "
            "VALUES (%s, %s, %s, 100, false, now(), %s, false)",
            (a, payments.pop(), invoice, shared.login("clerk_a")),
        )
    return invoice, payments


def _race(
    shared: SharedDatabase, isolation: str, write: Callable[[Conn, int], None]
) -> list[Exception | None]:
    """Two sessions of clerk A each do `write` inside one transaction, both before either
    commits, then both commit."""
    results: list[Exception | None] = [None, None]
    written = threading.Barrier(2, timeout=20)

    def session(index: int) -> None:
        try:
            with psycopg.connect(shared.url("clerk_a"), connect_timeout=5) as conn:
                conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
                write(conn, index)
                written.wait()
                conn.commit()
        except Exception as err:
            results[index] = err
            written.abort()

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


ISOLATIONS = ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]


def _exactly_one_went_in(results: list[Exception | None]) -> None:
    """Either allocation fits on its own: the first to commit goes in and only the second is
    refused (a guard refusing both would keep the money right and stop the desk's work)."""
    assert sum(result is None for result in results) == 1, results
    assert all(
        isinstance(r, (errors.SerializationFailure, errors.CheckViolation))
        for r in results
        if r is not None
    ), results


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_two_sessions_cannot_allocate_one_invoice_twice(
    shared: SharedDatabase, isolation: str
) -> None:
    invoice, payments = _seed_race(shared)
    a = shared.facility_ids["FACA"]

    def allocate(conn: Conn, index: int) -> None:
        conn.execute(
            "INSERT INTO allocation (facility_id, payment_id, invoice_id, amount_minor, "
            "via_credit, created_at, created_by, released) "
            "VALUES (%s, %s, %s, 60000, false, now(), current_user, false)",
            (a, payments[index], invoice),
        )

    results = _race(shared, isolation, allocate)
    _exactly_one_went_in(results)
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(amount_minor), 0) FROM allocation "
            "WHERE invoice_id = %s AND NOT released",
            (invoice,),
        ).fetchone()
    # The 1.00 paid before and the one allocation that went in, no more and no less.
    assert row is not None and int(row[0]) == 100 + 60000  # type: ignore[call-overload]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_two_sessions_cannot_allocate_one_payment_twice(
    shared: SharedDatabase, isolation: str
) -> None:
    invoice_one, payments = _seed_race(shared)
    invoice_two, _ = _seed_race(shared)
    a = shared.facility_ids["FACA"]
    invoices = [invoice_one, invoice_two]

    def allocate(conn: Conn, index: int) -> None:
        conn.execute(
            "INSERT INTO allocation (facility_id, payment_id, invoice_id, amount_minor, "
            "via_credit, created_at, created_by, released) "
            "VALUES (%s, %s, %s, 60000, false, now(), current_user, false)",
            (a, payments[0], invoices[index]),
        )

    results = _race(shared, isolation, allocate)
    _exactly_one_went_in(results)
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(amount_minor), 0) FROM allocation "
            "WHERE payment_id = %s AND NOT released",
            (payments[0],),
        ).fetchone()
    assert row is not None and int(row[0]) == 60000  # type: ignore[call-overload]


def test_an_allocation_moves_its_invoice(shared: SharedDatabase) -> None:
    invoice, payments = _seed_race(shared)
    a = shared.facility_ids["FACA"]
    with shared.connect("clerk_a") as conn, pytest.raises(errors.CheckViolation):
        conn.execute(
            "INSERT INTO allocation (facility_id, payment_id, invoice_id, amount_minor, "
            "via_credit, created_at, created_by, released) "
            "VALUES (%s, %s, %s, 99900, false, now(), current_user, false)",
            (a, payments[0], invoice),
        )


# -- the audit trail's queue -----------------------------------------------------------------------


@pytest.mark.parametrize("person", ["clerk_a", "manager_a", "auditor", "administrator"])
def test_nobody_queues_an_entry_already_sealed_or_not_their_own(
    shared: SharedDatabase, person: str
) -> None:
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute("SELECT min(entry_id) FROM audit_link").fetchone()
    assert row is not None and row[0] is not None
    with shared.connect(person) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("INSERT INTO audit_pending (entry_id) VALUES (%s)", (row[0],))


# -- a group's name --------------------------------------------------------------------------------


def test_acting_as_ones_group_is_acting_as_nobody(shared: SharedDatabase) -> None:
    """`demo` registers billing users named after the groups; a clerk who SET ROLEs to the
    group must not become that user."""
    a = shared.facility_ids["FACA"]
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO app_user (name, role, active, created_at, created_by) "
            "VALUES ('clerk', 'clerk', true, now(), 'setup') ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO facility_access (user_name, facility_id, granted_at, granted_by) "
            "VALUES ('clerk', NULL, now(), 'setup')"
        )
    with shared.connect("clerk_b") as conn:
        conn.execute("SET ROLE clerk")
        seen = conn.execute("SELECT count(*) FROM payment WHERE facility_id = %s", (a,)).fetchone()
        assert seen is not None and seen[0] == 0
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(_PAYMENT, _payment(shared, recorded_by="clerk"))


# -- tables with free actor and state columns --------------------------------------------------


@pytest.mark.parametrize(
    ("person", "statement"),
    [
        (
            "clerk_a",
            "INSERT INTO operation_failure (occurred_at, user_name, action, kind, message) "
            "VALUES (now(), '{manager_a}', 'payment.record', 'refused', 'x')",
        ),
        (
            "auditor",
            "INSERT INTO operation_failure (occurred_at, user_name, action, kind, message) "
            "VALUES (now(), '{clerk_b}', 'payment.record', 'refused', 'x')",
        ),
        (
            "clerk_a",
            "INSERT INTO operation_failure (occurred_at, user_name, action, kind, message, "
            "payment_id) VALUES (now(), current_user, 'payment.record', 'refused', 'x', "
            "{payment_b})",
        ),
        (
            "clerk_a",
            "INSERT INTO anomaly_alert (facility_id, rule, severity, fingerprint, entities, "
            "explanation, status, raised_at, raised_by, closed_at, closed_by) VALUES "
            "({faca}, 'own-payment', 'critical', 'fp', '[]', 'x', 'dismissed', now(), "
            "current_user, now(), '{manager_a}')",
        ),
        (
            "manager_a",
            "INSERT INTO reconciliation_run (date_from, date_to, status, started_at, started_by, "
            "closed_at, closed_by) VALUES ('2026-01-01', '2026-01-31', 'closed', now(), "
            "current_user, now(), current_user)",
        ),
        (
            "clerk_a",
            "INSERT INTO reconciliation_run (date_from, date_to, status, started_at, started_by, "
            "closed_at, closed_by) VALUES ('2026-01-01', '2026-01-31', 'closed', now(), "
            "'{manager_a}', now(), '{manager_a}')",
        ),
        (
            "clerk_a",
            "INSERT INTO reconciliation_run (date_from, date_to, status, started_at, started_by, "
            "closed_at, closed_by) VALUES ('2026-01-01', '2026-01-31', 'closed', now(), "
            "current_user, now(), '{manager_a}')",
        ),
        (
            "clerk_a",
            "INSERT INTO reconciliation_run (date_from, date_to, status, started_at, started_by) "
            "VALUES ('2026-01-01', '2026-01-31', 'open', now(), '{manager_a}')",
        ),
        (
            "clerk_a",
            "INSERT INTO csv_mapping (name, record, saved_at, saved_by) "
            "VALUES ('bank', '{{}}', now(), '{manager_a}')",
        ),
    ],
    ids=[
        "failure-blaming-a-manager",
        "auditor-blaming-a-clerk",
        "failure-naming-another-facilitys-payment",
        "alert-born-dismissed",
        "run-born-closed",
        "clerk-run-born-closed-by-a-manager",
        "clerk-run-closed-in-a-managers-name",
        "clerk-run-started-in-a-managers-name",
        "mapping-in-a-managers-name",
    ],
)
def test_rows_with_free_actor_and_state_columns_are_born_honest(
    shared: SharedDatabase, person: str, statement: str
) -> None:
    filled = statement.format(
        manager_a=shared.login("manager_a"),
        clerk_b=shared.login("clerk_b"),
        payment_b=shared.payment_ids["b"],
        faca=shared.facility_ids["FACA"],
    )
    with (
        shared.connect(person) as conn,
        pytest.raises(
            (errors.CheckViolation, errors.InsufficientPrivilege, errors.ForeignKeyViolation)
        ),
    ):
        conn.execute(filled)


def test_a_clerk_starts_a_reconciliation_run_in_their_own_name(shared: SharedDatabase) -> None:
    """The positive control of the runs above: what is refused is the closed state and the
    manager's name, not a clerk's INSERT of a run."""
    with shared.connect("clerk_a") as conn, conn.transaction(force_rollback=True):
        conn.execute(
            "INSERT INTO reconciliation_run (date_from, date_to, status, started_at, started_by) "
            "VALUES ('2026-01-01', '2026-01-31', 'open', now(), current_user)"
        )


# -- what a login may still write (docs/operations.md, section 6) -----------------------------


def test_a_saved_mapping_is_replaced_by_anyone_who_imports_but_in_their_own_name(
    shared: SharedDatabase,
) -> None:
    """Mappings are shared by name: the application's `mapping save` replaces whoever saved
    one before. Done directly, the replacement names its writer, never someone else."""
    name = f"bank-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(shared.admin_url) as conn:
        conn.execute(
            "INSERT INTO csv_mapping (name, record, saved_at, saved_by) "
            "VALUES (%s, '{}', now(), %s)",
            (name, shared.login("clerk_b")),
        )
    replace = (
        "UPDATE csv_mapping SET record = '{}', saved_at = now(), saved_by = %s WHERE name = %s"
    )
    for person in ("clerk_a", "manager_a"):
        with shared.connect(person) as conn, conn.transaction(force_rollback=True):
            assert conn.execute(replace, (shared.login(person), name)).rowcount == 1
        with (
            shared.connect(person) as conn,
            pytest.raises(errors.InsufficientPrivilege),
            conn.transaction(force_rollback=True),
        ):
            conn.execute(replace, (shared.login("manager_b"), name))


def test_an_audit_entrys_action_is_its_writers_word_under_their_own_name_and_role(
    shared: SharedDatabase,
) -> None:
    """A clerk may write an entry claiming an administrator's action: it goes in as the
    clerk's, with the clerk's role, so it never passes as an administrator's."""
    with shared.connect("clerk_a") as conn, conn.transaction(force_rollback=True):
        row = conn.execute(
            "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
            "entity_type, entity_id, before, after, request_id) VALUES (now(), current_user, "
            "'clerk', NULL, 'admin.user_add', 'user', 'mallory', NULL, '{}', 'claimed') "
            "RETURNING user_name, user_role, action"
        ).fetchone()
    assert row == (shared.login("clerk_a"), "clerk", "admin.user_add")


def test_an_auditor_writes_failures_and_queued_entries_of_their_own(
    shared: SharedDatabase,
) -> None:
    """Auditors change no business row; besides their own audit entries they record their own
    failed operations and queue their own entries for the sealer, in their own name only."""
    with shared.connect("auditor") as conn, conn.transaction(force_rollback=True):
        conn.execute(
            "INSERT INTO operation_failure (occurred_at, user_name, action, kind, message) "
            "VALUES (now(), current_user, 'audit.verify', 'refused', 'x')"
        )
        entry = conn.execute(
            "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
            "entity_type, entity_id, before, after, request_id) VALUES (now(), current_user, "
            "'auditor', NULL, 'audit.verify', 'database', 'x', NULL, '{}', 'verify') "
            "RETURNING id"
        ).fetchone()
        assert entry is not None
        conn.execute("INSERT INTO audit_pending (entry_id) VALUES (%s)", (entry[0],))


# -- error messages as oracles ---------------------------------------------------------------------


def _refusal(conn: Conn, statement: str, *args: object) -> tuple[str, str]:
    with pytest.raises(errors.ForeignKeyViolation) as refused:
        conn.execute(statement, args)
    diag = refused.value.diag
    return str(diag.constraint_name), str(diag.message_detail)


_FOREIGN_ALLOCATION = (
    "INSERT INTO allocation (facility_id, payment_id, invoice_id, amount_minor, via_credit, "
    "created_at, created_by, released) VALUES (%s, %s, %s, 1, false, now(), current_user, false)"
)


@pytest.mark.parametrize("target", ["invoice", "payment"])
def test_a_foreign_key_error_does_not_tell_another_facilitys_row_from_a_missing_one(
    shared: SharedDatabase, target: str
) -> None:
    a = shared.facility_ids["FACA"]
    other = _invoice_id(shared, "b") if target == "invoice" else shared.payment_ids["b"]
    missing = other + 1_000_000

    def attempt(conn: Conn, row: int) -> tuple[str, str]:
        if target == "invoice":
            args = (a, shared.payment_ids["a"], row)
        else:
            args = (a, row, _invoice_id(shared, "a"))
        constraint, detail = _refusal(conn, _FOREIGN_ALLOCATION, *args)
        return constraint, detail.replace(str(row), "ID")

    with shared.connect("clerk_a") as conn:
        assert attempt(conn, other) == attempt(conn, missing)


def test_an_administrator_cannot_remove_a_fresh_idempotency_key(shared: SharedDatabase) -> None:
    # A key a clerk claimed a minute ago, for a payment whose retry is still to come.
    with psycopg.connect(shared.admin_url) as conn:
        conn.execute(
            "INSERT INTO idempotency_record (facility_id, created_at, fingerprint, request, "
            "result, created_by, key, operation) SELECT facility_id, now() - interval '1 minute', "
            "fingerprint, request, result, created_by, %s, operation FROM idempotency_record "
            "WHERE facility_id IS NOT NULL LIMIT 1",
            (f"fresh-{uuid.uuid4().hex[:8]}",),
        )
    with shared.connect("administrator") as conn:
        removed = conn.execute(
            "DELETE FROM idempotency_record WHERE created_at > now() - interval '1 day'"
        ).rowcount
    assert removed == 0


def _plant_key(shared: SharedDatabase, created_at: str) -> str:
    """A copy of a clerk's key with its moment of creation chosen, written as the superuser."""
    key = f"old-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(shared.admin_url) as conn:
        conn.execute(
            "INSERT INTO idempotency_record (facility_id, created_at, fingerprint, request, "
            "result, created_by, key, operation) SELECT facility_id, %s, fingerprint, request, "
            "result, created_by, %s, operation FROM idempotency_record "
            "WHERE facility_id IS NOT NULL LIMIT 1",
            (created_at, key),
        )
    return key


def _key_kept(shared: SharedDatabase, key: str) -> bool:
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute("SELECT count(*) FROM idempotency_record WHERE key = %s", (key,))
        return row.fetchone() == (1,)


def test_an_administrator_removes_a_key_past_its_minimum_age(shared: SharedDatabase) -> None:
    """The positive control of the refusal above: a key older than the minimum age goes, by
    an administrator's DELETE and by the application's purge, so the refusal is about the
    fresh key and not a DELETE nobody may make."""
    aged = _plant_key(shared, "2020-01-01T00:00:00Z")
    with shared.connect("administrator") as conn:
        removed = conn.execute("DELETE FROM idempotency_record WHERE key = %s", (aged,)).rowcount
    assert removed == 1
    assert not _key_kept(shared, aged)

    # The purge counts what it means to remove: only the planted key is older than its cutoff
    # (every other key of this database was written at the tests' clock, in 2026).
    aged = _plant_key(shared, "2020-01-01T00:00:00Z")
    administrator = shared.workspace("administrator")
    cutoff = datetime(2021, 1, 1, tzinfo=UTC)
    result = purge_keys(administrator, older_than_days=(administrator.clock() - cutoff).days)
    assert result.removed == 1
    assert not _key_kept(shared, aged)


def test_a_queue_poisoned_with_a_sealed_entry_does_not_stop_sealing(
    shared: SharedDatabase,
) -> None:
    # Queued as only the server's superuser now could (the queue refuses anyone else); what
    # matters is that the sealer takes it out instead of failing on it every time after.
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute("INSERT INTO audit_pending (entry_id) SELECT min(entry_id) FROM audit_link")
    with shared.connect("clerk_a") as conn:
        conn.execute("SET statement_timeout = '20s'")
        conn.execute("SELECT billing_desk_seal_audit(100, true)")
        left = conn.execute(
            "SELECT count(*) FROM audit_pending q JOIN audit_link l USING (entry_id)"
        ).fetchone()
    assert left == (0,)


# How long the sealer waits for a held chain head: the lock_timeout its function is created
# with (docs/operations.md promises 5 s).
HEAD_WAIT_SECONDS = int(
    importlib.import_module(
        "billing_desk.db.migrations.versions.0010_sealer_survives"
    ).HEAD_WAIT.removesuffix("s")
)


def test_a_held_chain_head_does_not_stop_every_sealer(shared: SharedDatabase) -> None:
    """A sealer waiting for the chain head gives up after the function's lock timeout, with
    nothing sealed, instead of stopping the writer behind a transaction that never ends."""
    holder = psycopg.connect(shared.url("auditor"), connect_timeout=5)
    try:
        holder.execute("SELECT billing_desk_seal_audit(0, true)")  # and never commits
        with shared.connect("clerk_a") as conn:
            # Far beyond the promised wait, so that a sealer waiting longer shows in the
            # elapsed time below rather than as this timeout.
            conn.execute("SET statement_timeout = '30s'")
            started = time.monotonic()
            sealed = conn.execute("SELECT billing_desk_seal_audit(100, true)").fetchone()
            waited = time.monotonic() - started
        assert sealed == (0,)
        # The promised wait, and a margin for a busy machine.
        assert HEAD_WAIT_SECONDS == 5
        assert waited < HEAD_WAIT_SECONDS + 3, waited
    finally:
        holder.close()


def test_a_clerk_cannot_add_an_item_to_another_clerks_deposit_slip(
    shared: SharedDatabase,
) -> None:
    a = shared.facility_ids["FACA"]
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO deposit (deposit_date, total_minor, item_count, created_at, "
            "bank_account, currency, created_by) VALUES ('2026-06-03', 0, 0, now(), 'main', "
            "'USD', %s) RETURNING id",
            (shared.login("manager_a"),),
        ).fetchone()
    assert row is not None
    _invoice, payments = _seed_race(shared)
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO deposit_item (deposit_id, payment_id, facility_id, amount_minor) "
            "VALUES (%s, %s, %s, 100000)",
            (row[0], payments[0], a),
        )


def test_a_deposit_slips_items_add_up_to_its_total(shared: SharedDatabase) -> None:
    a = shared.facility_ids["FACA"]
    _invoice, payments = _seed_race(shared)
    with (
        shared.connect("clerk_a") as conn,
        pytest.raises(errors.CheckViolation),
        conn.transaction(),
    ):
        row = conn.execute(
            "INSERT INTO deposit (deposit_date, total_minor, item_count, created_at, "
            "bank_account, currency, created_by) VALUES ('2026-06-03', 100000, 1, now(), "
            "'main', 'USD', current_user) RETURNING id"
        ).fetchone()
        assert row is not None
        for payment in payments:
            conn.execute(
                "INSERT INTO deposit_item (deposit_id, payment_id, facility_id, "
                "amount_minor) VALUES (%s, %s, %s, 100000)",
                (row[0], payment, a),
            )


# -- side channels -----------------------------------------------------------------------------


def test_no_statistics_are_kept_on_sensitive_columns(shared: SharedDatabase) -> None:
    """The planner estimates from statistics whatever row security hides: `EXPLAIN SELECT ...
    WHERE payer = 'x'` told how common another facility's payer is."""
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute("ANALYZE payment")
        kept = conn.execute(
            "SELECT a.attname FROM pg_statistic s JOIN pg_attribute a "
            "ON a.attrelid = s.starelid AND a.attnum = s.staattnum "
            "WHERE s.starelid = 'payment'::regclass "
            "AND a.attname IN ('payer', 'amount_minor', 'transfer_reference')"
        ).fetchall()
    assert kept == []


_PROBES = {
    # (query with one %s, the value another facility has, a value nobody has)
    "payment-amount": ("SELECT 1 FROM payment WHERE amount_minor = %s", "777777", "777778"),
    "payment-amount-range": (
        "SELECT 1 FROM payment WHERE amount_minor BETWEEN %s AND 777777",
        "777770",
        "777778",
    ),
    "payment-natural-key": ("SELECT 1 FROM payment WHERE natural_key = %s", "B-KEY", "NOBODYS-KEY"),
    "transfer-reference": (
        "SELECT 1 FROM payment WHERE transfer_reference = %s",
        "B-REF-PROBE",
        "NO-SUCH-REF",
    ),
    "invoice-number": ("SELECT 1 FROM invoice WHERE number = %s", "B-NUMBER", "NO-SUCH-NUMBER"),
    "allocation-payment": (
        "SELECT 1 FROM allocation WHERE payment_id = %s::bigint",
        "B-PAYMENT",
        "999999999",
    ),
}


@pytest.mark.parametrize("planner", ["index", "bitmap", "sequential"])
@pytest.mark.parametrize("probe", sorted(_PROBES))
def test_explain_analyze_does_not_tell_another_facilitys_row_from_a_missing_one(
    shared: SharedDatabase, probe: str, planner: str
) -> None:
    """With the planner pushed onto an index, an index scan on the prober's own (leakproof)
    condition fetched another facility's rows for the policy to remove, and EXPLAIN ANALYZE
    counted them ("Rows Removed by Filter"): a binary search recovered hidden amounts and
    references. The policy is now an index condition and every index leads with the facility,
    so the plan of a value another facility has is the plan of one nobody has."""
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO payment (facility_id, method, status, amount_minor, currency, "
            "received_date, transfer_reference, recorded_by, recorded_at) SELECT %s, "
            "'transfer', 'recorded', 777777, 'USD', '2026-06-01', 'B-REF-PROBE', %s, now() "
            "WHERE NOT EXISTS (SELECT 1 FROM payment WHERE transfer_reference = 'B-REF-PROBE')",
            (shared.facility_ids["FACB"], shared.login("clerk_b")),
        )
        row = conn.execute(
            "SELECT p.natural_key, i.number FROM payment p, invoice i "
            "WHERE p.id = %s AND i.number = %s",
            (shared.payment_ids["b"], shared.invoice_numbers["b"]),
        ).fetchone()
        # Rows other tests' refused inserts left dead are the prober's own: vacuumed away, so
        # that only what another facility has could tell the two plans apart.
        for table in ("payment", "invoice", "allocation"):
            conn.execute(f"VACUUM ANALYZE {table}")
    assert row is not None
    hidden = {
        "B-KEY": str(row[0]),
        "B-NUMBER": str(row[1]),
        "B-PAYMENT": str(shared.payment_ids["b"]),
    }
    query, theirs, nobodys = _PROBES[probe]
    plans = []
    with shared.connect("clerk_a") as conn:
        force_scan(conn, planner)
        for value in (hidden.get(theirs, theirs), nobodys):
            plan = "\n".join(
                str(line[0])
                for line in conn.execute(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                    + query.replace("%s", "'" + value.replace("'", "''") + "'")
                )
            )
            plans.append(masked(plan, value))
    assert plans[0] == plans[1], plans


def test_a_users_idempotency_key_can_be_neither_probed_nor_taken_by_another(
    shared: SharedDatabase,
) -> None:
    """Keys of no facility (a deposit slip's) were unique across the database: another clerk's
    insert said "Key (key)=(...) already exists", or took the key first."""
    key = f"deposit-{uuid.uuid4().hex[:8]}"
    claim = (
        "INSERT INTO idempotency_record (facility_id, created_at, key, operation, fingerprint, "
        "request, result, created_by) VALUES (NULL, now(), %s, 'deposit.create', "
        "encode(sha256('{}'), 'hex'), '{}', '', %s)"
    )
    # Clerk B's key, with its slip (a claim commits only with the result of its request).
    with psycopg.connect(shared.admin_url, autocommit=True) as conn:
        conn.execute(claim, (key, shared.login("clerk_b")))
    # Clerk A's claim of the same key goes in; it would commit with A's own slip.
    with shared.connect("clerk_a") as conn, conn.transaction(force_rollback=True):
        conn.execute(claim.replace("%s)", "current_user)"), (key,))


def test_an_audit_entry_names_only_a_row_its_writer_can_see(shared: SharedDatabase) -> None:
    """An entry of one's own naming another facility's payment left a permanent "row differs
    from its audit trail" finding on that payment."""
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
            "entity_type, entity_id, before, after, request_id) VALUES (now(), current_user, "
            "'clerk', %s, 'payment.record', 'payment', %s, '{}', '{}', 'forged')",
            (shared.facility_ids["FACA"], str(shared.payment_ids["b"])),
        )


# -- audit entry digests ---------------------------------------------------------------------------

_ENTRY = (
    "INSERT INTO audit_entry (recorded_at, user_name, user_role, facility_id, action, "
    "entity_type, entity_id, before, after, request_id, entry_digest) VALUES (%(at)s, "
    "current_user, 'clerk', %(facility)s, 'note.add', 'note', '1', %(before)s, %(after)s, "
    "%(request)s, %(digest)s) RETURNING id"
)


def _entry(shared: SharedDatabase, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "at": datetime(2026, 6, 2, 14, 30, 1, 2345, tzinfo=UTC),
        "facility": shared.facility_ids["FACA"],
        "before": None,
        "after": '{"text":"ok"}',
        "request": f"r-{uuid.uuid4().hex[:8]}",
        "digest": None,
    }
    values.update(changes)
    return values


def test_an_audit_entry_with_a_digest_not_of_its_content_is_refused(
    shared: SharedDatabase,
) -> None:
    """An entry of one's own queued with a wrong digest left a permanent "entry altered"
    finding: the sealer chains the stored digest, the verifier recomputes it from the content."""
    with shared.connect("clerk_a") as conn, pytest.raises(errors.CheckViolation):
        conn.execute(_ENTRY, _entry(shared, digest="0" * 64))


@pytest.mark.parametrize(
    "before",
    [None, 'quote " backslash \\ é € 💶 \x01\x07\x1b\x1f\x7f\t\n\r\b\f', "\u2028 \ufeff"],
    ids=["none", "escapes-and-non-ascii", "separators"],
)
def test_the_database_digests_an_audit_entry_as_the_application_does(
    shared: SharedDatabase, before: str | None
) -> None:
    """The database fills in a missing digest, and a correct one goes through: its canonical
    JSON is byte for byte the application's (domain.hashing), whatever the text holds."""
    values = _entry(shared, before=before)
    with shared.connect("clerk_a") as conn:
        row = conn.execute(_ENTRY, values).fetchone()
        assert row is not None
        stored = conn.execute(
            "SELECT recorded_at, user_name, user_role, facility_id, action, entity_type, "
            "entity_id, before, after, request_id, entry_digest FROM audit_entry WHERE id = %s",
            (row[0],),
        ).fetchone()
        assert stored is not None
        content = dict(zip(ENTRY_FIELDS, stored[:-1], strict=True))
        assert stored[-1] == entry_digest(content)
        assert content["before"] == before
        # The application sends the digest it computed: accepted as equal.
        conn.execute(_ENTRY, {**values, "digest": entry_digest(content)})


# -- rows of no facility that name one ---------------------------------------------------------


def test_a_failure_is_read_only_by_its_user_and_those_who_see_its_payment(
    shared: SharedDatabase,
) -> None:
    """operation_failure has no facility column: every clerk read every failure, with the
    payment ids and refusal sentences of other facilities."""
    marker = f"refused-{uuid.uuid4().hex[:8]}"
    failure = (
        "INSERT INTO operation_failure (occurred_at, user_name, action, kind, message, "
        "payment_id) VALUES (now(), current_user, 'payment.void', 'segregation', %s, %s)"
    )
    with shared.connect("clerk_a") as conn:
        conn.execute(failure, (marker, shared.payment_ids["a"]))
        conn.execute(failure, (marker, None))
    seen: dict[str, int] = {}
    for person in ("clerk_a", "clerk_b", "manager_a", "manager_b", "auditor", "administrator"):
        with shared.connect(person) as conn:
            row = conn.execute(
                "SELECT count(*) FROM operation_failure WHERE message = %s", (marker,)
            ).fetchone()
        assert row is not None
        seen[person] = int(row[0])  # type: ignore[call-overload]
    # The failing clerk reads both; a manager of the payment's facility the one naming it;
    # the other facility's people neither; auditors and administrators both.
    assert seen == {
        "clerk_a": 2,
        "clerk_b": 0,
        "manager_a": 1,
        "manager_b": 0,
        "auditor": 2,
        "administrator": 2,
    }


# -- idempotency results ---------------------------------------------------------------------------


def _forged_receipt(shared: SharedDatabase) -> str:
    # The seed receipt of clerk A's first payment, pointing at another payment.
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute("SELECT result FROM idempotency_record WHERE key = 'seed-a'").fetchone()
    assert row is not None
    return str(row[0]).replace(
        f'"payment_id":{shared.payment_ids["a"]}', f'"payment_id":{shared.payment_ids["b"]}'
    )


def test_a_keys_stored_result_is_never_rewritten(shared: SharedDatabase) -> None:
    """UPDATE(result) let a clerk rewrite their own committed key's receipt, so a retried (or a
    colleague's re-imported) request was answered with a wrong receipt and wrote nothing."""
    forged = _forged_receipt(shared)
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("UPDATE idempotency_record SET result = %s WHERE key = 'seed-a'", (forged,))
    # Another clerk's key is not theirs to touch at all (row security: nothing matches).
    with shared.connect("clerk_b") as conn:
        changed = conn.execute(
            "UPDATE idempotency_record SET result = '{}' WHERE key = 'seed-a'"
        ).rowcount
    assert changed == 0


@pytest.mark.parametrize("how", ["born-with-a-result", "result-of-nothing-written"])
def test_a_key_cannot_be_planted_with_a_receipt_of_nothing(
    shared: SharedDatabase, how: str
) -> None:
    """A key claimed in one's own transaction with a receipt of a payment it did not record:
    whoever then makes that request (an import's key is derived from the file) is told it was
    recorded, and nothing is."""
    forged = _forged_receipt(shared)
    plant = (
        "INSERT INTO idempotency_record (facility_id, created_at, key, operation, fingerprint, "
        "request, result, created_by) SELECT facility_id, now(), %s, operation, fingerprint, "
        "request, %s, current_user FROM idempotency_record WHERE key = 'seed-a' RETURNING id"
    )
    key = f"import-{uuid.uuid4().hex[:8]}"
    with (
        shared.connect("clerk_a") as conn,
        pytest.raises(errors.CheckViolation),
        conn.transaction(),
    ):
        if how == "born-with-a-result":
            conn.execute(plant, (key, forged))
        else:
            conn.execute(plant, (key, ""))
            conn.execute("UPDATE idempotency_record SET result = %s WHERE key = %s", (forged, key))


# -- when a payment was recorded -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded_at", "refused"),
    [
        ("now()", False),
        ("now() - interval '1 minute'", False),
        ("now() - interval '1 day'", True),
        ("now() - interval '6 minutes'", True),
        ("now() + interval '1 hour'", True),
    ],
    ids=["now", "a-minute-ago", "a-day-ago", "past-the-skew", "ahead"],
)
def test_a_payment_is_recorded_at_the_databases_time_give_or_take_the_skew(
    shared: SharedDatabase, recorded_at: str, refused: bool
) -> None:
    """A clerk inserting a payment chose its recorded_at, so a payment entered on a Saturday
    night could say Tuesday noon (dodging the after-hours, velocity and closed-period rules).
    Set up as production is (5 minutes; the suite widens it for its chosen clocks)."""
    admin.init_shared(shared.admin_url, max_clock_skew=300)
    try:
        statement = _PAYMENT.replace("now())", f"{recorded_at})")
        with shared.connect("clerk_a") as conn:
            if refused:
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement, _payment(shared))
            else:
                conn.execute(statement, _payment(shared))
    finally:
        admin.init_shared(shared.admin_url)


def test_the_application_records_at_its_clock_within_the_skew(shared: SharedDatabase) -> None:
    """Through the application: a desktop whose clock agrees with the server's records as
    before; one a day behind is refused in one sentence, and nothing is written."""
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    server_now = row[0]
    assert isinstance(server_now, datetime)
    admin.init_shared(shared.admin_url, max_clock_skew=300)
    try:
        draft = PaymentDraft("FACA", "transfer", "3.00", date(2026, 6, 2), reference="SKEW-1")
        right = shared.workspace("clerk_a", clock=clock_from(server_now))
        receipt = record_payment(right, draft, f"skew-{uuid.uuid4().hex[:8]}")
        assert receipt.payment_id > 0
        behind = shared.workspace("clerk_a", clock=clock_from(server_now - timedelta(days=1)))
        late = PaymentDraft("FACA", "transfer", "4.00", date(2026, 6, 2), reference="SKEW-2")
        with pytest.raises(PermissionDenied, match="clock right") as refused:
            record_payment(behind, late, f"skew-{uuid.uuid4().hex[:8]}")
        assert len(str(refused.value).splitlines()) == 1
    finally:
        admin.init_shared(shared.admin_url)
    with psycopg.connect(shared.admin_url) as conn:
        written = conn.execute(
            "SELECT count(*) FROM payment WHERE transfer_reference = 'SKEW-2'"
        ).fetchone()
    assert written == (0,)


def test_a_later_part_is_never_added_to_a_line_matched_before(shared: SharedDatabase) -> None:
    """A line matched to one payment, then a second part slipped in by psql: the line would be
    explained twice over. Parts go in together, in the transaction of the person's match."""
    from billing_desk.domain.money import Money
    from billing_desk.domain.statements import Statement, StatementLine
    from billing_desk.services.matching import match_line, match_together
    from billing_desk.services.statements import import_statements

    clerk = shared.workspace("clerk_a")
    transfers = [
        record_payment(
            clerk,
            PaymentDraft("FACA", "transfer", amount, date(2026, 6, 1), reference=f"PART-{n}"),
            f"part-{n}",
        ).payment_id
        for n, amount in enumerate(("60.00", "40.00", "40.00"))
    ]
    lines = tuple(
        StatementLine(date(2026, 6, 2), Money(amount, "USD"), f"line {n}", bank_id=f"P{n}")
        for n, amount in enumerate(("60.00", "100.00"))
    )
    import_statements(
        clerk, "parts.csv", b"parts", "csv", [Statement("csv", "OPS", "USD", lines)], commit=True
    )
    with psycopg.connect(shared.admin_url) as conn:
        alone, together = (
            int(r[0])  # type: ignore[call-overload]
            for r in conn.execute("SELECT id FROM bank_line ORDER BY id").fetchall()
        )
    match_line(clerk, alone, payment_id=transfers[0])
    # The application's own match of several together goes through.
    match_together(clerk, together, payment_ids=transfers[1:], note="two cards, one payout")
    with shared.connect("clerk_a") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO bank_match (line_id, part, direction, payment_id, rule, detail, "
            "matched_at, matched_by, active) VALUES (%s, 2, 'credit', %s, 'manual', '{}', "
            "now(), current_user, true)",
            (alone, transfers[2]),
        )
