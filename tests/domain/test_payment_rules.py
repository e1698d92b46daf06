"""The payment rules of the domain layer: the Luhn check, what counts as a full card number or a
security code, the last four digits, and the lifecycle as data."""

from __future__ import annotations

import pickle
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_desk.domain.errors import BadInput, IllegalTransition
from billing_desk.domain.payments import (
    FIRST_STATUS,
    LIVE_STATUSES,
    MANAGER_MOVES,
    PAYMENT_STATES,
    PaymentMethod,
    PaymentStatus,
    card_last4,
    contains_card_number,
    luhn_valid,
    parse_method,
    parse_status,
    refuse_card_numbers,
    security_code_like,
)

P = PaymentStatus
TERMINAL = (P.VOIDED, P.REFUNDED, P.CHARGEBACK)


def with_check_digit(prefix: str) -> str:
    """`prefix` completed with the one digit that makes it pass the Luhn check."""
    [number] = [prefix + d for d in "0123456789" if luhn_valid(prefix + d)]
    return number


# -- Luhn -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa
        "5555555555554444",  # Mastercard
        "378282246310005",  # American Express, 15 digits
        "6011111111111117",  # Discover
        "3530111333300000",  # JCB
        "4222222222222",  # Visa, 13 digits
    ],
)
def test_published_test_card_numbers_pass_the_luhn_check(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "1234567812345678", "5555555555554443"])
def test_numbers_with_a_wrong_check_digit_fail_the_luhn_check(number: str) -> None:
    assert not luhn_valid(number)


@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.data())
def test_the_luhn_check_catches_every_single_digit_error(prefix: str, data: st.DataObject) -> None:
    number = with_check_digit(prefix)
    position = data.draw(st.integers(0, len(number) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]))
    assert luhn_valid(number)
    assert not luhn_valid(number[:position] + wrong + number[position + 1 :])


# -- full card numbers in free text ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111 1111-1111 1111",
        "5555555555554444",
        "paid with 5555 5555 5555 4444 yesterday",
        "card:4111111111111111.",
        "(4111-1111-1111-1111)",
        "ref4111111111111111x",
        "3782 822463 10005",
        "4222222222222",
        with_check_digit("630400000000000000"),  # 19 digits, the longest card number
        "first line\n6011 1111 1111 1117",
    ],
)
def test_a_full_card_number_is_found_anywhere_in_text(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "41111111111111110000",  # 20 digits: an account or bank reference, not a card
        "4111111111111111 0000",
        "4111 1111 1111 1111 0000",
        "4111-1111-1111-1111-0000",
        # The same, with the Luhn-valid part at the end: still one 20-digit run.
        "0000 4111 1111 1111 1111",
        "0000-4111-1111-1111-1111",
        with_check_digit("6304000000000000000"),  # 20 digits, Luhn-valid all the same
        "4111111111111112",  # fails the Luhn check
        "4111 1111 1111 1112",
        "411111111111",  # 12 digits
        "invoice STMARY-000001 of 2026-05-31",
        "call +1 555 123 4567",
        "routing 021000021 account 000123456789",
    ],
)
def test_text_without_a_card_number_passes(text: str) -> None:
    assert not contains_card_number(text)


@given(
    st.text(alphabet="0123456789", min_size=20, max_size=30),
    st.lists(st.sampled_from(["", " ", "-"]), min_size=29, max_size=29),
)
def test_a_run_of_twenty_or_more_digits_is_never_a_card_number(
    digits: str, separators: list[str]
) -> None:
    run = "".join(d + s for d, s in zip(digits, separators, strict=False)).strip(" -")
    assert not contains_card_number(f"ref {run} end")


@given(
    st.text(alphabet="0123456789", min_size=12, max_size=18),
    st.sampled_from(["", " ", "-"]),
    st.text(alphabet="abc xyz:,.", max_size=10),
)
def test_every_luhn_valid_number_of_13_to_19_digits_is_found(
    prefix: str, separator: str, around: str
) -> None:
    number = with_check_digit(prefix)
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    assert contains_card_number(f"x{around}{grouped}{around}x")


def test_refusing_a_card_number_names_the_field() -> None:
    with pytest.raises(BadInput) as refused:
        refuse_card_numbers("memo", "card 4111 1111 1111 1111")
    assert str(refused.value) == (
        "The memo looks like a full card number; never enter one: keep only the card brand, its "
        "last four digits and the processor's reference."
    )
    refuse_card_numbers("memo", None)
    refuse_card_numbers("memo", "")
    refuse_card_numbers("memo", "Visa ending 1111")


# -- security codes and the last four digits -----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "CVV 123",
        "cvv2: 1234",
        "CVC 999",
        "cvc2 999",
        "CID 1234",
        "security code 321",
        "Security Code: 4567",
        "card ok, cvv=123",
    ],
)
def test_a_labelled_security_code_is_found(text: str) -> None:
    assert security_code_like(text)


@pytest.mark.parametrize(
    "text", ["CVV", "cvv 12", "cvv 12345", "PCVV 123", "check 123", "order 1234", ""]
)
def test_text_without_a_security_code_passes(text: str) -> None:
    assert not security_code_like(text)


@pytest.mark.parametrize(("typed", "kept"), [("4242", "4242"), (" 0005 ", "0005")])
def test_the_last_four_digits_are_kept_as_typed(typed: str, kept: str) -> None:
    assert card_last4(typed) == kept


@pytest.mark.parametrize("typed", ["", "424", "42424", "42a2", "4 242", "4111111111111111"])
def test_anything_but_four_digits_is_not_a_last_four(typed: str) -> None:
    with pytest.raises(BadInput) as refused:
        card_last4(typed)
    assert str(refused.value) == (
        f"'{typed}' is not the last four digits of a card; enter exactly 4 digits."
    )


