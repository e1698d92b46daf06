"""Payments that can never be recorded twice.

Two guards stand in front of every payment. The idempotency key (services.idempotency) turns a
retried submission into a replay of the first. The natural key catches the human double entry a
key cannot see: the same check (routing, account, number) or the same transfer or processor
reference, refused by a unique index in the database unless a manager approves a deliberate
second entry. The lifecycle is `domain.payments.PAYMENT_STATES`; every move is stored with who,
when and why, and voids, refunds and overrides need a manager who did not record the payment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing_desk.db.models import (
    BankMatch,
    DatabaseSecret,
    DepositItem,
    Facility,
    Payment,
    PaymentStatusChange,
    Refund,
)
from billing_desk.domain.bank_matching import BLOCKED_WHILE_MATCHED, made_by_the_bank
from billing_desk.domain.errors import BadInput, PermissionDenied, Refused
from billing_desk.domain.money import Money, parse_money
from billing_desk.domain.payments import (
    FIRST_STATUS,
    LIVE_STATUSES,
    PAYMENT_STATES,
    PaymentMethod,
    PaymentStatus,
    card_last4,
    parse_method,
    parse_status,
    refuse_card_numbers,
    routing_number_valid,
    security_code_like,
)
from billing_desk.domain.roles import Permission
from billing_desk.services import faults
from billing_desk.services.allocations import (
    AllocationInfo,
    allocate_explicit,
    allocate_oldest_first,
    credit_of,
    live_allocations,
    reapply_released,
    release_allocations,
    unallocated,
)
from billing_desk.services.facilities import get_facility
from billing_desk.services.idempotency import Claim, Replay, checked_key, claim, complete
from billing_desk.services.integrity import stamp_payment
from billing_desk.services.invoices import StatusChangeInfo
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

MAX_TEXT = 500
# Statuses a move into which releases the payment's allocations.
RELEASING = frozenset(
    {PaymentStatus.VOIDED, PaymentStatus.RETURNED, PaymentStatus.REFUNDED, PaymentStatus.CHARGEBACK}
)


@dataclass(frozen=True)
class PaymentDraft:
    """A payment as the clerk entered it; amounts are text until the facility's currency is
    known."""

    facility: str
    method: str
    amount: str
    received: date
    currency: str | None = None
    check_number: str | None = None
    routing_number: str | None = None
    account_number: str | None = None
    reference: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None
    processor_ref: str | None = None
    payer: str | None = None
    memo: str | None = None
    allocations: tuple[tuple[str, str], ...] = ()
    auto_allocate: bool = False
    override_reason: str | None = None


@dataclass(frozen=True)
class PaymentReceipt:
    """What recording (or replaying) a payment returns."""

    payment_id: int
    facility: str
    method: str
    status: str
    amount: Money
    allocations: tuple[AllocationInfo, ...]
    credit: Money
    replayed: bool = False
    duplicate_of: int | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "facility": self.facility,
            "method": self.method,
            "status": self.status,
            "amount_minor": self.amount.minor,
            "currency": self.amount.currency,
            "allocations": [
                {"invoice_number": a.invoice_number, "amount_minor": a.amount.minor}
                for a in self.allocations
            ],
            "credit_minor": self.credit.minor,
            "duplicate_of": self.duplicate_of,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, replayed: bool) -> PaymentReceipt:
        currency = str(record["currency"])
        return cls(
            payment_id=int(record["payment_id"]),
            facility=str(record["facility"]),
            method=str(record["method"]),
            status=str(record["status"]),
            amount=Money.from_minor(int(record["amount_minor"]), currency),
            allocations=tuple(
                AllocationInfo(
                    str(a["invoice_number"]), Money.from_minor(int(a["amount_minor"]), currency)
                )
                for a in record["allocations"]
            ),
            credit=Money.from_minor(int(record["credit_minor"]), currency),
            replayed=replayed,
            duplicate_of=record.get("duplicate_of"),
        )


@dataclass(frozen=True)
class PaymentDetail:
    payment_id: int
    facility: str
    method: str
    status: str
    amount: Money
    received_date: date
    payer: str | None
    memo: str | None
    instrument: str
    recorded_by: str
    recorded_at: datetime
    allocations: tuple[AllocationInfo, ...]
    credit: Money
    history: tuple[StatusChangeInfo, ...] = field(default=())
    override_reason: str | None = None
    approved_by: str | None = None
    duplicate_of: int | None = None


@dataclass(frozen=True)
class TransitionResult:
    payment_id: int
    from_status: str
    status: str
    released: tuple[AllocationInfo, ...]
    allocations: tuple[AllocationInfo, ...]
    credit: Money
    replayed: bool = False

    def to_record(self) -> dict[str, Any]:
        def items(rows: tuple[AllocationInfo, ...]) -> list[dict[str, Any]]:
            return [
                {"invoice_number": a.invoice_number, "amount_minor": a.amount.minor} for a in rows
            ]

        return {
            "payment_id": self.payment_id,
            "from_status": self.from_status,
            "status": self.status,
            "released": items(self.released),
            "allocations": items(self.allocations),
            "credit_minor": self.credit.minor,
            "currency": self.credit.currency,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, replayed: bool) -> TransitionResult:
        currency = str(record["currency"])

        def infos(rows: list[dict[str, Any]]) -> tuple[AllocationInfo, ...]:
            return tuple(
                AllocationInfo(
                    str(r["invoice_number"]), Money.from_minor(int(r["amount_minor"]), currency)
                )
                for r in rows
            )

        return cls(
            int(record["payment_id"]),
            str(record["from_status"]),
            str(record["status"]),
            infos(record["released"]),
            infos(record["allocations"]),
            Money.from_minor(int(record["credit_minor"]), currency),
            replayed,
        )


@dataclass(frozen=True)
class DuplicateInfo:
    """A recorded payment that a draft would duplicate: which one, when and by whom."""

    payment_id: int
    status: str
    amount: Money
    received_date: date
    recorded_at: datetime
    recorded_by: str
    instrument: str


def find_duplicate(workspace: Workspace, draft: PaymentDraft) -> DuplicateInfo | None:
    """The payment already recorded with this draft's check (routing, account and number),
    transfer reference or card processor reference; None when there is none, or while the
    draft is not complete enough to tell (the form asks again as the person types)."""
    try:
        method = parse_method(draft.method)
    except BadInput:
        return None

    def operation(unit: UnitOfWork) -> DuplicateInfo | None:
        unit.require(Permission.READ)
        try:
            facility = get_facility(unit, draft.facility)
            instrument = _instrument(unit.session, draft, method)
        except BadInput:
            return None
        existing = _existing_payment(unit.session, facility, instrument.natural_key)
        if existing is None:
            return None
        return DuplicateInfo(
            existing.id,
            existing.status,
            Money.from_minor(existing.amount_minor, existing.currency),
            existing.received_date,
            existing.recorded_at,
            existing.recorded_by,
            instrument.describe(),
        )

    return workspace.read(operation)


# -- recording ------------------------------------------------------------------------------


def record_payment(
    workspace: Workspace, draft: PaymentDraft, idempotency_key: str | None
) -> PaymentReceipt:
    """Record a payment once. A replay of the same key and request returns the first receipt
    (`replayed=True`) and writes nothing; the same key with a different request, a duplicate
    instrument without an override, full card numbers and bad amounts are refused, writing
    nothing."""
    key = checked_key(idempotency_key)
    method = parse_method(draft.method)

    def operation(unit: UnitOfWork) -> PaymentReceipt:
        unit.require(Permission.RECORD_PAYMENTS)
        return record_in_unit(unit, draft, method, key)

    return workspace.write(operation, action="payment.record")


def record_in_unit(
    unit: UnitOfWork, draft: PaymentDraft, method: PaymentMethod, key: str
) -> PaymentReceipt:
    """Record a payment inside the caller's unit of work (the same rules as `record_payment`)."""
    _check_text_fields(draft, method)
    session = unit.session
    facility = get_facility(unit, draft.facility)
    amount = _amount(draft, facility)
    if draft.received > unit.today:
        raise BadInput(
            f"The received date {draft.received} is in the future; enter the day the payment "
            "arrived."
        )
    wanted = [
        (number, parse_money(text, facility.currency, allow_zero=False).minor)
        for number, text in draft.allocations
    ]
    instrument = _instrument(session, draft, method)
    override = (draft.override_reason or "").strip() or None
    request = {
        "facility": facility.code,
        "method": method.value,
        "amount_minor": amount.minor,
        "currency": amount.currency,
        "received": draft.received,
        **instrument.canonical(),
        "payer": _clean(draft.payer),
        "memo": _clean(draft.memo),
        "allocations": [[n.strip().upper(), m] for n, m in wanted],
        "auto_allocate": draft.auto_allocate,
        "override_reason": override,
    }
    # With an override the new payment names the one it duplicates; without, the unique index
    # refuses a duplicate as the payment is inserted.
    duplicate = (
        _existing_payment(session, facility, instrument.natural_key)
        if override is not None
        else None
    )
    # Held for a second manager: a deliberate duplicate, or a check that has no number.
    # An override reason on anything else asks for nothing and changes nothing.
    held = override is not None and (
        duplicate is not None or (method == PaymentMethod.CHECK and instrument.natural_key is None)
    )
    status = PaymentStatus.AWAITING_APPROVAL if held else FIRST_STATUS[method]
    payment = Payment(
        facility_id=facility.id,
        method=method.value,
        status=status.value,
        amount_minor=amount.minor,
        currency=amount.currency,
        received_date=draft.received,
        payer=_clean(draft.payer),
        memo=_clean(draft.memo),
        check_number=instrument.check_number,
        routing_number=instrument.routing_number,
        account_last4=instrument.account_last4,
        account_hash=instrument.account_hash,
        transfer_reference=instrument.reference,
        card_brand=instrument.card_brand,
        card_last4=instrument.card_last4,
        processor_ref=instrument.processor_ref,
        natural_key=None if held else instrument.natural_key,
        duplicate_of_id=duplicate.id if duplicate is not None else None,
        override_reason=override if held else None,
        allocation_request=json.dumps({"explicit": wanted, "auto": draft.auto_allocate})
        if held
        else None,
        recorded_by=unit.actor.name,
        recorded_at=unit.now,
        content_hash=None,  # stamped once its allocations are known
    )
    try:
        # The key and the payment go in together: a replay or a key used for another request
        # is answered first, as if the key had been claimed alone.
        claimed = claim(
            unit,
            facility_id=facility.id,
            key=key,
            operation="payment.record",
            request=request,
            inserting=[payment],
        )
    except IntegrityError:
        # The same instrument is already recorded, or was by a concurrent request that
        # committed first.
        duplicate = _existing_payment(session, facility, instrument.natural_key)
        if duplicate is None:
            raise
        raise _duplicate_refusal(duplicate, instrument) from None
    if isinstance(claimed, Replay):
        return PaymentReceipt.from_record(claimed.result, replayed=True)
    faults.reached("payment.claimed")
    if instrument.natural_key is None and method == PaymentMethod.CHECK and override is None:
        raise Refused(
            "A check without a number needs a manager's approval; record it with "
            "--override-reason saying why, and a manager approves it."
        )
    faults.reached("payment.inserted")
    allocations = [] if held else _allocate(unit, payment, wanted, draft.auto_allocate)
    faults.reached("payment.allocated")
    session.add(_history_row(unit, payment, None, status, override or "recorded"))
    receipt = PaymentReceipt(
        payment.id,
        facility.code,
        method.value,
        payment.status,
        amount,
        tuple(allocations),
        Money.from_minor(
            unallocated(payment, sum(a.amount.minor for a in allocations)), amount.currency
        ),
        duplicate_of=payment.duplicate_of_id,
    )
    # One flush writes the allocations, the status history, the payment's stamp and the
    # receipt beside the key.
    stamp_payment(session, payment)
    complete(unit, claimed, receipt.to_record())
    faults.reached("payment.completed")
    return receipt


