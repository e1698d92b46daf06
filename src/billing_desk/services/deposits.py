"""Deposits: checks (and cash) taken to the bank together on one slip."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select

from billing_desk.db.models import Deposit, DepositItem, Facility, Payment, PaymentStatusChange
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
    key, the key is derived from the payments, the date and each check's presentation, so running
    the same command twice returns the first slip while a check presented again after a return
    makes a new deposit."""
    ids = sorted(set(payment_ids))
    if not ids:
        raise BadInput("A deposit needs payments; give their ids with --payments 12,13,14.")
    account = bank_account.strip() or DEFAULT_BANK_ACCOUNT
    given_key = checked_key(idempotency_key) if idempotency_key is not None else None

    def operation(unit: UnitOfWork) -> DepositSlip:
        unit.require(Permission.RECORD_PAYMENTS)
        if deposit_date > unit.today:
            raise BadInput(
                f"The deposit date {deposit_date} is in the future; use today or earlier."
            )
        key = given_key or _derived_key(unit, ids, deposit_date, account)
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
        slip = deposit_payments(unit, ids, payments, deposit_date, account)
        complete(unit, claimed, slip.to_record())
        return slip

    return workspace.write(operation, action="deposit.create")


def _derived_key(unit: UnitOfWork, ids: Sequence[int], deposit_date: date, account: str) -> str:
    """Same payments, day and account give the same key, unless a check came back returned in
    between: its latest return starts a new presentation."""
    returns = dict(
        unit.session.execute(
            select(PaymentStatusChange.payment_id, func.max(PaymentStatusChange.id))
            .where(
                PaymentStatusChange.payment_id.in_(ids),
                PaymentStatusChange.to_status == PaymentStatus.RETURNED.value,
            )
            .group_by(PaymentStatusChange.payment_id)
        ).all()
    )
    presentations = [returns.get(i, 0) for i in ids]
    text = f"{ids}|{presentations}|{deposit_date}|{account}"
    return "deposit-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def deposit_payments(
    unit: UnitOfWork,
    ids: Sequence[int],
    payments: Sequence[Payment],
    deposit_date: date,
    account: str,
) -> DepositSlip:
    """Write the slip and move each payment to deposited, inside the caller's unit of work."""
    _check_depositable(ids, payments)
    codes = {
        f.id: f.code
        for f in unit.session.scalars(
            select(Facility).where(Facility.id.in_({p.facility_id for p in payments}))
        )
    }
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
    return DepositSlip(
        deposit.id,
        deposit_date,
        account,
        Money.from_minor(total, deposit.currency),
        tuple(
            DepositItemInfo(
                p.id, codes[p.facility_id], p.method, Money.from_minor(p.amount_minor, p.currency)
            )
            for p in payments
        ),
    )


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


@dataclass(frozen=True)
class DepositSummary:
    deposit_id: int
    deposit_date: date
    bank_account: str
    total: Money
    item_count: int
    created_by: str


def list_deposits(
    workspace: Workspace, *, limit: int | None = None, oldest_first: bool = False
) -> list[DepositSummary]:
    """Deposits, the newest first (by deposit date) unless `oldest_first`; `limit` keeps the
    first N of that order."""

    def operation(unit: UnitOfWork) -> list[DepositSummary]:
        unit.require(Permission.READ)
        order = (
            (Deposit.deposit_date, Deposit.id)
            if oldest_first
            else (Deposit.deposit_date.desc(), Deposit.id.desc())
        )
        query = select(Deposit).order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        return [
            DepositSummary(
                d.id,
                d.deposit_date,
                d.bank_account,
                Money.from_minor(d.total_minor, d.currency),
                d.item_count,
                d.created_by,
            )
            for d in unit.session.scalars(query)
        ]

    return workspace.read(operation)


def show_deposit(workspace: Workspace, deposit_id: int) -> DepositSlip:
    """One deposit's slip: its date, account, total and each payment in it."""

    def operation(unit: UnitOfWork) -> DepositSlip:
        unit.require(Permission.READ)
        deposit = unit.session.get(Deposit, deposit_id)
        if deposit is None:
            raise BadInput(
                f"There is no deposit {deposit_id}; `billing-desk deposit list` shows them."
            )
        rows = unit.session.execute(
            select(DepositItem, Payment.method, Facility.code)
            .join(Payment, Payment.id == DepositItem.payment_id)
            .join(Facility, Facility.id == DepositItem.facility_id)
            .where(DepositItem.deposit_id == deposit.id)
            .order_by(DepositItem.payment_id)
        ).all()
        return DepositSlip(
            deposit.id,
            deposit.deposit_date,
            deposit.bank_account,
            Money.from_minor(deposit.total_minor, deposit.currency),
            tuple(
                DepositItemInfo(
                    item.payment_id,
                    code,
                    method,
                    Money.from_minor(item.amount_minor, deposit.currency),
                )
                for item, method, code in rows
            ),
        )

    return workspace.read(operation)
