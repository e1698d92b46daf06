"""Bank matches on a shared database: the bank account is the provider's, so every billing role
learns which bank lines are matched (the view bank_line_match: line, part, direction), but a
match itself (its payment or deposit slip, the rule, the detail quoting amounts and notes, who
unmatched it and why) is read, unmatched and written only by those who can see its payment or
slip, and by auditors and administrators."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import psycopg
import pytest
from psycopg import errors

from billing_desk.domain.errors import Refused
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services.deposits import create_deposit
from billing_desk.services.matching import auto_match, unmatch_line
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.statements import import_statements
from tests.security.conftest import (
    SharedDatabase,
    drop_shared_database,
    force_scan,
    make_shared_database,
    masked,
)


@dataclass
class Matched:
    shared: SharedDatabase
    match_id: int
    line_id: int
    free_line_id: int
    payment_id: int
    deposit_id: int


@pytest.fixture(scope="module")
def matched() -> Iterator[Matched]:
    """Clerk A's transfer, matched by clerk A to its bank line; a free credit line; and a deposit
    slip of clerk A's."""
    shared = make_shared_database()
    try:
        clerk = shared.workspace("clerk_a")
        payment = record_payment(
            clerk,
            PaymentDraft("FACA", "transfer", "7.00", date(2026, 6, 3), reference="ACH-MATCH"),
            "k-match",
        )
        statement = Statement(
            "csv",
            "MATCHES-1",
            "USD",
            (
                StatementLine(
                    date(2026, 6, 3),
                    Money("7.00", "USD"),
                    "line 2",
                    bank_id="M1",
                    reference="ACH-MATCH",
                ),
                StatementLine(date(2026, 6, 4), Money("3.00", "USD"), "line 3", bank_id="M2"),
            ),
        )
        import_statements(clerk, "matches.csv", b"matches", "csv", [statement], commit=True)
        assert len(auto_match(clerk).matched) == 1
        slip = create_deposit(
            clerk, [shared.payment_ids["a"]], date(2026, 6, 4), idempotency_key="slip"
        )
        with psycopg.connect(shared.admin_url) as conn:
            row = conn.execute(
                "SELECT m.id, m.line_id, (SELECT l.id FROM bank_line l WHERE l.bank_id = 'M2') "
                "FROM bank_match m WHERE m.payment_id = %s AND m.active",
                (payment.payment_id,),
            ).fetchone()
        assert row is not None
        yield Matched(
            shared,
            int(row[0]),  # type: ignore[call-overload]
            int(row[1]),  # type: ignore[call-overload]
            int(row[2]),  # type: ignore[call-overload]
            payment.payment_id,
            slip.deposit_id,
        )
    finally:
        drop_shared_database(shared)


def test_a_bank_match_is_read_only_by_those_who_see_its_payment(matched: Matched) -> None:
    """Every billing role read every match: another facility's payment id, the detail (the
    payment's amount and date, a hand match's note) and why it was unmatched."""
    shared = matched.shared
    with shared.connect("clerk_b") as conn:
        assert conn.execute("SELECT id, payment_id, detail FROM bank_match").fetchall() == []
        assert conn.execute(
            "SELECT count(*) FROM bank_match WHERE line_id = %s OR payment_id = %s",
            (matched.line_id, matched.payment_id),
        ).fetchone() == (0,)
    with shared.connect("manager_b") as conn:
        assert conn.execute("SELECT count(*) FROM bank_match").fetchone() == (0,)
    # Those who can see the payment, and those who read everything, read the match.
    for person in ("clerk_a", "manager_a", "auditor", "administrator"):
        with shared.connect(person) as conn:
            rows = conn.execute(
                "SELECT payment_id, detail FROM bank_match WHERE id = %s", (matched.match_id,)
            ).fetchall()
        assert [row[0] for row in rows] == [matched.payment_id], person
        assert rows[0][1], person


