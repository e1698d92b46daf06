"""Facility credit: money received but not yet allocated, applied to an invoice later."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from billing_desk.domain.errors import Refused
from billing_desk.domain.money import Money, parse_money
from billing_desk.domain.roles import Permission
from billing_desk.services.allocations import (
    AllocationInfo,
    allocate_explicit,
    credit_sources,
    facility_credit,
    open_amount,
)
from billing_desk.services.facilities import get_facility
from billing_desk.services.idempotency import Replay, checked_key, claim, complete
from billing_desk.services.payments import describe_instrument
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


@dataclass(frozen=True)
class CreditApplied:
    facility: str
    invoice_number: str
    amount: Money
    from_payments: tuple[int, ...]
    credit_left: Money
    replayed: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "facility": self.facility,
            "invoice_number": self.invoice_number,
            "amount_minor": self.amount.minor,
            "currency": self.amount.currency,
            "from_payments": list(self.from_payments),
            "credit_left_minor": self.credit_left.minor,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, replayed: bool) -> CreditApplied:
        currency = str(record["currency"])
        return cls(
            str(record["facility"]),
            str(record["invoice_number"]),
            Money.from_minor(int(record["amount_minor"]), currency),
            tuple(int(p) for p in record["from_payments"]),
            Money.from_minor(int(record["credit_left_minor"]), currency),
            replayed,
        )


@dataclass(frozen=True)
class CreditBalance:
    facility: str
    credit: Money


def apply_credit(
    workspace: Workspace,
    facility_code: str,
    invoice_number: str,
    amount: str,
    idempotency_key: str | None,
) -> CreditApplied:
    """Apply part of the facility's credit to one of its open invoices, taking it from its
    oldest payments with money left; never more than the credit or the invoice's open amount."""
    key = checked_key(idempotency_key)

    def operation(unit: UnitOfWork) -> CreditApplied:
        unit.require(Permission.RECORD_PAYMENTS)
        facility = get_facility(unit, facility_code)
        wanted = parse_money(amount, facility.currency, allow_zero=False)
        claimed = claim(
            unit,
            facility_id=facility.id,
            key=key,
            operation="credit.apply",
            request={"invoice": invoice_number.strip().upper(), "amount_minor": wanted.minor},
        )
        if isinstance(claimed, Replay):
            return CreditApplied.from_record(claimed.result, replayed=True)
        sources = credit_sources(unit.session, facility)
        available = sum(left for _, left in sources)
        if wanted.minor > available:
            raise Refused(
                f"{facility.code} has {Money.from_minor(available, facility.currency)} of credit; "
                f"apply at most that."
            )
        still_open = open_amount(unit.session, facility.id, invoice_number)
        if wanted.minor > still_open:
            raise Refused(
                f"Invoice {invoice_number.strip().upper()} has only "
                f"{Money.from_minor(still_open, facility.currency)} open; apply at most that."
            )
        left = wanted.minor
        used: list[int] = []
        applied: list[AllocationInfo] = []
        for payment, spare in sources:
            if left == 0:
                break
            take = min(left, spare)
            applied += allocate_explicit(
                unit, payment, [(invoice_number, take)], via_credit=True, available=spare
            )
            used.append(payment.id)
            left -= take
        result = CreditApplied(
            facility.code,
            applied[0].invoice_number,
            wanted,
            tuple(used),
            Money.from_minor(facility_credit(unit.session, facility), facility.currency),
        )
        complete(unit, claimed, result.to_record())
        return result

    return workspace.write(operation, action="credit.apply")


def credit_balance(workspace: Workspace, facility_code: str) -> CreditBalance:
    def operation(unit: UnitOfWork) -> CreditBalance:
        unit.require(Permission.READ)
        facility = get_facility(unit, facility_code)
        return CreditBalance(
            facility.code,
            Money.from_minor(facility_credit(unit.session, facility), facility.currency),
        )

    return workspace.read(operation)


@dataclass(frozen=True)
class CreditSource:
    """A payment with money not applied to any invoice: where part of a facility's credit is."""

    payment_id: int
    received_date: date
    instrument: str
    left: Money


def credit_origin(
    workspace: Workspace, facility_code: str
) -> tuple[CreditBalance, tuple[CreditSource, ...]]:
    """A facility's credit and the payments it comes from, oldest first (the order credit is
    applied in)."""

    def operation(unit: UnitOfWork) -> tuple[CreditBalance, tuple[CreditSource, ...]]:
        unit.require(Permission.READ)
        facility = get_facility(unit, facility_code)
        sources = credit_sources(unit.session, facility, lock=False)
        origin = tuple(
            CreditSource(
                p.id,
                p.received_date,
                describe_instrument(p),
                Money.from_minor(left, facility.currency),
            )
            for p, left in sources
        )
        total = Money.from_minor(facility_credit(unit.session, facility), facility.currency)
        return CreditBalance(facility.code, total), origin

    return workspace.read(operation)
