"""Deposits: checks (and cash) taken to the bank together on one slip."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from billing_desk.db.models import Deposit, DepositItem, Facility, Payment
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.money import Money
from billing_desk.domain.payments import PaymentMethod, PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.idempotency import Replay, checked_key, claim, complete
from billing_desk.services.payments import move_payment
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

DEFAULT_BANK_ACCOUNT = "operating"


@dataclass(frozen=True)
class DepositItemInfo:
    payment_id: int
    facility: str
    method: str
    amount: Money


@dataclass(frozen=True)
class DepositSlip:
    deposit_id: int
    deposit_date: date
    bank_account: str
    total: Money
    items: tuple[DepositItemInfo, ...]
    replayed: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "deposit_id": self.deposit_id,
            "deposit_date": self.deposit_date.isoformat(),
            "bank_account": self.bank_account,
            "total_minor": self.total.minor,
            "currency": self.total.currency,
            "items": [
                {
                    "payment_id": i.payment_id,
                    "facility": i.facility,
                    "method": i.method,
                    "amount_minor": i.amount.minor,
                }
                for i in self.items
            ],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, replayed: bool) -> DepositSlip:
        currency = str(record["currency"])
        return cls(
            int(record["deposit_id"]),
            date.fromisoformat(str(record["deposit_date"])),
            str(record["bank_account"]),
            Money.from_minor(int(record["total_minor"]), currency),
            tuple(
                DepositItemInfo(
                    int(i["payment_id"]),
                    str(i["facility"]),
                    str(i["method"]),
                    Money.from_minor(int(i["amount_minor"]), currency),
                )
                for i in record["items"]
            ),
            replayed,
        )


def create_deposit(
    workspace: Workspace,
    payment_ids: Sequence[int],
    deposit_date: date,
    *,
    bank_account: str = DEFAULT_BANK_ACCOUNT,
    idempotency_key: str | None = None,
) -> DepositSlip:
    """Group recorded checks and cash into one deposit and move each to deposited. Without a
    key, the key is derived from the payments and the date, so running the same command twice
    returns the first slip."""
    ids = sorted(set(payment_ids))
    if not ids:
        raise BadInput("A deposit needs payments; give their ids with --payments 12,13,14.")
    account = bank_account.strip() or DEFAULT_BANK_ACCOUNT
    derived = hashlib.sha256(f"{ids}|{deposit_date}|{account}".encode()).hexdigest()[:32]
    key = checked_key(idempotency_key or f"deposit-{derived}")

    def operation(unit: UnitOfWork) -> DepositSlip:
        unit.require(Permission.RECORD_PAYMENTS)
        if deposit_date > unit.today:
            raise BadInput(
                f"The deposit date {deposit_date} is in the future; use today or earlier."
            )
        claimed = claim(
            unit,
            facility_id=None,
            key=key,
            operation="deposit.create",
            request={"payments": ids, "date": deposit_date, "bank_account": account},
        )
        if isinstance(claimed, Replay):
            return DepositSlip.from_record(claimed.result, replayed=True)
        payments = list(
            unit.session.scalars(
                select(Payment).where(Payment.id.in_(ids)).order_by(Payment.id).with_for_update()
            )
        )
        _check_depositable(ids, payments)
        codes = dict(
            (f.id, f.code)
            for f in unit.session.scalars(
                select(Facility).where(Facility.id.in_({p.facility_id for p in payments}))
            )
        )
        total = sum(p.amount_minor for p in payments)
        deposit = Deposit(
            deposit_date=deposit_date,
            bank_account=account,
            currency=payments[0].currency,
            total_minor=total,
            item_count=len(payments),
            created_at=unit.now,
            created_by=unit.actor.name,
        )
        unit.session.add(deposit)
        unit.session.flush()
        for payment in payments:
            unit.session.add(
                DepositItem(
                    deposit_id=deposit.id,
                    payment_id=payment.id,
                    facility_id=payment.facility_id,
                    amount_minor=payment.amount_minor,
                )
            )
            move_payment(
                unit, payment, PaymentStatus.DEPOSITED, f"deposit {deposit.id}", on=deposit_date
            )
        slip = DepositSlip(
            deposit.id,
            deposit_date,
            account,
            Money.from_minor(total, deposit.currency),
            tuple(
                DepositItemInfo(
                    p.id,
                    codes[p.facility_id],
                    p.method,
                    Money.from_minor(p.amount_minor, p.currency),
                )
                for p in payments
            ),
        )
        complete(unit, claimed, slip.to_record())
        return slip

    return workspace.write(operation, action="deposit.create")


def _check_depositable(ids: Sequence[int], payments: Sequence[Payment]) -> None:
    found = {p.id for p in payments}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise BadInput(f"There is no payment {', '.join(missing)}; check the ids.")
    for payment in payments:
        if payment.method not in (PaymentMethod.CHECK.value, PaymentMethod.CASH.value):
            raise Refused(
                f"Payment {payment.id} is a {payment.method} payment; only checks and cash are "
                "deposited."
            )
        if payment.status != PaymentStatus.RECORDED.value:
            raise Refused(
                f"Payment {payment.id} is {payment.status}; only recorded checks and cash can be "
                "deposited."
            )
    currencies = {p.currency for p in payments}
    if len(currencies) > 1:
        raise Refused(
            f"The payments are in {', '.join(sorted(currencies))}; a deposit holds one currency."
        )
