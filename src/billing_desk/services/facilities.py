"""Facilities: the hospitals, care homes and clinics that book trips and receive invoices."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from billing_desk.db.models import Facility, InvoiceCounter
from billing_desk.domain.errors import BadInput, Refused
from billing_desk.domain.money import currency_exponent
from billing_desk.domain.roles import Permission
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

_FACILITY_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{1,15}")


@dataclass(frozen=True)
class FacilityInfo:
    code: str
    name: str
    currency: str
    payment_terms_days: int
    billing_contact_name: str | None
    billing_contact_email: str | None
    billing_address: str | None


@dataclass(frozen=True)
class NewFacility:
    code: str
    name: str
    currency: str = "USD"
    payment_terms_days: int = 30
    billing_contact_name: str | None = None
    billing_contact_email: str | None = None
    billing_address: str | None = None

    def validated(self) -> NewFacility:
        code = self.code.strip().upper()
        if not _FACILITY_CODE.fullmatch(code):
            raise BadInput(
                f"'{self.code}' is not a facility code; use 2 to 16 letters, digits, '-' or '_'."
            )
        name = self.name.strip()
        if not name:
            raise BadInput("A facility needs a name; give it with --name.")
        currency = self.currency.strip().upper()
        currency_exponent(currency)
        if not 0 <= self.payment_terms_days <= 365:
            raise BadInput(
                f"Payment terms of {self.payment_terms_days} days are out of range; "
                "use 0 to 365 days."
            )
        email = (self.billing_contact_email or "").strip() or None
        if email is not None and "@" not in email:
            raise BadInput(f"'{email}' is not an e-mail address; check the billing contact.")
        return NewFacility(
            code,
            name,
            currency,
            self.payment_terms_days,
            (self.billing_contact_name or "").strip() or None,
            email,
            (self.billing_address or "").strip() or None,
        )


def facility_info(row: Facility) -> FacilityInfo:
    return FacilityInfo(
        row.code,
        row.name,
        row.currency,
        row.payment_terms_days,
        row.billing_contact_name,
        row.billing_contact_email,
        row.billing_address,
    )


def add_facility(workspace: Workspace, new: NewFacility) -> FacilityInfo:
    draft = new.validated()

    def operation(unit: UnitOfWork) -> FacilityInfo:
        unit.require(Permission.MANAGE_FACILITIES)
        return facility_info(insert_facility(unit, draft))

    return workspace.write(operation, action="facility.add")


def change_facility(workspace: Workspace, changed: NewFacility) -> FacilityInfo:
    """Change a facility's name, payment terms and billing contact. Its code and currency stay:
    they are on its invoices and payments."""
    draft = changed.validated()

    def operation(unit: UnitOfWork) -> FacilityInfo:
        unit.require(Permission.MANAGE_FACILITIES)
        row = get_facility(unit, draft.code)
        if row.currency != draft.currency:
            raise Refused(
                f"{row.code} bills in {row.currency}; a facility's currency cannot change once "
                "it exists (add a new facility for another currency)."
            )
        row.name = draft.name
        row.payment_terms_days = draft.payment_terms_days
        row.billing_contact_name = draft.billing_contact_name
        row.billing_contact_email = draft.billing_contact_email
        row.billing_address = draft.billing_address
        unit.session.flush()
        return facility_info(row)

    return workspace.write(operation, action="facility.change")


def insert_facility(unit: UnitOfWork, draft: NewFacility) -> Facility:
    if unit.session.scalar(select(Facility.id).where(Facility.code == draft.code)) is not None:
        raise Refused(f"A facility with code {draft.code} already exists; choose another code.")
    row = Facility(
        code=draft.code,
        name=draft.name,
        currency=draft.currency,
        payment_terms_days=draft.payment_terms_days,
        billing_contact_name=draft.billing_contact_name,
        billing_contact_email=draft.billing_contact_email,
        billing_address=draft.billing_address,
        created_at=unit.now,
    )
    unit.session.add(row)
    unit.session.flush()
    unit.session.add(InvoiceCounter(facility_id=row.id, last_number=0))
    return row


def list_facilities(workspace: Workspace) -> list[FacilityInfo]:
    def operation(unit: UnitOfWork) -> list[FacilityInfo]:
        unit.require(Permission.READ)
        rows = unit.session.scalars(select(Facility).order_by(Facility.code))
        return [facility_info(r) for r in rows]

    return workspace.read(operation)


def get_facility(unit: UnitOfWork, code: str) -> Facility:
    """The facility with `code`, or a refusal naming the code."""
    row = unit.session.scalar(select(Facility).where(Facility.code == code.strip().upper()))
    if row is None:
        raise BadInput(
            f"There is no facility with code '{code}'; `billing-desk facility list` shows them."
        )
    return row