def _amount(draft: PaymentDraft, facility: Facility) -> Money:
    if draft.currency and draft.currency.strip().upper() != facility.currency:
        raise BadInput(
            f"{facility.code} is billed in {facility.currency}; a payment in "
            f"{draft.currency.strip().upper()} cannot be recorded against it."
        )
    return parse_money(draft.amount, facility.currency, allow_zero=False)


def _allocate(
    unit: UnitOfWork, payment: Payment, wanted: Sequence[tuple[str, int]], auto: bool
) -> list[AllocationInfo]:
    if wanted and auto:
        raise BadInput("Choose either explicit allocations or --auto, not both.")
    if wanted:
        return allocate_explicit(unit, payment, wanted)
    if auto:
        return allocate_oldest_first(unit, payment, payment.amount_minor)
    return []


def _clean(text: str | None) -> str | None:
    value = (text or "").strip()
    return value or None


def _check_text_fields(draft: PaymentDraft, method: PaymentMethod) -> None:
    for name, value in (
        ("payer", draft.payer),
        ("memo", draft.memo),
        ("card brand", draft.card_brand),
        ("card's last four digits", draft.card_last4),
        ("processor reference", draft.processor_ref),
        ("transfer reference", draft.reference),
        ("override reason", draft.override_reason),
    ):
        if value and len(value) > MAX_TEXT:
            raise BadInput(f"The {name} is longer than {MAX_TEXT} characters; shorten it.")
        refuse_card_numbers(name, value)
    if draft.memo and security_code_like(draft.memo):
        raise BadInput(
            "The memo holds what looks like a card security code; never enter one: remove it."
        )
    if method != PaymentMethod.CARD and (
        draft.card_brand or draft.card_last4 or draft.processor_ref
    ):
        raise BadInput(f"Card details belong to card payments, not to a {method.value} payment.")


