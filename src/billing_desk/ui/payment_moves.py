"""What may happen next to a payment, in words, from the lifecycle that is data in
domain/payments.py: the register and the approvals queue offer exactly these, each asking for a
reason, and the service decides (a manager who recorded a payment cannot void, refund or approve
it; the refusal says so)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtWidgets import QWidget

from billing_desk.domain.bank_matching import made_by_the_bank
from billing_desk.domain.payments import (
    MANAGER_MOVES,
    PAYMENT_STATES,
    PaymentMethod,
    PaymentStatus,
)
from billing_desk.domain.roles import Permission
from billing_desk.services.payments import PaymentDetail, TransitionResult, change_status
from billing_desk.ui.desk import Desk
from billing_desk.ui.operations import changes
from billing_desk.ui.widgets import ReasonDialog

S = PaymentStatus


@dataclass(frozen=True)
class Move:
    """One next step of a payment, as the button that offers it."""

    target: PaymentStatus
    label: str
    question: str
    permission: Permission


def _words(current: PaymentStatus, target: PaymentStatus) -> tuple[str, str]:
    if current == S.AWAITING_APPROVAL:
        if target == S.VOIDED:
            return "Refuse…", "Why is this payment refused? It is voided and counts for nothing."
        return "Approve…", "Why is this second payment right? Your note is kept with it."
    return {
        S.VOIDED: ("Void…", "Why is this payment void (entered in error)?"),
        S.RETURNED: ("Returned by the bank…", "What did the bank say (e.g. insufficient funds)?"),
        S.REFUNDED: ("Refund…", "Why is the money paid back?"),
        S.RECORDED: ("Present again…", "Why is the returned check presented again?"),
        S.CAPTURED: ("Captured…", "What does the processor say?"),
        S.CHARGEBACK: ("Charged back…", "What did the card holder's bank say?"),
        S.AUTHORIZED: ("Authorized…", "What does the processor say?"),
    }.get(target, (f"{target.value.capitalize()}…", "Why?"))


def next_moves(payment: PaymentDetail) -> list[Move]:
    """The moves the lifecycle allows from the payment's state that a person makes. Deposits
    happen through a deposit slip, and clearing (or taking it back) by matching (or unmatching)
    a bank line in the Reconciliation view, so those are never offered here."""
    method = PaymentMethod(payment.method)
    current = PaymentStatus(payment.status)
    moves = []
    for target in sorted(PAYMENT_STATES[method].targets(current), key=lambda t: t.value):
        if target == S.DEPOSITED or made_by_the_bank(method, current, target):
            continue
        label, question = _words(current, target)
        manager = target in MANAGER_MOVES or current == S.AWAITING_APPROVAL
        permission = Permission.APPROVE_PAYMENTS if manager else Permission.RECORD_PAYMENTS
        moves.append(Move(target, label, question, permission))
    return moves


def ask_and_move(
    desk: Desk,
    parent: QWidget,
    payment: PaymentDetail,
    move: Move,
    done: Callable[[TransitionResult], None],
) -> ReasonDialog:
    """Ask why, then move the payment in the background, once (one key for the dialog's
    submission, kept for a retry)."""
    amount = desk.formats.money(payment.amount)
    dialog = ReasonDialog(
        parent,
        f"{move.label.rstrip('…')} payment {payment.payment_id}",
        f"Payment {payment.payment_id}: {amount} from {payment.facility} ({payment.instrument}), "
        f"{payment.status}.\n\n&{move.question}",
        f"&{move.label.rstrip('…')}",
    )
    key = f"gui-move-{uuid.uuid4()}"
    number, target = payment.payment_id, move.target.value

    def moved(result: TransitionResult) -> None:
        dialog.accept()
        done(result)

    dialog.submitted.connect(
        lambda reason: desk.change(
            dialog,
            lambda ws: change_status(ws, number, target, reason, key),
            moved,
            changes("payments", "invoices", "deposits"),
            failure=lambda err: dialog.failed(err, desk.presenter.present),
        )
    )
    dialog.open()
    return dialog