def test_every_billing_role_sees_which_lines_are_matched(matched: Matched) -> None:
    """A reconciliation that could not see another facility's match would offer its line for
    matching again: the view tells everyone the line is taken, and nothing else."""
    for person in ("clerk_b", "manager_b", "clerk_a", "auditor", "administrator"):
        with matched.shared.connect(person) as conn:
            cursor = conn.execute("SELECT * FROM bank_line_match")
            assert cursor.description is not None
            assert [column.name for column in cursor.description] == [
                "line_id",
                "part",
                "direction",
            ]
            assert cursor.fetchall() == [(matched.line_id, 1, "credit")], person


def test_whether_a_line_is_matched_is_an_index_look_up(matched: Matched) -> None:
    """The services ask it line by line while matching: the view reads bank_match directly
    (as its owner), so the question is answered from the index of active matches."""
    with matched.shared.connect("clerk_b") as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            str(row[0])
            for row in conn.execute(
                "EXPLAIN (COSTS OFF) SELECT 1 FROM bank_line_match WHERE line_id = %s",
                (matched.line_id,),
            )
        )
    assert "uq_bank_match_line_active" in plan and "Index Cond: (line_id = " in plan, plan


def test_the_view_applies_a_readers_condition_only_to_what_it_shows(matched: Matched) -> None:
    """A security barrier: a condition that could fail on a row (here dividing by zero on the
    unmatched match's line) is applied to the active matches only, so it tells nothing about
    the rows the view leaves out."""
    with psycopg.connect(matched.shared.admin_url) as conn:
        conn.execute(
            "INSERT INTO bank_match (line_id, direction, part, payment_id, rule, detail, "
            "matched_at, matched_by, active, unmatched_at, unmatched_by, unmatch_reason) "
            "SELECT %s, 'credit', 1, %s, 'manual', '{}', now(), 'setup', false, now(), "
            "'setup', 'old' WHERE NOT EXISTS (SELECT 1 FROM bank_match WHERE NOT active "
            "AND line_id = %s)",
            (matched.free_line_id, matched.payment_id, matched.free_line_id),
        )
    with matched.shared.connect("clerk_b") as conn:
        rows = conn.execute(
            "SELECT line_id FROM bank_line_match WHERE 1 / (line_id - %s) <> 0",
            (matched.free_line_id,),
        ).fetchall()
    assert rows == [(matched.line_id,)]


def test_another_facilitys_clerk_cannot_unmatch_a_match(matched: Matched) -> None:
    shared = matched.shared
    with shared.connect("clerk_b") as conn, conn.transaction(force_rollback=True):
        cursor = conn.execute(
            "UPDATE bank_match SET active = false, unmatched_at = now(), "
            "unmatched_by = current_user, unmatch_reason = 'not yours' WHERE id = %s",
            (matched.match_id,),
        )
        assert cursor.rowcount == 0
    with pytest.raises(Refused, match="another facility"):
        unmatch_line(shared.workspace("clerk_b"), matched.line_id, "not yours")
    with psycopg.connect(shared.admin_url) as conn:
        row = conn.execute("SELECT active FROM bank_match WHERE id = %s", (matched.match_id,))
        assert row.fetchone() == (True,)


@pytest.mark.parametrize("target", ["payment", "deposit"])
def test_nobody_matches_a_line_to_a_payment_or_slip_they_cannot_see(
    matched: Matched, target: str
) -> None:
    """A match in clerk B's name on clerk A's payment (refused by the new-row guard before) or
    on clerk A's deposit slip (which went in) would put A's money against B's line."""
    column = f"{target}_id"
    value = matched.payment_id if target == "payment" else matched.deposit_id
    # A payment's match names the payment's facility, as an honest one would.
    facility = matched.shared.facility_ids["FACA"] if target == "payment" else None
    refused = (errors.InsufficientPrivilege, errors.ForeignKeyViolation)
    with (
        matched.shared.connect("clerk_b") as conn,
        pytest.raises(refused),
        conn.transaction(force_rollback=True),
    ):
        conn.execute(
            f"INSERT INTO bank_match (line_id, direction, part, {column}, facility_id, rule, "
            "detail, matched_at, matched_by, active) VALUES (%s, 'credit', 1, %s, %s, 'manual', "
            "'{}', now(), current_user, true)",
            (matched.free_line_id, value, facility),
        )