@dataclass(frozen=True)
class Instrument:
    """The identifying fields of the check, transfer or card, normalised."""

    natural_key: str | None
    check_number: str | None = None
    routing_number: str | None = None
    account_last4: str | None = None
    account_hash: str | None = None
    reference: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None
    processor_ref: str | None = None

    def canonical(self) -> dict[str, str | None]:
        return {
            "check_number": self.check_number,
            "routing_number": self.routing_number,
            "account_hash": self.account_hash,
            "reference": self.reference,
            "card_brand": self.card_brand,
            "card_last4": self.card_last4,
            "processor_ref": self.processor_ref,
        }

    def describe(self) -> str:
        if self.routing_number is not None:
            return f"check {self.check_number} from account ending {self.account_last4}"
        if self.reference is not None:
            return f"transfer reference {self.reference}"
        if self.processor_ref is not None:
            return f"card processor reference {self.processor_ref}"
        return "payment"


def _instrument(session: Session, draft: PaymentDraft, method: PaymentMethod) -> Instrument:
    if method == PaymentMethod.CHECK:
        routing = _digits(draft.routing_number, "routing number", 9, 9, "--routing")
        if not routing_number_valid(routing):
            raise BadInput(
                f"'{draft.routing_number}' is not a valid routing number (its check digit is "
                "wrong); copy it again from the check into --routing."
            )
        account = _digits(draft.account_number, "account number", 4, 17, "--account")
        number = (draft.check_number or "").strip().lstrip("0") or None
        if number is not None and not re.fullmatch(r"\d{1,15}", number):
            raise BadInput(f"'{draft.check_number}' is not a check number; enter its digits.")
        account_hash = _account_hash(session, account)
        return Instrument(
            natural_key=f"check:{routing}:{account_hash}:{number}" if number else None,
            check_number=number,
            routing_number=routing,
            account_last4=account[-4:],
            account_hash=account_hash,
        )
    if draft.check_number or draft.routing_number or draft.account_number:
        raise BadInput(f"Check details belong to check payments, not to a {method.value} payment.")
    if method == PaymentMethod.TRANSFER:
        reference = re.sub(r"\s+", " ", (draft.reference or "").strip()).upper()
        if not reference:
            raise BadInput("A bank transfer needs its reference; give it with --reference.")
        if len(reference) > 140:
            raise BadInput("The transfer reference is longer than 140 characters; shorten it.")
        return Instrument(natural_key=f"transfer:{reference}", reference=reference)
    if draft.reference:
        raise BadInput(
            f"A reference belongs to bank transfers; for a {method.value} payment use the memo."
        )
    if method == PaymentMethod.CARD:
        brand = (draft.card_brand or "").strip()
        processor_ref = (draft.processor_ref or "").strip()
        if not brand or not draft.card_last4 or not processor_ref:
            raise BadInput(
                "A card payment needs the card brand, its last four digits and the processor's "
                "reference (--card-brand, --card-last4, --processor-ref)."
            )
        return Instrument(
            natural_key=f"card:{processor_ref.upper()}",
            card_brand=brand,
            card_last4=card_last4(draft.card_last4),
            processor_ref=processor_ref,
        )
    return Instrument(natural_key=None)


