"""Payments as the business sees them: methods, the lifecycle as data, and the card-data rules.

The lifecycle follows DESIGN.md. Checks (and cash) are recorded, deposited and cleared, and may
come back returned; a returned check presented again goes back to recorded (a new deposit of the
same payment, not a new payment). Transfers are recorded and cleared. Cards are authorized,
captured and settled, and may be charged back. A payment waiting for a manager's override starts
as `awaiting approval`. Voided, returned, refunded and charged-back payments hold no allocations.
"""

from __future__ import annotations

import re
from enum import StrEnum

from billing_desk.domain.errors import BadInput
from billing_desk.domain.states import StateMachine


class PaymentMethod(StrEnum):
    CHECK = "check"
    TRANSFER = "transfer"
    CARD = "card"
    CASH = "cash"


class PaymentStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting approval"
    RECORDED = "recorded"
    DEPOSITED = "deposited"
    CLEARED = "cleared"
    RETURNED = "returned"
    VOIDED = "voided"
    REFUNDED = "refunded"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    SETTLED = "settled"
    CHARGEBACK = "chargeback"


P = PaymentStatus

_CHECK_MOVES = frozenset(
    {
        (P.AWAITING_APPROVAL, P.RECORDED),
        (P.AWAITING_APPROVAL, P.VOIDED),
        (P.RECORDED, P.DEPOSITED),
        (P.RECORDED, P.VOIDED),
        (P.DEPOSITED, P.CLEARED),
        (P.DEPOSITED, P.RETURNED),
        (P.CLEARED, P.RETURNED),
        (P.CLEARED, P.REFUNDED),
        # Presented again after a return: the same payment, deposited anew.
        (P.RETURNED, P.RECORDED),
        # Its deposit's bank line was unmatched: the bank no longer vouches for the money.
        (P.CLEARED, P.DEPOSITED),
    }
)

_TRANSFER_MOVES = frozenset(
    {
        (P.AWAITING_APPROVAL, P.RECORDED),
        (P.AWAITING_APPROVAL, P.VOIDED),
        (P.RECORDED, P.CLEARED),
        (P.RECORDED, P.VOIDED),
        (P.RECORDED, P.RETURNED),
        (P.CLEARED, P.RETURNED),
        (P.CLEARED, P.REFUNDED),
        # Its bank line was unmatched: the bank no longer vouches for the money.
        (P.CLEARED, P.RECORDED),
    }
)

_CARD_MOVES = frozenset(
    {
        (P.AWAITING_APPROVAL, P.AUTHORIZED),
        (P.AWAITING_APPROVAL, P.VOIDED),
        (P.AUTHORIZED, P.CAPTURED),
        (P.AUTHORIZED, P.VOIDED),
        (P.CAPTURED, P.SETTLED),
        (P.CAPTURED, P.VOIDED),
        (P.SETTLED, P.CHARGEBACK),
        (P.SETTLED, P.REFUNDED),
        # Its settlement's bank line was unmatched.
        (P.SETTLED, P.CAPTURED),
    }
)

PAYMENT_STATES: dict[PaymentMethod, StateMachine[PaymentStatus]] = {
    PaymentMethod.CHECK: StateMachine("check payment", _CHECK_MOVES),
    PaymentMethod.CASH: StateMachine("cash payment", _CHECK_MOVES),
    PaymentMethod.TRANSFER: StateMachine("transfer payment", _TRANSFER_MOVES),
    PaymentMethod.CARD: StateMachine("card payment", _CARD_MOVES),
}

# The state a payment enters when it is recorded (or approved after an override).
FIRST_STATUS: dict[PaymentMethod, PaymentStatus] = {
    PaymentMethod.CHECK: P.RECORDED,
    PaymentMethod.CASH: P.RECORDED,
    PaymentMethod.TRANSFER: P.RECORDED,
    PaymentMethod.CARD: P.AUTHORIZED,
}

# Money in these states counts towards invoices; any other state holds no allocation.
LIVE_STATUSES = frozenset({P.RECORDED, P.DEPOSITED, P.CLEARED, P.AUTHORIZED, P.CAPTURED, P.SETTLED})

# Moves only a manager who did not record the payment may make.
MANAGER_MOVES = frozenset({P.VOIDED, P.REFUNDED})


def parse_method(text: str) -> PaymentMethod:
    try:
        return PaymentMethod(text.strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in PaymentMethod)
        raise BadInput(f"'{text}' is not a payment method; choose one of {names}.") from None


def parse_status(text: str) -> PaymentStatus:
    cleaned = text.strip().lower().replace("_", " ").replace("-", " ")
    try:
        return PaymentStatus(cleaned)
    except ValueError:
        names = ", ".join(s.value for s in PaymentStatus)
        raise BadInput(f"'{text}' is not a payment status; choose one of {names}.") from None


# -- card data ------------------------------------------------------------------------------

# A whole run of 13 to 19 digits, single spaces or dashes allowed between them.
_DIGIT_RUN = re.compile(r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)")


def routing_number_valid(digits: str) -> bool:
    """Nine digits whose ABA check digit is right (weights 3, 7, 1 repeated; sum % 10 == 0)."""
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        return False
    weights = (3, 7, 1) * 3
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 10 == 0


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    """True when `text` holds a 13-19 digit run (spaces or dashes allowed between digits) that
    passes the Luhn check: what a full card number looks like."""
    return any(
        luhn_valid(re.sub(r"[ -]", "", match.group())) for match in _DIGIT_RUN.finditer(text)
    )


def refuse_card_numbers(field: str, text: str | None) -> None:
    if text and contains_card_number(text):
        raise BadInput(
            f"The {field} looks like a full card number; never enter one: keep only the card "
            "brand, its last four digits and the processor's reference."
        )


def card_last4(text: str) -> str:
    cleaned = text.strip()
    if not re.fullmatch(r"[0-9]{4}", cleaned):
        raise BadInput(f"'{text}' is not the last four digits of a card; enter exactly 4 digits.")
    return cleaned


def security_code_like(text: str) -> bool:
    """A bare 3-4 digit group labelled as a security code ("CVV 123") in free text."""
    return re.search(r"(?i)\b(cvv2?|cvc2?|cid|security code)\W{0,3}\d{3,4}\b", text) is not None
