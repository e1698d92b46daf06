"""What each facility owes: its open invoices, its credit, its balance and the aging of it.

Built from `invoices._summaries`, the one definition of what is open on an invoice, so the CLI,
the reports and the desktop views agree to the minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from billing_desk.db.models import Facility, Invoice
from billing_desk.domain.money import Money
from billing_desk.domain.roles import Permission
from billing_desk.services.allocations import OPEN_INVOICE_STATUSES, facility_credit
from billing_desk.services.facilities import get_facility
from billing_desk.services.invoices import InvoiceSummary, invoice_summaries
from billing_desk.services.report_data import AGING_BUCKETS, aging_bucket
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


@dataclass(frozen=True)
class AgingAmount:
    """Open amounts whose due date lies in one bucket (current, 1-30, ... over 90 days past)."""

    bucket: str
    amount: Money
    invoices: int


@dataclass(frozen=True)
class FacilityBalance:
    """balance = open - credit; the buckets sum to `open`, `overdue` is what is past due."""

    facility: str
    name: str
    currency: str
    open: Money
    credit: Money
    balance: Money
    overdue: Money
    open_invoices: int
    oldest_due: date | None
    aging: tuple[AgingAmount, ...]


def facility_balances(workspace: Workspace, facility: str | None = None) -> list[FacilityBalance]:
    """Every facility's balance by code (or only `facility`'s), as of the workspace's today."""

    def operation(unit: UnitOfWork) -> list[FacilityBalance]:
        unit.require(Permission.READ)
        if facility is not None:
            facilities = [get_facility(unit, facility)]
        else:
            facilities = list(unit.session.scalars(select(Facility).order_by(Facility.code)))
        invoices = list(
            unit.session.scalars(
                select(Invoice)
                .where(
                    Invoice.status.in_(OPEN_INVOICE_STATUSES),
                    Invoice.facility_id.in_([f.id for f in facilities]),
                )
                .order_by(Invoice.due_date, Invoice.sequence)
            )
        )
        summaries = invoice_summaries(unit.session, invoices, unit.today)
        by_code: dict[str, list[InvoiceSummary]] = {}
        for summary in summaries:
            if summary.open.is_positive():
                by_code.setdefault(summary.facility, []).append(summary)
        return [
            balance_of(f, by_code.get(f.code, []), facility_credit(unit.session, f))
            for f in facilities
        ]

    return workspace.read(operation)


def balance_of(
    facility: Facility, open_summaries: list[InvoiceSummary], credit_minor: int
) -> FacilityBalance:
    currency = facility.currency
    amounts = [0] * len(AGING_BUCKETS)
    counts = [0] * len(AGING_BUCKETS)
    for summary in open_summaries:
        index = aging_bucket(summary.days_past_due)
        amounts[index] += summary.open.minor
        counts[index] += 1
    open_minor = sum(amounts)
    return FacilityBalance(
        facility.code,
        facility.name,
        currency,
        Money.from_minor(open_minor, currency),
        Money.from_minor(credit_minor, currency),
        Money.from_minor(open_minor - credit_minor, currency),
        Money.from_minor(sum(s.open.minor for s in open_summaries if s.overdue), currency),
        len(open_summaries),
        min((s.due_date for s in open_summaries), default=None),
        tuple(
            AgingAmount(name, Money.from_minor(amount, currency), count)
            for name, amount, count in zip(AGING_BUCKETS, amounts, counts, strict=True)
        ),
    )