def _digits(text: str | None, what: str, shortest: int, longest: int, option: str) -> str:
    cleaned = re.sub(r"[ -]", "", text or "")
    if not cleaned:
        raise BadInput(f"A check payment needs its {what}; copy it from the check into {option}.")
    if not cleaned.isascii() or not cleaned.isdigit() or not shortest <= len(cleaned) <= longest:
        article = "an" if what[0] in "aeiou" else "a"
        # A US (ABA) routing number is always nine digits, the last one a check digit.
        count = f"{shortest}" if shortest == longest else f"{shortest} to {longest}"
        raise BadInput(
            f"'{text}' is not {article} {what}; enter its {count} digits as printed on the check "
            f"with {option}."
        )
    return cleaned


def _account_hash(session: Session, account: str) -> str:
    """A keyed hash of the account number: equal accounts compare equal, and the number itself
    is never stored."""
    return hmac.new(_account_hash_key(session), account.encode(), hashlib.sha256).hexdigest()


# The account-hash key of each open database, by engine: made once, when the database is
# created, and never changed, so it is read once per engine.
_ACCOUNT_HASH_KEYS: weakref.WeakKeyDictionary[object, bytes] = weakref.WeakKeyDictionary()


def _account_hash_key(session: Session) -> bytes:
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    key = _ACCOUNT_HASH_KEYS.get(engine)
    if key is None:
        stored = session.scalar(
            select(DatabaseSecret.value).where(DatabaseSecret.name == "account_hash_key")
        )
        if stored is None:
            raise RuntimeError(
                "the database has no account-hash key; run `billing-desk db upgrade`"
            )
        key = _ACCOUNT_HASH_KEYS[engine] = bytes.fromhex(stored)
    return key