@pytest.mark.parametrize("typed", ["٤٢٤٢", "４２４２", "৪২৪২"])
def test_digits_other_than_0_to_9_are_not_a_last_four(typed: str) -> None:
    # Money refuses digits other than 0-9 and account numbers must be ASCII; so must this.
    with pytest.raises(BadInput):
        card_last4(typed)


# -- the lifecycle as data ------------------------------------------------------------------


def reachable(method: PaymentMethod, start: PaymentStatus) -> set[PaymentStatus]:
    machine = PAYMENT_STATES[method]
    seen = {start}
    queue = deque([start])
    while queue:
        for target in machine.targets(queue.popleft()):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


@pytest.mark.parametrize("method", list(PaymentMethod))
def test_every_status_of_a_method_is_reachable_from_its_first_status(
    method: PaymentMethod,
) -> None:
    machine = PAYMENT_STATES[method]
    assert reachable(method, FIRST_STATUS[method]) == machine.states() - {P.AWAITING_APPROVAL}
    # A held payment is approved into the method's first status, or voided.
    assert machine.targets(P.AWAITING_APPROVAL) == {FIRST_STATUS[method], P.VOIDED}
    assert reachable(method, P.AWAITING_APPROVAL) == machine.states()


@pytest.mark.parametrize("method", list(PaymentMethod))
def test_nothing_leaves_voided_refunded_or_charged_back(method: PaymentMethod) -> None:
    for status in TERMINAL:
        assert PAYMENT_STATES[method].targets(status) == frozenset()


def test_the_lifecycles_follow_the_design() -> None:
    check = PAYMENT_STATES[PaymentMethod.CHECK]
    assert check.transitions == PAYMENT_STATES[PaymentMethod.CASH].transitions
    assert check.targets(P.RECORDED) == {P.DEPOSITED, P.VOIDED}
    assert check.targets(P.DEPOSITED) == {P.CLEARED, P.RETURNED}
    assert check.targets(P.RETURNED) == {P.RECORDED}  # presented again
    card = PAYMENT_STATES[PaymentMethod.CARD]
    assert card.targets(P.AUTHORIZED) == {P.CAPTURED, P.VOIDED}
    # Back to captured only when its settlement's bank line is unmatched.
    assert card.targets(P.SETTLED) == {P.CHARGEBACK, P.REFUNDED, P.CAPTURED}
    # An unmatched deposit line takes a cleared check back to deposited.
    assert check.targets(P.CLEARED) == {P.RETURNED, P.REFUNDED, P.DEPOSITED}
    # Only checks and cash go to the bank on a deposit slip.
    for method in (PaymentMethod.TRANSFER, PaymentMethod.CARD):
        assert P.DEPOSITED not in PAYMENT_STATES[method].states()
    # A card never takes the states of money at the bank, nor a check those of a card.
    assert not card.states() & {P.RECORDED, P.DEPOSITED, P.CLEARED, P.RETURNED}
    assert not check.states() & {P.AUTHORIZED, P.CAPTURED, P.SETTLED, P.CHARGEBACK}
    assert frozenset({P.VOIDED, P.REFUNDED}) == MANAGER_MOVES


def test_live_statuses_are_those_whose_money_counts() -> None:
    assert set(FIRST_STATUS.values()) <= LIVE_STATUSES
    assert not LIVE_STATUSES & {P.AWAITING_APPROVAL, P.RETURNED, *TERMINAL}


@pytest.mark.parametrize("method", list(PaymentMethod))
def test_every_undeclared_move_is_illegal_naming_both_states(method: PaymentMethod) -> None:
    machine = PAYMENT_STATES[method]
    entity = f"{method.value} payment"
    for current in PaymentStatus:
        for target in PaymentStatus:
            if (current, target) in machine.transitions:
                machine.check(current, target)
                continue
            with pytest.raises(IllegalTransition) as refused:
                machine.check(current, target)
            assert str(refused.value) == f"Cannot move {entity} from {current} to {target}."
            assert (refused.value.current, refused.value.target) == (current.value, target.value)


def test_an_illegal_transition_survives_pickling() -> None:
    with pytest.raises(IllegalTransition) as refused:
        PAYMENT_STATES[PaymentMethod.CHECK].check(P.VOIDED, P.RECORDED)
    again = pickle.loads(pickle.dumps(refused.value))  # noqa: S301 -- our own bytes
    assert str(again) == "Cannot move check payment from voided to recorded."
    assert (again.entity, again.current, again.target) == ("check payment", "voided", "recorded")


@pytest.mark.parametrize(
    ("typed", "status"),
    [
        ("Awaiting_Approval", P.AWAITING_APPROVAL),
        ("awaiting-approval", P.AWAITING_APPROVAL),
        (" CHARGEBACK ", P.CHARGEBACK),
    ],
)
def test_statuses_are_read_however_they_are_written(typed: str, status: PaymentStatus) -> None:
    assert parse_status(typed) == status


def test_unknown_methods_and_statuses_are_bad_input() -> None:
    assert parse_method(" Check ") == PaymentMethod.CHECK
    with pytest.raises(BadInput) as method:
        parse_method("wire")
    assert (
        str(method.value)
        == "'wire' is not a payment method; choose one of check, transfer, card, cash."
    )
    with pytest.raises(BadInput) as status:
        parse_status("bounced")
    assert str(status.value) == (
        "'bounced' is not a payment status; choose one of awaiting approval, recorded, "
        "deposited, cleared, returned, voided, refunded, authorized, captured, settled, "
        "chargeback."
    )
