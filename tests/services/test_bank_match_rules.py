"""A match must be true or visibly not, on both backends: every hand match of the table below has
its exact outcome (refused with the sentence saying what does not fit, writing nothing; or kept,
possibly as a match with a difference); matching a credit clears the payment and unmatching
takes it back; a matched payment cannot be voided; a run checks every match it covers; and the
sequence a new user found ends with the run reporting both wrong matches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from alembic import command
from sqlalchemy import select

from billing_desk.db.migrate import alembic_config
from billing_desk.db.models import BankLine, BankMatch, Payment, PaymentStatusChange
from billing_desk.domain.bank_matching import direction_of
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services.deposits import create_deposit
from billing_desk.services.matching import (
    auto_match,
    candidates,
    list_lines,
    match_line,
    match_together,
    unmatch_line,
)
from billing_desk.services.payments import PaymentDraft, change_status
from billing_desk.services.reconciliation import run_reconciliation
from billing_desk.services.statements import import_statements
from tests.conftest import Database
from tests.services.test_matching_and_reconciliation import JUNE, Books, _check, _transfer


@pytest.fixture
def books(database: Database) -> Books:
    return Books(database)


def bank_in(books: Books, currency: str, *lines: tuple[int, str, str | None]) -> list[int]:
    """Import a statement in `currency`; returns its line ids."""
    books.files += 1
    statement = Statement(
        "csv",
        f"ACCOUNT-{currency}",
        currency,
        tuple(
            StatementLine(
                booked=date(2026, 6, day),
                amount=Money(amount, currency),
                location=f"line {n}",
                bank_id=f"G{books.files}-{n}",
                reference=ref,
                counterparty="St Mary",
            )
            for n, (day, amount, ref) in enumerate(lines, start=1)
        ),
    )
    import_statements(
        books.clerk,
        f"bank-{currency}-{books.files}.csv",
        f"file {currency} {books.files}".encode(),
        "csv",
        [statement],
        commit=True,
    )
    return books.clerk.read(
        lambda u: list(
            u.session.scalars(select(BankLine.id).order_by(BankLine.id.desc()).limit(len(lines)))
        )
    )[::-1]


def status_of(books: Books, payment_id: int) -> str:
    return books.clerk.read(lambda u: u.session.get(Payment, payment_id).status)  # type: ignore[union-attr]


def snapshot(books: Books) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    def read(u):  # type: ignore[no-untyped-def]
        matches = [
            (m.id, m.line_id, m.payment_id, m.deposit_id, m.active)
            for m in u.session.scalars(select(BankMatch).order_by(BankMatch.id))
        ]
        payments = [
            (p.id, p.status) for p in u.session.scalars(select(Payment).order_by(Payment.id))
        ]
        return matches, payments

    return books.clerk.read(read)


@dataclass(frozen=True)
class Case:
    name: str
    # Builds the books and returns (line id, payment id or None, deposit id or None, note).
    build: Callable[[Books], tuple[int, int | None, int | None, str | None]]
    # The refusal's sentence, exactly, with {line}, {payment}, {deposit} filled in; or None.
    refusal: str | None
    rule: str | None = None


def _undeposited_check(b: Books) -> tuple[int, int | None, int | None, str | None]:
    check = b.pay(_check("500", "2401.00"))
    (line,) = b.bank((4, "999.99", None))
    return line, check, None, None


def _debit_to_cleared_check(b: Books) -> tuple[int, int | None, int | None, str | None]:
    check = b.pay(_check("501", "5039.91"))
    slip = create_deposit(b.clerk, [check], date(2026, 6, 3), idempotency_key="slip-501")
    credit, debit = b.bank((4, "5039.91", None), (5, "-25.00", "FEE"))
    match_line(b.clerk, credit, deposit_id=slip.deposit_id)
    return debit, check, None, None


def _debit_to_transfer(b: Books) -> tuple[int, int | None, int | None, str | None]:
    transfer = b.pay(_transfer("T-1", "25.00"))
    (debit,) = b.bank((5, "-25.00", "FEE"))
    return debit, transfer, None, None


def _other_currency(b: Books) -> tuple[int, int | None, int | None, str | None]:
    transfer = b.pay(_transfer("T-2", "40.00"))
    (line,) = bank_in(b, "EUR", (4, "40.00", "T-2"))
    return line, transfer, None, None


def _amount_differs(b: Books) -> tuple[int, int | None, int | None, str | None]:
    transfer = b.pay(_transfer("T-3", "40.00"))
    (line,) = b.bank((4, "39.50", "T-3"))
    return line, transfer, None, None


def _amount_differs_with_reason(b: Books) -> tuple[int, int | None, int | None, str | None]:
    line, transfer, _, _ = _amount_differs(b)
    return line, transfer, None, "bank kept a 0.50 wire fee"


def _voided(b: Books) -> tuple[int, int | None, int | None, str | None]:
    transfer = b.pay(_transfer("T-4", "40.00"))
    change_status(b.manager, transfer, "voided", "entered twice", "void-t4")
    (line,) = b.bank((4, "40.00", "T-4"))
    return line, transfer, None, None


def _deposited_check_alone(b: Books) -> tuple[int, int | None, int | None, str | None]:
    check = b.pay(_check("502", "30.00"))
    create_deposit(b.clerk, [check], date(2026, 6, 3), idempotency_key="slip-502")
    (line,) = b.bank((4, "30.00", None))
    return line, check, None, None


def _line_already_matched(b: Books) -> tuple[int, int | None, int | None, str | None]:
    first = b.pay(_transfer("T-5", "40.00"))
    second = b.pay(_transfer("T-6", "40.00"))
    (line,) = b.bank((4, "40.00", None))
    match_line(b.clerk, line, payment_id=first)
    return line, second, None, None


def _payment_already_matched(b: Books) -> tuple[int, int | None, int | None, str | None]:
    transfer = b.pay(_transfer("T-7", "40.00"))
    one, two = b.bank((4, "40.00", None), (5, "40.00", None))
    match_line(b.clerk, one, payment_id=transfer)
    return two, transfer, None, None


def _deposit_with_item_matched_alone(b: Books) -> tuple[int, int | None, int | None, str | None]:
    check = b.pay(_check("503", "30.00"))
    slip = create_deposit(b.clerk, [check], date(2026, 6, 3), idempotency_key="slip-503")
    one, two = b.bank((4, "30.00", None), (5, "30.00", None))
    _legacy_match(b, one, check)  # written before these rules existed
    return two, None, slip.deposit_id, None


def _legacy_match(b: Books, line: int, payment: int) -> None:
    def write(u):  # type: ignore[no-untyped-def]
        u.session.add(
            BankMatch(
                line_id=line,
                direction=direction_of(u.session.get(BankLine, line).amount_minor),
                payment_id=payment,
                rule="manual",
                detail="{}",
                matched_at=u.now,
                matched_by="clerk",
                active=True,
            )
        )

    b.clerk.write(write, action="test.legacy_match")


def _exact_transfer(b: Books) -> tuple[int, int | None, int | None, str | None]:
    transfer = b.pay(_transfer("T-8", "40.00"))
    (line,) = b.bank((4, "40.00", "T-8"))
    return line, transfer, None, None


def _exact_deposit(b: Books) -> tuple[int, int | None, int | None, str | None]:
    a = b.pay(_check("504", "10.00"))
    c = b.pay(_check("505", "15.00"))
    slip = create_deposit(b.clerk, [a, c], date(2026, 6, 3), idempotency_key="slip-505")
    (line,) = b.bank((4, "25.00", None))
    return line, None, slip.deposit_id, None


def _deposit_debit(b: Books) -> tuple[int, int | None, int | None, str | None]:
    a = b.pay(_check("506", "10.00"))
    slip = create_deposit(b.clerk, [a], date(2026, 6, 3), idempotency_key="slip-506")
    (line,) = b.bank((4, "-10.00", None))
    return line, None, slip.deposit_id, None


CASES = [
    Case(
        "credit to an undeposited check",
        _undeposited_check,
        "Payment {payment} is a check that was never deposited; put it on a deposit slip and "
        "match the bank line to the deposit.",
    ),
    Case(
        "debit to a cleared check",
        _debit_to_cleared_check,
        "Bank line {line} is a debit (money out) and payment {payment} is money in (cleared); a "
        "debit matches a returned check, a chargeback or a refund, and a bank charge is "
        "explained on its discrepancy by a manager.",
    ),
    Case(
        "debit to a live transfer",
        _debit_to_transfer,
        "Bank line {line} is a debit (money out) and payment {payment} is money in (recorded); a "
        "debit matches a returned check, a chargeback or a refund, and a bank charge is "
        "explained on its discrepancy by a manager.",
    ),
    Case(
        "another currency",
        _other_currency,
        "Bank line {line} is in EUR and payment {payment} in USD; they cannot be the same money.",
    ),
    Case(
        "amounts differ, no reason",
        _amount_differs,
        "Bank line {line} is 39.50 USD and payment {payment} is 40.00 USD; match them only as a "
        "match with a difference, giving the reason with --note.",
    ),
    Case(
        "amounts differ, with a reason", _amount_differs_with_reason, None, "manual with difference"
    ),
    Case(
        "voided payment",
        _voided,
        "Payment {payment} is voided; a voided payment matches no bank line.",
    ),
    Case(
        "deposited check on its own",
        _deposited_check_alone,
        "Payment {payment} reached the bank in deposit {deposit_of}; match bank line {line} to "
        "the deposit (--deposit {deposit_of}).",
    ),
    Case(
        "line already matched",
        _line_already_matched,
        "Bank line {line} is already matched to payment {other}; unmatch it first with "
        "`reconcile unmatch LINE --reason TEXT`.",
    ),
    Case(
        "payment already matched",
        _payment_already_matched,
        "Bank line {other_line} is already matched to payment {payment}; unmatch it first with "
        "`reconcile unmatch LINE --reason TEXT`.",
    ),
    Case(
        "deposit whose check is matched alone",
        _deposit_with_item_matched_alone,
        "Payment {item} of deposit {deposit} is already matched on its own; unmatch that line "
        "first so the money is not counted twice.",
    ),
    Case(
        "deposit to a debit",
        _deposit_debit,
        "Bank line {line} is a debit (money out) and deposit {deposit} is money in; match the "
        "debit to the returned check instead.",
    ),
    Case("exact transfer", _exact_transfer, None, "manual"),
    Case("exact deposit", _exact_deposit, None, "manual"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hand_matches(books: Books, case: Case) -> None:
    line, payment, deposit, note = case.build(books)
    before = snapshot(books)
    if case.refusal is None:
        info = match_line(books.clerk, line, payment_id=payment, deposit_id=deposit, note=note)
        assert info.rule == case.rule
        return
    with pytest.raises(Refused) as refused:
        match_line(books.clerk, line, payment_id=payment, deposit_id=deposit, note=note)
    matches, _ = before
    active = {m[1]: m for m in matches if m[4]}
    by_payment = {m[2]: m for m in matches if m[4] and m[2] is not None}
    items = [m[2] for m in matches if m[4] and m[2] is not None]
    deposit_of = books.clerk.read(
        lambda u: u.session.execute(
            select(PaymentStatusChange.reason).where(
                PaymentStatusChange.payment_id == payment,
                PaymentStatusChange.to_status == "deposited",
            )
        ).scalar()
    )
    expected = case.refusal.format(
        line=line,
        payment=payment,
        deposit=deposit,
        deposit_of=(deposit_of or "").removeprefix("deposit "),
        other=active[line][2] if line in active else None,
        other_line=by_payment[payment][1] if payment in by_payment else None,
        item=items[0] if items else None,
    )
    assert str(refused.value) == expected
    assert snapshot(books) == before  # nothing written


def test_matching_clears_and_unmatching_takes_it_back(books: Books) -> None:
    transfer = books.pay(_transfer("C-1", "60.00"))
    a = books.pay(_check("601", "10.00"))
    c = books.pay(_check("602", "15.00"))
    slip = create_deposit(books.clerk, [a, c], date(2026, 6, 3), idempotency_key="slip-60x")
    wire, slip_line = books.bank((4, "60.00", "C-1"), (5, "25.00", None))
    assert len(auto_match(books.clerk).matched) == 2
    assert [status_of(books, p) for p in (transfer, a, c)] == ["cleared"] * 3
    history = books.clerk.read(
        lambda u: list(
            u.session.scalars(
                select(PaymentStatusChange.reason).where(PaymentStatusChange.payment_id == a)
            )
        )
    )
    assert f"matched to bank line {slip_line}" in history
    unmatch_line(books.clerk, slip_line, "wrong slip")
    unmatch_line(books.clerk, wire, "wrong wire")
    assert [status_of(books, p) for p in (transfer, a, c)] == ["recorded", "deposited", "deposited"]
    match_line(books.clerk, slip_line, deposit_id=slip.deposit_id)
    assert status_of(books, a) == "cleared"


def test_a_matched_payment_cannot_be_voided_until_unmatched(books: Books) -> None:
    transfer = books.pay(_transfer("V-1", "60.00"))
    (line,) = books.bank((4, "60.00", "V-1"))
    match_line(books.clerk, line, payment_id=transfer)
    with pytest.raises(Refused, match=f"unmatch line {line} first"):
        change_status(books.manager, transfer, "voided", "entered in error", "void-v1")
    assert status_of(books, transfer) == "cleared"
    unmatch_line(books.clerk, line, "not this wire")
    change_status(books.manager, transfer, "voided", "entered in error", "void-v1b")
    assert status_of(books, transfer) == "voided"


def test_a_match_with_a_difference_is_raised_by_every_run(books: Books) -> None:
    line, transfer, _, note = _amount_differs_with_reason(books)
    match_line(books.clerk, line, payment_id=transfer, note=note)
    for _ in range(2):
        report = run_reconciliation(books.manager, *JUNE)
        found = [d for d in report.discrepancies if d.kind == "amount mismatch"]
        assert [(d.line_id, d.expected_minor, d.actual_minor) for d in found] == [
            (line, 4000, 3950)
        ]


def test_what_a_user_found_is_reported_by_the_run(books: Books) -> None:
    """Two wrong hand matches written before these rules (the data a user could create) are
    both reported, and the fee debit is reported as unexplained once unmatched."""
    check = books.pay(_check("700", "2401.00"))
    cleared = books.pay(_check("701", "5039.91"))
    slip = create_deposit(books.clerk, [cleared], date(2026, 6, 2), idempotency_key="slip-701")
    credit, fee, slip_line = books.bank(
        (4, "999.99", None), (5, "-25.00", "FEE"), (3, "5039.91", None)
    )
    match_line(books.clerk, slip_line, deposit_id=slip.deposit_id)
    # The hand matches the old rules accepted are refused now...
    with pytest.raises(Refused):
        match_line(books.clerk, credit, payment_id=check)
    with pytest.raises(Refused):
        match_line(books.clerk, fee, payment_id=cleared)
    # ...and if the database already holds them, the run reports both.
    _legacy_match(books, credit, check)
    _legacy_match(books, fee, cleared)
    kinds = {
        (d.kind, d.line_id)
        for d in run_reconciliation(books.manager, *JUNE).discrepancies
        if d.line_id in (credit, fee)
    }
    assert ("match does not fit", credit) in kinds
    assert ("amount mismatch", credit) in kinds
    assert ("sign mismatch", fee) in kinds
    unmatch_line(books.clerk, fee, "a bank fee, not a payment")
    kinds = {(d.kind, d.line_id) for d in run_reconciliation(books.manager, *JUNE).discrepancies}
    assert ("unexplained bank debit", fee) in kinds


def test_a_payment_counted_twice_is_reported(books: Books) -> None:
    check = books.pay(_check("800", "30.00"))
    slip = create_deposit(books.clerk, [check], date(2026, 6, 3), idempotency_key="slip-800")
    one, two = books.bank((4, "30.00", None), (5, "30.00", None))
    _legacy_match(books, one, check)
    books.clerk.write(
        lambda u: u.session.add(
            BankMatch(
                line_id=two,
                direction="credit",
                deposit_id=slip.deposit_id,
                rule="manual",
                detail="{}",
                matched_at=u.now,
                matched_by="clerk",
                active=True,
            )
        ),
        action="test.legacy_match",
    )
    found = [
        d
        for d in run_reconciliation(books.manager, *JUNE).discrepancies
        if d.kind == "payment matched twice"
    ]
    assert [(d.payment_id, d.line_id) for d in found] == [(check, two)]


def test_candidates_are_ranked_reference_amount_date_payer(books: Books) -> None:
    by_reference = books.pay(_transfer("REF-9", "70.00", day=1))
    same_amount_near = books.pay(_transfer("X-1", "50.00", day=4))
    same_amount_far = books.pay(_transfer("X-2", "50.00", day=1))
    other_amount = books.pay(_transfer("X-3", "12.00", day=5))
    check = books.pay(_check("900", "50.00", day=5))  # never deposited: shown, but does not fit
    (line,) = books.bank((5, "50.00", "REF-9"))
    ranked = candidates(books.clerk, line)
    assert [c.payment_id for c in ranked] == [
        by_reference,
        check,
        same_amount_near,
        same_amount_far,
        other_amount,
    ]
    assert [c.rank for c in ranked] == [1, 2, 3, 4, 5]
    assert ranked[0].rule == "reference" and "reference" in ranked[0].agreeing
    assert not ranked[0].fits  # 70.00 against 50.00: only with a note
    assert ranked[1].refusal is not None and "never deposited" in ranked[1].refusal
    assert ranked[2].fits and ranked[2].agreeing[0] == "amount"
    assert snapshot(books)[0] == []  # looking writes nothing


def _captured_card(b: Books) -> int:
    card = b.pay(
        PaymentDraft(
            "STMARY",
            "card",
            "80.00",
            date(2026, 6, 2),
            card_brand="visa",
            card_last4="4242",
            processor_ref="R-C",
        )
    )
    change_status(b.clerk, card, "captured", "captured at the terminal", f"capture-{card}")
    return card


@pytest.mark.parametrize(
    ("make", "back_out", "cleared"),
    [
        (lambda b: b.pay(_transfer("R-1", "80.00")), "returned", "cleared"),
        (lambda b: b.pay(_transfer("R-2", "80.00")), "refunded", "cleared"),
        (_captured_card, "chargeback", "settled"),
    ],
    ids=["returned transfer", "refunded transfer", "card chargeback"],
)
def test_the_debit_that_takes_a_matched_payment_back_out_can_be_matched_too(
    books: Books, make: Callable[[Books], int], back_out: str, cleared: str
) -> None:
    """The credit that brought the money in stays matched; the debit that took it back out is
    matched to the same payment, and the run finds nothing left to explain."""
    payment = make(books)
    credit, debit = books.bank((4, "80.00", "R"), (9, "-80.00", "RETURN"))
    match_line(books.clerk, credit, payment_id=payment)
    assert status_of(books, payment) == cleared
    change_status(books.manager, payment, back_out, "the bank sent it back", f"back-{payment}")
    info = match_line(books.clerk, debit, payment_id=payment)
    assert info.rule == "manual"
    matched = {m[1]: m[2] for m in snapshot(books)[0] if m[4]}
    assert matched == {credit: payment, debit: payment}
    # A second debit for the same payment is still refused: one of each direction.
    (again,) = books.bank((10, "-80.00", "RETURN"))
    with pytest.raises(Refused, match=f"Bank line {debit} is already matched to payment"):
        match_line(books.clerk, again, payment_id=payment)
    report = run_reconciliation(books.manager, *JUNE)
    assert [d.kind for d in report.discrepancies if d.line_id in (credit, debit)] == []


def test_auto_match_takes_a_return_of_a_payment_whose_credit_is_matched(books: Books) -> None:
    payment = books.pay(_transfer("R-3", "45.00"))
    (credit,) = books.bank((4, "45.00", "R-3"))
    assert [m.line_id for m in auto_match(books.clerk).matched] == [credit]
    change_status(books.clerk, payment, "returned", "account closed", "back-r3")
    (debit,) = books.bank((8, "-45.00", None))
    assert [(m.line_id, m.payment_id) for m in auto_match(books.clerk).matched] == [
        (debit, payment)
    ]


def test_a_match_cannot_claim_a_direction_its_line_does_not_have(books: Books) -> None:
    """A match written straight into the table as a debit, to get a second credit past the
    one-credit-per-payment index, is refused by the database."""
    payment = books.pay(_transfer("R-4", "45.00"))
    one, two = books.bank((4, "45.00", "R-4"), (5, "45.00", "R-4"))
    match_line(books.clerk, one, payment_id=payment)

    def write(u):  # type: ignore[no-untyped-def]
        u.session.add(
            BankMatch(
                line_id=two,
                direction="debit",
                payment_id=payment,
                rule="manual",
                detail="{}",
                matched_at=u.now,
                matched_by="clerk",
                active=True,
            )
        )

    with pytest.raises(Exception, match="direction of a bank match is that of its line"):
        books.clerk.write(write, action="test.forged_direction")


def test_upgrading_gives_existing_matches_the_direction_of_their_line(books: Books) -> None:
    """Matches written before migration 0011 take their direction from their line's sign."""
    transfer = books.pay(_transfer("U-1", "70.00"))
    check = books.pay(_check("901", "30.00"))
    slip = create_deposit(books.clerk, [check], date(2026, 6, 3), idempotency_key="slip-901")
    credit, slip_line, debit = books.bank(
        (4, "70.00", "U-1"), (5, "30.00", None), (9, "-30.00", None)
    )
    match_line(books.clerk, credit, payment_id=transfer)
    match_line(books.clerk, slip_line, deposit_id=slip.deposit_id)
    change_status(books.clerk, check, "returned", "insufficient funds", "back-901")
    match_line(books.clerk, debit, payment_id=check)
    admin = books.database.workspace("admin")
    config = alembic_config()
    with admin.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0010")
    with admin.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    directions = books.clerk.read(
        lambda u: {
            m.line_id: m.direction
            for m in u.session.scalars(select(BankMatch).where(BankMatch.active))
        }
    )
    assert directions == {credit: "credit", slip_line: "credit", debit: "debit"}
    # Migration 0015: a payment's match carries the payment's facility, a slip's none.
    facilities = books.clerk.read(
        lambda u: {
            m.line_id: m.facility_id
            for m in u.session.scalars(select(BankMatch).where(BankMatch.active))
        }
    )
    payment_facility = books.clerk.read(
        lambda u: u.session.scalar(select(Payment.facility_id).where(Payment.id == transfer))
    )
    assert payment_facility is not None
    assert facilities == {credit: payment_facility, debit: payment_facility, slip_line: None}