def _existing_payment(
    session: Session, facility: Facility, natural_key: str | None
) -> Payment | None:
    if natural_key is None:
        return None
    return session.scalars(
        select(Payment).where(
            Payment.facility_id == facility.id, Payment.natural_key == natural_key
        )
    ).first()


def _duplicate_refusal(existing: Payment, instrument: Instrument) -> Refused:
    what = instrument.describe()
    if existing.status == PaymentStatus.RETURNED.value:
        return Refused(
            f"The {what} is payment {existing.id}, returned by the bank; to present it again use "
            f"`billing-desk payment transition {existing.id} --to recorded`, not a new payment."
        )
    return Refused(
        f"The {what} was already recorded as payment {existing.id} on {existing.received_date}; "
        "if this really is a second payment, record it with --override-reason for a manager to "
        "approve."
    )


# -- lifecycle ------------------------------------------------------------------------------


def change_status(
    workspace: Workspace,
    payment_id: int,
    target: str,
    reason: str,
    idempotency_key: str | None,
    *,
    on: date | None = None,
) -> TransitionResult:
    """Move a payment along its lifecycle. Voids, refunds and approvals of overrides need a
    manager who did not record the payment; a voided, returned, refunded or charged-back payment
    releases its allocations and its invoices reopen."""
    key = checked_key(idempotency_key)
    wanted = parse_status(target)
    why = reason.strip()
    if not why:
        raise BadInput("A payment status change needs a reason; give it with --reason.")
    if wanted == PaymentStatus.DEPOSITED:
        raise BadInput(
            "Checks reach deposited through a deposit slip; use `billing-desk deposit create`."
        )

    def operation(unit: UnitOfWork) -> TransitionResult:
        unit.require(Permission.RECORD_PAYMENTS)
        payment = _locked_payment(unit.session, payment_id)
        claimed = claim(
            unit,
            facility_id=payment.facility_id,
            key=key,
            operation="payment.transition",
            request={"payment_id": payment_id, "to": wanted.value, "reason": why},
        )
        if isinstance(claimed, Replay):
            return TransitionResult.from_record(claimed.result, replayed=True)
        _refuse_the_banks_move(unit, payment, wanted)
        result = move_payment(unit, payment, wanted, why, on=on or unit.today)
        _complete(unit, claimed, result)
        return result

    return workspace.write(operation, action="payment.transition")


