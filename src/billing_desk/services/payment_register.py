"""The payment register for browsing: keyset pages of payments, newest first, under a filter
(facility, status, method, received between, amount between, recorded by, words in the payer,
memo or reference). A page reads one row per payment and the facilities it names; a payment's
allocations and history are read when it is opened (`show_payment`). The cost of a page does
not grow with the number of payments or with how far the person has scrolled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Select, and_, false, func, or_, select

from billing_desk.db.models import Facility, Payment
from billing_desk.domain.errors import BadInput
from billing_desk.domain.money import Money, currency_exponent
from billing_desk.domain.roles import Permission
from billing_desk.services.facilities import get_facility
from billing_desk.services.payments import describe_instrument
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

PAGE_SIZE = 200
Query = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class PaymentFilter:
    """What the register shows; empty fields do not narrow it. Amounts are decimals in each
    payment's own currency ("100" is 100.00 dollars and 100 yen); dates are inclusive."""

    facility: str | None = None
    status: str | None = None
    method: str | None = None
    received_from: date | None = None
    received_to: date | None = None
    amount_from: str | None = None
    amount_to: str | None = None
    recorded_by: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class PaymentRow:
    payment_id: int
    received_date: date
    facility: str
    method: str
    instrument: str
    status: str
    amount: Money
    recorded_by: str
    payer: str | None
    memo: str | None


def _decimal(text: str, field: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise BadInput(
            f"The {field} amount {text.strip()!r} is not a number; write it like 1250.00."
        ) from None
    if not value.is_finite() or value < 0:
        raise BadInput(f"The {field} amount must be zero or more; write it like 1250.00.")
    return value


def _amount_bound(session: Any, value: Decimal, *, at_least: bool) -> Any:
    """`amount >= value` (or <=) in each currency the register holds, in that currency's
    minor units: 100 means 10000 cents and 100 yen."""
    currencies = session.scalars(select(Payment.currency).distinct()).all()
    clauses = []
    for currency in currencies:
        minor = value * (10 ** currency_exponent(currency))
        # A bound between two minor units rounds inward: "at least 0.005" starts at 0.01.
        bound = int(minor.to_integral_value(rounding=ROUND_CEILING if at_least else ROUND_FLOOR))
        compare = Payment.amount_minor >= bound if at_least else Payment.amount_minor <= bound
        clauses.append(and_(Payment.currency == currency, compare))
    return or_(*clauses) if clauses else false()


def _filtered(unit: UnitOfWork, query: Query, wanted: PaymentFilter) -> Query:
    if wanted.facility:
        query = query.where(Payment.facility_id == get_facility(unit, wanted.facility).id)
    if wanted.status:
        query = query.where(Payment.status == wanted.status)
    if wanted.method:
        query = query.where(Payment.method == wanted.method)
    if wanted.received_from and wanted.received_to and wanted.received_from > wanted.received_to:
        raise BadInput(
            f"The received dates end ({wanted.received_to}) before they start "
            f"({wanted.received_from}); change From or To."
        )
    if wanted.received_from:
        query = query.where(Payment.received_date >= wanted.received_from)
    if wanted.received_to:
        query = query.where(Payment.received_date <= wanted.received_to)
    low = _decimal(wanted.amount_from, "lowest") if wanted.amount_from else None
    high = _decimal(wanted.amount_to, "highest") if wanted.amount_to else None
    if low is not None and high is not None and low > high:
        raise BadInput(
            f"The lowest amount ({low}) is above the highest ({high}); change the amounts."
        )
    if low is not None:
        query = query.where(_amount_bound(unit.session, low, at_least=True))
    if high is not None:
        query = query.where(_amount_bound(unit.session, high, at_least=False))
    if wanted.recorded_by:
        query = query.where(Payment.recorded_by == wanted.recorded_by.strip())
    if wanted.text and wanted.text.strip():
        pattern = f"%{wanted.text.strip().lower()}%"
        query = query.where(
            or_(
                *(
                    func.lower(column).like(pattern)
                    for column in (
                        Payment.payer,
                        Payment.memo,
                        Payment.transfer_reference,
                        Payment.check_number,
                        Payment.processor_ref,
                    )
                )
            )
        )
    return query


def payment_page(
    workspace: Workspace,
    wanted: PaymentFilter,
    *,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> list[PaymentRow]:
    """One page of payments under `wanted`, newest first, continuing after payment `after`."""

    def operation(unit: UnitOfWork) -> list[PaymentRow]:
        unit.require(Permission.READ)
        query: Query = select(Payment)
        query = _filtered(unit, query, wanted)
        if after is not None:
            query = query.where(Payment.id < after)
        payments = list(unit.session.scalars(query.order_by(Payment.id.desc()).limit(limit)))
        ids = {p.facility_id for p in payments}
        codes: dict[int, str] = {}
        if ids:
            for facility_id, code in unit.session.execute(
                select(Facility.id, Facility.code).where(Facility.id.in_(ids))
            ):
                codes[facility_id] = code
        return [
            PaymentRow(
                p.id,
                p.received_date,
                codes.get(p.facility_id, ""),
                p.method,
                describe_instrument(p),
                p.status,
                Money.from_minor(p.amount_minor, p.currency),
                p.recorded_by,
                p.payer,
                p.memo,
            )
            for p in payments
        ]

    return workspace.read(operation)
