"""What the bank does for a payment in tests: its credit on a statement, imported and matched by
hand, which is the only way money clears (domain/bank_matching.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from billing_desk.db.models import BankLine, DepositItem, Payment
from billing_desk.domain.money import Money
from billing_desk.domain.statements import Statement, StatementLine
from billing_desk.services.matching import match_line
from billing_desk.services.statements import import_statements
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


def clear_at_bank(workspace: Workspace, payment_id: int) -> int:
    """Import a statement whose one credit is the payment's money (or its deposit slip's, for a
    check or cash) and match it; returns the bank line's id."""

    def read(unit: UnitOfWork) -> tuple[Payment, int | None, int]:
        payment = unit.session.get(Payment, payment_id)
        assert payment is not None, payment_id
        deposit_id = unit.session.scalar(
            select(DepositItem.deposit_id)
            .where(DepositItem.payment_id == payment_id)
            .order_by(DepositItem.deposit_id.desc())
        )
        total = payment.amount_minor
        if deposit_id is not None:
            total = sum(
                unit.session.scalars(
                    select(DepositItem.amount_minor).where(DepositItem.deposit_id == deposit_id)
                )
            )
        return payment, deposit_id, total

    payment, deposit_id, total = workspace.read(read)
    bank_id = f"CLR-{uuid.uuid4().hex[:12]}"
    statement = Statement(
        "csv",
        f"ACCOUNT-{payment.currency}",
        payment.currency,
        (
            StatementLine(
                booked=payment.received_date,
                amount=Money.from_minor(total, payment.currency),
                location="line 1",
                bank_id=bank_id,
                reference=payment.transfer_reference or payment.processor_ref,
                counterparty=payment.payer or "Payer",
            ),
        ),
    )
    import_statements(
        workspace, f"{bank_id}.csv", bank_id.encode(), "csv", [statement], commit=True
    )
    line_id = workspace.read(
        lambda u: u.session.scalar(select(BankLine.id).where(BankLine.bank_id == bank_id))
    )
    if deposit_id is not None:
        match_line(workspace, line_id, deposit_id=deposit_id)
    else:
        match_line(workspace, line_id, payment_id=payment_id)
    return int(line_id)
