"""The deposits made, newest first, each with where its checks and cash stand now (cleared by the
bank, still in transit, or returned), for the Deposits view's list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from billing_desk.db.models import Deposit, DepositItem, Payment
from billing_desk.domain.money import Money
from billing_desk.domain.payments import PaymentStatus
from billing_desk.domain.roles import Permission
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


@dataclass(frozen=True)
class DepositRow:
    deposit_id: int
    deposit_date: date
    bank_account: str
    total: Money
    items: int
    made_by: str
    cleared: int
    returned: int

    @property
    def standing(self) -> str:
        """'all cleared', '2 of 3 cleared', '1 returned' ..."""
        parts = []
        if self.returned:
            parts.append(f"{self.returned} returned")
        if self.cleared == self.items:
            parts.append("all cleared")
        elif self.cleared:
            parts.append(f"{self.cleared} of {self.items} cleared")
        else:
            parts.append("in transit")
        return ", ".join(parts)


def recent_deposits(workspace: Workspace, *, limit: int = 200) -> list[DepositRow]:
    """The newest deposits (by date, then by number)."""

    def operation(unit: UnitOfWork) -> list[DepositRow]:
        unit.require(Permission.READ)
        deposits = list(
            unit.session.scalars(
                select(Deposit)
                .order_by(Deposit.deposit_date.desc(), Deposit.id.desc())
                .limit(limit)
            )
        )
        ids = [d.id for d in deposits]
        counts: dict[tuple[int, str], int] = {}
        if ids:
            for deposit_id, status, count in unit.session.execute(
                select(DepositItem.deposit_id, Payment.status, func.count())
                .join(Payment, Payment.id == DepositItem.payment_id)
                .where(DepositItem.deposit_id.in_(ids))
                .group_by(DepositItem.deposit_id, Payment.status)
            ):
                counts[(deposit_id, status)] = int(count)
        return [
            DepositRow(
                d.id,
                d.deposit_date,
                d.bank_account,
                Money.from_minor(d.total_minor, d.currency),
                d.item_count,
                d.created_by,
                counts.get((d.id, PaymentStatus.CLEARED.value), 0),
                counts.get((d.id, PaymentStatus.RETURNED.value), 0),
            )
            for d in deposits
        ]

    return workspace.read(operation)
