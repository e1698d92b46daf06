"""The provider's bank account is reconciled by clerks of different facilities on a shared
database: each sees every bank line and whether it is taken, never which other facility's
payment took it, and the application says so in words instead of offering the line again,
reporting it unmatched, or undoing someone else's match."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from billing_desk.domain.errors import Refused
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services.deposits import create_deposit
from billing_desk.services.matching import auto_match, list_lines, match_line, unmatch_line
from billing_desk.services.payments import PaymentDraft, record_payment
from billing_desk.services.reconciliation import run_reconciliation
from billing_desk.services.statements import import_statements
from tests.security.conftest import SharedDatabase, drop_shared_database, make_shared_database


def a_matched_b_waiting(database: SharedDatabase) -> tuple[dict[str, int], dict[str, int]]:
    """A's transfer matched by A's clerk; B's transfer waiting; one line nobody's. Returns the
    payments by side ("a", "b") and the lines by reference ("ACH-A", "ACH-B", "none")."""
    payments: dict[str, int] = {}
    for side, code, amount in (("a", "FACA", "7.00"), ("b", "FACB", "5.00")):
        draft = PaymentDraft(
            code, "transfer", amount, date(2026, 6, 3), reference=f"ACH-{side.upper()}"
        )
        receipt = record_payment(database.workspace(f"clerk_{side}"), draft, f"bank-{side}")
        payments[side] = receipt.payment_id
    statement = Statement(
        "csv",
        "OPS-1",
        "USD",
        (
            StatementLine(
                date(2026, 6, 4), Money("7.00", "USD"), "in A", bank_id="L1", reference="ACH-A"
            ),
            StatementLine(
                date(2026, 6, 4), Money("5.00", "USD"), "in B", bank_id="L2", reference="ACH-B"
            ),
            StatementLine(date(2026, 6, 5), Money("3.00", "USD"), "nobody's", bank_id="L3"),
        ),
    )
    clerk_a = database.workspace("clerk_a")
    import_statements(clerk_a, "ops.csv", b"ops", "csv", [statement], commit=True)
    lines = {line.reference or "none": line.id for line in list_lines(clerk_a)}
    assert [m.line_id for m in auto_match(clerk_a).matched] == [lines["ACH-A"]]
    return payments, lines


@pytest.fixture
def two_facilities_matched() -> Iterator[tuple[SharedDatabase, dict[str, int], dict[str, int]]]:
    database = make_shared_database()
    payments, lines = a_matched_b_waiting(database)
    yield database, payments, lines
    drop_shared_database(database)


def test_another_facilitys_match_is_seen_as_taken_and_nothing_more(
    two_facilities_matched: tuple[SharedDatabase, dict[str, int], dict[str, int]],
) -> None:
    database, payments, lines = two_facilities_matched
    clerk_b = database.workspace("clerk_b")
    seen = {line.id: line for line in list_lines(clerk_b)}
    taken = seen[lines["ACH-A"]]
    assert taken.matched and taken.matched_elsewhere
    assert (taken.payment_id, taken.deposit_id, taken.rule) == (None, None, None)
    assert lines["ACH-A"] not in {line.id for line in list_lines(clerk_b, unmatched=True)}
    # The auditor reads every match in full.
    audited = {line.id: line for line in list_lines(database.workspace("auditor"))}
    assert audited[lines["ACH-A"]].payment_id == payments["a"]
    assert not audited[lines["ACH-A"]].matched_elsewhere


def test_a_line_another_facility_matched_is_neither_matched_again_nor_unmatched(
    two_facilities_matched: tuple[SharedDatabase, dict[str, int], dict[str, int]],
) -> None:
    database, payments, lines = two_facilities_matched
    clerk_b = database.workspace("clerk_b")
    with pytest.raises(Refused, match="another facility's payment or deposit slip"):
        match_line(clerk_b, lines["ACH-A"], payment_id=payments["b"], note="mine, surely")
    with pytest.raises(Refused, match="a person who works for that facility unmatches it"):
        unmatch_line(clerk_b, lines["ACH-A"], "looks wrong to me")
    # B's own line is matched by B's rules, and A's match stands.
    assert [m.line_id for m in auto_match(clerk_b).matched] == [lines["ACH-B"]]
    audited = {line.id: line for line in list_lines(database.workspace("auditor"))}
    assert audited[lines["ACH-A"]].payment_id == payments["a"]
    assert audited[lines["ACH-B"]].payment_id == payments["b"]


def test_a_run_by_one_facilitys_clerk_counts_other_facilities_matches_as_matched(
    two_facilities_matched: tuple[SharedDatabase, dict[str, int], dict[str, int]],
) -> None:
    database, payments, lines = two_facilities_matched
    report = run_reconciliation(database.workspace("clerk_b"), date(2026, 6, 1), date(2026, 6, 30))
    unmatched = {d.line_id for d in report.discrepancies if d.kind == "unmatched bank credit"}
    assert unmatched == {lines["ACH-B"], lines["none"]}
    assert all(d.payment_id != payments["a"] for d in report.discrepancies)


def test_a_slip_matched_by_its_clerk_is_read_by_others_but_neither_undone_nor_misjudged() -> None:
    """A deposit slip's match is every billing role's to read, like the slip's bank line; the
    slip itself only its people's: another facility's clerk cannot unmatch it, and their run
    does not report it as an amount mismatch for want of seeing the slip."""
    database = make_shared_database()
    try:
        clerk_a = database.workspace("clerk_a")
        slip = create_deposit(
            clerk_a, [database.payment_ids["a"]], date(2026, 6, 4), idempotency_key="slip-a"
        )
        statement = Statement(
            "csv",
            "OPS-2",
            "USD",
            (StatementLine(date(2026, 6, 5), Money("20.00", "USD"), "deposit", bank_id="D1"),),
        )
        import_statements(clerk_a, "ops2.csv", b"ops2", "csv", [statement], commit=True)
        line = list_lines(clerk_a)[0].id
        match_line(clerk_a, line, deposit_id=slip.deposit_id)
        clerk_b = database.workspace("clerk_b")
        seen = {info.id: info for info in list_lines(clerk_b)}
        assert seen[line].deposit_id == slip.deposit_id
        with pytest.raises(Refused, match="a person who works for that facility unmatches it"):
            unmatch_line(clerk_b, line, "not ours")
        report = run_reconciliation(clerk_b, date(2026, 6, 1), date(2026, 6, 30))
        assert [d for d in report.discrepancies if d.line_id == line] == []
        assert run_reconciliation(clerk_a, date(2026, 6, 1), date(2026, 6, 30)).discrepancies == ()
    finally:
        drop_shared_database(database)
