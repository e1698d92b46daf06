"""What a bank line may be matched to, and what a match does to a payment, as data.

A credit is money in: a live payment that reaches the bank on its own (a transfer, a card
settlement) or a deposit slip (checks and cash reach the bank only through their deposit). A
debit is money out: a payment that came back (returned check, chargeback) or was refunded; a bank
charge is explained by a manager's note on its discrepancy, never by a payment. Currencies must
agree. Amounts must agree too, or the match is a *match with a difference*, allowed by hand only
with a reason and raised by every run until a manager resolves it.

Matching a credit is how money clears: `CLEARING_MOVES` says which lifecycle move a match makes
for each method and `UNCLEARING_MOVES` the move an unmatch takes back. These moves are declared
in the payment state machines too, so the lifecycle stays one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from billing_desk.domain.money import Money
from billing_desk.domain.payments import PaymentMethod, PaymentStatus

P = PaymentStatus
M = PaymentMethod

# Methods whose money reaches the bank as a line of its own; checks and cash arrive in a deposit.
OWN_LINE_METHODS = frozenset({M.TRANSFER, M.CARD})

# The statuses from which a match of a credit clears the payment, and the status it reaches.
CLEARING_MOVES: dict[PaymentMethod, tuple[PaymentStatus, PaymentStatus]] = {
    M.CHECK: (P.DEPOSITED, P.CLEARED),
    M.CASH: (P.DEPOSITED, P.CLEARED),
    M.TRANSFER: (P.RECORDED, P.CLEARED),
    M.CARD: (P.CAPTURED, P.SETTLED),
}
# Unmatching a credit takes the clearing back (the bank no longer vouches for the money).
UNCLEARING_MOVES: dict[PaymentMethod, tuple[PaymentStatus, PaymentStatus]] = {
    method: (done, before) for method, (before, done) in CLEARING_MOVES.items()
}

# Moves only the bank makes: matching a credit clears a payment and unmatching takes that back.
# Nobody makes them by hand, so a payment is cleared (or settled) exactly while a bank credit is
# matched to it or to its deposit slip.
BANK_MOVES: frozenset[tuple[PaymentMethod, PaymentStatus, PaymentStatus]] = frozenset(
    (method, before, after)
    for moves in (CLEARING_MOVES, UNCLEARING_MOVES)
    for method, (before, after) in moves.items()
)


def made_by_the_bank(method: PaymentMethod, current: PaymentStatus, target: PaymentStatus) -> bool:
    """Whether this lifecycle move is the bank's (made by matching or unmatching a line)."""
    return (method, current, target) in BANK_MOVES


# Money on its way: a deposit or a payment is "never seen at the bank" only once the bank's
# statements of its currency run this many days past its date (a Friday deposit is credited on
# the next business day and on the statement the morning after; a holiday adds a day). Until then
# it is in transit, as a bookkeeper's reconciliation lists deposits in transit, not an error.
IN_TRANSIT_DAYS = 5

# A credit may be matched to a payment in one of these statuses (before or after clearing).
CREDIT_STATUSES = frozenset({P.RECORDED, P.DEPOSITED, P.CLEARED, P.CAPTURED, P.SETTLED})
# A debit may be matched to a payment whose money went back out.
DEBIT_STATUSES = frozenset({P.RETURNED, P.CHARGEBACK, P.REFUNDED})
# A matched payment may not move to these until it is unmatched: the bank says the money is in.
BLOCKED_WHILE_MATCHED = frozenset({P.VOIDED})


CREDIT = "credit"
DEBIT = "debit"


def direction_of(amount_minor: int) -> str:
    """A line's direction: a credit brings money in, a debit takes it out. A payment holds at
    most one active match of each (its money in, and the same money going back out)."""
    return CREDIT if amount_minor > 0 else DEBIT


@dataclass(frozen=True)
class LineFacts:
    id: int
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class PaymentFacts:
    id: int
    method: PaymentMethod
    status: PaymentStatus
    currency: str
    amount_minor: int
    # The deposit slip holding this payment (a check or cash), if any, and whether that slip is
    # itself matched to a bank line.
    deposit_id: int | None = None
    deposit_matched: bool = False