@pytest.mark.parametrize("named", ["clerk_b", "manager_a"])
def test_a_match_on_ones_own_payment_names_the_login_making_it(
    matched: Matched, named: str
) -> None:
    """A match of clerk A's own line and payment claiming to be another user's (another
    facility's clerk, or A's own manager) would pass a clerk's work off as theirs. The same
    row in A's own name goes in: only the name is refused."""
    shared = matched.shared
    match = (
        "INSERT INTO bank_match (line_id, direction, part, payment_id, facility_id, rule, "
        "detail, matched_at, matched_by, active) VALUES (%s, 'credit', 1, %s, %s, 'manual', "
        "'{}', now(), %s, true)"
    )
    payment, facility = shared.payment_ids["a"], shared.facility_ids["FACA"]
    with (
        shared.connect("clerk_a") as conn,
        pytest.raises(errors.InsufficientPrivilege),
        conn.transaction(force_rollback=True),
    ):
        conn.execute(match, (matched.free_line_id, payment, facility, shared.login(named)))
    with shared.connect("clerk_a") as conn, conn.transaction(force_rollback=True):
        conn.execute(match, (matched.free_line_id, payment, facility, shared.login("clerk_a")))


@pytest.mark.parametrize("stated", ["FACB", None])
def test_a_match_names_its_payments_facility(matched: Matched, stated: str | None) -> None:
    """A match is read by its facility (migration 0015): one of A's payment filed under B, or
    under none, would be read by B's people, or by everyone, with A's amounts and notes."""
    shared = matched.shared
    facility = shared.facility_ids[stated] if stated else None
    with (
        shared.connect("clerk_a") as conn,
        pytest.raises(errors.InsufficientPrivilege),
        conn.transaction(force_rollback=True),
    ):
        conn.execute(
            "INSERT INTO bank_match (line_id, direction, part, payment_id, facility_id, rule, "
            "detail, matched_at, matched_by, active) VALUES (%s, 'credit', 1, %s, %s, 'manual', "
            "'{}', now(), current_user, true)",
            (matched.free_line_id, shared.payment_ids["a"], facility),
        )


@pytest.mark.parametrize("planner", ["index", "bitmap", "sequential"])
def test_explain_analyze_does_not_tell_whether_another_facilitys_payment_is_matched(
    matched: Matched, planner: str
) -> None:
    """A probe by payment id on bank_match fetched another facility's match for the policy to
    remove, and EXPLAIN ANALYZE counted it: whether payment N is matched, and (by line) its
    amount. The policy is now an index condition on the match's facility, checked first on a
    sequential scan: the plan for A's matched payment is the plan for a payment nobody has."""
    plans = []
    with matched.shared.connect("clerk_b") as conn:
        force_scan(conn, planner)
        for payment in (str(matched.payment_id), "987654321"):
            query = (
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT 1 FROM bank_match "
                f"WHERE payment_id = {payment} AND direction = 'credit' AND active"
            )
            plan = "\n".join(str(row[0]) for row in conn.execute(query))
            plans.append(masked(plan, payment))
    assert plans[0] == plans[1], plans


def test_a_clerk_unmatches_a_line_of_their_own_facility(matched: Matched) -> None:
    """The positive control, last because it changes the module's data: clerk A unmatches
    their own match, and the line is free for everyone again."""
    shared = matched.shared
    unmatch_line(shared.workspace("clerk_a"), matched.line_id, "wrong payment")
    with shared.connect("clerk_b") as conn:
        assert conn.execute("SELECT * FROM bank_line_match").fetchall() == []
    with shared.connect("clerk_a") as conn:
        row = conn.execute(
            "SELECT active, unmatch_reason FROM bank_match WHERE id = %s", (matched.match_id,)
        ).fetchone()
    assert row == (False, "wrong payment")