def test_a_run_stopped_through_its_progress_records_nothing(books: Books) -> None:
    """The window's Cancel raises from the progress callback: the run and its findings roll
    back; let finish, the progress reaches its end."""
    from billing_desk.db.models import ReconciliationRun

    books.pay(_transfer("P-1", "40.00"))
    books.bank((4, "12.00", None))

    class Stop(Exception):
        pass

    def stop_at_third(done: int, total: int, what: str) -> None:
        if done == 3:
            raise Stop(what)

    with pytest.raises(Stop):
        run_reconciliation(books.manager, *JUNE, progress=stop_at_third)
    assert books.clerk.read(lambda u: list(u.session.scalars(select(ReconciliationRun)))) == []
    heard: list[tuple[int, int, str]] = []
    report = run_reconciliation(books.manager, *JUNE, progress=lambda *a: heard.append(a))
    assert report.discrepancies and heard[-1][0] == heard[-1][1] == len(heard) - 1


def test_a_line_matched_to_several_payments_together_clears_them_all(books: Books) -> None:
    """A card processor's payout of two payments in one credit: matched together, both clear;
    the run finds nothing to say of the line; unmatching takes both back."""
    first = books.pay(_transfer("G-1", "60.00"))
    second = books.pay(_transfer("G-2", "40.00"))
    (payout,) = books.bank((5, "100.00", "PAYOUT"))
    info = match_together(books.clerk, payout, payment_ids=[first, second])
    assert (info.rule, info.payment_id) == ("manual", first)
    assert [status_of(books, p) for p in (first, second)] == ["cleared", "cleared"]
    (line,) = [ln for ln in list_lines(books.clerk) if ln.id == payout]
    assert (line.payment_id, line.also) == (first, (f"payment {second}",))
    report = run_reconciliation(books.manager, *JUNE)
    assert [d.kind for d in report.discrepancies if d.line_id == payout] == []
    # Neither payment can be matched again, alone or in another group.
    (again,) = books.bank((6, "60.00", "G-1"))
    with pytest.raises(Refused, match=f"already matched to payment {first}"):
        match_line(books.clerk, again, payment_id=first)
    unmatch_line(books.clerk, payout, "two other payments")
    assert [status_of(books, p) for p in (first, second)] == ["recorded", "recorded"]
    assert [ln.payment_id for ln in list_lines(books.clerk) if ln.id == payout] == [None]


