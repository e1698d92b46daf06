"""State machines as data: every status a record may hold and the moves allowed between them.

A transition not listed here is refused with `IllegalTransition`; the services store one history
row per transition taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from billing_desk.domain.errors import IllegalTransition


class TripStatus(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no-show"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PARTIALLY_PAID = "partially paid"
    PAID = "paid"
    VOID = "void"


S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    """The allowed moves of one kind of record, e.g. `("issued", "paid")`."""

    entity: str
    transitions: frozenset[tuple[S, S]]

    def allows(self, current: S, target: S) -> bool:
        return (current, target) in self.transitions

    def check(self, current: S, target: S) -> None:
        """Refuse a move that is not declared, naming the current and the wanted state."""
        if not self.allows(current, target):
            raise IllegalTransition(self.entity, current.value, target.value)

    def targets(self, current: S) -> frozenset[S]:
        return frozenset(t for (c, t) in self.transitions if c == current)

    def states(self) -> frozenset[S]:
        return frozenset(s for pair in self.transitions for s in pair)


def _pairs(moves: Iterable[tuple[S, S]]) -> frozenset[tuple[S, S]]:
    return frozenset(moves)


_I = InvoiceStatus
INVOICE_STATES: StateMachine[InvoiceStatus] = StateMachine(
    "invoice",
    _pairs(
        [
            (_I.DRAFT, _I.ISSUED),
            (_I.DRAFT, _I.VOID),
            (_I.ISSUED, _I.PARTIALLY_PAID),
            (_I.ISSUED, _I.PAID),
            (_I.ISSUED, _I.VOID),
            (_I.PARTIALLY_PAID, _I.PAID),
            # A released allocation (voided or returned payment) reopens the invoice.
            (_I.PARTIALLY_PAID, _I.ISSUED),
            (_I.PAID, _I.PARTIALLY_PAID),
            (_I.PAID, _I.ISSUED),
        ]
    ),
)

# Statuses in which an invoice still bills its trips: a trip may sit on one of these at most.
INVOICE_BILLING_STATUSES = frozenset({_I.DRAFT, _I.ISSUED, _I.PARTIALLY_PAID, _I.PAID})


def invoice_status_for(total_minor: int, paid_minor: int) -> InvoiceStatus:
    """The status an issued invoice should hold once `paid_minor` of `total_minor` is allocated."""
    if paid_minor <= 0:
        return InvoiceStatus.ISSUED
    if paid_minor >= total_minor:
        return InvoiceStatus.PAID
    return InvoiceStatus.PARTIALLY_PAID