@dataclass(frozen=True)
class DepositFacts:
    id: int
    currency: str
    total_minor: int
    # Payments of the slip already matched on their own (they would be counted twice).
    items_matched_alone: tuple[int, ...] = ()
    voided_items: tuple[int, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """A match that fits: the difference (line minus expected, signed as the line) is 0 for an
    exact match."""

    expected_minor: int
    difference_minor: int


def _money(minor: int, currency: str) -> str:
    return Money.from_minor(minor, currency).format()


def judge_payment(line: LineFacts, payment: PaymentFacts, *, reason: str | None) -> Verdict | str:
    """The verdict of matching `line` to `payment`, or one sentence saying why it cannot be."""
    what = f"payment {payment.id}"
    if payment.currency != line.currency:
        return (
            f"Bank line {line.id} is in {line.currency} and {what} in {payment.currency}; "
            "they cannot be the same money."
        )
    if payment.status == P.VOIDED:
        return f"{what.capitalize()} is voided; a voided payment matches no bank line."
    if payment.status == P.AWAITING_APPROVAL:
        return f"{what.capitalize()} awaits a manager's approval; approve it before matching."
    if line.amount_minor > 0:
        if payment.status not in CREDIT_STATUSES:
            return (
                f"Bank line {line.id} is a credit (money in) and {what} is {payment.status.value};"
                " a credit matches a live payment or a deposit slip."
            )
        if payment.method not in OWN_LINE_METHODS:
            if payment.deposit_id is None:
                return (
                    f"{what.capitalize()} is a {payment.method.value} that was never deposited; "
                    "put it on a deposit slip and match the bank line to the deposit."
                )
            return (
                f"{what.capitalize()} reached the bank in deposit {payment.deposit_id}; match "
                f"bank line {line.id} to the deposit (--deposit {payment.deposit_id})."
            )
        expected = payment.amount_minor
    elif line.amount_minor < 0:
        if payment.status not in DEBIT_STATUSES:
            return (
                f"Bank line {line.id} is a debit (money out) and {what} is money in "
                f"({payment.status.value}); a debit matches a returned check, a chargeback or a "
                "refund, and a bank charge is explained on its discrepancy by a manager."
            )
        expected = -payment.amount_minor
    else:
        return f"Bank line {line.id} is for zero; there is no money to match."
    return _with_difference(line, what, expected, reason)


def judge_deposit(line: LineFacts, deposit: DepositFacts, *, reason: str | None) -> Verdict | str:
    what = f"deposit {deposit.id}"
    if deposit.currency != line.currency:
        return (
            f"Bank line {line.id} is in {line.currency} and {what} in {deposit.currency}; "
            "they cannot be the same money."
        )
    if line.amount_minor <= 0:
        return (
            f"Bank line {line.id} is a debit (money out) and {what} is money in; match the debit "
            "to the returned check instead."
        )
    if deposit.items_matched_alone:
        ids = ", ".join(str(i) for i in deposit.items_matched_alone)
        return (
            f"Payment {ids} of {what} is already matched on its own; unmatch that line first so "
            "the money is not counted twice."
        )
    if deposit.voided_items:
        ids = ", ".join(str(i) for i in deposit.voided_items)
        return f"Payment {ids} of {what} is voided; correct the deposit slip before matching."
    return _with_difference(line, what, deposit.total_minor, reason)


def _with_difference(
    line: LineFacts, what: str, expected: int, reason: str | None
) -> Verdict | str:
    difference = line.amount_minor - expected
    if difference and not (reason or "").strip():
        return (
            f"Bank line {line.id} is {_money(line.amount_minor, line.currency)} and {what} is "
            f"{_money(expected, line.currency)}; match them only as a match with a difference, "
            "giving the reason with --note."
        )
    return Verdict(expected, difference)


def clearing_move(method: PaymentMethod, status: PaymentStatus) -> PaymentStatus | None:
    """The status a credit match moves a payment to, or None when it is cleared already."""
    before, after = CLEARING_MOVES[method]
    return after if status == before else None


def unclearing_move(method: PaymentMethod, status: PaymentStatus) -> PaymentStatus | None:
    done, before = UNCLEARING_MOVES[method]
    return before if status == done else None