def _complete(unit: UnitOfWork, claimed: Claim, result: TransitionResult) -> None:
    complete(unit, claimed, result.to_record())


def _locked_payment(session: Session, payment_id: int) -> Payment:
    payment = session.scalars(
        select(Payment).where(Payment.id == payment_id).with_for_update()
    ).first()
    if payment is None:
        raise BadInput(f"There is no payment {payment_id}; `billing-desk payment list` shows them.")
    return payment


def move_payment(
    unit: UnitOfWork, payment: Payment, target: PaymentStatus, reason: str, *, on: date
) -> TransitionResult:
    """One lifecycle move with its effects, inside the caller's transaction."""
    current = PaymentStatus(payment.status)
    method = PaymentMethod(payment.method)
    if target in BLOCKED_WHILE_MATCHED:
        # Before the lifecycle check: unmatching is what makes the move possible again.
        _refuse_if_matched(unit, payment, target)
    PAYMENT_STATES[method].check(current, target)
    approving = current == PaymentStatus.AWAITING_APPROVAL
    if target in (PaymentStatus.VOIDED, PaymentStatus.REFUNDED) or approving:
        _require_second_manager(unit, payment, target)
    released: list[AllocationInfo] = []
    allocations: list[AllocationInfo] = []
    if target in RELEASING:
        released = release_allocations(unit, payment, reason=f"payment {payment.id} {target.value}")
    if target == PaymentStatus.REFUNDED:
        unit.session.add(
            Refund(
                facility_id=payment.facility_id,
                payment_id=payment.id,
                amount_minor=payment.amount_minor,
                currency=payment.currency,
                refunded_on=on,
                reason=reason,
                created_at=unit.now,
                created_by=unit.actor.name,
            )
        )
    _record_move(unit, payment, current, target, reason)
    if approving and target != PaymentStatus.VOIDED:
        payment.approved_by = unit.actor.name
        payment.approved_at = unit.now
        allocations = _allocate_requested(unit, payment)
    if target == PaymentStatus.VOIDED:
        # Entered in error: the instrument is free to be entered again correctly.
        payment.natural_key = None
    if current == PaymentStatus.RETURNED and target in LIVE_STATUSES:
        # Presented again: the money goes back where it went before, as far as still open.
        allocations = reapply_released(unit, payment)
    return TransitionResult(
        payment.id,
        current.value,
        target.value,
        tuple(released),
        tuple(allocations),
        Money.from_minor(credit_of(unit.session, payment), payment.currency),
    )


