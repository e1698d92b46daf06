"""The provider's own details: the name, address and contacts printed on every statement, and
the remittance details a facility pays to (a bank account for transfers, a lockbox for checks).
Kept in the database, one row, so every workstation prints the same payee; a manager or an
administrator changes them, and the change is audited like any row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, Final

from billing_desk.db.models import ProviderSetting
from billing_desk.domain.errors import BadInput
from billing_desk.domain.payments import routing_number_valid
from billing_desk.domain.roles import Permission
from billing_desk.services.unit_of_work import UnitOfWork, Workspace

SETTING_ID: Final = 1
# Printed where the provider's name goes while none is set (internal reports only: a statement
# says plainly that the details are missing).
UNSET_NAME: Final = "Provider details not set"


@dataclass(frozen=True)
class Provider:
    """Who bills and where to pay: printed at the top of every report and on remittance slips.
    Empty fields are None; an empty `name` means nothing was ever set."""

    name: str = ""
    address: str | None = None
    email: str | None = None
    phone: str | None = None
    bank_name: str | None = None
    account_number: str | None = None
    routing_number: str | None = None
    lockbox_address: str | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def heading(self) -> str:
        """The name for a report's header band."""
        return self.name or UNSET_NAME

    @property
    def transfer(self) -> bool:
        """A facility can pay by bank transfer: bank, account and routing number are all set."""
        return bool(self.bank_name and self.account_number and self.routing_number)

    @property
    def check_address(self) -> str | None:
        """Where checks are mailed: the lockbox, else the provider's own address."""
        return self.lockbox_address or self.address

    @property
    def remittance_missing(self) -> bool:
        """Nothing tells a facility whom to pay or where: no name, or neither a bank account nor
        an address to mail a check to."""
        return not self.name or not (self.transfer or self.check_address)

    def to_record(self) -> dict[str, object]:
        record: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        record["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        record["remittance_missing"] = self.remittance_missing
        return record


# What `change_provider` may set: None keeps the current value, "" clears it.
@dataclass(frozen=True)
class ProviderChange:
    name: str | None = None
    address: str | None = None
    email: str | None = None
    phone: str | None = None
    bank_name: str | None = None
    account_number: str | None = None
    routing_number: str | None = None
    lockbox_address: str | None = None


_COLUMNS: Final = tuple(f.name for f in fields(ProviderChange))


def read_provider(unit: UnitOfWork) -> Provider:
    """The provider's details inside the caller's unit of work (empty when never set)."""
    row = unit.session.get(ProviderSetting, SETTING_ID)
    if row is None:
        return Provider()
    return Provider(
        **{column: getattr(row, column) for column in _COLUMNS},
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def provider_details(workspace: Workspace) -> Provider:
    """The provider's details as printed on statements and reports."""

    def operation(unit: UnitOfWork) -> Provider:
        unit.require(Permission.READ)
        return read_provider(unit)

    return workspace.read(operation)


def change_provider(workspace: Workspace, change: ProviderChange) -> Provider:
    """Set the given details (None keeps a value, "" clears it) and return them all. Refuses
    anyone but a manager or an administrator, a first setting without a name, a routing number
    that is not nine digits with a valid ABA check digit, and bank details given in part."""

    def operation(unit: UnitOfWork) -> Provider:
        unit.require(Permission.MANAGE_PROVIDER)
        current = read_provider(unit)
        values: dict[str, Any] = {
            column: _clean(column, value)
            for column in _COLUMNS
            if (value := getattr(change, column)) is not None
        }
        if "name" in values:
            values["name"] = values["name"] or ""
        wanted = replace(current, **values)
        _check(wanted)
        row = unit.session.get(ProviderSetting, SETTING_ID)
        if row is None:
            row = ProviderSetting(id=SETTING_ID)
            unit.session.add(row)
        changed = any(getattr(row, column, None) != getattr(wanted, column) for column in _COLUMNS)
        if changed or row.updated_at is None:
            for column in _COLUMNS:
                setattr(row, column, getattr(wanted, column))
            row.updated_at, row.updated_by = unit.now, unit.actor.name
        return replace(wanted, updated_at=row.updated_at, updated_by=row.updated_by)

    return workspace.write(operation, action="provider.change")


_OPTION = {
    "name": "--name",
    "address": "--address",
    "email": "--email",
    "phone": "--phone",
    "bank_name": "--bank-name",
    "account_number": "--account",
    "routing_number": "--routing",
    "lockbox_address": "--lockbox",
}
_LONGEST = {
    "name": 200,
    "address": 500,
    "email": 254,
    "phone": 64,
    "bank_name": 200,
    "lockbox_address": 500,
}


def _clean(column: str, value: str) -> str | None:
    option = _OPTION[column]
    if column in ("address", "lockbox_address"):
        # Lines may be given on one line, separated by "; " (as on a command line).
        lines = [line.strip() for line in re.split(r"\n|;\s", value.replace("\\n", "\n"))]
        text = "\n".join(line for line in lines if line)
    else:
        text = " ".join(value.split())
    if not text:
        return None
    if column == "routing_number":
        return _routing(text)
    if column == "account_number":
        digits = re.sub(r"[ -]", "", text)
        if not (digits.isascii() and digits.isdigit() and 4 <= len(digits) <= 17):
            raise BadInput(
                f"'{text}' is not a bank account number; give its 4 to 17 digits with {option}."
            )
        return digits
    if column == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise BadInput(
            f"'{text}' is not an email address; give one like ar@example.com with {option}."
        )
    if len(text) > _LONGEST[column]:
        raise BadInput(
            f"The {column.replace('_', ' ')} is longer than {_LONGEST[column]} characters; "
            f"shorten it in {option}."
        )
    return text


def _routing(text: str) -> str:
    digits = re.sub(r"[ -]", "", text)
    if not (digits.isascii() and digits.isdigit() and len(digits) == 9):
        raise BadInput(
            f"'{text}' is not a routing number: a US (ABA) routing number has 9 digits; give it "
            "with --routing."
        )
    if not routing_number_valid(digits):
        raise BadInput(
            f"'{text}' is not a valid routing number (its check digit is wrong); copy it again "
            "from the bank's details into --routing."
        )
    return digits


def _check(wanted: Provider) -> None:
    if not wanted.name:
        raise BadInput(
            "The provider needs a name, printed on every statement; give it with --name."
        )
    bank = {
        "--bank-name": wanted.bank_name,
        "--account": wanted.account_number,
        "--routing": wanted.routing_number,
    }
    given = [option for option, value in bank.items() if value]
    if given and len(given) < len(bank):
        missing = " and ".join(option for option, value in bank.items() if not value)
        raise BadInput(
            "Bank transfer details need the bank's name, the account and the routing number "
            f"together; give {missing} too (or clear them all with empty values)."
        )
