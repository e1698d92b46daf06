"""What is in the database at a glance: used on start to greet a new user."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from billing_desk.db.models import Facility, Invoice, Trip, User
from billing_desk.services.unit_of_work import UnitOfWork, Workspace


@dataclass(frozen=True)
class Overview:
    database: str
    users: int
    facilities: int
    trips: int
    invoices: int

    @property
    def is_empty(self) -> bool:
        return self.facilities == 0 and self.trips == 0 and self.invoices == 0


def overview(workspace: Workspace) -> Overview:
    def operation(unit: UnitOfWork) -> Overview:
        def count(model: type[User] | type[Facility] | type[Trip] | type[Invoice]) -> int:
            return unit.session.scalar(select(func.count()).select_from(model)) or 0

        return Overview(
            workspace.location.describe(),
            count(User),
            count(Facility),
            count(Trip),
            count(Invoice),
        )

    return workspace.read(operation)