def _refuse_the_banks_move(unit: UnitOfWork, payment: Payment, target: PaymentStatus) -> None:
    """Clearing is what a matched bank line says, so a person never clears a payment (or takes
    the clearing back) by hand: the line is matched or unmatched instead."""
    method = PaymentMethod(payment.method)
    current = PaymentStatus(payment.status)
    if not made_by_the_bank(method, current, target):
        return
    if target in (PaymentStatus.CLEARED, PaymentStatus.SETTLED):
        how = (
            "match its deposit slip's bank line (`billing-desk reconcile match --line N "
            "--deposit ID`)"
            if method in (PaymentMethod.CHECK, PaymentMethod.CASH)
            else f"match its bank line (`billing-desk reconcile match --line N --payment "
            f"{payment.id}`)"
        )
        raise Refused(
            f"Payment {payment.id} becomes {target.value} when the bank's line for it is "
            f"matched, not by hand; import the bank statement (`billing-desk import statement "
            f"FILE`) and {how}."
        )
    line_id = _matched_line(unit, payment)
    raise Refused(
        f"Payment {payment.id} is {current.value} because bank line {line_id} is matched to it; "
        f"to take that back, unmatch the line (`billing-desk reconcile unmatch {line_id} "
        "--reason TEXT`)."
    )


def _refuse_if_matched(unit: UnitOfWork, payment: Payment, target: PaymentStatus) -> None:
    """The bank says this money arrived: it cannot be voided while a bank line vouches for it."""
    line_id = _matched_line(unit, payment)
    if line_id is not None:
        raise Refused(
            f"Payment {payment.id} is matched to bank line {line_id}, so the bank says its money "
            f"arrived; unmatch line {line_id} first (`reconcile unmatch {line_id} --reason "
            f"TEXT`) before it can be {target.value}."
        )


def _matched_line(unit: UnitOfWork, payment: Payment) -> int | None:
    """The bank line matched to the payment, or to the deposit slip that holds it."""
    deposits = select(DepositItem.deposit_id).where(DepositItem.payment_id == payment.id)
    return unit.session.scalars(
        select(BankMatch.line_id).where(
            BankMatch.active,
            or_(BankMatch.payment_id == payment.id, BankMatch.deposit_id.in_(deposits)),
        )
    ).first()


def _require_second_manager(unit: UnitOfWork, payment: Payment, target: PaymentStatus) -> None:
    unit.require(Permission.APPROVE_PAYMENTS)
    if unit.actor.name == payment.recorded_by:
        if target == PaymentStatus.VOIDED:
            verb = "void"
        elif target == PaymentStatus.REFUNDED:
            verb = "refund"
        else:
            verb = "approve"
        raise PermissionDenied(
            f"{unit.actor.name} recorded payment {payment.id}, so another manager must {verb} it "
            "(segregation of duties)."
        )


def _allocate_requested(unit: UnitOfWork, payment: Payment) -> list[AllocationInfo]:
    request = json.loads(payment.allocation_request or "{}")
    explicit = [(str(n), int(m)) for n, m in request.get("explicit", [])]
    return _allocate(unit, payment, explicit, bool(request.get("auto")))


def _record_move(
    unit: UnitOfWork,
    payment: Payment,
    current: PaymentStatus | None,
    target: PaymentStatus,
    reason: str | None,
) -> None:
    payment.status = target.value
    unit.session.add(_history_row(unit, payment, current, target, reason))
    stamp_payment(unit.session, payment)
    unit.session.flush()