def test_several_together_that_do_not_add_up_need_a_reason_and_are_raised_by_the_run(
    books: Books,
) -> None:
    first = books.pay(_transfer("H-1", "60.00"))
    second = books.pay(_transfer("H-2", "30.00"))
    (payout,) = books.bank((5, "100.00", "PAYOUT"))
    before = snapshot(books)
    with pytest.raises(Refused) as refused:
        match_together(books.clerk, payout, payment_ids=[first, second])
    assert str(refused.value) == (
        f"Bank line {payout} is 100.00 USD and the 2 chosen add up to 90.00 USD; match them "
        "only as a match with a difference, giving the reason with --note."
    )
    assert snapshot(books) == before
    info = match_together(
        books.clerk, payout, payment_ids=[second, first], note="a third card payment is missing"
    )
    assert info.rule == "manual with difference"
    found = [
        (d.kind, d.expected_minor, d.actual_minor)
        for d in run_reconciliation(books.manager, *JUNE).discrepancies
        if d.line_id == payout
    ]
    assert found == [("amount mismatch", 9000, 10000)]


def test_two_slips_credited_as_one_line(books: Books) -> None:
    a = books.pay(_check("701", "25.00"))
    c = books.pay(_check("702", "15.00"))
    one = create_deposit(books.clerk, [a], date(2026, 6, 3), idempotency_key="slip-701")
    two = create_deposit(books.clerk, [c], date(2026, 6, 3), idempotency_key="slip-702")
    (line,) = books.bank((4, "40.00", None))
    match_together(books.clerk, line, deposit_ids=[one.deposit_id, two.deposit_id])
    assert [status_of(books, p) for p in (a, c)] == ["cleared", "cleared"]
    # A check of a slip is never matched on its own, in a group or not.
    (other,) = books.bank((6, "25.00", None))
    with pytest.raises(Refused, match="reached the bank in deposit"):
        match_together(books.clerk, other, payment_ids=[a, books.pay(_transfer("H-9", "1.00"))])


def test_a_line_already_matched_is_not_matched_together_again(books: Books) -> None:
    first = books.pay(_transfer("J-1", "60.00"))
    second = books.pay(_transfer("J-2", "40.00"))
    third = books.pay(_transfer("J-3", "60.00"))
    (payout,) = books.bank((5, "100.00", "PAYOUT"))
    match_together(books.clerk, payout, payment_ids=[first, second])
    with pytest.raises(Refused, match=f"Bank line {payout} is already matched"):
        match_together(books.clerk, payout, payment_ids=[third, second])
    with pytest.raises(BadInput, match="given twice"):
        match_together(books.clerk, payout, payment_ids=[third, third])
