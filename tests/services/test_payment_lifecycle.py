"""A payment's life after it is recorded, on both backends: voids, returns, refunds and card
moves by the right people, illegal moves, checks presented again, and deposit slips."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing_desk.db.models import Refund
from billing_desk.domain.errors import BadInput, IllegalTransition, PermissionDenied, Refused
from billing_desk.services.allocations import AllocationInfo
from billing_desk.services.credits import credit_balance
from billing_desk.services.deposits import create_deposit
from billing_desk.services.matching import unmatch_line
from billing_desk.services.payments import (
    change_status,
    list_payments,
    record_payment,
    show_payment,
)
from tests.bank import clear_at_bank
from tests.clocks import today_of
from tests.conftest import BACKENDS
from tests.services.test_payments import (
    APRIL_INVOICE,
    CARD,
    CASH,
    CHECK,
    MAY_INVOICE,
    TRANSFER,
    Billing,
    Case,
    allocation_rows,
    cloned_billing,
    draft,
    invoice_moves,
    invoice_status,
    refusal_problems,
    row_counts,
    rows,
    usd,
)
from tests.support import seed_facility

# Reads the time: run again under a moved wall clock by `make test` (tests/conftest.py).
pytestmark = pytest.mark.clock

CLERK_MAY_NOT = "clerk is a clerk, and a clerk may not void, refund or approve payments."


@pytest.fixture(params=BACKENDS)
def billing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Billing]:
    yield from cloned_billing(request, tmp_path)


def history(billing: Billing, payment_id: int) -> list[tuple[str | None, str, str, str | None]]:
    return [
        (h.from_status, h.to_status, h.changed_by, h.reason)
        for h in show_payment(billing.clerk, payment_id).history
    ]


def segregation(user: str, payment_id: int, verb: str) -> str:
    return (
        f"{user} recorded payment {payment_id}, so another manager must {verb} it "
        "(segregation of duties)."
    )


# -- voids, refunds, card moves -------------------------------------------------------------


def test_a_manager_who_did_not_record_a_payment_voids_it_and_its_invoice_reopens(
    billing: Billing,
) -> None:
    first = record_payment(
        billing.clerk, draft(CHECK, amount="30.00", allocations=((MAY_INVOICE, "30.00"),)), "k-1"
    )
    second = record_payment(
        billing.clerk,
        draft(TRANSFER, amount="22.34", allocations=((MAY_INVOICE, "22.34"),)),
        "k-2",
    )
    assert invoice_status(billing.clerk, MAY_INVOICE) == "paid"
    with pytest.raises(PermissionDenied) as by_clerk:
        change_status(billing.clerk, second.payment_id, "voided", "entered twice", "t-0")
    assert str(by_clerk.value) == CLERK_MAY_NOT

    voided = change_status(billing.manager, second.payment_id, "voided", "entered twice", "t-1")

    assert (voided.from_status, voided.status, voided.replayed) == ("recorded", "voided", False)
    assert voided.released == (AllocationInfo(MAY_INVOICE, usd("22.34")),)
    assert (voided.allocations, voided.credit) == ((), usd("0"))
    assert invoice_status(billing.clerk, MAY_INVOICE) == "partially paid"
    before = row_counts(billing.clerk)
    assert change_status(
        billing.manager, second.payment_id, "voided", "entered twice", "t-1"
    ) == replace(voided, replayed=True)
    assert row_counts(billing.clerk) == before
    with pytest.raises(Refused) as reused:
        change_status(billing.manager, second.payment_id, "voided", "typo", "t-1")
    assert str(reused.value) == (
        "Idempotency key t-1 was already used for a different request (reason differs); use a "
        "new key for a new request."
    )

    change_status(billing.manager, first.payment_id, "voided", "wrong facility", "t-2")

    assert invoice_moves(billing.clerk, MAY_INVOICE) == [
        (None, "issued"),
        ("issued", "partially paid"),
        ("partially paid", "paid"),
        ("paid", "partially paid"),
        ("partially paid", "issued"),
    ]
    assert history(billing, second.payment_id) == [
        (None, "recorded", "clerk", "recorded"),
        ("recorded", "voided", "manager", "entered twice"),
    ]
    # Nothing is deleted: the payments and their allocations stay, released.
    assert [(p.payment_id, p.status) for p in list_payments(billing.clerk)] == [
        (first.payment_id, "voided"),
        (second.payment_id, "voided"),
    ]
    assert allocation_rows(billing.clerk, first.payment_id) == [(MAY_INVOICE, 3000, False, True)]
    assert rows(
        billing.clerk,
        "SELECT released_by FROM allocation WHERE payment_id = :id",
        id=second.payment_id,
    ) == [("manager",)]
    assert show_payment(billing.clerk, first.payment_id).allocations == ()
    assert credit_balance(billing.clerk, "STMARY").credit == usd("0")


def test_the_recorder_cannot_void_or_refund_their_own_payment(billing: Billing) -> None:
    payment = record_payment(billing.manager, draft(TRANSFER, auto_allocate=True), "k-1")
    pid = payment.payment_id
    with pytest.raises(PermissionDenied) as own_void:
        change_status(billing.manager, pid, "voided", "mine", "t-1")
    assert str(own_void.value) == segregation("manager", pid, "void")
    line = clear_at_bank(billing.clerk, pid)

    problems = refusal_problems(
        [
            (
                "the recorder refunds",
                lambda: change_status(billing.manager, pid, "refunded", "overpaid", "t-3"),
                PermissionDenied,
                segregation("manager", pid, "refund"),
            ),
            (
                "a clerk refunds",
                lambda: change_status(billing.clerk, pid, "refunded", "overpaid", "t-3"),
                PermissionDenied,
                CLERK_MAY_NOT,
            ),
        ]
    )
    assert problems == []

    refunded = change_status(
        billing.manager2, pid, "refunded", "overpaid", "t-4", on=date(2026, 6, 20)
    )

    assert (refunded.from_status, refunded.status) == ("cleared", "refunded")
    assert refunded.released == (
        AllocationInfo(APRIL_INVOICE, usd("30.00")),
        AllocationInfo(MAY_INVOICE, usd("30.00")),
    )
    with Session(billing.clerk.engine) as session:
        refunds = session.execute(
            select(
                Refund.payment_id,
                Refund.amount_minor,
                Refund.currency,
                Refund.refunded_on,
                Refund.reason,
                Refund.created_by,
            )
        ).all()
    assert [tuple(r) for r in refunds] == [
        (pid, 6000, "USD", date(2026, 6, 20), "overpaid", "manager2")
    ]
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "issued"
    assert invoice_status(billing.clerk, MAY_INVOICE) == "issued"
    assert [released for *_, released in allocation_rows(billing.clerk, pid)] == [True, True]
    assert history(billing, pid) == [
        (None, "recorded", "manager", "recorded"),
        ("recorded", "cleared", "clerk", f"matched to bank line {line}"),
        ("cleared", "refunded", "manager2", "overpaid"),
    ]


def test_a_card_payment_is_authorized_captured_settled_and_charged_back(
    billing: Billing,
) -> None:
    card = record_payment(billing.clerk, draft(CARD, auto_allocate=True), "k-1")
    pid = card.payment_id
    assert card.status == "authorized"
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "paid"

    captured = change_status(billing.clerk, pid, "captured", "captured at end of day", "t-1")
    with pytest.raises(Refused) as by_hand:
        change_status(billing.clerk, pid, "settled", "processor payout 2026-06-05", "t-2")
    assert "becomes settled when the bank's line for it is matched, not by hand" in str(
        by_hand.value
    )
    payout = clear_at_bank(billing.clerk, pid)
    moves = [
        captured,
        change_status(billing.manager, pid, "chargeback", "disputed by the facility", "t-3"),
    ]

    assert [(m.from_status, m.status) for m in moves] == [
        ("authorized", "captured"),
        ("settled", "chargeback"),
    ]
    assert moves[-1].released == (
        AllocationInfo(APRIL_INVOICE, usd("30.00")),
        AllocationInfo(MAY_INVOICE, usd("30.00")),
    )
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "issued"
    assert invoice_status(billing.clerk, MAY_INVOICE) == "issued"
    assert history(billing, pid) == [
        (None, "authorized", "clerk", "recorded"),
        ("authorized", "captured", "clerk", "captured at end of day"),
        ("captured", "settled", "clerk", f"matched to bank line {payout}"),
        ("settled", "chargeback", "manager", "disputed by the facility"),
    ]
    with pytest.raises(IllegalTransition) as after_chargeback:
        change_status(billing.manager2, pid, "refunded", "again", "t-4")
    assert str(after_chargeback.value) == "Cannot move card payment from chargeback to refunded."


def test_illegal_and_malformed_moves_are_refused(billing: Billing) -> None:
    check = record_payment(billing.clerk, CHECK, "k-1").payment_id
    transfer = record_payment(billing.clerk, TRANSFER, "k-2").payment_id
    card = record_payment(billing.clerk, CARD, "k-3").payment_id
    voided = record_payment(billing.clerk, draft(CASH, amount="1.00"), "k-4").payment_id
    change_status(billing.manager, voided, "voided", "entered in error", "t-0")
    before = row_counts(billing.clerk)

    def illegal(payment_id: int, target: str, entity: str, current: str) -> Case:
        return (
            f"{entity} {current} to {target}",
            lambda: change_status(billing.manager, payment_id, target, "try", f"x-{target}"),
            IllegalTransition,
            f"Cannot move {entity} from {current} to {target}.",
        )

    statuses = (
        "awaiting approval, recorded, deposited, cleared, returned, voided, refunded, authorized, "
        "captured, settled, chargeback"
    )
    problems = refusal_problems(
        [
            illegal(check, "cleared", "check payment", "recorded"),
            illegal(check, "returned", "check payment", "recorded"),
            illegal(check, "refunded", "check payment", "recorded"),
            illegal(check, "authorized", "check payment", "recorded"),
            illegal(transfer, "captured", "transfer payment", "recorded"),
            illegal(transfer, "refunded", "transfer payment", "recorded"),
            illegal(card, "settled", "card payment", "authorized"),
            illegal(card, "recorded", "card payment", "authorized"),
            illegal(voided, "recorded", "cash payment", "voided"),
            illegal(voided, "voided", "cash payment", "voided"),
            (
                "cleared by hand",
                lambda: change_status(billing.clerk, transfer, "cleared", "on statement", "x-0"),
                Refused,
                f"Payment {transfer} becomes cleared when the bank's line for it is matched, not "
                "by hand; import the bank statement (`billing-desk import statement FILE`) and "
                f"match its bank line (`billing-desk reconcile match --line N --payment "
                f"{transfer}`).",
            ),
            (
                "deposited by hand",
                lambda: change_status(billing.clerk, check, "deposited", "at the bank", "x-1"),
                BadInput,
                "Checks reach deposited through a deposit slip; use `billing-desk deposit create`.",
            ),
            (
                "no reason",
                lambda: change_status(billing.manager, check, "voided", "  ", "x-2"),
                BadInput,
                "A payment status change needs a reason; give it with --reason.",
            ),
            (
                "unknown status",
                lambda: change_status(billing.clerk, check, "bounced", "NSF", "x-3"),
                BadInput,
                f"'bounced' is not a payment status; choose one of {statuses}.",
            ),
            (
                "unknown payment",
                lambda: change_status(billing.clerk, 999, "cleared", "on statement", "x-4"),
                BadInput,
                "There is no payment 999; `billing-desk payment list` shows them.",
            ),
            (
                "an auditor",
                lambda: change_status(
                    billing.database.workspace("auditor"), transfer, "cleared", "seen", "x-5"
                ),
                PermissionDenied,
                "auditor is an auditor, and an auditor may not record payments.",
            ),
        ]
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    assert [p.status for p in list_payments(billing.clerk)] == [
        "recorded",
        "recorded",
        "authorized",
        "voided",
    ]


def test_the_recorder_of_a_held_payment_is_told_another_manager_must_void_it(
    billing: Billing,
) -> None:
    held = record_payment(
        billing.manager, draft(CHECK, check_number=None, override_reason="torn"), "k-1"
    )

    with pytest.raises(PermissionDenied) as refused:
        change_status(billing.manager, held.payment_id, "voided", "withdrawn", "t-1")

    # The manager asked to void it, not to approve it.
    assert str(refused.value) == segregation("manager", held.payment_id, "void")
    voided = change_status(billing.manager2, held.payment_id, "voided", "withdrawn", "t-2")
    assert (voided.from_status, voided.status) == ("awaiting approval", "voided")


# -- returned checks presented again --------------------------------------------------------


def test_a_returned_check_presented_again_is_the_same_payment(billing: Billing) -> None:
    payment = record_payment(billing.clerk, draft(CHECK, auto_allocate=True), "k-1")
    pid = payment.payment_id
    slip = create_deposit(billing.clerk, [pid], date(2026, 6, 3))
    returned = change_status(billing.clerk, pid, "returned", "insufficient funds", "t-1")
    assert returned.released == (
        AllocationInfo(APRIL_INVOICE, usd("30.00")),
        AllocationInfo(MAY_INVOICE, usd("30.00")),
    )
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "issued"
    assert invoice_status(billing.clerk, MAY_INVOICE) == "issued"
    assert credit_balance(billing.clerk, "STMARY").credit == usd("0")
    before = row_counts(billing.clerk)

    with pytest.raises(Refused) as refused:
        record_payment(billing.clerk, draft(CHECK, auto_allocate=True), "k-2")

    assert str(refused.value) == (
        f"The check 1001 from account ending 6789 is payment {pid}, returned by the bank; to "
        f"present it again use `billing-desk payment transition {pid} --to recorded`, not a new "
        "payment."
    )
    assert row_counts(billing.clerk) == before

    again = change_status(billing.clerk, pid, "recorded", "presented again", "t-2")

    assert (again.from_status, again.status) == ("returned", "recorded")
    assert again.allocations == (
        AllocationInfo(APRIL_INVOICE, usd("30.00")),
        AllocationInfo(MAY_INVOICE, usd("30.00")),
    )
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "paid"
    assert invoice_status(billing.clerk, MAY_INVOICE) == "partially paid"
    second_slip = create_deposit(billing.clerk, [pid], date(2026, 6, 10))
    assert second_slip.deposit_id != slip.deposit_id
    assert history(billing, pid) == [
        (None, "recorded", "clerk", "recorded"),
        ("recorded", "deposited", "clerk", f"deposit {slip.deposit_id}"),
        ("deposited", "returned", "clerk", "insufficient funds"),
        ("returned", "recorded", "clerk", "presented again"),
        ("recorded", "deposited", "clerk", f"deposit {second_slip.deposit_id}"),
    ]
    assert [released for *_, released in allocation_rows(billing.clerk, pid)] == [
        True,
        True,
        False,
        False,
    ]
    assert [p.payment_id for p in list_payments(billing.clerk)] == [pid]


def test_a_check_presented_again_goes_back_to_the_invoice_it_paid(billing: Billing) -> None:
    # payments.move_payment: "Presented again: the money goes back where it went before, as far
    # as still open." The remittance named the May invoice; April must not take the money.
    payment = record_payment(
        billing.clerk, draft(CHECK, allocations=((MAY_INVOICE, "52.34"),)), "k-1"
    )
    pid = payment.payment_id
    create_deposit(billing.clerk, [pid], date(2026, 6, 3))
    change_status(billing.clerk, pid, "returned", "insufficient funds", "t-1")

    again = change_status(billing.clerk, pid, "recorded", "presented again", "t-2")

    assert again.allocations == (AllocationInfo(MAY_INVOICE, usd("52.34")),)
    assert again.credit == usd("7.66")
    assert invoice_status(billing.clerk, MAY_INVOICE) == "paid"
    assert invoice_status(billing.clerk, APRIL_INVOICE) == "issued"


def test_a_check_presented_again_can_be_deposited_again_on_the_same_day(
    billing: Billing,
) -> None:
    pid = record_payment(billing.clerk, CHECK, "k-1").payment_id
    first = create_deposit(billing.clerk, [pid], date(2026, 6, 3))
    change_status(billing.clerk, pid, "returned", "insufficient funds", "t-1")
    change_status(billing.clerk, pid, "recorded", "presented again", "t-2")

    # The slip key is derived from the payments and the day; it must not turn a new deposit of
    # the same check into a replay of the slip the bank returned.
    second = create_deposit(billing.clerk, [pid], date(2026, 6, 3))

    assert (second.replayed, second.deposit_id != first.deposit_id) == (False, True)
    assert show_payment(billing.clerk, pid).status == "deposited"


# -- deposits -------------------------------------------------------------------------------


def test_a_deposit_moves_recorded_checks_and_cash_to_deposited(billing: Billing) -> None:
    first = record_payment(billing.clerk, draft(CHECK, auto_allocate=True), "k-1").payment_id
    second = record_payment(
        billing.clerk, draft(CHECK, check_number="1002", amount="25.00"), "k-2"
    ).payment_id
    cash = record_payment(billing.clerk, CASH, "k-3").payment_id
    elsewhere = record_payment(
        billing.clerk, draft(CASH, facility="OAKVIEW", amount="10.00"), "k-4"
    ).payment_id

    slip = create_deposit(billing.clerk, [elsewhere, second, cash, first], date(2026, 6, 3))

    assert (slip.deposit_date, slip.bank_account, slip.total) == (
        date(2026, 6, 3),
        "operating",
        usd("115.00"),
    )
    assert [(i.payment_id, i.facility, i.method, i.amount) for i in slip.items] == [
        (first, "STMARY", "check", usd("60.00")),
        (second, "STMARY", "check", usd("25.00")),
        (cash, "STMARY", "cash", usd("20.00")),
        (elsewhere, "OAKVIEW", "cash", usd("10.00")),
    ]
    for pid in (first, second, cash, elsewhere):
        assert history(billing, pid)[-1] == (
            "recorded",
            "deposited",
            "clerk",
            f"deposit {slip.deposit_id}",
        )
    # A deposit moves money to the bank; it does not touch what the money paid.
    assert show_payment(billing.clerk, first).allocations == (
        AllocationInfo(APRIL_INVOICE, usd("30.00")),
        AllocationInfo(MAY_INVOICE, usd("30.00")),
    )
    assert rows(
        billing.clerk,
        "SELECT payment_id, amount_minor FROM deposit_item WHERE deposit_id = :id ORDER BY id",
        id=slip.deposit_id,
    ) == [(first, 6000), (second, 2500), (cash, 2000), (elsewhere, 1000)]
    before = row_counts(billing.clerk)

    replayed = create_deposit(billing.clerk, [first, second, cash, elsewhere], date(2026, 6, 3))

    assert replayed == replace(slip, replayed=True)
    assert row_counts(billing.clerk) == before
    with pytest.raises(Refused) as again:
        create_deposit(billing.clerk, [first], date(2026, 6, 4))
    assert str(again.value) == (
        f"Payment {first} is deposited; only recorded checks and cash can be deposited."
    )
    assert row_counts(billing.clerk) == before


def test_only_recorded_checks_and_cash_in_one_currency_are_deposited(billing: Billing) -> None:
    seed_facility(billing.admin, "EUROPA", "EUR")
    check = record_payment(billing.clerk, CHECK, "k-1").payment_id
    transfer = record_payment(billing.clerk, TRANSFER, "k-2").payment_id
    card = record_payment(billing.clerk, CARD, "k-3").payment_id
    voided = record_payment(billing.clerk, draft(CHECK, check_number="1002"), "k-4").payment_id
    change_status(billing.manager, voided, "voided", "entered in error", "t-1")
    held = record_payment(
        billing.clerk, draft(CHECK, check_number=None, override_reason="torn"), "k-5"
    ).payment_id
    euros = record_payment(
        billing.clerk, draft(CASH, facility="EUROPA", amount="10.00"), "k-6"
    ).payment_id
    tomorrow = today_of(billing.clerk) + timedelta(days=1)
    day = date(2026, 6, 3)
    before = row_counts(billing.clerk)

    problems = refusal_problems(
        [
            (
                "a transfer beside a check",
                lambda: create_deposit(billing.clerk, [check, transfer], day),
                Refused,
                f"Payment {transfer} is a transfer payment; only checks and cash are deposited.",
            ),
            (
                "a card",
                lambda: create_deposit(billing.clerk, [card], day),
                Refused,
                f"Payment {card} is a card payment; only checks and cash are deposited.",
            ),
            (
                "a voided check",
                lambda: create_deposit(billing.clerk, [voided], day),
                Refused,
                f"Payment {voided} is voided; only recorded checks and cash can be deposited.",
            ),
            (
                "a check awaiting approval",
                lambda: create_deposit(billing.clerk, [held], day),
                Refused,
                f"Payment {held} is awaiting approval; only recorded checks and cash can be "
                "deposited.",
            ),
            (
                "two currencies",
                lambda: create_deposit(billing.clerk, [check, euros], day),
                Refused,
                "The payments are in EUR, USD; a deposit holds one currency.",
            ),
            (
                "an unknown payment",
                lambda: create_deposit(billing.clerk, [check, 999], day),
                BadInput,
                "There is no payment 999; check the ids.",
            ),
            (
                "no payments",
                lambda: create_deposit(billing.clerk, [], day),
                BadInput,
                "A deposit needs payments; give their ids with --payments 12,13,14.",
            ),
            (
                "a future day",
                lambda: create_deposit(billing.clerk, [check], tomorrow),
                BadInput,
                f"The deposit date {tomorrow} is in the future; use today or earlier.",
            ),
            (
                "an auditor",
                lambda: create_deposit(billing.database.workspace("auditor"), [check], day),
                PermissionDenied,
                "auditor is an auditor, and an auditor may not record payments.",
            ),
        ]
    )

    assert problems == []
    assert row_counts(billing.clerk) == before
    assert show_payment(billing.clerk, check).status == "recorded"
    euro_slip = create_deposit(billing.clerk, [euros], day, idempotency_key="d-eur")
    assert (euro_slip.total.minor, euro_slip.total.currency) == (1000, "EUR")


def test_clearing_is_taken_back_only_by_unmatching_the_bank_line(billing: Billing) -> None:
    transfer = record_payment(billing.clerk, TRANSFER, "k-1").payment_id
    line = clear_at_bank(billing.clerk, transfer)
    with pytest.raises(Refused) as by_hand:
        change_status(billing.clerk, transfer, "recorded", "not on the statement", "t-1")
    assert str(by_hand.value) == (
        f"Payment {transfer} is cleared because bank line {line} is matched to it; to take that "
        f"back, unmatch the line (`billing-desk reconcile unmatch {line} --reason TEXT`)."
    )
    unmatch_line(billing.clerk, line, "another customer's transfer")
    assert show_payment(billing.clerk, transfer).status == "recorded"