def _history_row(
    unit: UnitOfWork,
    payment: Payment,
    current: PaymentStatus | None,
    target: PaymentStatus,
    reason: str | None,
) -> PaymentStatusChange:
    return PaymentStatusChange(
        payment_id=payment.id,
        facility_id=payment.facility_id,
        from_status=current.value if current is not None else None,
        to_status=target.value,
        changed_at=unit.now,
        changed_by=unit.actor.name,
        reason=reason,
    )


# -- reading --------------------------------------------------------------------------------


def show_payment(workspace: Workspace, payment_id: int) -> PaymentDetail:
    def operation(unit: UnitOfWork) -> PaymentDetail:
        unit.require(Permission.READ)
        payment = unit.session.get(Payment, payment_id)
        if payment is None:
            raise BadInput(
                f"There is no payment {payment_id}; `billing-desk payment list` shows them."
            )
        history = unit.session.scalars(
            select(PaymentStatusChange)
            .where(PaymentStatusChange.payment_id == payment.id)
            .order_by(PaymentStatusChange.id)
        )
        return _detail(
            unit.session,
            payment,
            tuple(
                StatusChangeInfo(h.from_status, h.to_status, h.changed_at, h.changed_by, h.reason)
                for h in history
            ),
        )

    return workspace.read(operation)


def list_payments(
    workspace: Workspace,
    *,
    facility: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[PaymentDetail]:
    """Payments in the order they were recorded, or the newest received first (`newest_first`);
    `limit` keeps the first N of that order, so the newest N when newest first."""
    wanted = parse_status(status) if status else None

    def operation(unit: UnitOfWork) -> list[PaymentDetail]:
        unit.require(Permission.READ)
        query = select(Payment).order_by(
            *((Payment.received_date.desc(), Payment.id.desc()) if newest_first else (Payment.id,))
        )
        if facility is not None:
            query = query.where(Payment.facility_id == get_facility(unit, facility).id)
        if wanted is not None:
            query = query.where(Payment.status == wanted.value)
        if limit is not None:
            query = query.limit(limit)
        return [_detail(unit.session, p, ()) for p in unit.session.scalars(query)]

    return workspace.read(operation)


def _detail(
    session: Session, payment: Payment, history: tuple[StatusChangeInfo, ...]
) -> PaymentDetail:
    code = session.scalar(select(Facility.code).where(Facility.id == payment.facility_id)) or ""
    return PaymentDetail(
        payment_id=payment.id,
        facility=code,
        method=payment.method,
        status=payment.status,
        amount=Money.from_minor(payment.amount_minor, payment.currency),
        received_date=payment.received_date,
        payer=payment.payer,
        memo=payment.memo,
        instrument=_describe_instrument(payment),
        recorded_by=payment.recorded_by,
        recorded_at=payment.recorded_at,
        allocations=tuple(live_allocations(session, payment)),
        credit=Money.from_minor(credit_of(session, payment), payment.currency),
        history=history,
        override_reason=payment.override_reason,
        approved_by=payment.approved_by,
        duplicate_of=payment.duplicate_of_id,
    )


def _describe_instrument(payment: Payment) -> str:
    if payment.method == PaymentMethod.CHECK.value:
        number = payment.check_number or "(no number)"
        return (
            f"check {number}, routing {payment.routing_number}, account ...{payment.account_last4}"
        )
    if payment.method == PaymentMethod.TRANSFER.value:
        return f"transfer {payment.transfer_reference}"
    if payment.method == PaymentMethod.CARD.value:
        return (
            f"{payment.card_brand} ...{payment.card_last4}, processor ref {payment.processor_ref}"
        )
    return "cash"


def describe_instrument(payment: Payment) -> str:
    """How a payment's instrument reads in a list: the check's number and the last four digits
    of its account, the transfer's reference, the card's brand and last four, or cash."""
    return _describe_instrument(payment)
